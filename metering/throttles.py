"""Counts every authenticated API request as one `api_calls` and enforces the hard limit
of plans without overage, with one Redis round trip and no database write. The count also
goes into a buffer that metering.services.collectors flushes into PostgreSQL."""
import logging

from rest_framework.throttling import BaseThrottle

from billing.selectors import subscription_of
from tenants.permissions import Principal

from .quantities import MICRO
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

# KEYS: counter hash, buffer hash. ARGV: field, micro, limit (-1: none), ttl, buffer field.
_COUNT_CALL = """
local cur = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0')
local limit = tonumber(ARGV[3])
if limit >= 0 and cur + tonumber(ARGV[2]) > limit then return {0, cur} end
local new = redis.call('HINCRBY', KEYS[1], ARGV[1], ARGV[2])
redis.call('EXPIRE', KEYS[1], ARGV[4])
redis.call('HINCRBY', KEYS[2], ARGV[5], 1)
return {1, new}
"""


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
        meter = meters_by_code().get(API_CALLS)
        included = allowances_micro(subscription.plan).get(meter.pk) if meter else None
        hard = included is not None and not subscription.plan.overage_allowed
        request._request.aerolith_metered_tenant = tenant.pk
        try:
            allowed, used = client().eval(
                _COUNT_CALL, 2, counter_key(tenant.pk, subscription.current_period_start),
                BUFFER_KEY, API_CALLS, MICRO, included if hard else -1, KEY_TTL_SECONDS,
                f"{tenant.pk}:{API_CALLS}")
        except Exception:  # noqa: BLE001 - fail open: an outage of Redis must not stop the API
            logger.warning("API call not metered for tenant %s", tenant.pk, exc_info=True)
            return True
        if not allowed:
            raise quota_error(meter, included, int(used), subscription.current_period_end)
        if included and crossed_thresholds(int(used) - MICRO, int(used), included):
            # The buffer flush records these calls with counters_done (no threshold
            # check), so the 80% and 100% notices are queued here, where the count moves.
            try:
                after_ingest(tenant, subscription, {API_CALLS: int(used)}, {API_CALLS: MICRO})
            except Exception:  # noqa: BLE001 - a notice must never fail the request
                logger.warning("Threshold notice not queued for tenant %s", tenant.pk,
                               exc_info=True)
        return True
