"""Reads of usage: exact period usage for billing, current-period summaries, and series.

Sums over a time range are assembled from the cheapest exact pieces: whole days from
daily aggregates, whole hours from hourly ones, and the minutes at either edge from the
raw events themselves, so a billing period that starts at 10:37:12 counts exactly the
events from 10:37:12 on.
"""
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal

from django.db import connection

from billing.selectors import plan_allowances_many

from .models import Meter
from .quantities import MICRO, decimal_to_micro

HOUR = timedelta(hours=1)
DAY = timedelta(days=1)
MICRO_PLACES = Decimal("0.000001")


@dataclass
class MeterUsage:
    meter: Meter
    quantity: Decimal
    included: Decimal | None  # None: unlimited
    overage: Decimal
    unit_price_cents: Decimal  # per `price_per` units
    price_per: int
    overage_amount_cents: int

    @property
    def code(self) -> str:
        return self.meter.code


def _floor(t: datetime, step: timedelta) -> datetime:
    t = t.replace(minute=0, second=0, microsecond=0)
    return t.replace(hour=0) if step == DAY else t


def _ceil(t: datetime, step: timedelta) -> datetime:
    floor = _floor(t, step)
    return floor if floor == t else floor + step


def split_range(start: datetime, end: datetime) -> list[tuple[str, datetime, datetime]]:
    """[start, end) as (source, from, to) pieces: 'raw' edges, 'hour' and 'day' middles."""
    if start >= end:
        return []
    h1, h2 = _ceil(start, HOUR), _floor(end, HOUR)
    if h1 >= h2:
        return [("raw", start, end)]
    d1, d2 = _ceil(h1, DAY), _floor(h2, DAY)
    pieces = [("raw", start, h1)]
    if d1 < d2:
        pieces += [("hour", h1, d1), ("day", d1, d2), ("hour", d2, h2)]
    else:
        pieces.append(("hour", h1, h2))
    pieces.append(("raw", h2, end))
    return [(source, a, b) for source, a, b in pieces if a < b]


_RAW = """SELECT count(*), coalesce(sum(quantity), 0), max(quantity),
    max("timestamp"), (array_agg(quantity ORDER BY "timestamp" DESC, quantity DESC))[1]
    FROM metering_usageevent WHERE tenant_id = %s AND meter_id = %s
    AND "timestamp" >= %s AND "timestamp" < %s"""
_AGG = """SELECT coalesce(sum(event_count), 0), coalesce(sum(total), 0), max(maximum),
    max(latest_at), (array_agg(latest_value ORDER BY latest_at DESC, latest_value DESC))[1]
    FROM metering_usageaggregate WHERE tenant_id = %s AND meter_id = %s AND granularity = %s
    AND bucket >= %s AND bucket < %s"""


def additive_summary(tenant_id: int, meter: Meter, start: datetime, end: datetime) -> dict:
    """count, total, maximum and latest (at, value) of the events in [start, end)."""
    out = _empty_summary()
    with connection.cursor() as cursor:
        for source, a, b in split_range(start, end):
            if source == "raw":
                cursor.execute(_RAW, [tenant_id, meter.pk, a, b])
            else:
                cursor.execute(_AGG, [tenant_id, meter.pk, source, a, b])
            _merge(out, *cursor.fetchone())
    return out


ADDITIVE = ("count", "sum", "max", "latest")
def _empty_summary() -> dict:
    return {"count": 0, "total": Decimal(0), "maximum": None, "latest_at": None, "latest": None}


def _merge(out: dict, count, total, maximum, latest_at, latest) -> None:
    out["count"] += count
    out["total"] += total
    if maximum is not None and (out["maximum"] is None or maximum > out["maximum"]):
        out["maximum"] = maximum
    if latest_at is not None and (out["latest_at"] is None or
                                  (latest_at, latest) > (out["latest_at"], out["latest"])):
        out["latest_at"], out["latest"] = latest_at, latest


def _unique_count(tenant_id: int, meter: Meter, start: datetime, end: datetime) -> int:
    parts, params = [], []
    for source, a, b in split_range(start, end):
        if source == "day":
            parts.append("SELECT value FROM metering_uniquevalue WHERE tenant_id = %s "
                         "AND meter_id = %s AND day >= %s AND day < %s")
            params += [tenant_id, meter.pk, a.date(), b.date()]
        else:  # raw and hour pieces read raw events (unique values are kept per day)
            parts.append("SELECT properties ->> %s FROM metering_usageevent WHERE tenant_id = %s "
                         "AND meter_id = %s AND \"timestamp\" >= %s AND \"timestamp\" < %s")
            params += [meter.unique_property, tenant_id, meter.pk, a, b]
    if not parts:
        return 0
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT count(DISTINCT value) FROM ({' UNION '.join(parts)}) AS u(value)",  # nosec B608 - parts are constant SQL; values are parameters
                       params)
        return cursor.fetchone()[0]


def gauge_integral(tenant_id: int, meter: Meter, start: datetime, end: datetime) -> tuple[int, Decimal]:
    """(level-microseconds, level at `end`) of a weighted_sum meter over [start, end): the
    last reading before `start` holds until the first one inside, and so on."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT quantity FROM metering_gaugereading WHERE tenant_id = %s AND meter_id = %s "
            "AND \"timestamp\" < %s ORDER BY \"timestamp\" DESC, id DESC LIMIT 1",
            [tenant_id, meter.pk, start])
        row = cursor.fetchone()
        level = row[0] if row else Decimal(0)
        cursor.execute(
            "SELECT \"timestamp\", quantity FROM metering_gaugereading WHERE tenant_id = %s "
            "AND meter_id = %s AND \"timestamp\" >= %s AND \"timestamp\" < %s "
            "ORDER BY \"timestamp\", id", [tenant_id, meter.pk, start, end])
        readings = cursor.fetchall()
    final_level = readings[-1][1] if readings else level
    return level_integral(level, readings, start, end), final_level


def meter_quantity(tenant_id: int, meter: Meter, start: datetime, end: datetime,
                   until: datetime | None = None) -> Decimal:
    """The billable quantity of `meter` for the period [start, end), counting events up to
    `until` (default: the period's end). weighted_sum gives the time-weighted level in
    level-periods (10 GB held for the whole period = 10 GB-months)."""
    until = min(until or end, end)
    aggregation = meter.aggregation
    if aggregation == "unique_count":
        return Decimal(_unique_count(tenant_id, meter, start, until))
    if aggregation == "weighted_sum":
        integral, _level = gauge_integral(tenant_id, meter, start, until)
        period_us = (end - start) // timedelta(microseconds=1)
        return (Decimal(integral) / Decimal(period_us) / MICRO).quantize(MICRO_PLACES, ROUND_HALF_UP)
    return _additive_quantity(aggregation, additive_summary(tenant_id, meter, start, until))


def _additive_quantity(aggregation: str, found: dict) -> Decimal:
    if aggregation in ("count", "sum"):
        return found["total"]
    if aggregation == "max":
        return found["maximum"] or Decimal(0)
    return found["latest"] or Decimal(0)  # latest


def price_overage(meter: Meter, quantity: Decimal, included: Decimal | None,
                  unit_price_cents: Decimal | None) -> tuple[Decimal, Decimal, int]:
    """(overage, unit price, amount in whole cents, half up) — a pure function."""
    price = meter.unit_price_cents if unit_price_cents is None else unit_price_cents
    overage = Decimal(0) if included is None else max(Decimal(0), quantity - included)
    amount = (overage * price / meter.price_per).quantize(Decimal(1), ROUND_HALF_UP)
    return overage, price, int(amount)


@dataclass(frozen=True)
class UsageRequest:
    """One tenant's billing period to read: [start, end), counting events up to `until`."""

    tenant_id: int
    plan: object
    start: datetime
    end: datetime
    until: datetime | None = None

    @property
    def upto(self) -> datetime:
        return min(self.until or self.end, self.end)


def period_usage(*, tenant, plan, start: datetime, end: datetime,
                 until: datetime | None = None) -> list[MeterUsage]:
    """Each active meter's billable quantity in [start, end) with the plan's allowance,
    the overage and its price. What billing puts on the invoice."""
    return period_usage_many([UsageRequest(tenant.pk, plan, start, end, until)])[0]


_RAW_BATCH = """SELECT r.i, e.meter_id, count(*), coalesce(sum(e.quantity), 0), max(e.quantity),
    max(e."timestamp"), (array_agg(e.quantity ORDER BY e."timestamp" DESC, e.quantity DESC))[1]
    FROM unnest(%s::int[], %s::bigint[], %s::timestamptz[], %s::timestamptz[]) AS r(i, t, a, b)
    JOIN metering_usageevent e ON e.tenant_id = r.t AND e."timestamp" >= r.a AND e."timestamp" < r.b
    WHERE e.meter_id = ANY(%s) GROUP BY r.i, e.meter_id"""
_AGG_BATCH = """SELECT r.i, g.meter_id, coalesce(sum(g.event_count), 0), coalesce(sum(g.total), 0),
    max(g.maximum), max(g.latest_at),
    (array_agg(g.latest_value ORDER BY g.latest_at DESC, g.latest_value DESC))[1]
    FROM unnest(%s::int[], %s::bigint[], %s::timestamptz[], %s::timestamptz[]) AS r(i, t, a, b)
    JOIN metering_usageaggregate g ON g.tenant_id = r.t AND g.granularity = %s
        AND g.bucket >= r.a AND g.bucket < r.b
    WHERE g.meter_id = ANY(%s) GROUP BY r.i, g.meter_id"""
_GAUGE_BEFORE_BATCH = """SELECT r.i, last.quantity
    FROM unnest(%s::int[], %s::bigint[], %s::timestamptz[]) AS r(i, t, a)
    CROSS JOIN LATERAL (SELECT quantity FROM metering_gaugereading WHERE tenant_id = r.t
        AND meter_id = %s AND "timestamp" < r.a ORDER BY "timestamp" DESC, id DESC LIMIT 1) last"""
_GAUGE_INSIDE_BATCH = """SELECT r.i, g."timestamp", g.quantity
    FROM unnest(%s::int[], %s::bigint[], %s::timestamptz[], %s::timestamptz[]) AS r(i, t, a, b)
    JOIN metering_gaugereading g ON g.tenant_id = r.t AND g.meter_id = %s
        AND g."timestamp" >= r.a AND g."timestamp" < r.b
    ORDER BY r.i, g."timestamp", g.id"""


def _additive_many(requests: list[UsageRequest], meter_ids: list[int]) -> dict[tuple, dict]:
    """(request index, meter id) -> additive summary over each request's range, with one
    query per kind of piece (raw edges, hours, days) for all requests together."""
    out: dict[tuple, dict] = {}
    if not meter_ids:
        return out
    pieces: dict[str, list[tuple]] = {"raw": [], "hour": [], "day": []}
    for index, request in enumerate(requests):
        for source, a, b in split_range(request.start, request.upto):
            pieces[source].append((index, request.tenant_id, a, b))
    with connection.cursor() as cursor:
        for source, rows in pieces.items():
            if not rows:
                continue
            columns = [list(column) for column in zip(*rows, strict=True)]
            if source == "raw":
                cursor.execute(_RAW_BATCH, [*columns, meter_ids])
            else:
                cursor.execute(_AGG_BATCH, [*columns, source, meter_ids])
            for index, meter_id, *values in cursor.fetchall():
                _merge(out.setdefault((index, meter_id), _empty_summary()), *values)
    return out


def _weighted_many(requests: list[UsageRequest], meter: Meter) -> list[Decimal]:
    """The time-weighted level of `meter` over each request's period, in request order."""
    indexes, tenants = list(range(len(requests))), [r.tenant_id for r in requests]
    with connection.cursor() as cursor:
        cursor.execute(_GAUGE_BEFORE_BATCH, [indexes, tenants, [r.start for r in requests], meter.pk])
        before = dict(cursor.fetchall())
        cursor.execute(_GAUGE_INSIDE_BATCH, [indexes, tenants, [r.start for r in requests],
                                             [r.upto for r in requests], meter.pk])
        inside: dict[int, list] = {}
        for index, at, quantity in cursor.fetchall():
            inside.setdefault(index, []).append((at, quantity))
    out = []
    for index, r in enumerate(requests):
        integral = level_integral(before.get(index, Decimal(0)), inside.get(index, []), r.start, r.upto)
        period_us = (r.end - r.start) // timedelta(microseconds=1)
        out.append((Decimal(integral) / Decimal(period_us) / MICRO).quantize(MICRO_PLACES, ROUND_HALF_UP))
    return out


def level_integral(level: Decimal, readings: list[tuple], start: datetime, end: datetime) -> int:
    """Level-microseconds over [start, end) of a level that starts at `level` and changes at
    each (time, level) reading — a pure function."""
    integral, since = 0, start
    for at, quantity in readings:
        integral += decimal_to_micro(level) * ((at - since) // timedelta(microseconds=1))
        level, since = quantity, at
    return integral + decimal_to_micro(level) * ((end - since) // timedelta(microseconds=1))


def period_usage_many(requests: list[UsageRequest]) -> list[list[MeterUsage]]:
    """period_usage for many tenants at once (renewal at month end): a handful of queries
    for the whole batch instead of a handful per tenant. Same results, in request order."""
    if not requests:
        return []
    meters = list(Meter.objects.filter(is_active=True).order_by("id"))
    allowances = plan_allowances_many({r.plan.pk for r in requests})
    additive = _additive_many(requests, [m.pk for m in meters if m.aggregation in ADDITIVE])
    weighted = {m.pk: _weighted_many(requests, m) for m in meters if m.aggregation == "weighted_sum"}
    results = []
    for index, r in enumerate(requests):
        usages = []
        for meter in meters:
            if meter.aggregation in ADDITIVE:
                quantity = _additive_quantity(meter.aggregation,
                                              additive.get((index, meter.pk), _empty_summary()))
            elif meter.aggregation == "weighted_sum":
                quantity = weighted[meter.pk][index]
            else:  # unique_count: per tenant (custom meters only)
                quantity = meter_quantity(r.tenant_id, meter, r.start, r.end, r.until)
            included, price = allowances.get(r.plan.pk, {}).get(meter.pk, (Decimal(0), None))
            overage, unit_price, amount = price_overage(meter, quantity, included, price)
            usages.append(MeterUsage(meter, quantity, included, overage, unit_price,
                                     meter.price_per, amount))
        results.append(usages)
    return results
