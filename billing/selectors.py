from .models import Plan


def public_plans():
    return (Plan.objects.filter(is_public=True, for_tenant__isnull=True)
            .prefetch_related("meters__meter"))


def subscription_of(tenant):
    """The tenant's subscription with its plan, or None (the public tenant has none)."""
    from .models import Subscription

    return Subscription.objects.select_related("plan").filter(tenant_id=tenant.pk).first()


def plan_allowances(plan) -> dict[int, tuple]:
    """meter id -> (included Decimal or None for unlimited, unit price cents or None)."""
    from .models import PlanMeter

    return {
        meter_id: (included, price)
        for meter_id, included, price in PlanMeter.objects.filter(plan=plan)
        .values_list("meter_id", "included", "unit_price_cents")
    }
