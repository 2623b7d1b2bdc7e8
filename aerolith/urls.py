"""URLs of a tenant's domain: its portal and its API."""
from django.urls import include, path

from aerolith.api.urls import tenant_api
from billing import portal as billing_portal
from billing import portal_crypto as billing_portal_crypto
from metering import portal as metering_portal
from provisioning import portal as provisioning_portal
from tenants.portal import urls as portal_urls
from tenants.webhooks import portal as webhooks_portal

handler404 = "aerolith.api.views.not_found"
handler500 = "aerolith.api.views.server_error"

urlpatterns = [
    path("api/v1/", include(tenant_api)),
    path("", include("aerolith.api.docs")),
    path("", include((portal_urls.tenant_patterns + metering_portal.urlpatterns
                         + billing_portal.urlpatterns + billing_portal_crypto.urlpatterns
                         + provisioning_portal.urlpatterns + webhooks_portal.urlpatterns,
                      "portal"))),
]
