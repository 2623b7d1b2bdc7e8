"""Billing services available so far: starting a tenant's subscription at signup. Plan
changes, renewal and invoices come with the billing issue."""
from datetime import timedelta

from dateutil.relativedelta import relativedelta
from django.conf import settings

from aerolith import clock
from aerolith.errors import ValidationFailed

from .models import Plan, Subscription


def plan_for_signup(code: str) -> Plan:
    """The public plan called `code`, or ValidationFailed naming the choices."""
    plan = Plan.objects.filter(code=code, is_public=True, for_tenant__isnull=True).first()
    if plan is None:
        choices = list(
            Plan.objects.filter(is_public=True, for_tenant__isnull=True).values_list("code", flat=True)
        )
        raise ValidationFailed({"plan": [("unknown_plan", f"Unknown plan '{code}'. Choose one of {choices}.")]})
    return plan


def subscription_start(*, tenant, plan: Plan) -> Subscription:
    """Start `tenant` on `plan`: a paid plan begins with a trial (no card needed), Free
    begins active. The period is anchored on the start (anniversary billing)."""
    start = clock.now(tenant)
    if plan.is_free:
        return Subscription.objects.create(
            tenant=tenant, plan=plan, status=Subscription.Status.ACTIVE,
            current_period_start=start, current_period_end=start + relativedelta(months=1),
        )
    trial_end = start + timedelta(days=settings.AEROLITH_TRIAL_DAYS)
    return Subscription.objects.create(
        tenant=tenant, plan=plan, status=Subscription.Status.TRIALING, trial_end=trial_end,
        current_period_start=start, current_period_end=trial_end,
    )
