"""The staff console's one-page picture of a tenant (TenantAdmin's change view): plan,
status and MRR contribution, usage against the plan's limits this period, recent invoices
and payments, clusters and databases, and the audit trail. Reads only, a fixed number of
queries whatever the tenant's history (usage comes from the batched metering selector)."""
from urllib.parse import urlencode

from django.urls import reverse

from aerolith import clock
from aerolith.charts import gauge
from billing import enforcement
from billing.metrics import PAYING
from billing.models import Invoice, Payment, Subscription
from metering.selectors import UsageRequest, period_usage, period_usage_many
from provisioning.selectors import tenant_clusters

from .models import AuditEvent

RECENT = 10
AUDIT_SHOWN = 20


def _changelist(model: str, **filters) -> str:
    return f"{reverse(f'admin:{model}_changelist')}?{urlencode(filters)}"


def tenant_overview(tenant) -> dict:
    subscription = (Subscription.objects.select_related("plan", "pending_plan")
                    .filter(tenant=tenant).first())
    now = clock.now(tenant)
    usage = []
    if subscription is not None:
        until = min(max(now, subscription.current_period_start), subscription.current_period_end)
        for item in period_usage(tenant=tenant, plan=subscription.plan,
                                 start=subscription.current_period_start,
                                 end=subscription.current_period_end, until=until):
            usage.append({"meter": item.meter, "quantity": item.quantity, "included": item.included,
                          "overage": item.overage, "overage_cents": item.overage_amount_cents,
                          "gauge": gauge(item.quantity, item.included, item.meter.unit)})
    erased = tenant.erased_at is not None
    return {
        "subscription": subscription,
        "tenant_now": now,
        "mrr_cents": (subscription.plan.price_cents
                      if subscription is not None and subscription.status in PAYING else 0),
        "usage": usage,
        # Customer databases live in the tenant's schema, gone once it is erased.
        "databases": None if erased else enforcement.databases_in_use(tenant),
        "invoices": list(Invoice.objects.filter(tenant=tenant).order_by("-created_at", "-id")[:RECENT]),
        "invoices_url": _changelist("billing_invoice", tenant__id__exact=tenant.pk),
        "payments": list(Payment.objects.filter(tenant=tenant).select_related("invoice")
                         .order_by("-created_at", "-id")[:RECENT]),
        "payments_url": _changelist("billing_payment", tenant__id__exact=tenant.pk),
        "clusters": list(tenant_clusters(tenant).order_by("name")[:RECENT]),
        "clusters_url": _changelist("provisioning_cluster", tenant__id__exact=tenant.pk),
        "audit": list(AuditEvent.objects.filter(tenant=tenant).order_by("-occurred_at", "-id")
                      [:AUDIT_SHOWN]),
        "audit_url": _changelist("tenants_auditevent", tenant__id__exact=tenant.pk),
    }


def usage_peaks(tenants) -> dict[int, tuple]:
    """tenant id -> (meter, percent of its allowance used this period) for the meter
    closest to (or furthest past) its allowance, for a page of the tenant list: one batched
    usage read for all of them. Tenants without a subscription or a limited meter are left out."""
    tenants = [t for t in tenants if getattr(t, "subscription", None) is not None]
    times = clock.now_many([t.pk for t in tenants])
    requests = []
    for tenant in tenants:
        subscription = tenant.subscription
        start, end = subscription.current_period_start, subscription.current_period_end
        requests.append(UsageRequest(tenant.pk, subscription.plan, start, end,
                                     until=min(max(times[tenant.pk], start), end)))
    peaks = {}
    for request, usages in zip(requests, period_usage_many(requests), strict=True):
        limited = [(u.quantity * 100 / u.included, u.meter) for u in usages if u.included]
        if limited:
            percent, meter = max(limited, key=lambda pair: pair[0])
            peaks[request.tenant_id] = (meter, percent)
    return peaks
