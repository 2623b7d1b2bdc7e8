"""The whole path on real servers: a dedicated cluster made through the services and the
local driver, measured by the health check, a killed node detected and brought back,
scaled through the API's service, and deleted with its files gone."""
import psutil
import pytest

from billing.models import Plan, Subscription
from provisioning.drivers.local import clusters_root
from provisioning.drivers.local_pg import postmaster
from provisioning.models import Cluster, Health, Node, Operation, OperationState
from provisioning.services import health
from provisioning.services.clusters import cluster_create, cluster_delete, cluster_scale
from provisioning.services.operations import operation_run


def _run_pending(cluster: Cluster) -> Operation:
    operation = Operation.objects.filter(cluster=cluster).order_by("-pk").first()
    operation_run(operation.pk)
    operation.refresh_from_db()
    assert operation.state == OperationState.SUCCEEDED, operation.error
    return operation


@pytest.mark.django_db
def test_a_real_cluster_is_supervised_scaled_and_deleted(alice, clusters_dir):
    Subscription.objects.filter(tenant=alice).update(plan=Plan.objects.get(code="enterprise"))
    cluster, _ = cluster_create(tenant=alice, actor="test", name="real", node_count=2)
    _run_pending(cluster)  # on_commit never fires inside the test's transaction
    cluster.refresh_from_db()
    assert cluster.health == Health.HEALTHY
    assert sorted(cluster.nodes.values_list("role", flat=True)) == ["primary", "replica"]

    # The health check measures the real processes.
    health.cluster_check(cluster)
    for node in cluster.nodes.all():
        assert node.observed_at is not None
        assert 0 <= node.cpu_percent <= 100 and 0 < node.memory_percent <= 100
        assert node.connections is not None
    replica = cluster.nodes.get(role="replica")
    assert replica.replication_lag_bytes is not None and replica.replication_lag_bytes >= 0

    # A replica's server is killed: detected, a repair starts, and it runs again.
    data_dir = clusters_root() / cluster.handle / replica.name / "data"
    process = postmaster(data_dir)
    process.kill()
    psutil.wait_procs([process], timeout=10)
    health.cluster_check(cluster)
    cluster.refresh_from_db()
    assert cluster.health == "degraded"
    assert Node.objects.get(pk=replica.pk).health == Health.FAILED
    _run_pending(cluster)
    cluster.refresh_from_db()
    assert cluster.health == Health.HEALTHY
    assert cluster.nodes.filter(health=Health.HEALTHY).count() == 2

    cluster_scale(cluster=cluster, node_count=3, actor="test")
    _run_pending(cluster)
    assert cluster.nodes.filter(health=Health.HEALTHY).count() == 3

    cluster_delete(cluster=cluster, actor="test")
    _run_pending(cluster)
    cluster.refresh_from_db()
    assert cluster.health == Health.DELETED
    assert not (clusters_root() / cluster.handle).exists()
