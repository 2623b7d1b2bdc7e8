"""API rate limits per plan (SPEC §8): requests per second for a whole organisation,
whichever key or user sends them, shared by every process through Redis.

The algorithm is GCRA (the generic cell rate algorithm, as in redis-cell): one number per
tenant, the theoretical arrival time (TAT) of the next request. A plan of `r` requests per
second lets a request through every 1/r s and tolerates a burst of one second's worth
(`r` requests at once from idle). Refused requests change nothing. The check runs inside
metering.throttles' Lua script, in the same Redis round trip as the API-call meter, so
that a refused request is never counted as a billable call.

Time is Redis's own clock (TIME inside the script): one clock for every worker on every
host, whatever their drift. Tests freeze it with `frozen_clock`, which passes the instant
to the script instead.
"""
import math
from contextlib import contextmanager

from rest_framework import exceptions

MICROS = 1_000_000
BURST_SECONDS = 1

# Set only by tests (frozen_clock): the instant, in microseconds since the epoch, that the
# limiter uses instead of Redis TIME.
_frozen_us: list[int] = []

# The GCRA step, spliced at the start of metering.throttles' script. KEYS[3] the tenant's
# TAT; ARGV[6] emission interval in µs (0: unlimited), ARGV[7] tolerance in µs, ARGV[8] now
# in µs or "" for Redis TIME. Refused: returns {2, µs to wait}. Numbers stay below 2^53.
GCRA_LUA = """
local interval = tonumber(ARGV[6])
if interval > 0 then
  local now = tonumber(ARGV[8])
  if not now then
    local t = redis.call('TIME')
    now = tonumber(t[1]) * 1000000 + tonumber(t[2])
  end
  local tat = tonumber(redis.call('GET', KEYS[3]) or '0')
  if tat < now then tat = now end
  local new_tat = tat + interval
  local wait = new_tat - tonumber(ARGV[7]) - now
  if wait > 0 then return {2, wait} end
  redis.call('SET', KEYS[3], string.format('%.0f', new_tat),
             'PX', math.ceil((new_tat - now) / 1000) + 1000)
end
"""


def rate_key(tenant_id: int, per_second: int) -> str:
    """The rate is part of the key: a plan change starts a fresh window at the new rate at
    once (the old key expires within a second or two)."""
    return f"aerolith:rate:{tenant_id}:{per_second}"


def gcra_args(per_second: int | None) -> tuple[int, int]:
    """(emission interval µs, burst tolerance µs) for a plan's rate; (0, 0) when
    unlimited."""
    if not per_second:
        return 0, 0
    interval = math.ceil(MICROS / per_second)
    return interval, interval * per_second * BURST_SECONDS


def now_arg() -> str:
    return str(_frozen_us[-1]) if _frozen_us else ""


@contextmanager
def frozen_clock(at_us: int):
    """For tests: the limiter's clock stands at `at_us` (µs) until `advance` moves it."""
    _frozen_us.append(at_us)
    try:
        yield
    finally:
        _frozen_us.pop()


def advance(seconds: float) -> None:
    _frozen_us[-1] += round(seconds * MICROS)


class RateLimited(exceptions.Throttled):
    """429 problem+json with `code: rate_limited` and Retry-After in whole seconds."""

    default_code = "rate_limited"

    def __init__(self, *, wait_us: int, per_second: int, plan_name: str):
        seconds = max(1, math.ceil(wait_us / MICROS))
        detail = (f"Too many requests: the {plan_name} plan allows {per_second} API requests "
                  f"per second for your organisation (all keys and users together). Retry "
                  f"after {seconds} second{'s' if seconds != 1 else ''}, spread requests out "
                  f"or send usage events in batches, or upgrade for a higher limit.")
        exceptions.APIException.__init__(self, detail, self.default_code)
        self.wait = seconds
        self.problem_extra = {"limit_per_second": per_second, "plan": plan_name}
