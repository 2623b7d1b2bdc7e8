"""Exact period usage (SPEC §5): a period's edges are counted to the microsecond from raw
events, whole hours and days inside come from aggregates, late events land in their own
period, and each aggregation and the overage price match values computed by hand."""
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.db import connection

from billing.models import Plan
from metering.models import Meter
from metering.selectors import (
    gauge_integral,
    meter_quantity,
    period_usage,
    price_overage,
    split_range,
)
from metering.services.counters import counters_read
from tests.metering.conftest import DAY, HOUR, custom_meter, event, freeze, ingest, set_period

# A 30-day period that starts and ends at 10:37:12, and a "now" just after it ends.
START = datetime(2031, 1, 10, 10, 37, 12, tzinfo=UTC)
END = datetime(2031, 2, 9, 10, 37, 12, tzinfo=UTC)
NOW = datetime(2031, 2, 9, 12, 0, tzinfo=UTC)
US = timedelta(microseconds=1)


@pytest.fixture
def frame(alice):
    """Alice's period is [START, END) and her clock stands at NOW."""
    set_period(alice, START, END)
    freeze(alice, NOW)
    return alice


def _meter(code) -> Meter:
    return Meter.objects.get(code=code)


def _accept(tenant, events):
    result = ingest(tenant, events)
    assert result.rejected == [] and result.accepted == len(events), result
    return result


def _bump_aggregate(tenant, meter, granularity, bucket, amount):
    with connection.cursor() as cursor:
        cursor.execute("UPDATE metering_usageaggregate SET total = total + %s WHERE tenant_id = %s "
                       "AND meter_id = %s AND granularity = %s AND bucket = %s",
                       [amount, tenant.pk, meter.pk, granularity, bucket])
        return cursor.rowcount


# --- split_range --------------------------------------------------------------------------

def test_a_period_splits_into_raw_edges_hours_and_whole_days():
    assert split_range(START, END) == [
        ("raw", START, datetime(2031, 1, 10, 11, tzinfo=UTC)),
        ("hour", datetime(2031, 1, 10, 11, tzinfo=UTC), datetime(2031, 1, 11, tzinfo=UTC)),
        ("day", datetime(2031, 1, 11, tzinfo=UTC), datetime(2031, 2, 9, tzinfo=UTC)),
        ("hour", datetime(2031, 2, 9, tzinfo=UTC), datetime(2031, 2, 9, 10, tzinfo=UTC)),
        ("raw", datetime(2031, 2, 9, 10, tzinfo=UTC), END),
    ]


def test_split_range_of_aligned_short_and_empty_ranges():
    day = datetime(2031, 1, 11, tzinfo=UTC)
    assert split_range(day, day + 2 * DAY) == [("day", day, day + 2 * DAY)]
    assert split_range(day + 10 * HOUR, day + 14 * HOUR) == [
        ("hour", day + 10 * HOUR, day + 14 * HOUR)]
    inside = (day + timedelta(minutes=5), day + timedelta(minutes=50))
    assert split_range(*inside) == [("raw", *inside)]
    across_midnight = split_range(day - timedelta(minutes=90), day + timedelta(minutes=90))
    assert across_midnight == [
        ("raw", day - timedelta(minutes=90), day - HOUR),
        ("hour", day - HOUR, day + HOUR),
        ("raw", day + HOUR, day + timedelta(minutes=90))]
    assert split_range(day, day) == [] and split_range(day + HOUR, day) == []
    # The pieces always tile the range: no gap, no overlap.
    pieces = split_range(START, END)
    assert pieces[0][1] == START and pieces[-1][2] == END
    assert all(a[2] == b[1] for a, b in zip(pieces, pieces[1:], strict=False))


# --- edges and sources --------------------------------------------------------------------

EDGE_EVENTS = [  # (time, quantity); quantities are powers of two so any mistake shows
    (START - US, 1000),  # before the period
    (START, 1),
    (datetime(2031, 1, 10, 10, 59, 59, 999999, tzinfo=UTC), 2),
    (datetime(2031, 1, 10, 11, tzinfo=UTC), 4),
    (datetime(2031, 1, 10, 23, 30, tzinfo=UTC), 8),
    (datetime(2031, 1, 11, tzinfo=UTC), 16),
    (datetime(2031, 1, 20, 12, 0, tzinfo=UTC), 32),
    (datetime(2031, 2, 9, tzinfo=UTC), 64),
    (datetime(2031, 2, 9, 9, 59, 59, 999999, tzinfo=UTC), 128),
    (datetime(2031, 2, 9, 10, tzinfo=UTC), 256),
    (END - US, 512),
    (END, 2000),  # at the period's end: the next period's
]


@pytest.mark.django_db
def test_the_period_counts_from_its_first_microsecond_to_before_its_end(frame):
    _accept(frame, [event(f"e{i}", quantity=q, at=t) for i, (t, q) in enumerate(EDGE_EVENTS)])
    compute = _meter("compute_hours")
    assert meter_quantity(frame.pk, compute, START, END) == Decimal(1023)
    assert meter_quantity(frame.pk, compute, START + US, END) == Decimal(1022)
    assert meter_quantity(frame.pk, compute, START - US, END) == Decimal(2023)
    assert meter_quantity(frame.pk, compute, START, END + US) == Decimal(3023)
    # until: what was used up to a moment inside the period.
    assert meter_quantity(frame.pk, compute, START, END,
                          until=datetime(2031, 1, 11, tzinfo=UTC)) == Decimal(15)


@pytest.mark.django_db
def test_whole_hours_and_days_are_read_from_aggregates_and_edges_from_raw_events(frame):
    _accept(frame, [event(f"e{i}", quantity=q, at=t) for i, (t, q) in enumerate(EDGE_EVENTS)])
    compute = _meter("compute_hours")
    # Change what the aggregates say and see which change the period's total follows.
    assert _bump_aggregate(frame, compute, "day", datetime(2031, 1, 20, tzinfo=UTC), 100) == 1
    assert meter_quantity(frame.pk, compute, START, END) == Decimal(1123)
    assert _bump_aggregate(frame, compute, "hour", datetime(2031, 1, 10, 23, tzinfo=UTC),
                           10000) == 1
    assert meter_quantity(frame.pk, compute, START, END) == Decimal(11123)
    # An hourly bucket inside a whole day is not read (the day bucket stands for it) ...
    assert _bump_aggregate(frame, compute, "hour", datetime(2031, 1, 20, 12, tzinfo=UTC),
                           5) == 1
    assert meter_quantity(frame.pk, compute, START, END) == Decimal(11123)
    # ... nor is the hourly bucket of an edge: the raw events are.
    assert _bump_aggregate(frame, compute, "hour", datetime(2031, 1, 10, 10, tzinfo=UTC),
                           7) == 1
    assert meter_quantity(frame.pk, compute, START, END) == Decimal(11123)
    # And raw events inside whole days and hours are not read at all.
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM metering_usageevent WHERE tenant_id = %s AND \"timestamp\" "
                       ">= %s AND \"timestamp\" < %s", [frame.pk, datetime(2031, 1, 10, 11, tzinfo=UTC),
                                                       datetime(2031, 2, 9, 10, tzinfo=UTC)])
        assert cursor.rowcount == 6
    assert meter_quantity(frame.pk, compute, START, END) == Decimal(11123)


@pytest.mark.django_db
def test_a_late_event_counts_in_the_period_it_happened_in(frame):
    previous_start = START - timedelta(days=31)
    _accept(frame, [event("late", quantity=5, at=START - DAY),
                    event("now", quantity=3, at=NOW - 2 * HOUR)])
    compute = _meter("compute_hours")
    assert meter_quantity(frame.pk, compute, previous_start, START) == Decimal(5)
    assert meter_quantity(frame.pk, compute, START, END) == Decimal(3)
    # The real-time counter of the current period never saw the late event.
    assert counters_read(frame.pk, START)["compute_hours"] == 3_000_000


# --- each aggregation ---------------------------------------------------------------------

@pytest.mark.django_db
def test_count_meter_adds_the_occurrences_each_event_stands_for(frame):
    _accept(frame, [event("a", meter="api_calls", quantity=3, at=START + HOUR),
                    event("b", meter="api_calls", at=START + 5 * DAY),
                    event("c", meter="api_calls", quantity=1000, at=START - HOUR)])
    assert meter_quantity(frame.pk, _meter("api_calls"), START, END) == Decimal(4)


@pytest.mark.django_db
def test_max_meter_takes_the_highest_value_inside_the_period(frame):
    peak = custom_meter("peak_connections", "max")
    _accept(frame, [event("before", meter="peak_connections", quantity=100, at=START - US),
                    event("edge", meter="peak_connections", quantity=5, at=START + timedelta(minutes=3)),
                    event("day", meter="peak_connections", quantity=9.5, at=START + 5 * DAY),
                    event("also", meter="peak_connections", quantity=2, at=START + 5 * DAY + HOUR),
                    event("tail", meter="peak_connections", quantity=7, at=END - timedelta(minutes=7)),
                    event("end", meter="peak_connections", quantity=50, at=END)])
    assert meter_quantity(frame.pk, peak, START, END) == Decimal("9.5")
    assert meter_quantity(frame.pk, peak, START, START + DAY) == Decimal(5)
    assert meter_quantity(frame.pk, peak, END - DAY, END) == Decimal(7)
    assert meter_quantity(frame.pk, peak, END + HOUR, END + 2 * HOUR) == Decimal(0)


@pytest.mark.django_db
def test_latest_meter_takes_the_value_of_the_newest_event_inside_the_period(frame):
    seats = custom_meter("seats", "latest")
    _accept(frame, [event("s1", meter="seats", quantity=3, at=START + 2 * DAY),
                    event("s3", meter="seats", quantity=6, at=END - timedelta(minutes=30)),
                    event("s2", meter="seats", quantity=8, at=START + 20 * DAY),
                    event("s4", meter="seats", quantity=99, at=END),
                    event("s0", meter="seats", quantity=42, at=START - HOUR)])
    assert meter_quantity(frame.pk, seats, START, END) == Decimal(6)
    assert meter_quantity(frame.pk, seats, START, END, until=START + 21 * DAY) == Decimal(8)
    assert meter_quantity(frame.pk, seats, START, START + HOUR) == Decimal(0)


@pytest.mark.django_db
def test_latest_meter_breaks_a_tie_in_time_by_the_larger_value(frame):
    seats = custom_meter("seats", "latest")
    at = START + 3 * DAY
    _accept(frame, [event("a", meter="seats", quantity=4, at=at),
                    event("b", meter="seats", quantity=9, at=at),
                    event("c", meter="seats", quantity=2, at=at)])
    assert meter_quantity(frame.pk, seats, START, END) == Decimal(9)


@pytest.mark.django_db
def test_unique_count_meter_counts_distinct_values_across_edges_hours_and_days(frame):
    users = custom_meter("active_users", "unique_count", unique_property="user")
    at = [START + timedelta(minutes=1), START + 2 * HOUR, START + 3 * DAY, START + 4 * DAY,
          END - timedelta(minutes=1)]
    _accept(frame, [
        event("1", meter="active_users", at=at[0], user="ann"),
        event("2", meter="active_users", at=at[1], user="bob"),
        event("3", meter="active_users", at=at[2], user="ann"),
        event("4", meter="active_users", at=at[3], user="cy"),
        event("5", meter="active_users", at=at[4], user="bob"),
        event("6", meter="active_users", at=START - US, user="dan"),  # before
        event("7", meter="active_users", at=END, user="eve"),  # after
        # The same value in a raw edge and inside a whole day is one value.
        event("8", meter="active_users", at=at[0], user=7),
        event("9", meter="active_users", at=at[2], user="7"),
        event("10", meter="active_users", at=at[0], user=True),
        event("11", meter="active_users", at=at[3], user=True),
        event("12", meter="active_users", at=at[4], user=1e20),
        event("13", meter="active_users", at=at[2], user=1e20),
        event("14", meter="active_users", at=at[4], user=-0.0),
        event("15", meter="active_users", at=at[3], user=0.0),
    ])
    # ann, bob, cy, 7, true, 1e20, 0.0
    assert meter_quantity(frame.pk, users, START, END) == Decimal(7)
    assert meter_quantity(frame.pk, users, START, START + DAY) == Decimal(4)  # ann bob 7 true


@pytest.mark.django_db
def test_weighted_sum_integrates_the_level_over_time_in_level_periods(frame):
    storage = _meter("storage_gb")
    _accept(frame, [
        event("before", meter="storage_gb", quantity=10, at=START - DAY),  # carries in
        event("half", meter="storage_gb", quantity=20, at=START + 15 * DAY),
        event("after", meter="storage_gb", quantity=1000, at=END),
    ])
    # 10 GB for 15 days, then 20 GB for 15 days, of a 30-day period: 15 GB-months.
    assert meter_quantity(frame.pk, storage, START, END) == Decimal(15)
    integral, level = gauge_integral(frame.pk, storage, START, END)
    fifteen_days_us = 15 * 86400 * 10**6
    assert integral == 10 * 10**6 * fifteen_days_us + 20 * 10**6 * fifteen_days_us
    assert level == Decimal(20)
    # Up to the middle only 10 GB for half the period has accrued: 5 GB-months.
    assert meter_quantity(frame.pk, storage, START, END, until=START + 15 * DAY) == Decimal(5)


@pytest.mark.django_db
def test_weighted_sum_without_an_earlier_reading_starts_from_zero(frame):
    storage = _meter("storage_gb")
    _accept(frame, [event("g1", meter="storage_gb", quantity=3, at=START + 10 * DAY),
                    event("g2", meter="storage_gb", quantity=1.5, at=START + 25 * DAY)])
    # 0 for 10 days, 3 for 15 days, 1.5 for 5 days: (45 + 7.5) / 30 = 1.75
    assert meter_quantity(frame.pk, storage, START, END) == Decimal("1.75")


@pytest.mark.django_db
def test_weighted_sum_rounds_to_six_decimals_half_up(frame):
    storage = _meter("storage_gb")
    _accept(frame, [event("g", meter="storage_gb", quantity=1, at=END - timedelta(seconds=1))])
    # 1 GB for one second of 30 days: 1 / 2,592,000 = 0.000000385... -> 0.000000
    assert meter_quantity(frame.pk, storage, START, END) == Decimal("0.000000")
    _accept(frame, [event("g2", meter="storage_gb", quantity=1, at=END - timedelta(seconds=2))])
    # Readings at end-2s (1 GB) and end-1s (1 GB): 2 s / 2,592,000 s = 7.7e-7 -> 0.000001
    assert meter_quantity(frame.pk, storage, START, END) == Decimal("0.000001")


# --- overage ------------------------------------------------------------------------------

@pytest.mark.parametrize("used, included, overage, cents", [
    ("100000", "100000", "0", 0),
    ("100499", "100000", "499", 0),  # 0.499 cent
    ("100500", "100000", "500", 1),  # 0.5 cent: half up
    ("101500", "100000", "1500", 2),  # 1.5 cents
    ("250000", "100000", "150000", 150),
    ("5", "100000", "0", 0),
])
@pytest.mark.django_db
def test_api_calls_overage_costs_one_cent_per_thousand_rounded_half_up(used, included,
                                                                         overage, cents):
    api_calls = _meter("api_calls")
    assert price_overage(api_calls, Decimal(used), Decimal(included), None) == (
        Decimal(overage), Decimal(1), cents)


@pytest.mark.django_db
def test_overage_uses_the_plans_price_and_unlimited_means_no_overage():
    bandwidth = _meter("bandwidth_gb")  # 9 cents per GB
    assert price_overage(bandwidth, Decimal("50.055555"), Decimal(50), None)[2] == 0
    assert price_overage(bandwidth, Decimal("50.055556"), Decimal(50), None)[2] == 1
    assert price_overage(bandwidth, Decimal(60), Decimal(50), Decimal(2)) == (
        Decimal(10), Decimal(2), 20)
    assert price_overage(bandwidth, Decimal(10**9), None, None) == (Decimal(0), Decimal(9), 0)


@pytest.mark.django_db
def test_period_usage_lists_each_meter_with_its_allowance_overage_and_price(frame):
    custom_meter("reports", "sum", unit_price_cents=Decimal("2.5"), price_per=10)
    _accept(frame, [event("calls", meter="api_calls", quantity=100_500, at=START + DAY),
                    event("bw", meter="bandwidth_gb", quantity=50.5, at=START + 2 * DAY),
                    event("r", meter="reports", quantity=9, at=START + 3 * DAY)])
    usage = {u.code: u for u in period_usage(tenant=frame, plan=Plan.objects.get(code="starter"),
                                             start=START, end=END)}
    calls = usage["api_calls"]
    assert (calls.quantity, calls.included, calls.overage, calls.overage_amount_cents) == (
        Decimal(100_500), Decimal(100_000), Decimal(500), 1)
    bandwidth = usage["bandwidth_gb"]
    assert (bandwidth.overage, bandwidth.unit_price_cents, bandwidth.overage_amount_cents) == (
        Decimal("0.5"), Decimal(9), 5)  # 4.5 cents, half up
    reports = usage["reports"]  # no allowance on the plan: all of it at the meter's price
    assert (reports.included, reports.overage, reports.overage_amount_cents) == (
        Decimal(0), Decimal(9), 2)  # 9 * 2.5 / 10 = 2.25
    assert usage["compute_hours"].quantity == 0 and usage["compute_hours"].overage_amount_cents == 0
