"""The staff dashboard's figures against hand-computed values (billing.metrics)."""
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from django.db.models import F

from aerolith import clock
from billing import metrics
from billing.decisions import LineDraft
from billing.models import Invoice, Payment, Plan, Subscription
from billing.services.invoices import (
    invoice_draft,
    invoice_finalize,
    invoice_mark_uncollectible,
    invoice_void,
)
from tenants.models import Tenant

from .test_admin import make_invoice, make_paid_invoice

DAY = timedelta(days=1)


# --- pure arithmetic -------------------------------------------------------------------------

@pytest.mark.parametrize("part, whole, expected", [
    (1, 3, Decimal("33.3")), (2, 3, Decimal("66.7")), (1, 6, Decimal("16.7")), (0, 5, Decimal("0.0")),
    (5, 5, Decimal("100.0")), (0, 0, None), (1, 8, Decimal("12.5")),
])
def test_rate_is_a_percentage_with_one_decimal(part, whole, expected):
    assert metrics.rate(part, whole) == expected


def test_month_starts_are_twelve_calendar_months_ending_with_the_current_one():
    starts = metrics.month_starts(datetime(2026, 1, 31, 23, 59, tzinfo=UTC))
    assert len(starts) == 12
    assert starts[0] == datetime(2025, 2, 1, tzinfo=UTC) and starts[-1] == datetime(2026, 1, 1, tzinfo=UTC)
    assert all(later > earlier for earlier, later in zip(starts, starts[1:], strict=False))


def test_month_starts_count_in_utc():
    # 00:30 on 1 March in UTC+2 is still February in UTC
    starts = metrics.month_starts(datetime(2026, 3, 1, 0, 30, tzinfo=timezone(timedelta(hours=2))), 2)
    assert starts == [datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 2, 1, tzinfo=UTC)]


def test_monthly_series_fills_missing_months_with_zero():
    starts = [datetime(2026, m, 1, tzinfo=UTC) for m in (1, 2, 3)]
    rows = [(datetime(2026, 3, 1, tzinfo=UTC), 500), (datetime(2026, 1, 1, tzinfo=UTC), None)]
    assert metrics.monthly_series(rows, starts) == [(starts[0], 0), (starts[1], 0), (starts[2], 500)]


# --- subscriptions: MRR, statuses, trial conversion, churn ------------------------------------

def subscription(slug, plan_code, status, *, now, created_days_ago, trial_end_days_ago=None,
                 outcome="", cancelled_days_ago=None, pending_plan=None):
    """A subscription with exactly the dates given, on a tenant row (no schema needed:
    the figures read only public tables)."""
    tenant = Tenant.objects.create(name=slug.title(), slug=slug, schema_name=f"metrics_{slug}", status=status)
    start = now - created_days_ago * DAY
    return Subscription.objects.create(
        tenant=tenant, plan=Plan.objects.get(code=plan_code), status=status, created_at=start,
        trial_end=None if trial_end_days_ago is None else now - trial_end_days_ago * DAY,
        trial_outcome=outcome, current_period_start=start, current_period_end=now + 10 * DAY,
        cancelled_at=None if cancelled_days_ago is None else now - cancelled_days_ago * DAY,
        pending_plan=Plan.objects.get(code=pending_plan) if pending_plan else None)


def test_subscription_figures_match_hand_computed_values(db):
    now = clock.wall_now()
    before = metrics.subscription_figures(now)  # the session's tenants: two trials and a Free one
    S = Subscription.Status
    subscription("m1", "starter", S.ACTIVE, now=now, created_days_ago=100, trial_end_days_ago=86,
                 outcome="converted")
    subscription("m2", "professional", S.PAST_DUE, now=now, created_days_ago=60, trial_end_days_ago=46,
                 outcome="converted")
    subscription("m3", "enterprise", S.ACTIVE, now=now, created_days_ago=200, pending_plan="starter")
    subscription("m4", "starter", S.TRIALING, now=now, created_days_ago=5, trial_end_days_ago=-9)
    subscription("m5", "starter", S.SUSPENDED, now=now, created_days_ago=120, trial_end_days_ago=106,
                 outcome="converted")
    subscription("m6", "starter", S.CANCELLED, now=now, created_days_ago=150, cancelled_days_ago=10)
    subscription("m7", "starter", S.CANCELLED, now=now, created_days_ago=300, cancelled_days_ago=45)
    subscription("m8", "free", S.ACTIVE, now=now, created_days_ago=34, trial_end_days_ago=20,
                 outcome="fell_back")
    subscription("m9", "free", S.ACTIVE, now=now, created_days_ago=110, trial_end_days_ago=100,
                 outcome="fell_back")
    figures = metrics.subscription_figures(now)

    # MRR: m1 starter + m2 professional (past due still pays) + m3 enterprise (its pending
    # downgrade not counted); trials, suspended and cancelled ones pay nothing.
    assert figures.mrr_cents - before.mrr_cents == 2900 + 9900 + 49900
    assert figures.arr_cents == 12 * figures.mrr_cents
    added = {s: figures.by_status[s] - before.by_status[s] for s in S.values}
    assert added == {"active": 4, "past_due": 1, "trialing": 1, "suspended": 1, "cancelled": 2}
    # Trials that ended in the last 90 days: m1, m2 converted; m8 fell back (m5, m9 ended earlier).
    assert (figures.trials_converted, figures.trials_fell_back) == (2, 1)
    assert figures.trial_conversion_rate == Decimal("66.7")
    # Churn: m6 cancelled 10 days ago; active 30 days ago were m1, m2, m3, m5, m6 and m9 (m4
    # did not exist, m7 had been cancelled, m8 was still trialing).
    assert (figures.cancelled_recently, figures.active_at_window_start) == (1, 6)
    assert figures.churn_rate == Decimal("16.7")


def test_no_trials_and_no_customers_give_no_rates(db):
    figures = metrics.subscription_figures(clock.wall_now())
    assert figures.trial_conversion_rate is None and figures.churn_rate is None


# --- invoices and payments ---------------------------------------------------------------------

def test_past_due_counts_open_invoices_past_their_due_date(alice, bob, charlie):
    make_invoice(alice, 5000)
    partly = make_invoice(alice, 3000)
    from billing.services.collection import payment_record_manual

    payment_record_manual(invoice=partly, amount_cents=1000, reference="R", received_on=clock.now(alice).date(),
                          actor="test")
    invoice_mark_uncollectible(invoice=make_invoice(bob, 7000), actor="test")  # written off: not counted
    make_paid_invoice(bob, 9900)
    make_invoice(charlie, 4000, finalize=False)  # a draft owes nothing yet
    later = make_invoice(charlie, 1100)
    Invoice.objects.filter(pk=later.pk).update(due_at=F("due_at") + 5 * DAY)
    assert metrics.past_due(clock.wall_now() + timedelta(seconds=1)) == (2, 5000 + 2000)


def test_failed_payments_are_counted_over_thirty_days(alice):
    now = datetime(2026, 3, 15, 12, tzinfo=UTC)
    invoice = make_invoice(alice, 5000)

    def payment(status, days_ago):
        Payment.objects.create(tenant=alice, invoice=invoice, method="card", status=status, amount_cents=5000,
                               decline_code="card_declined" if status == "failed" else "",
                               created_at=now - days_ago * DAY)

    for days_ago in (0, 3, 29.9):
        payment("failed", days_ago)
    payment("failed", 30.1)
    payment("failed", -1)  # a test clock ahead of the wall clock
    payment("succeeded", 1)
    assert metrics.failed_payments(now) == 3


NOW = datetime(2026, 3, 15, 12, tzinfo=UTC)


def test_revenue_per_month_sums_paid_invoices_by_payment_month(alice, bob, charlie):
    def paid(tenant, cents, at):
        invoice = make_paid_invoice(tenant, cents)
        Invoice.objects.filter(pk=invoice.pk).update(paid_at=at)

    paid(alice, 2900, datetime(2026, 3, 1, tzinfo=UTC))  # first instant of March
    paid(bob, 9900, datetime(2026, 3, 14, 8, tzinfo=UTC))
    paid(charlie, 1234, datetime(2026, 2, 28, 23, 59, 59, tzinfo=UTC))
    paid(alice, 500, datetime(2025, 4, 1, tzinfo=UTC))  # the oldest month shown
    paid(bob, 777, datetime(2025, 3, 31, 23, 59, tzinfo=UTC))  # before the twelve months
    paid(charlie, 888, datetime(2026, 4, 1, tzinfo=UTC))  # after them
    make_invoice(alice, 9999)  # open: not revenue
    invoice_void(invoice=make_invoice(bob, 4444), actor="test")

    series = metrics.revenue_by_month(NOW)
    assert [month for month, _ in series] == metrics.month_starts(NOW)
    assert series[0] == (datetime(2025, 4, 1, tzinfo=UTC), 500)
    assert series[10] == (datetime(2026, 2, 1, tzinfo=UTC), 1234)
    assert series[11] == (datetime(2026, 3, 1, tzinfo=UTC), 2900 + 9900)
    assert sum(cents for _, cents in series) == 500 + 1234 + 2900 + 9900


def test_new_mrr_per_month_is_the_plan_fee_of_trial_conversions(alice, bob, charlie):
    def conversion(tenant, plan_fee, finalized_at, *, void=False):
        subscription = Subscription.objects.get(tenant=tenant)
        invoice = invoice_draft(tenant=tenant, subscription=subscription, reason="trial_conversion",
                                period_start=finalized_at, period_end=finalized_at,
                                lines=[LineDraft("plan", "Plan", plan_fee), LineDraft("adjustment", "Setup", 100)])
        invoice = invoice_finalize(invoice=invoice, actor="test", collect=False)
        if void:
            invoice_void(invoice=invoice, actor="test")
        Invoice.objects.filter(pk=invoice.pk).update(finalized_at=finalized_at)

    conversion(alice, 2900, datetime(2026, 3, 2, tzinfo=UTC))
    conversion(bob, 9900, datetime(2026, 1, 20, tzinfo=UTC))
    conversion(charlie, 2900, datetime(2026, 3, 3, tzinfo=UTC), void=True)  # fell through
    make_paid_invoice(alice, 5000)  # manual: not new MRR
    series = dict(metrics.new_mrr_by_month(NOW))
    assert series[datetime(2026, 3, 1, tzinfo=UTC)] == 2900
    assert series[datetime(2026, 1, 1, tzinfo=UTC)] == 9900
    assert sum(series.values()) == 2900 + 9900


def test_dashboard_gathers_every_figure(alice):
    make_invoice(alice, 5000)
    board = metrics.dashboard(clock.wall_now() + timedelta(seconds=1))
    assert (board.past_due_invoices, board.past_due_cents, board.failed_payments) == (1, 5000, 0)
    assert len(board.revenue) == len(board.new_mrr) == 12
    assert board.subscriptions.by_status["trialing"] >= 2
