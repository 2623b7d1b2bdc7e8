"""The one source of "now" for business code (SPEC §9).

Outside production a tenant may have a test clock; then every piece of business logic that
asks for the time on behalf of that tenant gets the clock's frozen time, so periodic work
(trial ends, renewals, dunning) can be driven through months in seconds.
"""
from datetime import UTC, datetime

from django.conf import settings
from django.db import connection
from django.utils import timezone


def wall_now() -> datetime:
    """Real time, for what must never follow a test clock (request logs, token expiry)."""
    return timezone.now()


def now(tenant=None) -> datetime:
    """The current time for `tenant` (default: the tenant of the current connection)."""
    if not settings.AEROLITH_TEST_MODE:
        return wall_now()
    tenant_id = _tenant_id(tenant)
    if tenant_id is None:
        return wall_now()
    from tenants.models import TestClock

    frozen = (
        TestClock.objects.filter(tenant_id=tenant_id)
        .values_list("frozen_time", flat=True)
        .first()
    )
    return frozen or wall_now()


def now_many(tenant_ids) -> dict[int, datetime]:
    """`now(tenant)` for many tenants in one query (batch jobs over thousands of tenants)."""
    wall = wall_now()
    ids = {pk for pk in tenant_ids if pk is not None}
    times = dict.fromkeys(ids, wall)
    if settings.AEROLITH_TEST_MODE and ids:
        from tenants.models import TestClock

        times.update(TestClock.objects.filter(tenant_id__in=ids)
                     .values_list("tenant_id", "frozen_time"))
    return times


def _tenant_id(tenant) -> int | None:
    if tenant is None:
        tenant = getattr(connection, "tenant", None)
    if tenant is None or getattr(tenant, "pk", None) is None:
        return None
    if tenant.schema_name == "public":
        return None
    return tenant.pk


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
