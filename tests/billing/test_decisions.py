"""Billing's pure decisions with plain values: billing periods, invoice totals, plan-change
direction and dunning's timeline (proration has its own module, test_proration.py)."""
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from dateutil.relativedelta import relativedelta
from hypothesis import given
from hypothesis import strategies as st

from billing.decisions import (
    DunningPolicy,
    change_direction,
    dunning_timeline,
    invoice_totals,
    period_end_after,
    plan_fee_line,
    should_retry,
)

from .lifecycle import at

moments = st.datetimes(min_value=datetime(2020, 1, 1), max_value=datetime(2040, 12, 31),
                       timezones=st.just(UTC))


# --- periods --------------------------------------------------------------------------------

def _chain(anchor: datetime, count: int) -> list[datetime]:
    ends, end = [], anchor
    for _ in range(count):
        end = period_end_after(anchor, end)
        ends.append(end)
    return ends


def test_periods_anchored_on_jan_31_of_a_leap_year_clamp_to_month_ends_without_drifting():
    assert _chain(at(2028, 1, 31), 13) == [
        at(2028, 2, 29), at(2028, 3, 31), at(2028, 4, 30), at(2028, 5, 31), at(2028, 6, 30),
        at(2028, 7, 31), at(2028, 8, 31), at(2028, 9, 30), at(2028, 10, 31), at(2028, 11, 30),
        at(2028, 12, 31), at(2029, 1, 31), at(2029, 2, 28)]


def test_periods_anchored_on_jan_31_of_a_common_year_end_feb_28_then_mar_31():
    assert _chain(at(2027, 1, 31, 10, 37, 12), 3) == [
        at(2027, 2, 28, 10, 37, 12), at(2027, 3, 31, 10, 37, 12), at(2027, 4, 30, 10, 37, 12)]


@pytest.mark.parametrize("anchor, expected", [
    (at(2028, 1, 30), [at(2028, 2, 29), at(2028, 3, 30), at(2028, 4, 30)]),
    (at(2027, 1, 29), [at(2027, 2, 28), at(2027, 3, 29), at(2027, 4, 29)]),
    (at(2028, 2, 29), [at(2028, 3, 29), at(2028, 4, 29), at(2028, 5, 29)]),
    (at(2027, 12, 31, 23, 59, 59), [at(2028, 1, 31, 23, 59, 59), at(2028, 2, 29, 23, 59, 59),
                                    at(2028, 3, 31, 23, 59, 59)]),
])
def test_periods_keep_the_anchor_day_after_a_short_month(anchor, expected):
    assert _chain(anchor, 3) == expected


def test_period_end_is_strictly_after_the_moment_given():
    anchor = at(2027, 3, 15, 8)
    assert period_end_after(anchor, anchor) == at(2027, 4, 15, 8)
    assert period_end_after(anchor, at(2027, 4, 15, 7, 59, 59, 999999)) == at(2027, 4, 15, 8)
    assert period_end_after(anchor, at(2027, 4, 15, 8)) == at(2027, 5, 15, 8)
    assert period_end_after(anchor, at(2032, 9, 1)) == at(2032, 9, 15, 8)


@given(anchor=moments, gap=st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=3000)))
def test_period_end_is_the_first_anniversary_after(anchor, gap):
    after = anchor + gap
    end = period_end_after(anchor, after)
    assert end > after
    months = next(k for k in range(1, 200) if anchor + relativedelta(months=k) == end)
    assert months == 1 or anchor + relativedelta(months=months - 1) <= after


# --- invoice totals -------------------------------------------------------------------------

@pytest.mark.parametrize("amounts, balance, expected", [
    # (subtotal, credit applied, total, amount due, credit to balance)
    ([2900], 0, (2900, 0, 2900, 2900, 0)),
    ([2900, 125], 1000, (3025, 1000, 2025, 2025, 0)),
    ([2900], 5000, (2900, 2900, 0, 0, 0)),              # a balance pays it all; 2,100¢ stay
    ([-1883, 6427], 0, (4544, 0, 4544, 4544, 0)),
    ([-6427, 1883], 0, (-4544, 0, -4544, 0, 4544)),     # downgrade now: the credit goes back
    ([-6427, 1883], 700, (-4544, 0, -4544, 0, 4544)),   # ...and the balance is not touched
    ([], 300, (0, 0, 0, 0, 0)),
])
def test_invoice_totals_by_hand(amounts, balance, expected):
    totals = invoice_totals(amounts, balance)
    assert (totals.subtotal_cents, totals.credit_applied_cents, totals.total_cents,
            totals.amount_due_cents, totals.balance_credit_cents) == expected


def test_a_negative_balance_is_refused():
    with pytest.raises(ValueError):
        invoice_totals([100], -1)


@given(amounts=st.lists(st.integers(-10**9, 10**9), max_size=12), balance=st.integers(0, 10**10))
def test_invoice_totals_invariants(amounts, balance):
    totals = invoice_totals(amounts, balance)
    assert totals.subtotal_cents == sum(amounts)
    assert totals.total_cents == totals.subtotal_cents - totals.credit_applied_cents
    # the credit line (−credit) is one more line: the total is the sum of all lines
    assert totals.total_cents == sum(amounts) + (-totals.credit_applied_cents)
    assert 0 <= totals.credit_applied_cents <= balance
    assert totals.credit_applied_cents <= max(totals.subtotal_cents, 0)
    # as much credit as can be used is used
    assert totals.credit_applied_cents == min(balance, max(sum(amounts), 0))
    assert totals.amount_due_cents >= 0 and totals.balance_credit_cents >= 0
    assert totals.amount_due_cents - totals.balance_credit_cents == totals.total_cents
    assert not (totals.amount_due_cents and totals.balance_credit_cents)
    assert not (totals.amount_due_cents and totals.credit_applied_cents < balance)


# --- plan changes ---------------------------------------------------------------------------

@pytest.mark.parametrize("old, new, direction", [
    (2900, 9900, "upgrade"), (9900, 2900, "downgrade"), (0, 2900, "upgrade"),
    (2900, 0, "downgrade"), (2900, 2900, "downgrade")])
def test_change_direction_follows_the_price(old, new, direction):
    assert change_direction(old, new) == direction


def test_plan_fee_line_names_the_period_to_the_second():
    line = plan_fee_line("Starter", 2900, at(2028, 1, 31, 10, 37, 12), at(2028, 2, 29, 10, 37, 12))
    assert (line.kind, line.amount_cents, line.quantity, line.unit_amount_cents) == (
        "plan", 2900, Decimal(1), Decimal(2900))
    assert line.description == "Starter plan, 2028-01-31 10:37:12 UTC – 2028-02-29 10:37:12 UTC"
    assert (line.period_start, line.period_end) == (at(2028, 1, 31, 10, 37, 12), at(2028, 2, 29, 10, 37, 12))


# --- dunning --------------------------------------------------------------------------------

def test_dunning_timeline_defaults_retry_on_days_1_3_5_7_and_grace_ends_on_day_7():
    due = at(2027, 4, 1, 9, 30)
    timeline = dunning_timeline(due, DunningPolicy())
    assert timeline.retries == [at(2027, 4, 2, 9, 30), at(2027, 4, 4, 9, 30), at(2027, 4, 6, 9, 30),
                                at(2027, 4, 8, 9, 30)]
    assert timeline.grace_end == at(2027, 4, 8, 9, 30)


def test_dunning_timeline_follows_the_staff_schedule_sorted_and_once_per_day():
    timeline = dunning_timeline(at(2027, 4, 1), DunningPolicy(retry_days=(5, 2, 2), grace_days=3))
    assert timeline.retries == [at(2027, 4, 3), at(2027, 4, 6)]
    assert timeline.grace_end == at(2027, 4, 4)
    assert dunning_timeline(at(2027, 4, 1), DunningPolicy(retry_days=())).retries == []


@pytest.mark.parametrize("hard, last, current, retry", [
    (False, 1, 1, True),    # a soft decline is retried on the same card
    (True, 1, 1, False),    # a hard decline is not
    (True, 1, 2, True),     # a new card revives the retries
    (False, 1, None, False),  # no card, nothing to charge
    (True, None, 2, True),  # the failure was "no card"; now there is one
])
def test_should_retry(hard, last, current, retry):
    assert should_retry(last_failure_hard=hard, last_method_id=last, current_method_id=current) is retry
