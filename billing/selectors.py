"""Reads of billing that more than one caller needs."""
from django.db.models import Q

from tenants.models import Membership, Role

from .decisions import DunningPolicy
from .models import BillingSettings, Invoice, Plan, PlanMeter, Subscription


def public_plans():
    return (Plan.objects.filter(is_public=True, for_tenant__isnull=True)
            .prefetch_related("meters__meter"))


def plans_for_tenant(tenant):
    """Plans this tenant may choose: the public ones and its own custom plans."""
    return (Plan.objects.filter(Q(is_public=True, for_tenant__isnull=True) | Q(for_tenant=tenant))
            .prefetch_related("meters__meter"))


def subscription_of(tenant):
    """The tenant's subscription with its plan, or None (the public tenant has none).
    Lean on purpose: the API-call meter reads it on every request."""
    return Subscription.objects.select_related("plan").filter(tenant_id=tenant.pk).first()


def plan_allowances(plan) -> dict[int, tuple]:
    """meter id -> (included Decimal or None for unlimited, unit price cents or None)."""
    return {
        meter_id: (included, price)
        for meter_id, included, price in PlanMeter.objects.filter(plan=plan)
        .values_list("meter_id", "included", "unit_price_cents")
    }


def plan_allowances_many(plan_ids) -> dict[int, dict[int, tuple]]:
    """plan id -> plan_allowances(plan), in one query."""
    out: dict[int, dict[int, tuple]] = {plan_id: {} for plan_id in plan_ids}
    for plan_id, meter_id, included, price in PlanMeter.objects.filter(plan_id__in=plan_ids).values_list(
            "plan_id", "meter_id", "included", "unit_price_cents"):
        out[plan_id][meter_id] = (included, price)
    return out


def billing_settings() -> BillingSettings:
    """The staff-editable schedule; made from the Django settings' defaults on first use."""
    row, _ = BillingSettings.objects.get_or_create(pk=1)
    return row


def dunning_policy() -> DunningPolicy:
    row = billing_settings()
    return DunningPolicy(tuple(row.retry_days), row.grace_days, row.suspension_days,
                         row.retention_days)


def billing_contacts(tenant) -> list[str]:
    """Emails of the members who receive billing mail: owners and billing members."""
    return list(
        Membership.objects.filter(tenant=tenant, role__in=[Role.OWNER, Role.BILLING],
                                  accepted_at__isnull=False, user__is_active=True)
        .order_by("id").values_list("user__email", flat=True)
    )


def invoices_of(tenant):
    return (Invoice.objects.filter(tenant=tenant).exclude(status=Invoice.Status.DRAFT)
            .prefetch_related("lines"))


def overdue_invoices(subscription, now):
    """Finalised invoices of this subscription still owing money and already due."""
    return Invoice.objects.filter(
        subscription=subscription, status__in=[Invoice.Status.OPEN, Invoice.Status.UNCOLLECTIBLE],
        amount_due_cents__gt=0, due_at__lte=now)
