"""Every minute, each cluster is looked at (SPEC §7 health): the provider reports its nodes,
each node is measured, a failed node is reported and repaired (restarted, or replaced
when it will not start), staff are alerted, and running dedicated nodes accrue compute
hours for the tenant's bill.
"""
import logging
from datetime import datetime
from decimal import Decimal

from django.core.mail import mail_admins
from django.db import transaction
from django_tenants.utils import schema_context

from aerolith import clock
from tenants.services.audit import audit_record

from ..drivers import driver_for
from ..drivers.base import ClusterState, DriverError
from ..models import Cluster, Health, Node, OperationKind
from ..selectors import operation_in_flight
from ..sizes import SIZES
from .operations import nodes_sync, operation_start

logger = logging.getLogger(__name__)
COMPUTE_METER = "compute_hours"
HOUR = Decimal(3600)


def staff_alert(subject: str, message: str) -> None:
    logger.error("%s: %s", subject, message)
    try:
        mail_admins(f"[Aerolith] {subject}", message, fail_silently=True)
    except Exception:  # noqa: BLE001 - an alert must never break the check itself
        logger.exception("could not mail the alert")


def cluster_check(cluster: Cluster) -> ClusterState | None:
    """Poll and measure one cluster; start a repair when a node failed. Returns the state."""
    if cluster.deleted_at is not None or cluster.health == Health.DELETED:
        return None
    driver = driver_for(cluster.provider)
    busy = operation_in_flight(cluster) is not None
    try:
        state = driver.poll(cluster.handle)
        metrics = {m.node: m for m in driver.observe(cluster.handle)} if state else {}
    except DriverError as exc:
        staff_alert(f"Cluster {cluster.handle} cannot be checked", str(exc))
        Cluster.objects.filter(pk=cluster.pk).update(health=Health.FAILED)
        return None
    if state is None:
        if not busy and cluster.health != Health.PROVISIONING:
            Cluster.objects.filter(pk=cluster.pk).update(health=Health.FAILED)
            staff_alert(f"Cluster {cluster.handle} has disappeared",
                        "The provider reports no such cluster; its rows are kept.")
        return None
    nodes_sync(cluster, state, busy=busy)
    _record_metrics(cluster, metrics)
    failed = [n.name for n in state.nodes if n.health == Health.FAILED]
    if failed and not busy:
        _repair(cluster, failed)
    elif not busy and len(state.nodes) < cluster.node_count:
        operation_start(cluster=cluster, kind=OperationKind.SCALE, target_nodes=cluster.node_count,
                        idempotency_key=f"reconcile:{cluster.pk}:{clock.wall_now():%Y%m%d%H%M}",
                        requested_by="health-check")
    return state


def _record_metrics(cluster: Cluster, metrics: dict) -> None:
    now = clock.wall_now()
    nodes = list(cluster.nodes.all())
    for node in nodes:
        seen = metrics.get(node.name)
        if seen is None or not seen.up:
            node.failures += 1
            continue
        node.cpu_percent, node.memory_percent = seen.cpu_percent, seen.memory_percent
        node.connections, node.replication_lag_bytes = seen.connections, seen.replication_lag_bytes
        node.observed_at = now
        node.failures = 0
    Node.objects.bulk_update(nodes, ["cpu_percent", "memory_percent", "connections",
                                     "replication_lag_bytes", "observed_at", "failures"])


def _repair(cluster: Cluster, failed: list[str]) -> None:
    """A failed node is restarted by a reconcile operation (the driver plans restart_node,
    and replaces the node when it will not start)."""
    minute = f"{clock.wall_now():%Y%m%d%H%M}"
    with transaction.atomic():
        operation_start(cluster=cluster, kind=OperationKind.SCALE, target_nodes=cluster.node_count,
                        idempotency_key=f"repair:{cluster.pk}:{minute}", requested_by="health-check")
        audit_record(action="cluster.node_failed", tenant=cluster.tenant, actor="system",
                     target=cluster, after={"nodes": failed})
    staff_alert(f"Node failure on cluster {cluster.handle}",
                f"Failed: {', '.join(failed)}. A repair operation was started.")


def compute_hours_accrue(cluster: Cluster, now: datetime | None = None) -> Decimal:
    """Record the compute hours a dedicated cluster's running nodes used since the last
    accrual, as one usage event (its id names the interval, so a retry records nothing
    twice). Returns the hours recorded."""
    if cluster.tenant_id is None or cluster.shared:
        return Decimal(0)
    tenant = cluster.tenant
    now = now or clock.now(tenant)
    since = cluster.compute_accrued_until
    Cluster.objects.filter(pk=cluster.pk).update(compute_accrued_until=now)
    cluster.compute_accrued_until = now
    if since is None or now <= since:
        return Decimal(0)
    running = cluster.nodes.exclude(health__in=[Health.FAILED, Health.DELETING]).count()
    rate = SIZES[cluster.size].compute_hours_per_hour if cluster.size in SIZES else Decimal(1)
    seconds = Decimal((now - since).total_seconds())
    hours = (rate * running * seconds / HOUR).quantize(Decimal("0.000001"))
    if hours <= 0:
        return Decimal(0)
    from metering.services.ingest import usage_ingest

    with schema_context(tenant.schema_name):
        result = usage_ingest(tenant=tenant, enforce_limits=False, events=[{
            "id": f"compute:{cluster.pk}:{since.isoformat()}", "meter": COMPUTE_METER,
            "quantity": hours, "timestamp": now.isoformat(),
            "properties": {"cluster": cluster.handle, "nodes": running, "size": cluster.size}}])
    if result.rejected:
        logger.error("compute hours of cluster %s refused: %s", cluster.handle, result.rejected)
        return Decimal(0)
    return hours


def clusters_check(cluster_ids: list[int]) -> dict:
    """The per-minute pass over a chunk of clusters."""
    checked = failed = 0
    clusters = Cluster.objects.filter(pk__in=cluster_ids, deleted_at__isnull=True).select_related("tenant")
    for cluster in clusters:
        try:
            cluster_check(cluster)
            compute_hours_accrue(cluster)
            checked += 1
        except Exception:  # noqa: BLE001 - one cluster's trouble must not stop the others
            failed += 1
            logger.exception("health check of cluster %s failed", cluster.handle)
    return {"checked": checked, "errors": failed}


def clusters_to_check() -> list[int]:
    return list(Cluster.objects.filter(deleted_at__isnull=True)
                .exclude(health=Health.DELETED).values_list("pk", flat=True))

