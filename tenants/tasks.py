"""Celery tasks of the tenants app: thin, idempotent, taking ids."""
import redis
from celery import shared_task
from django.conf import settings

from .models import Tenant
from .services.scheduling import due_work_run, tenants_with_due_work
from .services.schemas import schema_pool_refill


@shared_task
def dispatch_due_work() -> int:
    """Beat, every minute: one task per tenant that has work due by its own clock."""
    tenant_ids = tenants_with_due_work()
    for tenant_id in tenant_ids:
        run_tenant_due_work.delay(tenant_id)
    return len(tenant_ids)


@shared_task(ignore_result=True)  # fanned out by the thousand; nobody reads results
def run_tenant_due_work(tenant_id: int) -> int:
    tenant = Tenant.objects.filter(pk=tenant_id).first()
    if tenant is None:
        return 0
    return len(due_work_run(tenant=tenant))


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
