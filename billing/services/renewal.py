"""Renewal at period end (SPEC §3): close the period, bill its overage with the next
period's plan fee, finalise, charge, start the next period.

Idempotent twice over: the subscription row is locked and its period checked, and a
unique constraint allows one renewal invoice per (subscription, period).
"""
from datetime import datetime

from django.db import transaction

from aerolith import clock
from metering.selectors import UsageRequest, period_usage_many

from ..decisions import LineDraft, period_end_after, plan_fee_line
from ..models import Invoice, Subscription
from .invoices import IssueRequest, invoice_issue, invoices_issue
from .subscriptions import _apply_plan, locked_subscriptions, schedule_renewals, subscription_end

Status = Subscription.Status


def overage_lines(subscription: Subscription, start: datetime, end: datetime,
                  until: datetime | None = None) -> list[LineDraft]:
    """One line per meter used above the plan's allowance in [start, end); none on plans
    with hard limits."""
    return overage_lines_many([(subscription, start, end, until)])[0]


def overage_lines_many(periods: list[tuple]) -> list[list[LineDraft]]:
    """overage_lines for several (subscription, start, end, until) at once."""
    billed = [p for p in periods if p[0].plan.overage_allowed]
    usages = iter(period_usage_many([UsageRequest(s.tenant_id, s.plan, start, end, until)
                                     for s, start, end, until in billed]))
    return [_lines(next(usages), start, end) if subscription.plan.overage_allowed else []
            for subscription, start, end, _until in periods]


def _lines(usages, start: datetime, end: datetime) -> list[LineDraft]:
    lines = []
    for usage in usages:
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
    """Renew the period ending at `period_end` (see subscriptions_renew)."""
    return subscriptions_renew([(tenant, period_end)])[0]


def subscriptions_renew(due: list[tuple]) -> list[Invoice | None]:
    """Renew each (tenant, period_end): a no-op for one whose period has not ended on its
    clock, is already renewed, whose subscription ended, or that is still trialing (trial
    end converts it). The beat path renews a chunk of tenants at once: their usage is read,
    and their invoices written, with a few statements for the whole chunk. Called by the
    renewal job, whose run isolates failures, so it needs no savepoint of its own."""
    results: list[Invoice | None] = [None] * len(due)
    with transaction.atomic(savepoint=False):
        subscriptions = locked_subscriptions([tenant for tenant, _end in due])
        renewing = []
        for index, (tenant, period_end) in enumerate(due):
            subscription = subscriptions.get(tenant.pk)
            if (subscription is None or clock.now(tenant) < period_end
                    or subscription.current_period_end != period_end
                    or subscription.status in (Status.CANCELLED, Status.TRIALING)):
                continue
            renewing.append((index, subscription))
        closed = overage_lines_many([(s, s.current_period_start, s.current_period_end, None)
                                     for _i, s in renewing])
        issue, advanced = [], []
        for (index, subscription), lines in zip(renewing, closed, strict=True):
            closed_start, closed_end = subscription.current_period_start, subscription.current_period_end
            if subscription.cancel_at_period_end:
                if lines:
                    results[index] = invoice_issue(subscription=subscription, reason=Invoice.Reason.FINAL,
                                                   period_start=closed_start, period_end=closed_end,
                                                   lines=lines, actor="system")
                subscription_end(subscription, actor="system", action="ended_at_period_end")
                continue
            if subscription.pending_plan_id:
                _apply_plan(subscription, subscription.pending_plan)
            anchor = subscription.billing_anchor or closed_start
            new_end = period_end_after(anchor, closed_end)
            subscription.current_period_start, subscription.current_period_end = closed_end, new_end
            advanced.append(subscription)
            plan = subscription.plan
            if plan.price_cents:
                lines.append(plan_fee_line(plan.name, plan.price_cents, closed_end, new_end))
            if lines:  # Free with hard limits has nothing to bill
                issue.append((index, IssueRequest(subscription, Invoice.Reason.RENEWAL, closed_end,
                                                  new_end, lines)))
        Subscription.objects.bulk_update(advanced, ["current_period_start", "current_period_end"])
        schedule_renewals(advanced)
        invoices = invoices_issue([request for _i, request in issue], actor="system")
        for (index, _request), invoice in zip(issue, invoices, strict=True):
            results[index] = invoice
    return results
