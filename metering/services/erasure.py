"""What metering forgets when a tenant's data is erased (tenants.services.erasure).

Raw events carry whatever properties the customer sent (user ids, e-mail addresses,
request paths), and distinct-count meters keep the distinct values themselves: both go.
Hourly and daily aggregates are plain numbers per meter and bucket; they stay, as the
evidence behind the overage lines of the invoices that are kept.
"""
from ..models import GaugeReading, UniqueValue, UsageEvent


def usage_personal_data_erase(*, tenant) -> dict:
    """Delete the tenant's raw events, gauge readings and distinct values. Runs inside
    the caller's transaction."""
    return {
        "usage_events": UsageEvent.objects.filter(tenant_id=tenant.pk).delete()[0],
        "gauge_readings": GaugeReading.objects.filter(tenant_id=tenant.pk).delete()[0],
        "unique_values": UniqueValue.objects.filter(tenant_id=tenant.pk).delete()[0],
    }
