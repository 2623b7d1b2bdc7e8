"""Celery tasks of metering: thin, idempotent, taking ids."""
import logging
from datetime import datetime, timedelta

from celery import shared_task
from django.conf import settings
from django.db import connection
from django_tenants.utils import tenant_context

from aerolith import clock
from tenants.models import Tenant

from .models import EventKey, Meter, UsageAggregate
from .services import collectors, partitions
from .services.notices import threshold_notice, thresholds_sweep
from .services.rebuild import counters_drift, counters_rebuild, tenants_with_recent_usage

logger = logging.getLogger(__name__)


@shared_task
def usage_threshold_notify(tenant_id, meter_id, period_start, percent, used, included):
    tenant = Tenant.objects.filter(pk=tenant_id).first()
    meter = Meter.objects.filter(pk=meter_id).first()
    if tenant is None or meter is None:
        return False
    notice = threshold_notice(tenant=tenant, meter=meter,
                              period_start=datetime.fromisoformat(period_start),
                              percent=percent, used_micro=used, included_micro=included)
    return notice is not None


@shared_task
def usage_buffer_flush() -> int:
    return collectors.buffer_flush()


@shared_task
def usage_storage_collect() -> int:
    """Measure each tenant's data and record it as a storage_gb reading."""
    count = 0
    tenants = Tenant.objects.exclude(schema_name="public").filter(subscription__isnull=False,
                                                                  erased_at__isnull=True)
    for tenant in tenants:
        try:
            size = collectors.tenant_data_size(tenant)
        except Exception:  # noqa: BLE001 - one unreachable cluster must not stop the others
            logger.exception("Storage of tenant %s not measured this hour", tenant.pk)
            continue
        collectors.storage_record(tenant, size)
        count += 1
    return count


@shared_task
def usage_counters_check() -> dict:
    """Rebuild the counters of recently active tenants whose Redis copy drifted, then send
    any allowance notice that was missed."""
    since = clock.wall_now() - timedelta(hours=2)
    repaired = {}
    for tenant in Tenant.objects.filter(pk__in=tenants_with_recent_usage(since)):
        with tenant_context(tenant):
            drift = counters_drift(tenant)
            if drift:
                counters_rebuild(tenant)
                repaired[tenant.slug] = sorted(drift)
            thresholds_sweep(tenant)
        connection.set_schema_to_public()
    return repaired


@shared_task
def usage_retention() -> dict:
    """Make partitions ahead; drop raw events, idempotency keys and hourly aggregates
    past their retention (daily aggregates are kept)."""
    today = clock.wall_now().date()
    made = partitions.partitions_ensure(today, back=2, ahead=7)
    dropped = partitions.partitions_drop_before(
        today - timedelta(days=settings.AEROLITH_USAGE_RAW_RETENTION_DAYS))
    keys, _ = EventKey.objects.filter(received_at__lt=clock.wall_now() - timedelta(
        days=settings.AEROLITH_USAGE_IDEMPOTENCY_DAYS)).delete()
    hours, _ = UsageAggregate.objects.filter(
        granularity="hour",
        bucket__lt=clock.wall_now() - timedelta(days=settings.AEROLITH_USAGE_HOURLY_RETENTION_DAYS),
    ).delete()
    return {"partitions_made": made, "partitions_dropped": dropped, "keys_deleted": keys,
            "hourly_deleted": hours}
