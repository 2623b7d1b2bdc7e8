"""RFC 9457 problem+json for every API failure: DRF's own exceptions, domain errors from
services, Django's 404 and anything unexpected."""
import logging
import math

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.http import Http404, JsonResponse
from rest_framework import exceptions
from rest_framework.response import Response

from aerolith.errors import DomainError

logger = logging.getLogger(__name__)
PROBLEM_CONTENT_TYPE = "application/problem+json"
TYPE_BASE = "https://docs.aerolith.localhost/problems/"

_DRF_CODES = {
    exceptions.ParseError: ("malformed_request", "The request body could not be parsed."),
    exceptions.AuthenticationFailed: ("authentication_failed", None),
    exceptions.NotAuthenticated: (
        "not_authenticated",
        "Send 'Authorization: Bearer <API key or access token>'.",
    ),
    exceptions.PermissionDenied: ("permission_denied", None),
    exceptions.NotFound: ("not_found", None),
    exceptions.MethodNotAllowed: ("method_not_allowed", None),
    exceptions.NotAcceptable: ("not_acceptable", None),
    exceptions.UnsupportedMediaType: ("unsupported_media_type", None),
    exceptions.Throttled: ("rate_limited", None),
}


def problem(status_code: int, code: str, detail: str, *, title: str | None = None,
            errors: list | None = None, **extra) -> dict:
    body = {
        "type": TYPE_BASE + code,
        "title": title or _title(status_code),
        "status": status_code,
        "detail": detail,
        "code": code,
    }
    if errors:
        body["errors"] = errors
    body.update(extra)
    return body


def _title(status_code: int) -> str:
    from http import HTTPStatus

    try:
        return HTTPStatus(status_code).phrase
    except ValueError:
        return "Error"


def flatten_field_errors(detail, prefix: str = "") -> list[dict]:
    """Turn DRF's nested error structure into [{field, code, detail}]."""
    if isinstance(detail, dict):
        out = []
        for key, value in detail.items():
            if isinstance(key, int):  # a ListField reports its items by index
                out += flatten_field_errors(value, f"{prefix}[{key}]")
                continue
            field = key if key != "non_field_errors" else ""
            out += flatten_field_errors(value, f"{prefix}.{field}" if prefix and field else prefix or field)
        return out
    if isinstance(detail, list):
        out = []
        for index, value in enumerate(detail):
            nested = isinstance(value, (dict, list))
            out += flatten_field_errors(value, f"{prefix}[{index}]" if nested else prefix)
        return out
    return [{"field": prefix or None, "code": getattr(detail, "code", "invalid"), "detail": str(detail)}]


def problem_response(body: dict, headers: dict | None = None) -> Response:
    response = Response(body, status=body["status"], headers=headers)
    response.content_type = PROBLEM_CONTENT_TYPE
    return response


def problem_exception_handler(exc, context):
    if isinstance(exc, DomainError):
        body = problem(exc.status, exc.code, exc.detail, title=exc.title,
                       errors=exc.field_errors(), **exc.extra)
        return problem_response(body)
    if isinstance(exc, Http404):
        exc = exceptions.NotFound("Nothing here: the resource does not exist or is not yours.")
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied()
    if isinstance(exc, exceptions.ValidationError):
        errors = flatten_field_errors(exc.detail)
        fields = sorted({e["field"] for e in errors if e["field"]})
        detail = (
            f"Some fields are not valid: {', '.join(fields)}." if fields
            else "; ".join(e["detail"] for e in errors)
        )
        return problem_response(problem(400, "validation_error", detail,
                                        title="Validation failed", errors=errors))
    if isinstance(exc, exceptions.APIException):
        code, hint = next(
            ((c, h) for cls, (c, h) in _DRF_CODES.items() if isinstance(exc, cls)),
            (exc.default_code, None),
        )
        detail = str(exc.detail) if not isinstance(exc.detail, (list, dict)) else exc.default_detail
        if hint and hint not in detail:
            detail = f"{detail} {hint}"
        headers = {}
        extra = {}
        if isinstance(exc, exceptions.Throttled) and exc.wait is not None:
            # Whole seconds (RFC 9110 delay-seconds), rounded up: never "retry now".
            wait = max(1, math.ceil(exc.wait))
            headers["Retry-After"] = str(wait)
            extra["retry_after"] = wait
            extra.update(getattr(exc, "problem_extra", {}))
        if getattr(exc, "auth_header", None):
            headers["WWW-Authenticate"] = exc.auth_header
        return problem_response(problem(exc.status_code, code, detail, **extra), headers)
    logger.exception("Unhandled API error")
    return problem_response(problem(500, "server_error", "Something went wrong on our side; "
                                    "it has been logged. Try again, or contact support with "
                                    "the X-Request-ID of this response."))


def json_problem(request, status_code: int, code: str, detail: str) -> JsonResponse:
    """problem+json for responses made outside DRF (URL not found, server error)."""
    return JsonResponse(problem(status_code, code, detail), status=status_code,
                        content_type=PROBLEM_CONTENT_TYPE)


def wants_problem_json(request) -> bool:
    return request.path.startswith("/api/") or request.path.startswith("/webhooks/")

