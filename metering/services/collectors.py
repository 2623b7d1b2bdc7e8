"""Built-in collectors (SPEC §5): API calls and bandwidth counted on the request path in a
Redis buffer (no database write there), flushed into PostgreSQL through the same
recording service as every other event; and storage measured per tenant.

A flush first renames the buffer, so requests keep counting into a fresh one; each flushed
amount becomes an event whose id names the flush, so a flush that is retried after a
crash records nothing twice. Up to one flush interval of counts is lost if Redis itself
loses its data — the price of keeping the database off the request path.
"""
import logging
import uuid
from collections import defaultdict

from django.db import connection
from django_tenants.utils import tenant_context

from aerolith import clock
from tenants.models import Tenant

from ..quantities import micro_to_decimal
from .counters import client
from .ingest import usage_ingest

logger = logging.getLogger(__name__)
BUFFER_KEY = "aerolith:usage-buffer"
FLUSHING_PREFIX = "aerolith:usage-buffer:flushing:"
API_CALLS = "api_calls"
BANDWIDTH = "bandwidth_gb"
STORAGE = "storage_gb"
BYTES_PER_MICRO_GB = 1000  # 1 GB = 10^9 bytes = 10^6 micro-GB

# Other apps' storage, added to each tenant's reading: callables tenant -> bytes, appended
# at start-up (provisioning registers its customer databases), so metering imports none.
storage_sources: list = []


def bandwidth_count(tenant_id: int, nbytes: int) -> None:
    """Called by the middleware after a metered response."""
    client().hincrby(BUFFER_KEY, f"{tenant_id}:bandwidth_bytes", nbytes)


def buffer_flush() -> int:
    """Move the buffered counts into PostgreSQL; returns how many events were recorded."""
    r = client()
    batch = f"{FLUSHING_PREFIX}{uuid.uuid4().hex}"
    try:
        r.rename(BUFFER_KEY, batch)
    except Exception as exc:  # noqa: BLE001 - "no such key" means nothing to flush
        if "no such key" not in str(exc).lower():
            raise
    recorded = 0
    for key in r.scan_iter(f"{FLUSHING_PREFIX}*"):
        recorded += _flush_one(r, key.decode())
    return recorded


def _flush_one(r, key: str) -> int:
    per_tenant: dict[int, dict[str, int]] = defaultdict(dict)
    for field, value in r.hgetall(key).items():
        tenant_id, name = field.decode().split(":", 1)
        per_tenant[int(tenant_id)][name] = int(value)
    recorded = 0
    flush_id = key.rsplit(":", 1)[1]
    leftover_bytes: dict[int, int] = {}
    for tenant in Tenant.objects.filter(pk__in=per_tenant):
        counts = per_tenant[tenant.pk]
        calls = counts.get(API_CALLS, 0)
        nbytes = counts.get("bandwidth_bytes", 0)
        micro_gb, leftover_bytes[tenant.pk] = divmod(nbytes, BYTES_PER_MICRO_GB)
        with tenant_context(tenant):
            if calls:
                # Already counted in real time by the API throttle (metering.throttles).
                recorded += usage_ingest(tenant=tenant, counters_done=True, enforce_limits=False, events=[
                    {"id": f"collector:{flush_id}:{API_CALLS}", "meter": API_CALLS,
                     "quantity": calls}]).accepted
            if micro_gb:
                recorded += usage_ingest(tenant=tenant, enforce_limits=False, events=[
                    {"id": f"collector:{flush_id}:{BANDWIDTH}", "meter": BANDWIDTH,
                     "quantity": micro_to_decimal(micro_gb)}]).accepted
        connection.set_schema_to_public()
    pipe = r.pipeline(transaction=True)
    pipe.delete(key)
    for tenant_id, rest in leftover_bytes.items():
        if rest:  # less than a micro-GB waits for the next flush
            pipe.hincrby(BUFFER_KEY, f"{tenant_id}:bandwidth_bytes", rest)
    pipe.execute()
    return recorded


def storage_record(tenant: Tenant, size_bytes: int, at=None) -> None:
    """Record a storage reading (a gauge) of `size_bytes` for the tenant."""
    micro_gb = size_bytes // BYTES_PER_MICRO_GB
    at = at or clock.now(tenant)
    usage_ingest(tenant=tenant, enforce_limits=False, events=[{
        "id": f"collector:storage:{at.isoformat()}", "meter": STORAGE,
        "quantity": micro_to_decimal(micro_gb), "timestamp": at.isoformat()}])


def tenant_data_size(tenant: Tenant) -> int:
    """Bytes used by the tenant's schema plus every registered storage source (its
    customer databases). A source that fails raises: better no reading than a low one."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = %s AND c.relkind = 'r'",
            [tenant.schema_name])
        size = int(cursor.fetchone()[0])
    return size + sum(int(source(tenant)) for source in storage_sources)
