"""The subscription lifecycle: start, status changes, plan changes with proration,
cancel and resume, and the end of a trial (SPEC §3)."""
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import transaction

from aerolith import clock
from aerolith.errors import Conflict, ValidationFailed
from tenants.models import Tenant
from tenants.services.audit import audit_record
from tenants.services.events import event_emit
from tenants.services.scheduling import job_schedule, job_schedule_many

from .. import enforcement
from ..decisions import (
    LineDraft,
    change_direction,
    invoice_totals,
    period_end_after,
    proration_lines,
)
from ..models import Invoice, InvoiceLine, Plan, Subscription
from ..selectors import billing_settings, plans_for_tenant
from .invoices import BALANCE_CREDIT_DESCRIPTION, invoice_issue
from .notify import billing_email

RENEWAL_JOB = "billing.renewal"
TRIAL_END_JOB = "billing.trial_end"
TRIAL_REMINDER_JOB = "billing.trial_reminder"
PRORATION_MAX_AGE = timedelta(hours=1)
Status = Subscription.Status


def plan_for_signup(code: str) -> Plan:
    """The public plan called `code`, or ValidationFailed naming the choices."""
    plan = Plan.objects.filter(code=code, is_public=True, for_tenant__isnull=True).first()
    if plan is None:
        choices = list(
            Plan.objects.filter(is_public=True, for_tenant__isnull=True).values_list("code", flat=True)
        )
        raise ValidationFailed({"plan": [("unknown_plan", f"Unknown plan '{code}'. Choose one of {choices}.")]})
    return plan


def subscription_start(*, tenant: Tenant, plan: Plan) -> Subscription:
    """Start `tenant` on `plan`: a paid plan begins with a trial (no card needed), Free
    begins active. The period is anchored on the start (anniversary billing)."""
    start = clock.now(tenant)
    if plan.is_free:
        subscription = Subscription.objects.create(
            tenant=tenant, plan=plan, status=Status.ACTIVE, billing_anchor=start,
            current_period_start=start, current_period_end=period_end_after(start, start))
        schedule_renewal(subscription)
        return subscription
    trial_end = start + timedelta(days=billing_settings().trial_days)
    subscription = Subscription.objects.create(
        tenant=tenant, plan=plan, status=Status.TRIALING, trial_end=trial_end,
        current_period_start=start, current_period_end=trial_end)
    schedule_trial(subscription)
    return subscription


def schedule_trial(subscription: Subscription) -> None:
    trial_end, tenant = subscription.trial_end, subscription.tenant
    key = trial_end.isoformat()
    job_schedule(tenant=tenant, kind=TRIAL_END_JOB, key=key, due_at=trial_end,
                 payload={"trial_end": key})
    now = clock.now(tenant)
    for days in billing_settings().trial_reminder_days:
        due = trial_end - timedelta(days=days)
        if due > now:
            job_schedule(tenant=tenant, kind=TRIAL_REMINDER_JOB, key=f"{key}:{days}", due_at=due,
                         payload={"trial_end": key, "days": days})


def schedule_renewal(subscription: Subscription) -> None:
    schedule_renewals([subscription])


def schedule_renewals(subscriptions: list[Subscription]) -> None:
    if subscriptions:
        job_schedule_many([(s.tenant, RENEWAL_JOB, s.current_period_end.isoformat(),
                            s.current_period_end, {"period_end": s.current_period_end.isoformat()})
                           for s in subscriptions])


def locked_subscription(tenant) -> Subscription:
    subscription = locked_subscriptions([tenant]).get(tenant.pk)
    if subscription is None:
        raise Conflict("This organisation has no subscription.", code="no_subscription")
    return subscription


def locked_subscriptions(tenants) -> dict[int, Subscription]:
    """tenant id -> its subscription, locked (in id order, so batches never deadlock)."""
    # The rows are locked alone, then read with their plans: when a FOR UPDATE query joins,
    # PostgreSQL re-checks the join against the row a concurrent writer left behind, and a
    # plan changed meanwhile would make the subscription vanish from the result.
    by_id = {tenant.pk: tenant for tenant in tenants}
    pks = list(Subscription.objects.select_for_update().filter(tenant_id__in=list(by_id))
               .order_by("pk").values_list("pk", flat=True))
    found = Subscription.objects.select_related("plan", "pending_plan").filter(pk__in=pks)
    out = {}
    for subscription in found:
        subscription.tenant = by_id[subscription.tenant_id]  # the caller's, clock and all
        out[subscription.tenant_id] = subscription
    return out


def status_set(subscription: Subscription, status: str, *, actor, action: str, **fields) -> None:
    """Change the subscription's status and the tenant's with it, audited, with an event
    for webhooks. Extra `fields` are saved in the same update."""
    before = subscription.status
    subscription.status = status
    for name, value in fields.items():
        setattr(subscription, name, value)
    subscription.save(update_fields=["status", *fields])
    Tenant.objects.filter(pk=subscription.tenant_id).update(status=status)
    subscription.tenant.status = status
    audit_record(action=f"subscription.{action}", tenant=subscription.tenant, actor=actor,
                 target=subscription, before={"status": before},
                 after={"status": status, "plan": subscription.plan.code,
                        **{k: (v.isoformat() if isinstance(v, datetime) else getattr(v, "pk", v))
                           for k, v in fields.items()}})
    event_emit(tenant=subscription.tenant, type="subscription.updated",
               payload={"status": status, "previous_status": before, "plan": subscription.plan.code})


def _choosable_plan(tenant, code) -> Plan:
    plan = plans_for_tenant(tenant).filter(code=code).first() if isinstance(code, str) else None
    if plan is None and isinstance(code, str):  # the (non-public) Custom plan: ask sales
        plan = Plan.objects.filter(code=code, is_custom=True, for_tenant__isnull=True).first()
    if plan is None:
        codes = sorted(plans_for_tenant(tenant).exclude(is_custom=True, for_tenant__isnull=True)
                       .values_list("code", flat=True))
        raise ValidationFailed({"plan": [("unknown_plan", f"Unknown plan '{code}'. Choose one of {codes}.")]})
    if plan.is_custom and plan.for_tenant_id is None:
        raise ValidationFailed({"plan": [("contract_plan", "The Custom plan is set up by our sales "
                                          "team; contact sales@aerolith.localhost.")]})
    return plan


def plan_for_change(tenant, code) -> Plan:
    """The plan `tenant` may move to, looked up as `subscription_change` does (for the
    preview); ValidationFailed naming the choices otherwise."""
    return _choosable_plan(tenant, code)


def limit_problems(tenant, plan: Plan, now: datetime, subscription: Subscription) -> list[str]:
    """Why `tenant` cannot move to `plan` now: its limits are below current usage."""
    from metering.selectors import period_usage

    problems = []
    in_use = enforcement.databases_in_use(tenant)
    if plan.max_databases is not None and in_use > plan.max_databases:
        problems.append(f"{plan.name} allows {plan.max_databases} database(s) and you have "
                        f"{in_use}; delete {in_use - plan.max_databases} first.")
    if not plan.overage_allowed:  # hard limits: usage so far must fit
        for usage in period_usage(tenant=tenant, plan=plan, start=subscription.current_period_start,
                                  end=subscription.current_period_end, until=now):
            if usage.included is not None and usage.quantity > usage.included:
                problems.append(f"{plan.name} includes {usage.included.normalize():f} "
                                f"{usage.meter.unit} of {usage.meter.name} and this period has used "
                                f"{usage.quantity.normalize():f}.")
    return problems


@dataclass
class ChangePreview:
    plan: Plan
    direction: str  # upgrade | downgrade
    when: str  # now | period_end
    proration_at: datetime
    lines: list[LineDraft]
    subtotal_cents: int
    credit_applied_cents: int
    total_cents: int
    amount_due_now_cents: int
    balance_credit_cents: int
    effective_at: datetime

    @property
    def invoice_lines(self) -> list[LineDraft]:
        """The lines as the invoice will show them, the balance's credit line included."""
        if not self.credit_applied_cents:
            return list(self.lines)
        return [*self.lines, LineDraft(InvoiceLine.Kind.CREDIT, BALANCE_CREDIT_DESCRIPTION,
                                       -self.credit_applied_cents)]


def _check_change(subscription: Subscription, plan: Plan) -> None:
    if subscription.status in (Status.SUSPENDED, Status.CANCELLED):
        raise Conflict(f"The subscription is {subscription.get_status_display().lower()}; pay the "
                       "open invoices (or contact support) before changing plans.", code="subscription_inactive")
    if plan.pk == subscription.plan_id:
        raise Conflict(f"You are already on {plan.name}.", code="same_plan")


def preview_change(*, subscription: Subscription, plan: Plan, when: str | None,
                   at: datetime | None = None) -> ChangePreview:
    """The exact lines and amounts `subscription_change` will invoice for the same
    arguments and `proration_at` (SPEC §3), and what it would refuse (ValidationFailed
    `limit_below_usage` when the plan's limits are below current usage). Writes nothing."""
    now = clock.now(subscription.tenant)
    at = at or now.replace(microsecond=0)
    _check_change(subscription, plan)
    direction = change_direction(subscription.plan.price_cents, plan.price_cents)
    when = when or ("now" if direction == "upgrade" else "period_end")
    if when not in ("now", "period_end"):
        raise ValidationFailed({"when": [("invalid_choice", "Give 'now' or 'period_end'.")]})
    if subscription.status == Status.TRIALING:
        when = "now"  # a trial has nothing to prorate: the plan simply changes (Free ends it)
    if not subscription.current_period_start <= at <= now or now - at > PRORATION_MAX_AGE:
        raise ValidationFailed({"proration_at": [("out_of_range", "Use the proration_at of a "
                                                  "preview made within the last hour.")]})
    lines: list[LineDraft] = []
    if when == "now" and subscription.status != Status.TRIALING:
        lines = proration_lines(old_name=subscription.plan.name, old_price_cents=subscription.plan.price_cents,
                                new_name=plan.name, new_price_cents=plan.price_cents,
                                start=subscription.current_period_start,
                                end=subscription.current_period_end, at=at)
    if when == "now" or direction == "downgrade":
        problems = limit_problems(subscription.tenant, plan, now, subscription)
        if problems:
            raise ValidationFailed({"plan": [("limit_below_usage", p) for p in problems]},
                                   detail=" ".join(problems))
    totals = invoice_totals([line.amount_cents for line in lines], subscription.balance_cents)
    effective = at if when == "now" else subscription.current_period_end
    return ChangePreview(plan, direction, when, at, lines, totals.subtotal_cents,
                         totals.credit_applied_cents, totals.total_cents, totals.amount_due_cents,
                         totals.balance_credit_cents, effective)


def subscription_change(*, tenant, plan_code: str, when: str | None = None, actor,
                        proration_at: datetime | None = None) -> tuple[Subscription, Invoice | None]:
    """Move to another plan (SPEC §3). An upgrade applies now by default and is invoiced at
    once with the proration lines of `preview_change`; a downgrade waits for the period end
    unless `when="now"` (its credit goes to the balance). During a trial the plan simply
    changes. Refuses (nothing changed) an unknown or same plan, a plan whose limits are
    below current usage, or an inactive subscription."""
    with transaction.atomic():
        subscription = locked_subscription(tenant)
        plan = _choosable_plan(tenant, plan_code)
        preview = preview_change(subscription=subscription, plan=plan, when=when, at=proration_at)
        now = clock.now(tenant)
        old = subscription.plan
        invoice = None
        if preview.when == "period_end":
            subscription.pending_plan = plan
            subscription.save(update_fields=["pending_plan"])
        elif subscription.status == Status.TRIALING:
            _apply_plan(subscription, plan)
            if plan.is_free:  # a trial of Free is no trial: active from now on
                _start_paid_period(subscription, now, status=Status.ACTIVE, actor=actor,
                                   action="trial_ended_by_change", outcome=Subscription.TrialOutcome.FELL_BACK)
        else:
            _apply_plan(subscription, plan)
            if preview.lines:
                invoice = invoice_issue(subscription=subscription, reason=Invoice.Reason.PLAN_CHANGE,
                                        period_start=preview.proration_at,
                                        period_end=subscription.current_period_end,
                                        lines=preview.lines, actor=actor)
        audit_record(action="subscription.plan_changed", tenant=tenant, actor=actor, target=subscription,
                     before={"plan": old.code},
                     after={"plan": plan.code, "when": preview.when, "direction": preview.direction,
                            "invoice": invoice.number if invoice else None})
        event_emit(tenant=tenant, type="subscription.updated",
                   payload={"status": subscription.status, "plan": subscription.plan.code,
                            "pending_plan": subscription.pending_plan.code if subscription.pending_plan else None})
    return subscription, invoice


def _apply_plan(subscription: Subscription, plan: Plan) -> None:
    subscription.plan = plan
    subscription.pending_plan = None
    subscription.save(update_fields=["plan", "pending_plan"])
    tenant = subscription.tenant
    transaction.on_commit(lambda: enforcement.notify("plan_applied", tenant, plan))


def _start_paid_period(subscription: Subscription, start: datetime, *, status, actor, action,
                       outcome) -> None:
    """A new billing cycle anchored at `start` (trial end or fallback)."""
    subscription.billing_anchor = subscription.current_period_start = start
    subscription.current_period_end = period_end_after(start, start)
    subscription.save(update_fields=["billing_anchor", "current_period_start", "current_period_end"])
    status_set(subscription, status, actor=actor, action=action, trial_outcome=outcome)
    schedule_renewal(subscription)


def subscription_cancel(*, tenant, at_period_end: bool = True, actor) -> Subscription:
    """Cancel at the end of the period (resumable until then) or now: service stops, a
    final invoice bills the period's overage so far, data is kept for the retention time."""
    with transaction.atomic():
        subscription = locked_subscription(tenant)
        if subscription.status == Status.CANCELLED:
            raise Conflict("The subscription is already cancelled.", code="already_cancelled")
        if at_period_end:
            if subscription.cancel_at_period_end:
                raise Conflict("The subscription already ends at "
                               f"{subscription.current_period_end.isoformat()}.", code="already_cancelling")
            subscription.cancel_at_period_end = True
            subscription.save(update_fields=["cancel_at_period_end"])
            audit_record(action="subscription.cancel_scheduled", tenant=tenant, actor=actor,
                         target=subscription, after={"ends_at": subscription.current_period_end.isoformat()})
            billing_email(tenant=tenant, template="cancel_scheduled", subject="Your subscription will end",
                          context={"subscription": subscription})
        else:
            from .renewal import final_invoice

            if subscription.status != Status.TRIALING:  # trial usage is never billed
                final_invoice(subscription, clock.now(tenant), actor=actor)
            subscription_end(subscription, actor=actor, action="cancelled")
    return subscription


def subscription_end(subscription: Subscription, *, actor, action: str) -> None:
    """Status cancelled: connections refused, data kept `retention_days` more days."""
    now = clock.now(subscription.tenant)
    kept = now + timedelta(days=billing_settings().retention_days)
    status_set(subscription, Status.CANCELLED, actor=actor, action=action, cancelled_at=now,
               data_kept_until=kept, cancel_at_period_end=False, pending_plan=None)
    tenant = subscription.tenant
    transaction.on_commit(lambda: enforcement.notify("cancelled", tenant))
    billing_email(tenant=tenant, template="cancelled", subject="Your subscription has ended",
                  context={"subscription": subscription, "data_kept_until": kept})


def subscription_resume(*, tenant, actor) -> Subscription:
    """Undo a cancellation at period end, before the period ends."""
    with transaction.atomic():
        subscription = locked_subscription(tenant)
        if not subscription.cancel_at_period_end or subscription.status == Status.CANCELLED:
            raise Conflict("Only a subscription cancelled at period end can be resumed, before "
                           "the period ends.", code="not_cancelling")
        subscription.cancel_at_period_end = False
        subscription.save(update_fields=["cancel_at_period_end"])
        audit_record(action="subscription.resumed", tenant=tenant, actor=actor, target=subscription)
    return subscription


def trial_remind(*, tenant, trial_end: datetime, days: int) -> None:
    subscription = Subscription.objects.select_related("plan", "tenant").get(tenant_id=tenant.pk)
    if subscription.status != Status.TRIALING or subscription.trial_end != trial_end:
        return  # the trial ended or moved
    billing_email(tenant=tenant, template="trial_reminder",
                  subject=f"Your trial ends in {days} day{'s' if days != 1 else ''}",
                  context={"subscription": subscription, "days": days,
                           "has_card": subscription.default_payment_method_id is not None})
    audit_record(action="subscription.trial_reminder_sent", tenant=tenant, target=subscription,
                 after={"days": days})


def trial_end_process(*, tenant, trial_end: datetime) -> Invoice | None:
    """At trial end: with a card on file, convert (invoice the first period and charge it;
    dunning takes over if the charge fails); without one, fall back to Free."""
    subscription = locked_subscription(tenant)
    if subscription.status != Status.TRIALING or subscription.trial_end != trial_end:
        return None
    if subscription.cancel_at_period_end:  # cancelled during the trial: it ends, unbilled
        subscription_end(subscription, actor="system", action="ended_at_period_end")
        return None
    if subscription.default_payment_method_id is None:
        fall_back_to_free(subscription, actor="system", reason="no payment method at trial end")
        return None
    _start_paid_period(subscription, trial_end, status=Status.ACTIVE, actor="system",
                       action="trial_converted", outcome=Subscription.TrialOutcome.CONVERTED)
    from ..decisions import plan_fee_line

    return invoice_issue(
        subscription=subscription, reason=Invoice.Reason.TRIAL_CONVERSION,
        period_start=subscription.current_period_start, period_end=subscription.current_period_end,
        lines=[plan_fee_line(subscription.plan.name, subscription.plan.price_cents,
                             subscription.current_period_start, subscription.current_period_end)],
        actor="system")


def fall_back_to_free(subscription: Subscription, *, actor, reason: str) -> None:
    """The tenant continues on Free (databases above Free's limits become read-only,
    nothing is deleted)."""
    free = Plan.objects.get(code="free")
    _apply_plan(subscription, free)
    subscription.cancel_at_period_end = False
    subscription.save(update_fields=["cancel_at_period_end"])
    now = clock.now(subscription.tenant)
    was_trial = subscription.status == Status.TRIALING or subscription.trial_outcome == Subscription.TrialOutcome.CONVERTED
    _start_paid_period(subscription, now, status=Status.ACTIVE, actor=actor, action="fell_back_to_free",
                       outcome=Subscription.TrialOutcome.FELL_BACK if was_trial else subscription.trial_outcome)
    subscription.past_due_since = subscription.suspended_at = None
    subscription.save(update_fields=["past_due_since", "suspended_at"])
    billing_email(tenant=subscription.tenant, template="fell_back_to_free",
                  subject="You are now on the Free plan", context={"subscription": subscription,
                                                                   "reason": reason})
