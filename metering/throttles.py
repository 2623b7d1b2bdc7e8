"""Enforces the plan's API rate limit and counts every authenticated API request as one
`api_calls` (enforcing the hard limit of plans without overage), in one Redis round trip
and no database write. The count also goes into a buffer that
metering.services.collectors flushes into PostgreSQL.

Order: the rate limit first. A request it refuses is not counted, so it is never billed
(the caller is told to retry; billing the refusal would charge for our own 429). A request
refused by the monthly quota has passed the rate limit and used its slot."""
import logging
from functools import lru_cache

from django.conf import settings
from rest_framework.throttling import BaseThrottle

from billing.selectors import subscription_of
from tenants.permissions import Principal

from .quantities import MICRO
from .ratelimits import GCRA_LUA, RateLimited, gcra_args, now_arg, rate_key
from .services.collectors import API_CALLS, BUFFER_KEY
from .services.counters import KEY_TTL_SECONDS, client, counter_key
from .services.quotas import (
    after_ingest,
    allowances_micro,
    crossed_thresholds,
    meters_by_code,
    quota_error,
)

logger = logging.getLogger(__name__)

RATE_REFUSED, QUOTA_REFUSED, COUNTED = 2, 0, 1
# KEYS: counter hash, buffer hash, rate key. ARGV: field, micro, limit (-1: none), ttl,
# buffer field, then the GCRA arguments (metering.ratelimits). Returns {status, value}:
# {2, µs to wait}, {0, used} or {1, new total}.
_ADMIT = GCRA_LUA + """
local cur = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0')
local limit = tonumber(ARGV[3])
if limit >= 0 and cur + tonumber(ARGV[2]) > limit then return {0, cur} end
local new = redis.call('HINCRBY', KEYS[1], ARGV[1], ARGV[2])
redis.call('EXPIRE', KEYS[1], ARGV[4])
redis.call('HINCRBY', KEYS[2], ARGV[5], 1)
return {1, new}
"""


@lru_cache(maxsize=4)
def _script(redis_client):
    # EVALSHA with a transparent reload: the script body is not sent on every request.
    return redis_client.register_script(_ADMIT)


def api_call_admit(tenant, subscription) -> None:
    """Let one API request of `tenant` through, or raise RateLimited (not counted) or
    QuotaExceeded (the plan's hard limit). Redis being unreachable lets it through."""
    plan = subscription.plan
    meter = meters_by_code().get(API_CALLS)
    included = allowances_micro(plan).get(meter.pk) if meter else None
    hard = included is not None and not plan.overage_allowed
    rate = plan.api_rate_per_second if settings.AEROLITH_RATE_LIMITS else None
    interval, tolerance = gcra_args(rate)
    try:
        redis_client = client()
        status, value = _script(redis_client)(
            keys=[counter_key(tenant.pk, subscription.current_period_start), BUFFER_KEY,
                  rate_key(tenant.pk, rate or 0)],
            args=[API_CALLS, MICRO, included if hard else -1, KEY_TTL_SECONDS,
                  f"{tenant.pk}:{API_CALLS}", interval, tolerance, now_arg()],
            client=redis_client)
    except Exception:  # noqa: BLE001 - fail open: an outage of Redis must not stop the API
        logger.warning("API call not metered for tenant %s", tenant.pk, exc_info=True)
        return
    if status == RATE_REFUSED:
        raise RateLimited(wait_us=int(value), per_second=rate,
                          plan_name=plan.name)
    used = int(value)
    if status == QUOTA_REFUSED:
        raise quota_error(meter, included, used, subscription.current_period_end)
    if included and crossed_thresholds(used - MICRO, used, included):
        # The buffer flush records these calls with counters_done (no threshold
        # check), so the 80% and 100% notices are queued here, where the count moves.
        try:
            after_ingest(tenant, subscription, {API_CALLS: used}, {API_CALLS: MICRO})
        except Exception:  # noqa: BLE001 - a notice must never fail the request
            logger.warning("Threshold notice not queued for tenant %s", tenant.pk,
                           exc_info=True)


class ApiCallMeter(BaseThrottle):
    def allow_request(self, request, view):
        principal = request.auth
        if not isinstance(principal, Principal):
            return True
        tenant = principal.tenant
        subscription = subscription_of(tenant)
        request._request.aerolith_subscription = subscription  # the view may reuse it
        if subscription is None:
            return True
        metered = True
        try:
            api_call_admit(tenant, subscription)
        except RateLimited:
            metered = False  # refused before metering: neither the call nor its bytes billed
            raise
        finally:
            if metered:  # bandwidth (metering.middleware), also of a quota refusal
                request._request.aerolith_metered_tenant = tenant.pk
        return True
