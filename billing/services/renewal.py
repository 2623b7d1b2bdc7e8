"""Renewal at period end (SPEC §3): close the period, bill its overage with the next
period's plan fee, finalise, charge, start the next period.

Idempotent twice over: the subscription row is locked and its period checked, and a
unique constraint allows one renewal invoice per (subscription, period).
"""
from datetime import datetime

from django.db import transaction

from aerolith import clock
from metering.selectors import period_usage

from ..decisions import LineDraft, period_end_after, plan_fee_line
from ..models import Invoice, Subscription
from .invoices import invoice_issue
from .subscriptions import _apply_plan, locked_subscription, schedule_renewal, subscription_end

Status = Subscription.Status


def overage_lines(subscription: Subscription, start: datetime, end: datetime,
                  until: datetime | None = None) -> list[LineDraft]:
    """One line per meter used above the plan's allowance in [start, end); none on plans
    with hard limits."""
    plan = subscription.plan
    if not plan.overage_allowed:
        return []
    lines = []
    for usage in period_usage(tenant=subscription.tenant, plan=plan, start=start, end=end, until=until):
        if usage.overage_amount_cents <= 0:
            continue
        meter = usage.meter
        lines.append(LineDraft(
            "overage",
            f"{meter.name}: {usage.overage.normalize():f} {meter.unit} above the "
            f"{usage.included.normalize():f} included, at {usage.unit_price_cents.normalize():f}¢ "
            f"per {meter.price_per:,} {meter.unit}",
            usage.overage_amount_cents, usage.overage,
            usage.unit_price_cents / meter.price_per, meter.pk, start, end))
    return lines


def final_invoice(subscription: Subscription, until: datetime, *, actor) -> Invoice | None:
    """The overage of the current period up to `until`, invoiced when there is any."""
    lines = overage_lines(subscription, subscription.current_period_start,
                          subscription.current_period_end, until)
    if not lines:
        return None
    return invoice_issue(subscription=subscription, reason=Invoice.Reason.FINAL,
                         period_start=subscription.current_period_start,
                         period_end=min(until, subscription.current_period_end), lines=lines,
                         actor=actor)


def subscription_renew(*, tenant, period_end: datetime) -> Invoice | None:
    """Renew the period ending at `period_end`; a no-op when that period has not ended on
    the tenant's clock, is already renewed, the subscription ended, or it is still trialing
    (trial end converts it). Called by the renewal job, whose run isolates failures, so it
    needs no savepoint of its own."""
    if clock.now(tenant) < period_end:
        return None
    with transaction.atomic(savepoint=False):
        subscription = locked_subscription(tenant)
        if (subscription.current_period_end != period_end
                or subscription.status in (Status.CANCELLED, Status.TRIALING)):
            return None
        closed_start, closed_end = subscription.current_period_start, subscription.current_period_end
        lines = overage_lines(subscription, closed_start, closed_end)
        if subscription.cancel_at_period_end:
            invoice = None
            if lines:
                invoice = invoice_issue(subscription=subscription, reason=Invoice.Reason.FINAL,
                                        period_start=closed_start, period_end=closed_end, lines=lines,
                                        actor="system")
            subscription_end(subscription, actor="system", action="ended_at_period_end")
            return invoice
        if subscription.pending_plan_id:
            _apply_plan(subscription, subscription.pending_plan)
        anchor = subscription.billing_anchor or closed_start
        new_end = period_end_after(anchor, closed_end)
        subscription.current_period_start, subscription.current_period_end = closed_end, new_end
        subscription.save(update_fields=["current_period_start", "current_period_end"])
        schedule_renewal(subscription)
        plan = subscription.plan
        if plan.price_cents:
            lines.append(plan_fee_line(plan.name, plan.price_cents, closed_end, new_end))
        if not lines:
            return None  # Free with hard limits: nothing to bill
        return invoice_issue(subscription=subscription, reason=Invoice.Reason.RENEWAL,
                             period_start=closed_end, period_end=new_end, lines=lines, actor="system")
