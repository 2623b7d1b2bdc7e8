"""Project-wide middleware: health endpoints that answer for any host, and request ids."""
import re
import uuid

from django.http import JsonResponse

from aerolith.logging import request_id_var, tenant_var, user_var

_SAFE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


class HealthCheckMiddleware:
    """/healthz and /readyz answer before tenant routing, so a load balancer can probe any
    node by IP address."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if request.path == "/healthz":
            return JsonResponse({"status": "ok"})
        if request.path == "/readyz":
            from aerolith.health import readiness

            report = readiness()
            return JsonResponse(report, status=200 if report["status"] == "ok" else 503)
        return self.get_response(request)


class RequestIdMiddleware:
    """Gives every request an id (the caller's X-Request-ID when it is sane) for logs,
    audit entries and the response header."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        incoming = request.headers.get("X-Request-ID", "")
        request.request_id = incoming if _SAFE_REQUEST_ID.match(incoming) else uuid.uuid4().hex
        # Set, not reset afterwards: Django logs the response (django.request) after the
        # middleware chain returns, and that record should carry the id too.
        request_id_var.set(request.request_id)
        tenant_var.set("")
        user_var.set("")
        response = self.get_response(request)
        response["X-Request-ID"] = request.request_id
        return response
