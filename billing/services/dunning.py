"""Dunning and enforcement (SPEC §4): a failed charge makes the subscription past due and
schedules retries and the end of grace; after grace the tenant is suspended; after the
suspension time it is cancelled. Paying restores service at once. Every step emails the
billing contacts and writes the audit log; the schedule is staff's BillingSettings."""
from datetime import datetime, timedelta

from django.db import transaction

from aerolith import clock
from tenants.services.audit import audit_record
from tenants.services.events import event_emit
from tenants.services.scheduling import job_schedule

from .. import enforcement
from ..decisions import dunning_timeline
from ..models import Invoice, Payment, Subscription
from ..selectors import dunning_policy, overdue_invoices
from .invoices import CHARGE_JOB, _close, invoice_event
from .notify import billing_email
from .subscriptions import fall_back_to_free, locked_subscription, status_set, subscription_end

GRACE_END_JOB = "billing.grace_end"
SUSPENSION_END_JOB = "billing.suspension_end"
Status = Subscription.Status


def charge_failed(*, subscription: Subscription, invoice: Invoice, payment: Payment, attempt: int) -> None:
    """Record a failed charge: past due from the invoice's due date, retries and grace
    scheduled on the first failure, the customer told what to do."""
    tenant = subscription.tenant
    audit_record(action="invoice.payment_failed", tenant=tenant, target=invoice,
                 after={"attempt": attempt, "decline_code": payment.decline_code,
                        "hard_decline": payment.hard_decline})
    event_emit(tenant=tenant, type="invoice.payment_failed",
               payload={**invoice_event(invoice), "decline_code": payment.decline_code,
                        "hard_decline": payment.hard_decline})
    timeline = dunning_timeline(invoice.due_at, dunning_policy())
    if attempt == 0:
        for number, due in enumerate(timeline.retries, start=1):
            job_schedule(tenant=tenant, kind=CHARGE_JOB, key=f"{invoice.pk}:{number}", due_at=due,
                         payload={"invoice_id": invoice.pk, "attempt": number})
        job_schedule(tenant=tenant, kind=GRACE_END_JOB, key=str(invoice.pk), due_at=timeline.grace_end,
                     payload={"invoice_id": invoice.pk})
    if subscription.status in (Status.ACTIVE, Status.TRIALING):
        status_set(subscription, Status.PAST_DUE, actor="system", action="past_due",
                   past_due_since=invoice.due_at)
    billing_email(tenant=tenant, template="payment_failed",
                  subject=f"Payment for invoice {invoice.number} failed",
                  context={"invoice": invoice, "payment": payment, "grace_end": timeline.grace_end,
                           "next_retry": next((t for t in timeline.retries if t > clock.now(tenant)), None)})


def grace_end(*, tenant, invoice_id: int) -> None:
    """Grace is over for this invoice: suspend (or, for a trial's first invoice, fall back
    to Free and void it). Nothing happens if the invoice was settled meanwhile."""
    subscription = locked_subscription(tenant)
    invoice = Invoice.objects.select_for_update().get(pk=invoice_id)
    if not invoice.is_payable or subscription.status != Status.PAST_DUE:
        return
    if invoice.reason == Invoice.Reason.TRIAL_CONVERSION:
        invoice.amount_due_cents = 0
        _close(invoice, Invoice.Status.VOID, "system")
        fall_back_to_free(subscription, actor="system",
                          reason="the first payment after the trial failed through every retry")
        return
    now = clock.now(tenant)
    status_set(subscription, Status.SUSPENDED, actor="system", action="suspended", suspended_at=now)
    transaction.on_commit(lambda: enforcement.notify("suspended", tenant))
    policy = dunning_policy()
    cancel_at = now + timedelta(days=policy.suspension_days)
    job_schedule(tenant=tenant, kind=SUSPENSION_END_JOB, key=now.isoformat(), due_at=cancel_at,
                 payload={"suspended_at": now.isoformat()})
    billing_email(tenant=tenant, template="suspended", subject="Your service is suspended",
                  context={"invoice": invoice, "cancel_at": cancel_at})


def suspension_end(*, tenant, suspended_at: datetime) -> None:
    """Suspended for the whole suspension time: cancel; unpaid invoices are written off."""
    subscription = locked_subscription(tenant)
    if subscription.status != Status.SUSPENDED or subscription.suspended_at != suspended_at:
        return
    for invoice in overdue_invoices(subscription, clock.now(tenant)).filter(status=Invoice.Status.OPEN):
        _close(invoice, Invoice.Status.UNCOLLECTIBLE, "system")
    subscription_end(subscription, actor="system", action="cancelled_for_nonpayment")


def service_restore_if_settled(*, subscription: Subscription, actor=None) -> bool:
    """Full service again once no overdue invoice is left (the caller holds the lock)."""
    if subscription.status not in (Status.PAST_DUE, Status.SUSPENDED):
        return False
    if overdue_invoices(subscription, clock.now(subscription.tenant)).exists():
        return False
    was_suspended = subscription.status == Status.SUSPENDED
    status_set(subscription, Status.ACTIVE, actor=actor, action="reactivated",
               past_due_since=None, suspended_at=None)
    tenant = subscription.tenant
    if was_suspended:
        transaction.on_commit(lambda: enforcement.notify("reactivated", tenant))
    billing_email(tenant=tenant, template="service_restored", subject="Your service is fully restored",
                  context={"subscription": subscription})
    return True
