"""/api/v1/ routes, one list per domain."""
from django.urls import path
from rest_framework.routers import SimpleRouter

from billing import api as billing_api
from metering import api as metering_api
from provisioning import api as provisioning_api
from tenants import api as tenants_api
from tenants import api_privacy
from tenants.webhooks import api as webhooks_api

router = SimpleRouter(trailing_slash=False)
router.register("members", tenants_api.MemberViewSet, basename="member")
router.register("api-keys", tenants_api.ApiKeyViewSet, basename="api-key")
router.register("audit-events", tenants_api.AuditEventViewSet, basename="audit-event")

tenant_api = [
    path("auth/token", tenants_api.TokenView.as_view(), name="auth-token"),
    path("auth/token/refresh", tenants_api.TokenRefreshView.as_view(), name="auth-token-refresh"),
    path("tenant", tenants_api.TenantView.as_view(), name="tenant"),
    path("subscription", billing_api.SubscriptionView.as_view(), name="subscription"),
    path("subscription/preview-change", billing_api.SubscriptionPreviewView.as_view(),
         name="subscription-preview-change"),
    path("subscription/change", billing_api.SubscriptionChangeView.as_view(), name="subscription-change"),
    path("subscription/cancel", billing_api.SubscriptionCancelView.as_view(), name="subscription-cancel"),
    path("subscription/resume", billing_api.SubscriptionResumeView.as_view(), name="subscription-resume"),
    path("invoices", billing_api.InvoiceList.as_view(), name="invoice-list"),
    path("invoices/<str:number>", billing_api.InvoiceDetail.as_view(), name="invoice-detail"),
    path("invoices/<str:number>/pdf", billing_api.InvoicePdf.as_view(), name="invoice-pdf"),
    path("invoices/<str:number>/pay", billing_api.InvoicePay.as_view(), name="invoice-pay"),
    path("payments", billing_api.PaymentList.as_view(), name="payment-list"),
    path("crypto-quotes/<str:pk>", billing_api.CryptoQuoteDetail.as_view(), name="crypto-quote-detail"),
    path("payment-methods", billing_api.PaymentMethodListCreate.as_view(), name="payment-method-list"),
    path("payment-methods/setup", billing_api.PaymentMethodSetup.as_view(), name="payment-method-setup"),
    # An int id, so that payment-methods/setup (payments issue) is a route of its own.
    path("payment-methods/<int:pk>", billing_api.PaymentMethodDetail.as_view(),
         name="payment-method-detail"),
    path("test-clock", tenants_api.TestClockView.as_view(), name="test-clock"),
    path("test-clock/advance", tenants_api.TestClockAdvanceView.as_view(), name="test-clock-advance"),
    path("usage/events", metering_api.UsageEventsView.as_view(), name="usage-events"),
    path("usage", metering_api.UsageView.as_view(), name="usage"),
    path("usage/timeseries", metering_api.UsageSeriesView.as_view(), name="usage-timeseries"),
    path("databases", provisioning_api.DatabaseListCreate.as_view(), name="database-list"),
    path("databases/<str:pk>", provisioning_api.DatabaseDetail.as_view(), name="database-detail"),
    path("databases/<str:pk>/query", provisioning_api.DatabaseQuery.as_view(), name="database-query"),
    path("clusters", provisioning_api.ClusterListCreate.as_view(), name="cluster-list"),
    # Before clusters/<pk>, which would otherwise take "recommend" for an id.
    path("clusters/recommend", provisioning_api.ClusterSizing.as_view(), name="cluster-sizing"),
    path("clusters/<str:pk>", provisioning_api.ClusterDetail.as_view(), name="cluster-detail"),
    path("clusters/<str:pk>/scaling-events", provisioning_api.ScalingEventList.as_view(),
         name="cluster-scaling-events"),
    path("clusters/<str:pk>/recommendation", provisioning_api.ClusterRecommendation.as_view(),
         name="cluster-recommendation"),
    path("exports", api_privacy.ExportList.as_view(), name="export-list"),
    path("exports/<str:pk>", api_privacy.ExportDetail.as_view(), name="export-detail"),
    path("exports/<str:pk>/download", api_privacy.ExportDownload.as_view(), name="export-download"),
    path("erasure", api_privacy.ErasureView.as_view(), name="erasure"),
    path("webhook-endpoints", webhooks_api.WebhookEndpointListCreate.as_view(),
         name="webhook-endpoint-list"),
    path("webhook-endpoints/<str:pk>", webhooks_api.WebhookEndpointDetail.as_view(),
         name="webhook-endpoint-detail"),
    path("webhook-endpoints/<str:pk>/deliveries", webhooks_api.WebhookDeliveryList.as_view(),
         name="webhook-delivery-list"),
    path("webhook-deliveries/<str:pk>/redeliver", webhooks_api.WebhookDeliveryRedeliver.as_view(),
         name="webhook-delivery-redeliver"),
    *router.urls,
]

public_api = [
    path("plans", billing_api.PlanList.as_view(), name="plans"),
    path("signup", tenants_api.SignupView.as_view(), name="signup"),
]
