"""Helpers for the billing lifecycle tests: a subscription started at a fixed moment on a
test clock, clock advances that fail loudly when a due job failed, usage put in through
metering's ingest service, and an enforcement hook that records what billing asked of it.

The session tenants' subscriptions began at wall-clock time, which no hand-computed number
can follow, so `trial_restart` gives a tenant a fresh subscription started by the real
service at a chosen moment. Everything happens inside the test's transaction and is rolled
back with it.
"""
import uuid
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from billing import enforcement
from billing.models import Invoice, Plan, Subscription
from billing.services.collection import payment_method_attach
from billing.services.subscriptions import subscription_start
from metering.services.ingest import usage_ingest
from tenants.models import AuditEvent, ScheduledJob, TestClock
from tenants.services.clocks import tenant_clock_advance, tenant_clock_attach

from ..conftest import owner_principal

DAY = timedelta(days=1)
SECOND = timedelta(seconds=1)


def at(*parts) -> datetime:
    """A UTC moment: at(2028, 1, 31) or at(2028, 6, 10, 12, 34, 56)."""
    return datetime(*parts, tzinfo=UTC)


def trial_restart(tenant, plan_code: str, start: datetime) -> Subscription:
    """`tenant` starts over on a trial of `plan_code` (or Free, active) at `start` on its
    test clock, through subscription_start, with its due work scheduled afresh."""
    ScheduledJob.objects.filter(tenant=tenant).delete()
    Subscription.objects.filter(tenant=tenant).delete()
    TestClock.objects.filter(tenant=tenant).delete()
    tenant_clock_attach(tenant=tenant, actor="test", at=start)
    return subscription_start(tenant=tenant, plan=Plan.objects.get(code=plan_code))


def card_attach(tenant, gateway_id: str = "pm_card_visa"):
    return payment_method_attach(tenant=tenant, gateway_id=gateway_id, actor=owner_principal(tenant))


def active_since(tenant, plan_code: str, converted_at: datetime,
                 card: str = "pm_card_visa") -> Subscription:
    """A paid subscription whose trial converted at `converted_at` (its anchor), the
    first invoice paid with `card`."""
    trial_restart(tenant, plan_code, converted_at - 14 * DAY)
    card_attach(tenant, card)
    advance(tenant, to=converted_at)
    subscription = subscription_of(tenant)
    assert subscription.status == "active", subscription.status
    assert subscription.current_period_start == converted_at
    return subscription


def advance(tenant, *, to: datetime | None = None, seconds: int | None = None) -> list[ScheduledJob]:
    """Move the tenant's clock, running its due work; a job that raised fails the test
    (the scheduler logs and swallows handler errors, so they must be looked for)."""
    _clock, ran = tenant_clock_advance(tenant=tenant, actor="test", to=to, seconds=seconds)
    broken = list(ScheduledJob.objects.filter(tenant=tenant).exclude(last_error="")
                  .values_list("kind", "last_error"))
    assert not broken, broken
    return ran


def subscription_of(tenant) -> Subscription:
    return Subscription.objects.select_related("plan", "pending_plan").get(tenant=tenant)


def usage(tenant, meter: str, quantity, when: datetime) -> None:
    """One usage event through metering's ingest service. Redis counters are left out
    (counters_done): they live outside the test's transaction, and billing reads
    PostgreSQL."""
    result = usage_ingest(tenant=tenant, counters_done=True, enforce_limits=False, events=[{
        "id": f"t-{uuid.uuid4().hex}", "meter": meter, "quantity": Decimal(str(quantity)),
        "timestamp": when.isoformat()}])
    assert result.accepted == 1, result.rejected


def lines(invoice: Invoice) -> list[tuple[str, int]]:
    return list(invoice.lines.order_by("position", "id").values_list("kind", "amount_cents"))


def invoices(tenant, **filters) -> list[Invoice]:
    return list(Invoice.objects.filter(tenant=tenant, **filters).order_by("finalized_at", "id"))


def audit_actions(tenant, since_id: int = 0) -> list[str]:
    return list(AuditEvent.objects.filter(tenant=tenant, id__gt=since_id).order_by("id")
                .values_list("action", flat=True))


def last_audit_id() -> int:
    return AuditEvent.objects.order_by("-id").values_list("id", flat=True).first() or 0


class RecordingHook:
    """An enforcement hook (what provisioning will register) that writes down each call."""

    def __init__(self, databases: int = 0):
        self.databases = databases
        self.calls: list[tuple] = []

    def databases_in_use(self, tenant) -> int:
        return self.databases

    def plan_applied(self, tenant, plan) -> None:
        self.calls.append(("plan_applied", tenant.slug, plan.code))

    def suspended(self, tenant) -> None:
        self.calls.append(("suspended", tenant.slug))

    def reactivated(self, tenant) -> None:
        self.calls.append(("reactivated", tenant.slug))

    def cancelled(self, tenant) -> None:
        self.calls.append(("cancelled", tenant.slug))

    def events(self) -> list[str]:
        return [call[0] for call in self.calls]


@contextmanager
def recording_hook(databases: int = 0):
    hook = RecordingHook(databases)
    enforcement.register(hook)
    try:
        yield hook
    finally:
        enforcement.unregister(hook)
