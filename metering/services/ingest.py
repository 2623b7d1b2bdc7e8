"""Recording usage (SPEC §5): validate a batch event by event, keep each (tenant, id) once,
store accepted events and their hourly and daily aggregates in one PostgreSQL
transaction, then bring the Redis counters and threshold notices up to date.

Durability comes first: the response is sent only after the commit, and Redis is touched
only after it, so a Redis outage can never lose an acknowledged event (counters are rebuilt
from PostgreSQL; see counters_rebuild). The hot loop works on plain ints (micro-units) and
tuples; Decimal appears only at the edges.
"""
import hashlib
import logging
import os
import random
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import orjson
from django.conf import settings
from django.db import connection, transaction

from aerolith import clock
from aerolith.metrics import usage_ingested
from billing.selectors import subscription_of

from ..models import Meter
from ..quantities import QuantityError, micro_to_text, to_micro

logger = logging.getLogger(__name__)
MAX_BATCH = 10_000
MAX_ID_LENGTH = 200
MAX_PROPERTIES_BYTES = 4096
# Each ingesting process writes its own aggregate rows (see UsageAggregate).
SHARD = (os.getpid() ^ random.getrandbits(15)) % 32  # nosec B311 - spreads writers over shards; not security


@dataclass
class IngestResult:
    accepted: int = 0
    duplicates: int = 0
    rejected: list[dict] = field(default_factory=list)


@dataclass(slots=True)
class _Event:
    index: int
    key: str  # hex of event_key(): PostgreSQL reads it as the same uuid
    event_id: str
    meter: Meter
    micro: int
    ts: datetime
    properties: dict


def event_key(tenant_id: int, event_id: str) -> uuid.UUID:
    return uuid.UUID(bytes=hashlib.blake2b(f"{tenant_id}\x00{event_id}".encode(),
                                           digest_size=16).digest())


def _reject(result: IngestResult, index: int, code: str, detail: str) -> None:
    result.rejected.append({"index": index, "code": code, "detail": detail})


def _parse_time(raw, default: datetime) -> datetime:
    if raw is None:
        return default
    if not isinstance(raw, str):
        raise ValueError
    value = datetime.fromisoformat(raw)
    if value.tzinfo is None:
        raise ValueError
    return value.astimezone(timezone.utc)


def _unique_text(value) -> str:
    """A unique_count property as PostgreSQL prints `properties ->> name`, so the values
    kept per day, the ones read back from raw events and the real-time ones agree
    (true, not True; 100000000000000000000, not 1e+20)."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    number = Decimal(orjson.dumps(value).decode())
    return format(number.copy_abs() if number.is_zero() else number, "f")


def _has_nul(value) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_nul(v) for v in value)
    return False


def _properties_problem(properties: dict) -> tuple[str, str] | None:
    """(code, detail) if `properties` cannot be stored as jsonb, else None."""
    try:
        dumped = orjson.dumps(properties)
    except orjson.JSONEncodeError:  # nested deeper than orjson writes, or similar
        return "invalid_properties", "`properties` is nested too deeply to store."
    if len(dumped) > MAX_PROPERTIES_BYTES:
        return ("properties_too_large",
                f"`properties` must be at most {MAX_PROPERTIES_BYTES} bytes as JSON.")
    if b"\\u0000" in dumped and _has_nul(properties):  # jsonb cannot hold U+0000
        return "invalid_properties", "`properties` must not contain the NUL character."
    return None


def _validate(events: list, meters: dict[str, Meter], now: datetime, tenant_id: int,
              result: IngestResult) -> list[_Event]:
    oldest = now - timedelta(days=settings.AEROLITH_USAGE_MAX_AGE_DAYS)
    newest = now + timedelta(seconds=settings.AEROLITH_USAGE_MAX_FUTURE_SECONDS)
    valid: list[_Event] = []
    seen: set[str] = set()
    key_prefix, blake2b = f"{tenant_id}\x00".encode(), hashlib.blake2b
    for index, raw in enumerate(events):
        if type(raw) is not dict:
            _reject(result, index, "invalid_event", "Each event must be a JSON object.")
            continue
        event_id = raw.get("id")
        if not isinstance(event_id, str) or not event_id:
            _reject(result, index, "missing_id", "Give every event a non-empty string `id`; "
                    "it makes retries safe.")
            continue
        if len(event_id) > MAX_ID_LENGTH:
            _reject(result, index, "id_too_long", f"`id` is at most {MAX_ID_LENGTH} characters.")
            continue
        if "\x00" in event_id:  # PostgreSQL text cannot hold it
            _reject(result, index, "invalid_id", "`id` must not contain the NUL character.")
            continue
        code = raw.get("meter")
        meter = meters.get(code) if type(code) is str else None
        if meter is None:
            _reject(result, index, "unknown_meter", f"Unknown meter {raw.get('meter')!r}; "
                    f"known meters: {sorted(meters)}.")
            continue
        try:
            micro = to_micro(raw.get("quantity", 1))
        except QuantityError as error:
            _reject(result, index, error.code, error.detail)
            continue
        try:
            ts = _parse_time(raw.get("timestamp"), now)
        except (ValueError, TypeError, OverflowError):  # Overflow: year 1 or 9999 in UTC
            _reject(result, index, "invalid_timestamp", "`timestamp` must be ISO-8601 with a "
                    "zone, e.g. 2026-11-28T10:00:00Z.")
            continue
        if ts < oldest:
            _reject(result, index, "timestamp_too_old", "Events older than "
                    f"{settings.AEROLITH_USAGE_MAX_AGE_DAYS} days are not accepted.")
            continue
        if ts > newest:
            _reject(result, index, "timestamp_in_future", "`timestamp` is more than "
                    f"{settings.AEROLITH_USAGE_MAX_FUTURE_SECONDS} s in the future; check the "
                    "sender's clock.")
            continue
        properties = raw.get("properties")
        if properties is None:
            properties = {}
        elif type(properties) is not dict:
            _reject(result, index, "invalid_properties", "`properties` must be an object.")
            continue
        elif properties:
            problem = _properties_problem(properties)
            if problem is not None:
                _reject(result, index, *problem)
                continue
        if meter.aggregation == "unique_count":
            value = properties.get(meter.unique_property)
            if value is None or isinstance(value, (dict, list)):
                _reject(result, index, "missing_property", f"Meter {meter.code} counts distinct "
                        f"`properties.{meter.unique_property}`; give it a string or number.")
                continue
        key = blake2b(key_prefix + event_id.encode(), digest_size=16).hexdigest()  # = event_key()
        if key in seen:
            result.duplicates += 1
            continue
        seen.add(key)
        valid.append(_Event(index, key, event_id, meter, micro, ts, properties))
    return valid


# One round trip stores a batch: the idempotency keys (in key order, so batches that
# overlap cannot deadlock), the raw events and the aggregates of the fresh ones; it answers
# with the positions of the fresh events. Columns travel as array literals written here
# (psycopg's per-row COPY and per-element array dumping cost the Python process as much as
# PostgreSQL's own work; json_to_recordset costs PostgreSQL twice what arrays do).
_STORE_SQL = """
WITH ev AS (
    SELECT n, k, m, e, q, timestamptz 'epoch' + tu * interval '1 microsecond' AS t,
           coalesce(%(properties)s::jsonb -> (n::int - 1), '{}') AS p
    FROM unnest(%(keys)s::uuid[], %(meters)s::int[], %(ids)s::text[], %(micro)s::numeric[],
                %(ts)s::bigint[]) WITH ORDINALITY AS u(k, m, e, q, tu, n)
), k AS (
    INSERT INTO metering_eventkey (key, received_at)
    SELECT k, %(received)s FROM ev ORDER BY k
    ON CONFLICT DO NOTHING RETURNING key
), fresh AS MATERIALIZED (
    SELECT ev.* FROM ev JOIN k ON k.key = ev.k
), raw AS (
    INSERT INTO metering_usageevent (tenant_id, meter_id, event_id, quantity, "timestamp",
                                     properties, received_at)
    SELECT %(tenant)s, m, e, q * 0.000001, t, p, %(received)s FROM fresh
), agg AS (
    INSERT INTO metering_usageaggregate AS a (tenant_id, meter_id, granularity, bucket, shard,
        event_count, total, maximum, latest_at, latest_value)
    SELECT %(tenant)s, m, g, b, %(shard)s, count(*), sum(q) * 0.000001, max(q) * 0.000001,
           max(t), (array_agg(q ORDER BY t DESC, q DESC))[1] * 0.000001  -- ties: larger wins
    FROM fresh CROSS JOIN LATERAL (VALUES ('hour', date_trunc('hour', t, 'UTC')),
                                          ('day', date_trunc('day', t, 'UTC'))) AS bk(g, b)
    GROUP BY m, g, b
    ORDER BY m, g, b  -- no deadlocks
    ON CONFLICT (tenant_id, meter_id, granularity, bucket, shard) DO UPDATE SET
        event_count = a.event_count + excluded.event_count,
        total = a.total + excluded.total,
        maximum = GREATEST(a.maximum, excluded.maximum),
        latest_value = CASE WHEN (excluded.latest_at, excluded.latest_value)
                                 > (a.latest_at, a.latest_value)
                            THEN excluded.latest_value ELSE a.latest_value END,
        latest_at = GREATEST(a.latest_at, excluded.latest_at)
)
SELECT n - 1 FROM fresh ORDER BY n
"""
_MICROSECOND = timedelta(microseconds=1)


def _array(items) -> str:
    return "{" + ",".join(items) + "}"


def _quoted(text: str) -> str:
    """`text` as an element of an array literal (NUL was refused by _validate)."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _store(tenant_id: int, valid: list[_Event], received: datetime) -> list[_Event]:
    """Store what is new of `valid` inside the caller's transaction; return the fresh."""
    epoch = clock.EPOCH
    params = {
        "keys": _array([e.key for e in valid]),
        "meters": _array([str(e.meter.pk) for e in valid]),
        "ids": _array([_quoted(e.event_id) for e in valid]),
        "micro": _array([str(e.micro) for e in valid]),
        "ts": _array([str((e.ts - epoch) // _MICROSECOND) for e in valid]),
        "properties": (orjson.dumps([e.properties for e in valid]).decode()
                       if any(e.properties for e in valid) else None),
        "received": received, "tenant": tenant_id, "shard": SHARD,
    }
    with connection.cursor() as cursor:
        cursor.execute(_STORE_SQL, params)
        positions = cursor.fetchall()
        fresh = valid if len(positions) == len(valid) else [valid[n] for (n,) in positions]
        gauges = [(tenant_id, e.meter.pk, e.ts, micro_to_text(e.micro))
                  for e in fresh if e.meter.aggregation == "weighted_sum"]
        if gauges:
            cursor.executemany("INSERT INTO metering_gaugereading (tenant_id, meter_id, "
                               "\"timestamp\", quantity) VALUES (%s, %s, %s, %s)", gauges)
        uniques = {
            (e.meter.pk, e.ts.date(), _unique_text(e.properties[e.meter.unique_property])): e.ts
            for e in fresh if e.meter.aggregation == "unique_count"}
        if uniques:
            cursor.executemany(
                "INSERT INTO metering_uniquevalue (tenant_id, meter_id, day, value, first_seen) "
                "VALUES (%s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
                [(tenant_id, m, d, v, ts) for (m, d, v), ts in sorted(uniques.items())])
    return fresh


def _counter_changes(fresh: list[_Event], start: datetime, end: datetime) -> dict:
    changes: dict[str, tuple] = {}
    for e in fresh:
        if not start <= e.ts < end:
            continue  # a late event of an earlier period: billing reads it from PostgreSQL
        aggregation = e.meter.aggregation
        code = e.meter.code
        if aggregation in ("count", "sum"):
            changes[code] = (aggregation, changes.get(code, (aggregation, 0))[1] + e.micro)
        elif aggregation == "max":
            changes[code] = (aggregation, max(changes.get(code, (aggregation, 0))[1], e.micro))
        elif aggregation in ("latest", "weighted_sum"):
            ts_us = (e.ts - clock.EPOCH) // timedelta(microseconds=1)
            if code not in changes or ts_us >= changes[code][1][1]:
                changes[code] = (aggregation, (e.micro, ts_us))
        elif aggregation == "unique_count":
            changes.setdefault(code, (aggregation, set()))[1].add(
                _unique_text(e.properties[e.meter.unique_property]))
    return changes


def _within_hard_limits(tenant, subscription, valid: list[_Event], result: IngestResult):
    """On plans without overage, refuse the events of meters whose allowance is used up.
    Raises QuotaExceeded when that leaves nothing of the batch."""
    from .counters import counters_read
    from .quotas import allowances_micro, quota_error

    allowances = allowances_micro(subscription.plan)
    try:
        used = counters_read(tenant.pk, subscription.current_period_start)
    except Exception:  # noqa: BLE001 - without counters, accept: PostgreSQL keeps the truth
        logger.warning("Hard limits not checked for tenant %s", tenant.pk, exc_info=True)
        return valid
    full = {}
    for e in valid:
        included = allowances.get(e.meter.pk)
        if included is not None and e.meter.code not in full and used.get(e.meter.code, 0) >= included:
            full[e.meter.code] = quota_error(e.meter, included, used.get(e.meter.code, 0),
                                             subscription.current_period_end)
    if not full:
        return valid
    kept = [e for e in valid if e.meter.code not in full]
    if not kept and not result.rejected:
        raise next(iter(full.values()))
    for e in valid:
        if e.meter.code in full:
            _reject(result, e.index, "quota_exceeded", full[e.meter.code].detail)
    result.rejected.sort(key=lambda r: r["index"])
    return kept


def usage_ingest(*, tenant, events: list, counters_done: bool = False,
                 enforce_limits: bool = True, subscription=None) -> IngestResult:
    """Record a batch of usage events for `tenant`. Valid events are stored exactly once
    per (tenant, id); invalid ones are reported with their index. Raises QuotaExceeded
    when a plan without overage has no room for any of them. Collectors pass
    `enforce_limits=False` (what happened is recorded) and, when they already counted in
    Redis on the request path, `counters_done=True`."""
    from .counters import counters_apply
    from .quotas import after_ingest, meters_by_code

    result = IngestResult()
    now = clock.now(tenant)
    if subscription is None:  # callers that have it already pass it
        subscription = subscription_of(tenant)
    valid = _validate(events, meters_by_code(), now, tenant.pk, result)
    if valid and enforce_limits and subscription is not None and not subscription.plan.overage_allowed:
        valid = _within_hard_limits(tenant, subscription, valid, result)
    if not valid:
        _count(result, enforce_limits)
        return result
    received = clock.wall_now()
    with transaction.atomic():
        fresh = _store(tenant.pk, valid, received)
    result.duplicates += len(valid) - len(fresh)
    result.accepted = len(fresh)
    if fresh and subscription is not None and not counters_done:
        changes = _counter_changes(fresh, subscription.current_period_start,
                                   subscription.current_period_end)
        if changes:
            try:
                totals = counters_apply(tenant.pk, subscription.current_period_start, changes)
            except Exception:  # noqa: BLE001 - PostgreSQL has it; counters get rebuilt
                logger.warning("Usage counters not updated for tenant %s", tenant.pk, exc_info=True)
            else:
                added = {code: value for code, (agg, value) in changes.items()
                         if agg in ("count", "sum")}
                after_ingest(tenant, subscription, totals, added)
    _count(result, enforce_limits)
    return result


def _count(result: IngestResult, enforce_limits: bool) -> None:
    # Only the platform's own collectors ingest without limits.
    usage_ingested(accepted=result.accepted, duplicates=result.duplicates,
                   rejected=len(result.rejected), source="api" if enforce_limits else "internal")

