"""Asynchronous, idempotent, resumable changes to clusters (SPEC §7).

An operation is a wish ("3 nodes", "gone"); running it is a loop of
`poll → plan → apply one step` against the provider until the plan is empty. Nothing about
progress is trusted from our own rows: each turn re-reads what the provider runs, so a
worker that died half-way is simply run again (beat's `operations_resume` finds it by its
stale heartbeat) and a step that already happened is planned away.

Only one worker runs a cluster's operation at a time: it holds a PostgreSQL advisory lock
on the cluster for the whole run, which the server releases by itself if the worker dies.
"""
import logging
import uuid
from datetime import timedelta

from django.conf import settings
from django.db import IntegrityError, connection, transaction

from aerolith import clock
from tenants.services.audit import audit_record

from ..drivers import driver_for
from ..drivers.base import ClusterSpec, ClusterState, DriverError, Step
from ..errors import OperationInFlight
from ..models import Cluster, Health, Node, NodeRole, Operation, OperationKind, OperationState
from ..selectors import IN_FLIGHT, admin_password

logger = logging.getLogger(__name__)
LOCK_NAMESPACE = 7_000_001  # pg_advisory_lock(namespace, cluster id)
MAX_STEPS_PER_RUN = 200


def operation_start(*, cluster: Cluster, kind: str, target_nodes: int | None = None,
                    node_name: str = "", idempotency_key: str | None = None,
                    requested_by: str = "") -> Operation:
    """Record an operation and have a worker run it after commit.

    The same idempotency key returns the operation it first made (a retried request starts
    nothing new). Raises OperationInFlight when another operation of the cluster is still
    pending or running.
    """
    key = idempotency_key or f"op:{uuid.uuid4()}"
    existing = Operation.objects.filter(idempotency_key=key).first()
    if existing is not None:
        return existing
    try:
        with transaction.atomic():
            operation = Operation.objects.create(
                cluster=cluster, kind=kind, target_nodes=target_nodes, node_name=node_name,
                idempotency_key=key, requested_by=requested_by[:200])
    except IntegrityError:
        existing = Operation.objects.filter(idempotency_key=key).first()
        if existing is not None:
            return existing
        busy = Operation.objects.filter(cluster=cluster, state__in=IN_FLIGHT).first()
        raise OperationInFlight(
            f"Cluster {cluster.name} is busy with a {busy.kind if busy else 'previous'} operation; "
            "wait until it finishes and try again.") from None
    transaction.on_commit(lambda: _enqueue(operation.pk))
    return operation


def _enqueue(operation_id: int) -> None:
    from ..tasks import operation_run as task

    task.delay(operation_id)


def spec_for(cluster: Cluster, operation: Operation | None = None) -> ClusterSpec | None:
    """What the provider should run for `cluster` (None: nothing, it is being deleted)."""
    if operation is not None and operation.kind == OperationKind.DELETE:
        return None
    nodes = cluster.node_count
    if operation is not None and operation.target_nodes:
        nodes = operation.target_nodes
    return ClusterSpec(handle=cluster.handle, size=cluster.size, nodes=nodes, region=cluster.region,
                       admin_user=cluster.admin_user, admin_password=admin_password(cluster))


def _try_lock(cluster_id: int) -> bool:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(%s, %s)", [LOCK_NAMESPACE, cluster_id])
        return cursor.fetchone()[0]


def _unlock(cluster_id: int) -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_unlock(%s, %s)", [LOCK_NAMESPACE, cluster_id])


def operation_run(operation_id: int) -> Operation | None:
    """Run the operation until the provider matches it, or until a step fails.

    Safe to call twice or concurrently: a second caller finds the cluster locked and
    returns. A failed step is retried by the next run (up to AEROLITH_OPERATION_ATTEMPTS);
    after that the operation is failed and staff are alerted.
    """
    operation = Operation.objects.select_related("cluster").filter(pk=operation_id).first()
    if operation is None or not operation.in_flight:
        return operation
    cluster = operation.cluster
    if not _try_lock(cluster.pk):
        return operation
    try:
        operation.refresh_from_db()
        if not operation.in_flight:
            return operation
        return _run_locked(operation, cluster)
    finally:
        _unlock(cluster.pk)


def _run_locked(operation: Operation, cluster: Cluster) -> Operation:
    operation.state = OperationState.RUNNING
    operation.attempts += 1
    operation.heartbeat_at = clock.wall_now()
    operation.save(update_fields=["state", "attempts", "heartbeat_at"])
    driver = driver_for(cluster.provider)
    spec = spec_for(cluster, operation)
    try:
        if operation.kind == OperationKind.REPLACE_NODE and not _logged(operation, "replace_node"):
            _apply(driver, cluster, operation, Step("replace_node", operation.node_name), spec)
        for _ in range(MAX_STEPS_PER_RUN):
            state = driver.poll(cluster.handle)
            nodes_sync(cluster, state, busy=True)
            steps = driver.plan(state, spec)
            if not steps:
                break
            _apply(driver, cluster, operation, steps[0], spec)
        else:
            raise DriverError(f"The cluster did not converge within {MAX_STEPS_PER_RUN} steps.")
    except DriverError as exc:
        return _failed_attempt(operation, cluster, str(exc))
    if state is not None and state.health in (Health.PROVISIONING, Health.SCALING):
        # A cloud provider accepted the steps and is still working: look again later.
        _heartbeat(operation)
        _enqueue_later(operation.pk)
        return operation
    return _succeeded(operation, cluster, state)


def _apply(driver, cluster, operation, step: Step, spec) -> None:
    try:
        driver.apply(cluster.handle, step, spec)
    except DriverError:
        if step.action != "restart_node":
            raise
        # A node that will not start again is replaced (SPEC §7 health).
        logger.warning("restart of %s failed; replacing it", step.node)
        step = Step("replace_node", step.node)
        driver.apply(cluster.handle, step, spec)
    operation.log = [*operation.log, {"at": clock.wall_now().isoformat(), "action": step.action,
                                      "node": step.node}]
    _heartbeat(operation, fields=["log"])


def _logged(operation: Operation, action: str) -> bool:
    return any(entry.get("action") == action for entry in operation.log)


def _heartbeat(operation: Operation, fields=()) -> None:
    operation.heartbeat_at = clock.wall_now()
    operation.save(update_fields=["heartbeat_at", *fields])


def _enqueue_later(operation_id: int) -> None:
    from ..tasks import operation_run as task

    # Eager Celery (tests) would poll again at once, forever; tests call operation_run.
    if not getattr(settings, "CELERY_TASK_ALWAYS_EAGER", False):
        task.apply_async((operation_id,), countdown=settings.AEROLITH_OPERATION_POLL_SECONDS)


def _failed_attempt(operation: Operation, cluster: Cluster, error: str) -> Operation:
    operation.error = error[-4000:]
    if operation.attempts < settings.AEROLITH_OPERATION_ATTEMPTS:
        operation.save(update_fields=["error"])
        _enqueue_later(operation.pk)
        return operation
    with transaction.atomic():
        operation.state = OperationState.FAILED
        operation.finished_at = clock.wall_now()
        operation.save(update_fields=["state", "error", "finished_at"])
        Cluster.objects.filter(pk=cluster.pk).update(health=Health.FAILED)
        audit_record(action="cluster.operation_failed", tenant=cluster.tenant, actor="system",
                     target=cluster, after={"operation": operation.kind, "error": error[-500:]})
    from .health import staff_alert

    staff_alert(f"Operation {operation.kind} on cluster {cluster.handle} failed",
                f"After {operation.attempts} attempts: {error[-2000:]}")
    return operation


def _succeeded(operation: Operation, cluster: Cluster, state: ClusterState | None) -> Operation:
    now = clock.wall_now()
    with transaction.atomic():
        operation.state = OperationState.SUCCEEDED
        operation.finished_at = now
        operation.error = ""
        operation.save(update_fields=["state", "finished_at", "error"])
        if operation.kind == OperationKind.DELETE:
            Cluster.objects.filter(pk=cluster.pk).update(health=Health.DELETED, deleted_at=now)
            cluster.nodes.all().delete()
        else:
            nodes_sync(cluster, state, busy=False)
        audit_record(action=f"cluster.{operation.kind}_done", tenant=cluster.tenant,
                     actor="system", target=cluster,
                     after={"nodes": len(state.nodes) if state else 0,
                            "operation": operation.idempotency_key})
    return operation


def nodes_sync(cluster: Cluster, state: ClusterState | None, *, busy: bool) -> None:
    """Make the Node rows and the cluster's health say what the provider reported."""
    if state is None:
        cluster.nodes.all().delete()
        return
    reported = {n.name: n for n in state.nodes}
    with transaction.atomic():
        cluster.nodes.exclude(name__in=reported).delete()
        existing = {n.name: n for n in cluster.nodes.select_for_update()}
        # Demote first: at most one primary may exist at any moment.
        for name, node in existing.items():
            if node.role == NodeRole.PRIMARY and reported[name].role != NodeRole.PRIMARY:
                node.role = NodeRole.REPLICA
                node.save(update_fields=["role"])
        for name, seen in sorted(reported.items(), key=lambda kv: kv[1].role != NodeRole.PRIMARY):
            node = existing.get(name) or Node(cluster=cluster, name=name)
            node.role, node.health = seen.role, seen.health
            node.host, node.port = seen.host, seen.port
            if node.health == Health.HEALTHY:
                node.failures = 0
            node.save()
        health = state.health
        if busy and health == Health.HEALTHY and len(state.nodes) != cluster.node_count:
            health = Health.SCALING
        if busy and not state.nodes:
            health = Health.PROVISIONING
        Cluster.objects.filter(pk=cluster.pk).update(health=health)
        cluster.health = health


def operations_resume(stale_after: timedelta | None = None) -> list[int]:
    """Operations whose worker stopped reporting (a restart, a lost task): run them again."""
    stale_after = stale_after or timedelta(seconds=settings.AEROLITH_OPERATION_STALE_SECONDS)
    cutoff = clock.wall_now() - stale_after
    ids = list(Operation.objects.filter(state__in=IN_FLIGHT)
               .exclude(heartbeat_at__gt=cutoff).exclude(created_at__gt=cutoff)
               .values_list("pk", flat=True))
    for pk in ids:
        _enqueue(pk)
    return ids
