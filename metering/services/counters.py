"""Real-time usage counters in Redis: the current period's usage per tenant and meter,
read in well under 5 ms (SPEC §5). PostgreSQL is the truth; counters are a fast copy that
`counters_rebuild` can always make exact again.

One hash per tenant and period, fields by meter code, values in integer micro-units:
count and sum meters add (HINCRBY); max keeps the largest; latest and weighted_sum keep the
value with the newest timestamp (in a companion field `<code>@ts`); unique_count keeps a
HyperLogLog per meter (approximate in real time; billing counts exactly in PostgreSQL).
"""
import logging
from datetime import datetime
from functools import lru_cache

import redis
from django.conf import settings

logger = logging.getLogger(__name__)
KEY_TTL_SECONDS = 70 * 86400  # a period plus the late-event window, with room to spare

_MAX = """
local cur = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '-1')
if tonumber(ARGV[2]) > cur then redis.call('HSET', KEYS[1], ARGV[1], ARGV[2]) end
redis.call('EXPIRE', KEYS[1], ARGV[3])
"""
_LATEST = """
local ts = tonumber(redis.call('HGET', KEYS[1], ARGV[1] .. '@ts') or '-1')
local value = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '-1')
-- newest timestamp wins; on a tie the larger value, as in PostgreSQL's aggregates
if tonumber(ARGV[3]) > ts or (tonumber(ARGV[3]) == ts and tonumber(ARGV[2]) > value) then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2], ARGV[1] .. '@ts', ARGV[3])
end
redis.call('EXPIRE', KEYS[1], ARGV[4])
"""


@lru_cache(maxsize=4)
def _client_for(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2,
                                health_check_interval=30)


def client() -> redis.Redis:
    return _client_for(settings.REDIS_URL)


def counter_key(tenant_id: int, period_start: datetime) -> str:
    return f"aerolith:usage:{tenant_id}:{int(period_start.timestamp())}"


def _hll_key(tenant_id: int, period_start: datetime, code: str) -> str:
    return f"{counter_key(tenant_id, period_start)}:uniq:{code}"


def counters_apply(tenant_id: int, period_start: datetime, changes: dict) -> dict[str, int]:
    """Apply one batch's changes after its commit. `changes` maps meter code to
    (aggregation, value) where value is micro-units to add (count, sum), a maximum (max),
    (micro, timestamp_us) (latest, weighted_sum) or a set of strings (unique_count).
    Returns the new totals of additive meters. Redis being down costs only freshness."""
    key = counter_key(tenant_id, period_start)
    r = client()
    pipe = r.pipeline(transaction=False)
    additive = []
    for code, (aggregation, value) in changes.items():
        if aggregation in ("count", "sum"):
            pipe.hincrby(key, code, value)
            additive.append(code)
        elif aggregation == "max":
            pipe.eval(_MAX, 1, key, code, value, KEY_TTL_SECONDS)
        elif aggregation in ("latest", "weighted_sum"):
            micro, ts_us = value
            pipe.eval(_LATEST, 1, key, code, micro, ts_us, KEY_TTL_SECONDS)
        elif aggregation == "unique_count":
            hll = _hll_key(tenant_id, period_start, code)
            pipe.pfadd(hll, *value)
            pipe.expire(hll, KEY_TTL_SECONDS)
    pipe.expire(key, KEY_TTL_SECONDS)
    results = pipe.execute()
    totals, index = {}, 0
    for code, (aggregation, _value) in changes.items():
        if aggregation in ("count", "sum"):
            totals[code] = int(results[index])
        index += 2 if aggregation == "unique_count" else 1
    return totals


def counters_read(tenant_id: int, period_start: datetime, unique_codes=()) -> dict[str, int]:
    """meter code -> micro-units (unique_count meters: distinct values, estimated)."""
    key = counter_key(tenant_id, period_start)
    r = client()
    pipe = r.pipeline(transaction=False)
    pipe.hgetall(key)
    for code in unique_codes:
        pipe.pfcount(_hll_key(tenant_id, period_start, code))
    raw, *uniques = pipe.execute()
    values = {k.decode(): int(v) for k, v in raw.items() if b"@" not in k}
    values.update({code: count for code, count in zip(unique_codes, uniques, strict=True)})
    return values


def counters_replace(tenant_id: int, period_start: datetime, values: dict,
                     latest_ts: dict, uniques: dict[str, list[str]]) -> None:
    """Overwrite the tenant's counters for the period with values computed from
    PostgreSQL, in one MULTI so readers never see a half-written hash."""
    key = counter_key(tenant_id, period_start)
    pipe = client().pipeline(transaction=True)
    pipe.delete(key)
    mapping = {code: micro for code, micro in values.items()}
    mapping.update({f"{code}@ts": ts for code, ts in latest_ts.items()})
    if mapping:
        pipe.hset(key, mapping=mapping)
        pipe.expire(key, KEY_TTL_SECONDS)
    for code, members in uniques.items():
        hll = _hll_key(tenant_id, period_start, code)
        pipe.delete(hll)
        if members:
            pipe.pfadd(hll, *members)
            pipe.expire(hll, KEY_TTL_SECONDS)
    pipe.execute()
