"""Tenant routing by host name: the base domain (and localhost) is the public site, every
`<slug>.<base>` is that organisation's portal and API, anything else is a clear 404."""
from django.conf import settings
from django.db import connection
from django.http import HttpResponseNotFound
from django.template.loader import render_to_string
from django_tenants.middleware.main import TenantMainMiddleware

from aerolith.api.errors import json_problem, wants_problem_json
from aerolith.logging import tenant_var

PUBLIC_HOSTS = {settings.AEROLITH_BASE_DOMAIN, "localhost", "127.0.0.1"}


class TenantMiddleware(TenantMainMiddleware):
    def get_tenant(self, domain_model, hostname):
        if hostname in PUBLIC_HOSTS:
            return domain_model.tenant.field.related_model.objects.get(schema_name="public")
        return super().get_tenant(domain_model, hostname)

    def process_request(self, request):
        response = super().process_request(request)
        if response is None:
            tenant_var.set("" if request.tenant.is_public else request.tenant.slug)
        return response

    def no_tenant_found(self, request, hostname):
        connection.set_schema_to_public()
        detail = (
            f"There is no organisation at {hostname}. Check the address, or sign up at "
            f"{settings.AEROLITH_BASE_DOMAIN}."
        )
        if wants_problem_json(request):
            return json_problem(request, 404, "unknown_host", detail)
        html = render_to_string(
            "errors/unknown_host.html",
            {"hostname": hostname, "base_domain": settings.AEROLITH_BASE_DOMAIN},
        )
        return HttpResponseNotFound(html)
