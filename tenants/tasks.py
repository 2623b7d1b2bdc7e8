"""Celery tasks of the tenants app: thin, idempotent, taking ids."""
import redis
from celery import shared_task
from django.conf import settings

from .models import Tenant
from .services.scheduling import due_work_run_many, tenants_with_due_work
from .services.schemas import schema_pool_refill


@shared_task
def dispatch_due_work() -> int:
    """Beat, every minute: the tenants that have work due by their own clock, sent out in
    chunks of AEROLITH_DUE_WORK_CHUNK tenants per task (a task per tenant spent more on
    Celery than on a renewal at month end; see bench/renewal.py)."""
    tenant_ids = tenants_with_due_work()
    chunk = max(1, settings.AEROLITH_DUE_WORK_CHUNK)
    for start in range(0, len(tenant_ids), chunk):
        run_due_work.delay(tenant_ids[start:start + chunk])
    return len(tenant_ids)


@shared_task(ignore_result=True)  # fanned out by the thousand; nobody reads results
def run_due_work(tenant_ids: list[int]) -> int:
    """Each tenant's due work, renewals of the chunk batched together; a tenant whose job
    fails does not stop the others (the failure is recorded on the job, retried later)."""
    return due_work_run_many(list(Tenant.objects.filter(pk__in=tenant_ids).order_by("pk")))


@shared_task(ignore_result=True)
def run_tenant_due_work(tenant_id: int) -> int:
    """One tenant's due work (kept for tasks queued before chunking)."""
    return run_due_work(tenant_ids=[tenant_id])


@shared_task
def refill_schema_pool() -> int:
    """Keep AEROLITH_SCHEMA_POOL_SIZE ready schemas; one refill at a time."""
    client = redis.Redis.from_url(settings.REDIS_URL)
    lock = client.lock("aerolith:schema-pool-refill", timeout=900, blocking=False)
    if not lock.acquire():
        return 0
    try:
        return schema_pool_refill()
    finally:
        lock.release()


@shared_task
def data_export_build(export_id: int) -> str | None:
    """Build one requested data export (tenants.services.exports)."""
    from .services.exports import export_build

    export = export_build(export_id)
    return export.status if export else None


@shared_task
def data_exports_expire() -> int:
    """Beat, hourly: delete the archives of exports past their expiry."""
    from .services.exports import exports_expire

    return exports_expire()


@shared_task(bind=True, max_retries=48)
def tenant_erase_run(self, tenant_id: int) -> dict | None:
    """Erase a cancelled tenant whose erasure was requested. A database server that
    cannot be reached or a cluster busy with another operation is retried every ten
    minutes (for eight hours); every step is safe to repeat."""
    from provisioning.errors import ClusterUnavailable, OperationInFlight

    from .services.erasure import tenant_erase

    try:
        result = tenant_erase(tenant_id=tenant_id)
    except (ClusterUnavailable, OperationInFlight) as exc:
        raise self.retry(exc=exc, countdown=600) from exc
    return None if result is None else {"databases_dropped": result.databases_dropped,
                                        "clusters_deleting": result.clusters_deleting,
                                        "users_anonymised": result.users_anonymised}
