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
