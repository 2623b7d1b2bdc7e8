"""Making the Redis counters exact again from PostgreSQL (after a Redis restart, or when
the periodic check finds them adrift)."""
from datetime import timedelta

from django.db import connection

from aerolith import clock
from billing.selectors import subscription_of

from ..models import Meter, UsageAggregate
from ..quantities import MICRO, decimal_to_micro
from ..selectors import additive_summary, gauge_integral
from .collectors import API_CALLS, BUFFER_KEY, FLUSHING_PREFIX
from .counters import client, counters_read, counters_replace

_EPOCH_US = timedelta(microseconds=1)


def _buffered_api_calls(tenant_id: int) -> int:
    """Micro-units of API calls counted in real time but not yet flushed into PostgreSQL
    (in the collector buffer or a batch being flushed): part of the truth, or every
    rebuild would forget them for good (the flush records them with counters_done)."""
    r = client()
    keys = [BUFFER_KEY, *r.scan_iter(f"{FLUSHING_PREFIX}*")]
    pipe = r.pipeline(transaction=False)
    for key in keys:
        pipe.hget(key, f"{tenant_id}:{API_CALLS}")
    return sum(int(value or 0) for value in pipe.execute()) * MICRO


def _truth(tenant, subscription) -> tuple[dict, dict, dict]:
    start, end = subscription.current_period_start, subscription.current_period_end
    # Up to the period's end, as ingestion counts: events may be stamped a little ahead.
    until = end
    values, latest_ts, uniques = {}, {}, {}
    for meter in Meter.objects.filter(is_active=True):
        if meter.aggregation == "unique_count":
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT DISTINCT properties ->> %s FROM metering_usageevent WHERE tenant_id = %s "
                    "AND meter_id = %s AND \"timestamp\" >= %s AND \"timestamp\" < %s",
                    [meter.unique_property, tenant.pk, meter.pk, start, until])
                uniques[meter.code] = [row[0] for row in cursor.fetchall()]
            continue
        if meter.aggregation == "weighted_sum":
            _integral, level = gauge_integral(tenant.pk, meter, start, until)
            found = additive_summary(tenant.pk, meter, start, until)
            if found["latest_at"] is not None:
                values[meter.code] = decimal_to_micro(level)
                latest_ts[meter.code] = (found["latest_at"] - clock.EPOCH) // _EPOCH_US
            continue
        found = additive_summary(tenant.pk, meter, start, until)
        if found["count"] == 0:
            continue
        if meter.aggregation in ("count", "sum"):
            values[meter.code] = decimal_to_micro(found["total"])
        elif meter.aggregation == "max":
            values[meter.code] = decimal_to_micro(found["maximum"])
        else:
            values[meter.code] = decimal_to_micro(found["latest"])
            latest_ts[meter.code] = (found["latest_at"] - clock.EPOCH) // _EPOCH_US
    pending = _buffered_api_calls(tenant.pk)
    if pending:
        values[API_CALLS] = values.get(API_CALLS, 0) + pending
    return values, latest_ts, uniques


def counters_rebuild(tenant) -> dict[str, int]:
    """Overwrite the tenant's current-period counters with the truth from PostgreSQL;
    returns the values written. Counts that arrive while it runs may be overwritten;
    the next periodic check repairs that."""
    subscription = subscription_of(tenant)
    if subscription is None:
        return {}
    values, latest_ts, uniques = _truth(tenant, subscription)
    counters_replace(tenant.pk, subscription.current_period_start, values, latest_ts, uniques)
    return values


def counters_drift(tenant) -> dict[str, tuple[int, int]]:
    """meter code -> (in Redis, in PostgreSQL) where they differ (unique meters aside)."""
    subscription = subscription_of(tenant)
    if subscription is None:
        return {}
    values, _latest, uniques = _truth(tenant, subscription)
    live = counters_read(tenant.pk, subscription.current_period_start)
    codes = (set(values) | set(live)) - set(uniques)
    return {code: (live.get(code, 0), values.get(code, 0)) for code in codes
            if live.get(code, 0) != values.get(code, 0)}


def tenants_with_recent_usage(since) -> list[int]:
    return list(UsageAggregate.objects.filter(granularity="hour", bucket__gte=since)
                .values_list("tenant_id", flat=True).distinct().order_by("tenant_id"))
