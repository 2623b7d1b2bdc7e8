"""Usage analytics for the portal and the API: the current period with a linear projection
and growth against the previous period, and hourly or daily series per meter."""
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal

from dateutil.relativedelta import relativedelta
from django.db import connection

from aerolith import clock
from billing.selectors import subscription_of

from .models import Meter
from .selectors import MICRO_PLACES, gauge_integral, period_usage, price_overage

SERIES_LIMITS = {"hour": timedelta(days=31), "day": timedelta(days=400)}


@dataclass
class MeterSummary:
    usage: object  # selectors.MeterUsage so far
    projected: Decimal
    projected_amount_cents: int
    previous: Decimal
    growth_percent: Decimal | None


def _project(meter: Meter, so_far: Decimal, elapsed: timedelta, length: timedelta,
             tenant_id: int, start: datetime, now: datetime) -> Decimal:
    """Linear projection to the end of the period: sums grow at the pace so far; a gauge
    keeps its current level; max and latest stay where they are."""
    if meter.aggregation in ("count", "sum"):
        if elapsed <= timedelta(0):
            return so_far
        return (so_far * Decimal(length / elapsed)).quantize(MICRO_PLACES, ROUND_HALF_UP)
    if meter.aggregation == "weighted_sum":
        integral, level = gauge_integral(tenant_id, meter, start, now)
        remaining_us = (start + length - now) // timedelta(microseconds=1)
        total = Decimal(integral) / Decimal(10**6) + level * remaining_us
        return (total / Decimal(length // timedelta(microseconds=1))).quantize(MICRO_PLACES,
                                                                              ROUND_HALF_UP)
    return so_far


def usage_summary(tenant) -> dict | None:
    subscription = subscription_of(tenant)
    if subscription is None:
        return None
    start, end = subscription.current_period_start, subscription.current_period_end
    now = min(max(clock.now(tenant), start), end)
    length, elapsed = end - start, now - start
    previous_start = start - relativedelta(months=1)
    previous = {u.code: u.quantity for u in period_usage(
        tenant=tenant, plan=subscription.plan, start=previous_start, end=start)}
    summaries = []
    for usage in period_usage(tenant=tenant, plan=subscription.plan, start=start, end=end, until=now):
        projected = _project(usage.meter, usage.quantity, elapsed, length, tenant.pk, start, now)
        _overage, _price, projected_amount = price_overage(
            usage.meter, projected, usage.included, usage.unit_price_cents)
        before = previous.get(usage.code, Decimal(0))
        growth = (None if not before else
                  ((projected - before) / before * 100).quantize(Decimal("0.1"), ROUND_HALF_UP))
        summaries.append(MeterSummary(usage, projected, projected_amount, before, growth))
    return {
        "subscription": subscription,
        "period_start": start,
        "period_end": end,
        "as_of": now,
        "meters": summaries,
        "projected_total_cents": subscription.plan.price_cents
        + sum(s.projected_amount_cents for s in summaries),
    }


def usage_series(*, tenant_id: int, meter: Meter, granularity: str, start: datetime,
                 end: datetime) -> list[tuple[datetime, Decimal]]:
    """(bucket, value) for each bucket with usage: the total for count and sum meters, the
    highest value for max and weighted_sum (a gauge's level), the last for latest."""
    column = {"count": "sum(total)", "sum": "sum(total)", "max": "max(maximum)",
              "weighted_sum": "max(maximum)",
              "latest": "(array_agg(latest_value ORDER BY latest_at DESC, latest_value DESC))[1]",
              }.get(meter.aggregation)
    with connection.cursor() as cursor:
        if meter.aggregation == "unique_count":
            cursor.execute(
                "SELECT day::timestamptz, count(*) FROM metering_uniquevalue WHERE tenant_id = %s "
                "AND meter_id = %s AND day >= %s::date AND day < %s::date GROUP BY day ORDER BY day",
                [tenant_id, meter.pk, start, end])
        else:
            cursor.execute(
                f"SELECT bucket, {column} FROM metering_usageaggregate WHERE tenant_id = %s "  # nosec B608 - column comes from a fixed map; values are parameters
                "AND meter_id = %s AND granularity = %s AND bucket >= %s AND bucket < %s "
                "GROUP BY bucket ORDER BY bucket", [tenant_id, meter.pk, granularity, start, end])
        return [(bucket, Decimal(value)) for bucket, value in cursor.fetchall()]
