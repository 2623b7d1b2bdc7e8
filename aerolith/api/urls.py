"""/api/v1/ routes, one list per domain."""
from django.urls import path
from rest_framework.routers import SimpleRouter

from billing import api as billing_api
from metering import api as metering_api
from tenants import api as tenants_api

router = SimpleRouter(trailing_slash=False)
router.register("members", tenants_api.MemberViewSet, basename="member")
router.register("api-keys", tenants_api.ApiKeyViewSet, basename="api-key")
router.register("audit-events", tenants_api.AuditEventViewSet, basename="audit-event")

tenant_api = [
    path("auth/token", tenants_api.TokenView.as_view(), name="auth-token"),
    path("auth/token/refresh", tenants_api.TokenRefreshView.as_view(), name="auth-token-refresh"),
    path("tenant", tenants_api.TenantView.as_view(), name="tenant"),
    path("subscription", billing_api.SubscriptionView.as_view(), name="subscription"),
    path("test-clock", tenants_api.TestClockView.as_view(), name="test-clock"),
    path("test-clock/advance", tenants_api.TestClockAdvanceView.as_view(), name="test-clock-advance"),
    path("usage/events", metering_api.UsageEventsView.as_view(), name="usage-events"),
    path("usage", metering_api.UsageView.as_view(), name="usage"),
    path("usage/timeseries", metering_api.UsageSeriesView.as_view(), name="usage-timeseries"),
    *router.urls,
]

public_api = [
    path("plans", billing_api.PlanList.as_view(), name="plans"),
    path("signup", tenants_api.SignupView.as_view(), name="signup"),
]
