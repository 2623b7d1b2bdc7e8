"""The beat path renews a chunk of tenants together (tenants.services.scheduling
due_work_run_many with billing's batch renewal handler): the results must be exactly what
renewing each tenant alone gives, and a batch that fails must fall back to one by one."""
from datetime import timedelta
from decimal import Decimal

import pytest

from billing.models import Invoice
from metering.selectors import UsageRequest, period_usage, period_usage_many
from tenants.models import ScheduledJob, TestClock
from tenants.services import scheduling
from tenants.services.scheduling import due_work_run_many

from .lifecycle import active_since, at, invoices, lines, subscription_of, usage

T0 = at(2031, 3, 10, 9, 15, 30)
RENEWAL = at(2031, 4, 10, 9, 15, 30)


def _clock_to(tenant, moment):
    TestClock.objects.filter(tenant=tenant).update(frozen_time=moment)


@pytest.fixture
def renewing(alice, bob, charlie):
    """alice (Starter, usage above the allowance) and bob (Professional) active since T0
    with cards; charlie's clock stays before its renewal. All clocks then move to the
    renewal moment without running anything, so the beat path finds the work due."""
    for tenant, plan in ((alice, "starter"), (bob, "professional"), (charlie, "starter")):
        active_since(tenant, plan, T0)
    for tenant, meter, quantity, when in (
            (alice, "api_calls", 150_000, T0 + timedelta(days=3, seconds=7)),     # 50,000 over: 50¢
            (alice, "bandwidth_gb", Decimal("60.5"), T0 + timedelta(days=20)),    # 10.5 GB: 94.5 → 95¢
            (bob, "compute_hours", 751, T0 + timedelta(hours=5))):                # 1 h over: 10¢
        _clock_to(tenant, when)
        usage(tenant, meter, quantity, when)
    _clock_to(alice, RENEWAL)
    _clock_to(bob, RENEWAL + timedelta(hours=1))
    _clock_to(charlie, RENEWAL - timedelta(seconds=1))
    return alice, bob, charlie


@pytest.fixture
def batch_sizes(monkeypatch):
    sizes = []
    original = scheduling._BATCH_HANDLERS["billing.renewal"]

    def spy(jobs):
        sizes.append(len(jobs))
        return original(jobs)

    monkeypatch.setitem(scheduling._BATCH_HANDLERS, "billing.renewal", spy)
    return sizes


@pytest.mark.django_db
def test_a_chunk_of_renewals_is_billed_together_exactly_as_one_by_one(renewing, batch_sizes):
    alice, bob, charlie = renewing
    ran = due_work_run_many([alice, bob, charlie])
    assert batch_sizes == [2]  # alice and bob together; charlie's period has not ended
    assert ran == 4  # two renewals and their two charges
    alice_invoice, = invoices(alice, reason="renewal")
    bob_invoice, = invoices(bob, reason="renewal")
    assert lines(alice_invoice) == [("overage", 50), ("overage", 95), ("plan", 2900)]
    assert lines(bob_invoice) == [("overage", 10), ("plan", 9900)]
    assert (alice_invoice.status, alice_invoice.total_cents) == ("paid", 3045)
    assert (bob_invoice.status, bob_invoice.total_cents) == ("paid", 9910)
    numbers = sorted(int(i.number.rsplit("-", 1)[1]) for i in (alice_invoice, bob_invoice))
    assert numbers[1] == numbers[0] + 1
    for tenant, end in ((alice, at(2031, 5, 10, 9, 15, 30)), (bob, at(2031, 5, 10, 9, 15, 30))):
        subscription = subscription_of(tenant)
        assert (subscription.current_period_start, subscription.current_period_end) == (RENEWAL, end)
        assert ScheduledJob.objects.filter(tenant=tenant, kind="billing.renewal", status="pending",
                                           due_at=end).exists()
    assert not invoices(charlie, reason="renewal")
    assert subscription_of(charlie).current_period_end == RENEWAL
    assert due_work_run_many([alice, bob, charlie]) == 0  # nothing left: running again does nothing


@pytest.mark.django_db
def test_a_failing_batch_is_rolled_back_and_its_tenants_renew_one_by_one(renewing, monkeypatch):
    alice, bob, _charlie = renewing

    def broken(jobs):
        Invoice.objects.filter(tenant=alice).update(currency="XXX")  # must be rolled back
        raise RuntimeError("batch broke")

    monkeypatch.setitem(scheduling._BATCH_HANDLERS, "billing.renewal", broken)
    assert due_work_run_many([alice, bob]) == 4
    assert [i.status for i in invoices(alice, reason="renewal")] == ["paid"]
    assert [i.status for i in invoices(bob, reason="renewal")] == ["paid"]
    assert not Invoice.objects.filter(tenant=alice, currency="XXX").exists()


@pytest.mark.django_db
def test_usage_read_for_many_periods_at_once_equals_each_read_alone(renewing):
    alice, bob, charlie = renewing
    from billing.models import Plan

    starter, pro = Plan.objects.get(code="starter"), Plan.objects.get(code="professional")
    requests = [
        UsageRequest(alice.pk, starter, T0, RENEWAL),
        UsageRequest(bob.pk, pro, T0 + timedelta(minutes=7, seconds=3), RENEWAL + timedelta(hours=2)),
        UsageRequest(alice.pk, pro, T0 + timedelta(days=3), T0 + timedelta(days=3, minutes=1),
                     until=T0 + timedelta(days=3, seconds=30)),
        UsageRequest(charlie.pk, starter, T0, RENEWAL),
    ]
    together = period_usage_many(requests)
    tenants = {alice.pk: alice, bob.pk: bob, charlie.pk: charlie}
    for request, batch in zip(requests, together, strict=True):
        alone = period_usage(tenant=tenants[request.tenant_id], plan=request.plan, start=request.start,
                             end=request.end, until=request.until)
        assert [(u.code, u.quantity, u.overage_amount_cents) for u in batch] == \
               [(u.code, u.quantity, u.overage_amount_cents) for u in alone]
    assert {u.code: u.quantity for u in together[0]}["api_calls"] == 150_000
    assert {u.code: u.quantity for u in together[2]}["api_calls"] == 150_000  # the edge second counts
