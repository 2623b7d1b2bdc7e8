"""Every API route in one urlconf, for the OpenAPI document only."""
from django.urls import include, path

from aerolith.api.urls import public_api, tenant_api

urlpatterns = [path("api/v1/", include(public_api + tenant_api))]
