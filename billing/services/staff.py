"""What staff do to a tenant's standing from the console (SPEC §11): suspend, reactivate
and extend a trial. Each is one transaction on the locked subscription, audited with the
staff member as actor, and tells the enforcement hooks and the billing contacts the way
dunning does."""
from datetime import timedelta

from django.db import transaction

from aerolith import clock
from aerolith.errors import Conflict, ValidationFailed
from tenants.services.audit import audit_record

from .. import enforcement
from ..models import Subscription
from ..selectors import overdue_invoices
from .notify import billing_email
from .subscriptions import locked_subscription, schedule_trial, status_set

Status = Subscription.Status
MAX_TRIAL_EXTENSION_DAYS = 90


def staff_suspend(*, tenant, actor, reason: str = "") -> Subscription:
    """Suspend now: databases refuse writes, the tenant's owners are told why. Nothing is
    scheduled after it (dunning's automatic cancellation applies to its own suspensions
    only); staff reactivate by hand. Refuses a tenant already suspended or cancelled."""
    with transaction.atomic():
        subscription = locked_subscription(tenant)
        if subscription.status in (Status.SUSPENDED, Status.CANCELLED):
            raise Conflict(f"The subscription is {subscription.get_status_display().lower()}; "
                           "only a trialing, active or past-due one can be suspended.",
                           code="not_suspendable")
        status_set(subscription, Status.SUSPENDED, actor=actor, action="suspended_by_staff",
                   suspended_at=clock.now(tenant))
        tenant = subscription.tenant
        transaction.on_commit(lambda: enforcement.notify("suspended", tenant))
        billing_email(tenant=tenant, template="suspended", subject="Your service is suspended",
                      context={"by_staff": True, "reason": reason})
    return subscription


def staff_reactivate(*, tenant, actor) -> Subscription:
    """Lift a suspension (staff's or dunning's): full service at once. With overdue
    invoices left the subscription goes back to past due (still owing, still emailed),
    otherwise active. Refuses a tenant that is not suspended."""
    with transaction.atomic():
        subscription = locked_subscription(tenant)
        if subscription.status != Status.SUSPENDED:
            raise Conflict(f"The subscription is {subscription.get_status_display().lower()}, "
                           "not suspended.", code="not_suspended")
        owing = overdue_invoices(subscription, clock.now(tenant)).exists()
        status_set(subscription, Status.PAST_DUE if owing else Status.ACTIVE, actor=actor,
                   action="reactivated_by_staff", suspended_at=None)
        tenant = subscription.tenant
        transaction.on_commit(lambda: enforcement.notify("reactivated", tenant))
        billing_email(tenant=tenant, template="service_restored",
                      subject="Your service is fully restored",
                      context={"subscription": subscription, "still_owing": owing})
    return subscription


def trial_extend(*, tenant, days: int, actor) -> Subscription:
    """Move the end of a running trial `days` later (1 to 90): the trial-end and reminder
    jobs are scheduled for the new date (those for the old date find the trial moved and
    do nothing). Refuses a subscription that is not trialing."""
    if not isinstance(days, int) or not 1 <= days <= MAX_TRIAL_EXTENSION_DAYS:
        raise ValidationFailed({"days": [("invalid_days", "Extend a trial by 1 to "
                                          f"{MAX_TRIAL_EXTENSION_DAYS} days.")]})
    with transaction.atomic():
        subscription = locked_subscription(tenant)
        if subscription.status != Status.TRIALING or subscription.trial_end is None:
            raise Conflict(f"The subscription is {subscription.get_status_display().lower()}, "
                           "not in a trial.", code="not_trialing")
        before = subscription.trial_end
        subscription.trial_end = subscription.current_period_end = before + timedelta(days=days)
        subscription.save(update_fields=["trial_end", "current_period_end"])
        schedule_trial(subscription)
        audit_record(action="subscription.trial_extended", tenant=subscription.tenant, actor=actor,
                     target=subscription, before={"trial_end": before.isoformat()},
                     after={"trial_end": subscription.trial_end.isoformat(), "days": days})
    return subscription
