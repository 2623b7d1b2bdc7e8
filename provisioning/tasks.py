"""Celery tasks of provisioning: thin, idempotent, taking ids."""
from celery import shared_task
from django.conf import settings

from .services import health, operations


@shared_task
def operation_run(operation_id: int) -> str | None:
    operation = operations.operation_run(operation_id)
    return operation.state if operation else None


@shared_task
def operations_resume() -> list[int]:
    return operations.operations_resume()


@shared_task
def clusters_health_dispatch() -> int:
    """Beat, every minute: the clusters in chunks, each chunk checked by one task."""
    ids = health.clusters_to_check()
    size = settings.AEROLITH_HEALTH_CHUNK
    for start in range(0, len(ids), size):
        clusters_health_chunk.delay(ids[start:start + size])
    return len(ids)


@shared_task
def clusters_health_chunk(cluster_ids: list[int]) -> dict:
    return health.clusters_check(cluster_ids)


@shared_task
def autoscale_dispatch() -> int:
    """Beat, every minute: the clusters under autoscaling, sent out in chunks of
    AEROLITH_AUTOSCALE_CHUNK ids per task (see bench/autoscale.py)."""
    from .services.autoscaling import clusters_to_autoscale

    ids = clusters_to_autoscale()
    size = max(1, settings.AEROLITH_AUTOSCALE_CHUNK)
    for start in range(0, len(ids), size):
        autoscale_chunk.delay(ids[start:start + size])
    return len(ids)


@shared_task(ignore_result=True)  # fanned out every minute; nobody reads results
def autoscale_chunk(cluster_ids: list[int]) -> dict:
    from .services.autoscaling import autoscale_evaluate

    return autoscale_evaluate(cluster_ids)


@shared_task(bind=True, max_retries=8)
def databases_enforce(self, tenant_id: int) -> list[str]:
    """Apply a tenant's saved database restrictions (read-only, refused connections) on
    its servers again; retried with backoff while a server cannot be reached."""
    from .enforcement import databases_reconcile

    failed = databases_reconcile(tenant_id)
    if failed and not self.request.is_eager:
        raise self.retry(countdown=min(3600, 60 * 2 ** self.request.retries))
    return failed


@shared_task(ignore_result=True)
def operations_enqueue(operation_ids: list[int]) -> int:
    """Fan-out of operations started together (the autoscaler's round): one run each."""
    for operation_id in operation_ids:
        operation_run.delay(operation_id)
    return len(operation_ids)
