"""Proration to the second (SPEC §3) across months of 28, 29 (2028 is a leap year), 30 and
31 days: the pure functions with hand-computed amounts and hypothesis properties, then
upgrades and downgrades through the services on a test clock."""
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aerolith.errors import ValidationFailed
from billing.decisions import period_end_after, prorate_cents, proration_lines, whole_seconds
from billing.models import BalanceTransaction, Plan
from billing.services.subscriptions import preview_change, subscription_change

from ..conftest import owner_principal
from .lifecycle import DAY, active_since, advance, at, invoices, lines, subscription_of

# (period start, end, its length in seconds); every case prorates from day 10, 06:00
MONTHS = {
    28: (at(2027, 2, 1), at(2027, 3, 1), 28 * 86_400),  # 2,419,200 s
    29: (at(2028, 2, 1), at(2028, 3, 1), 29 * 86_400),  # 2,505,600 s
    30: (at(2027, 4, 1), at(2027, 5, 1), 30 * 86_400),  # 2,592,000 s
    31: (at(2027, 1, 1), at(2027, 2, 1), 31 * 86_400),  # 2,678,400 s
}
# day 10, 06:00 leaves (days - 9) days less 6 hours: 28 -> 1,620,000 s; 29 -> 1,706,400 s;
# 30 -> 1,792,800 s; 31 -> 1,879,200 s. Amounts = price x remaining / length, half up:
EXPECTED = {
    # days: (Starter 2,900¢, Professional 9,900¢)
    28: (1942, 6629),  # 2,900 x 1,620,000 / 2,419,200 = 1,941.96; 9,900 x ... = 6,629.46
    29: (1975, 6742),  # 2,900 x 1,706,400 / 2,505,600 = 1,975.00; 9,900 x ... = 6,742.24
    30: (2006, 6848),  # 2,900 x 1,792,800 / 2,592,000 = 2,005.83; 9,900 x ... = 6,847.50 (half up)
    31: (2035, 6946),  # 2,900 x 1,879,200 / 2,678,400 = 2,034.68; 9,900 x ... = 6,945.97
}


def _day10(start: datetime) -> datetime:
    return start.replace(day=10, hour=6)


@pytest.mark.parametrize("days", sorted(MONTHS))
def test_prorate_cents_by_hand_for_each_month_length(days):
    start, end, seconds = MONTHS[days]
    assert whole_seconds(start, end) == seconds
    starter, professional = EXPECTED[days]
    assert prorate_cents(2900, start, end, _day10(start)) == starter
    assert prorate_cents(9900, start, end, _day10(start)) == professional


@pytest.mark.parametrize("days", sorted(MONTHS))
def test_each_second_counts(days):
    """At one cent per second of the period, every second moves the amount by a cent."""
    start, end, seconds = MONTHS[days]
    price = seconds  # cents
    assert prorate_cents(price, start, end, start) == price
    assert prorate_cents(price, start, end, start + timedelta(seconds=1)) == price - 1
    assert prorate_cents(price, start, end, _day10(start)) == (end - _day10(start)).total_seconds()
    assert prorate_cents(price, start, end, end - timedelta(seconds=1)) == 1
    assert prorate_cents(price, start, end, end) == 0
    # only whole seconds count: a fraction of one is not yet a second used
    assert prorate_cents(price, start, end, start + timedelta(microseconds=999_999)) == price - 1


def test_half_of_a_leap_february_is_half_the_price():
    start, end, _seconds = MONTHS[29]
    middle = start + (end - start) / 2  # Feb 15, 12:00
    assert middle == at(2028, 2, 15, 12)
    assert prorate_cents(2900, start, end, middle) == 1450
    assert prorate_cents(9900, start, end, middle) == 4950
    assert prorate_cents(49900, start, end, middle) == 24950


def test_outside_the_period_the_share_is_all_or_nothing():
    start, end, _ = MONTHS[30]
    assert prorate_cents(2900, start, end, start - DAY) == 2900
    assert prorate_cents(2900, start, end, end + DAY) == 0
    assert prorate_cents(2900, start, start, start) == 0  # an empty period has no share


@pytest.mark.parametrize("days", sorted(MONTHS))
def test_proration_lines_credit_the_old_plan_and_charge_the_new(days):
    start, end, seconds = MONTHS[days]
    when = _day10(start)
    credit, charge = proration_lines(old_name="Starter", old_price_cents=2900, new_name="Professional",
                                     new_price_cents=9900, start=start, end=end, at=when)
    starter, professional = EXPECTED[days]
    assert (credit.kind, credit.amount_cents, charge.kind, charge.amount_cents) == (
        "proration", -starter, "proration", professional)
    fraction = (Decimal(whole_seconds(when, end)) / seconds).quantize(Decimal("0.000001"))
    assert credit.quantity == charge.quantity == fraction
    assert (credit.unit_amount_cents, charge.unit_amount_cents) == (Decimal(-2900), Decimal(9900))
    assert (credit.period_start, credit.period_end) == (charge.period_start, charge.period_end) == (when, end)
    stamp = when.strftime("%Y-%m-%d %H:%M:%S UTC")
    assert credit.description == f"Unused time on Starter after {stamp}"
    assert charge.description == f"Remaining time on Professional from {stamp}"


# --- properties -----------------------------------------------------------------------------

anchors = st.datetimes(min_value=datetime(2024, 1, 1), max_value=datetime(2032, 12, 31),
                       timezones=st.just(UTC))
prices = st.integers(min_value=0, max_value=10**7)


@st.composite
def periods(draw):
    """A real billing period (anchor-based, 28 to 31 days) and a moment inside it."""
    anchor = draw(anchors).replace(microsecond=0)
    start = anchor
    for _ in range(draw(st.integers(0, 14))):
        start = period_end_after(anchor, start)
    end = period_end_after(anchor, start)
    when = start + timedelta(seconds=draw(st.integers(0, whole_seconds(start, end))))
    return start, end, when


@given(period=periods(), old=prices, new=prices)
def test_an_upgrade_then_an_immediate_revert_nets_to_zero(period, old, new):
    start, end, when = period
    there = proration_lines(old_name="A", old_price_cents=old, new_name="B", new_price_cents=new,
                            start=start, end=end, at=when)
    back = proration_lines(old_name="B", old_price_cents=new, new_name="A", new_price_cents=old,
                           start=start, end=end, at=when)
    assert abs(sum(line.amount_cents for line in there + back)) <= 1
    # each line is within half a cent of the exact share
    for line, price in ((there[0], -old), (there[1], new)):
        exact = Decimal(price) * whole_seconds(when, end) / whole_seconds(start, end)
        assert abs(line.amount_cents - exact) <= Decimal("0.5")


@given(period=periods(), price=prices)
def test_the_full_period_prorates_to_the_price_and_its_end_to_nothing(period, price):
    start, end, when = period
    assert prorate_cents(price, start, end, start) == price
    assert prorate_cents(price, start, end, end) == 0
    later = min(end, when + timedelta(seconds=1))
    assert 0 <= prorate_cents(price, start, end, later) <= prorate_cents(price, start, end, when) <= price


@given(period=periods(), price=prices)
def test_what_was_used_and_what_remains_add_up_to_the_price_within_a_cent(period, price):
    start, end, when = period
    remaining = prorate_cents(price, start, end, when)
    used = price - prorate_cents(price, start, end, start + (end - when))  # mirror image
    assert abs(remaining - used) <= 1


# --- through the services -------------------------------------------------------------------

@pytest.mark.django_db
@pytest.mark.parametrize("days", sorted(MONTHS))
def test_an_upgrade_mid_period_is_invoiced_to_the_second(alice, days):
    start, end, _seconds = MONTHS[days]
    active_since(alice, "starter", start)
    assert subscription_of(alice).current_period_end == end
    advance(alice, to=_day10(start))
    preview = preview_change(subscription=subscription_of(alice),
                             plan=Plan.objects.get(code="professional"), when=None)
    subscription, invoice = subscription_change(tenant=alice, plan_code="professional",
                                                actor=owner_principal(alice))
    starter, professional = EXPECTED[days]
    assert lines(invoice) == [("proration", -starter), ("proration", professional)]
    assert invoice.total_cents == invoice.amount_due_cents == professional - starter
    assert [(line.kind, line.amount_cents) for line in preview.lines] == lines(invoice)
    assert preview.total_cents == invoice.total_cents
    assert (subscription.plan.code, subscription.current_period_end) == ("professional", end)
    advance(alice, seconds=0)  # the charge, due at once
    invoice.refresh_from_db()
    assert invoice.status == "paid"
    # the next renewal bills the new plan's full price
    advance(alice, to=end)
    (renewal,) = invoices(alice, reason="renewal")
    assert lines(renewal) == [("plan", 9900)]


@pytest.mark.django_db
def test_the_invoice_uses_the_previews_moment_not_the_confirmation_time(alice):
    start, end, _ = MONTHS[31]
    active_since(alice, "starter", start)
    advance(alice, to=_day10(start))
    preview = preview_change(subscription=subscription_of(alice),
                             plan=Plan.objects.get(code="professional"), when="now")
    advance(alice, seconds=30 * 60)  # the customer reads the preview for half an hour
    _subscription, invoice = subscription_change(tenant=alice, plan_code="professional", when="now",
                                                 proration_at=preview.proration_at,
                                                 actor=owner_principal(alice))
    assert lines(invoice) == [("proration", -2035), ("proration", 6946)]
    assert invoice.period_start == _day10(start)


@pytest.mark.django_db
@pytest.mark.parametrize("proration_at", [
    at(2027, 1, 10, 4, 59, 59),   # a preview more than an hour old
    at(2027, 1, 10, 6, 0, 1),     # in the future
    at(2026, 12, 31, 23, 59, 59),  # before the period
])
def test_a_stale_or_invented_proration_moment_is_refused(alice, proration_at):
    active_since(alice, "starter", at(2027, 1, 1))
    advance(alice, to=at(2027, 1, 10, 6))
    with pytest.raises(ValidationFailed) as refused:
        subscription_change(tenant=alice, plan_code="professional", proration_at=proration_at,
                            actor=owner_principal(alice))
    assert "proration_at" in refused.value.errors
    subscription = subscription_of(alice)
    assert subscription.plan.code == "starter" and not invoices(alice, reason="plan_change")


@pytest.mark.django_db
def test_an_upgrade_then_an_immediate_revert_nets_to_zero_through_the_services(alice):
    """Up now and straight back down now: the charge paid equals the credit kept."""
    start, end, _ = MONTHS[30]
    active_since(alice, "starter", start)
    advance(alice, to=_day10(start))
    owner = owner_principal(alice)
    _s, up = subscription_change(tenant=alice, plan_code="professional", actor=owner)
    advance(alice, seconds=0)
    _s, down = subscription_change(tenant=alice, plan_code="starter", when="now", actor=owner)
    assert lines(up) == [("proration", -2006), ("proration", 6848)]
    assert lines(down) == [("proration", -6848), ("proration", 2006)]
    up.refresh_from_db()
    assert (up.status, up.amount_paid_cents) == ("paid", 4842)
    # the negative invoice owes nothing and puts its credit on the balance
    assert (down.status, down.total_cents, down.amount_due_cents) == ("paid", -4842, 0)
    subscription = subscription_of(alice)
    assert (subscription.plan.code, subscription.balance_cents) == ("starter", 4842)
    assert up.amount_paid_cents - subscription.balance_cents == 0
    credit = BalanceTransaction.objects.get(tenant=alice, invoice=down)
    assert (credit.kind, credit.amount_cents, credit.balance_after_cents) == ("downgrade_credit", 4842, 4842)
    # the balance pays the next renewals first: 4,842¢ covers one 2,900¢ period and part of the next
    advance(alice, to=end)
    (first,) = invoices(alice, reason="renewal")
    assert lines(first) == [("plan", 2900), ("credit", -2900)]
    assert (first.subtotal_cents, first.credit_applied_cents, first.total_cents, first.status) == (
        2900, 2900, 0, "paid")
    advance(alice, to=at(2027, 6, 1))
    second = invoices(alice, reason="renewal")[1]
    # 4,842 - 2,900 = 1,942¢ left for June: 2,900 - 1,942 = 958¢ charged to the card
    assert lines(second) == [("plan", 2900), ("credit", -1942)]
    assert (second.total_cents, second.amount_paid_cents, second.status) == (958, 958, "paid")
    assert subscription_of(alice).balance_cents == 0


@pytest.mark.django_db
def test_a_downgrade_now_of_a_leap_february_credits_the_balance_to_the_second(alice):
    start, end, _ = MONTHS[29]
    active_since(alice, "professional", start)
    advance(alice, to=_day10(start))
    _s, invoice = subscription_change(tenant=alice, plan_code="starter", when="now",
                                      actor=owner_principal(alice))
    # credit 9,900 x 1,706,400 / 2,505,600 = 6,742.24 -> 6,742¢; charge 2,900 x ... = 1,975¢
    assert lines(invoice) == [("proration", -6742), ("proration", 1975)]
    assert invoice.total_cents == -4767 and invoice.amount_due_cents == 0
    assert subscription_of(alice).balance_cents == 4767
    assert end == at(2028, 3, 1)
