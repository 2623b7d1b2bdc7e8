"""URLs of the public domain: pricing, signup, login, the staff console, the API's public
endpoints and its documentation, and the payment processors' webhooks. Health checks
answer on every host (middleware)."""
from django.contrib import admin
from django.urls import include, path
from django.views.decorators.http import require_safe

from aerolith.api.urls import public_api
from aerolith.metrics import metrics_view
from billing.webhooks import stripe_webhook
from tenants.portal import urls as portal_urls

handler404 = "aerolith.api.views.not_found"
handler500 = "aerolith.api.views.server_error"

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/v1/", include(public_api)),
    path("webhooks/stripe/", stripe_webhook, name="stripe-webhook"),
    path("metrics", require_safe(metrics_view), name="metrics"),
    path("", include("aerolith.api.docs")),
    path("", include((portal_urls.public_patterns, "portal"))),
]
