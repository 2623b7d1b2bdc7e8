"""Helpers of the provisioning API and portal tests: a tenant on a plan with dedicated
clusters, clusters whose create operation has finished with Node rows written by hand
(no PostgreSQL server is started), and a snapshot of what a refusal must not change."""
from aerolith import clock
from billing.models import Plan, Subscription
from provisioning.models import Cluster, Health, Node, NodeRole, Operation, OperationState
from provisioning.services.clusters import cluster_create
from tests.conftest import owner_principal


def enterprise(tenant):
    Subscription.objects.filter(tenant=tenant).update(plan=Plan.objects.get(code="enterprise"))
    return tenant


def make_cluster(tenant, name="main", nodes=3, **policy) -> Cluster:
    """A cluster whose create operation has finished, with `nodes` healthy Node rows."""
    cluster, operation = cluster_create(tenant=tenant, actor=owner_principal(tenant), name=name,
                                        size="small", node_count=nodes, provider="local",
                                        region="eu-central", policy=policy or None)
    Operation.objects.filter(pk=operation.pk).update(state=OperationState.SUCCEEDED,
                                                     finished_at=clock.wall_now())
    Cluster.objects.filter(pk=cluster.pk).update(health=Health.HEALTHY)
    set_nodes(cluster, nodes)
    cluster.refresh_from_db()
    return cluster


def set_nodes(cluster, count, cpu=40.0, memory=50.0, observed_at=None):
    cluster.nodes.all().delete()
    observed_at = observed_at or clock.wall_now()
    for index in range(count):
        Node.objects.create(cluster=cluster, name=f"{cluster.handle}-{index}",
                            role=NodeRole.PRIMARY if index == 0 else NodeRole.REPLICA,
                            health=Health.HEALTHY, host="127.0.0.1", port=6000 + index,
                            cpu_percent=cpu, memory_percent=memory, connections=3 + index,
                            replication_lag_bytes=0 if index else None, observed_at=observed_at)


def snapshot():
    """Everything a refused request might have changed."""
    return (list(Cluster.objects.order_by("pk").values_list(
                "pk", "name", "node_count", "health", "min_nodes", "max_nodes",
                "autoscale_enabled", "cpu_target_percent")),
            list(Operation.objects.order_by("pk").values_list("pk", "state")))


def shared_cluster_row() -> Cluster:
    """A region's shared cluster row (the real one when the session made it)."""
    existing = Cluster.objects.filter(shared=True, deleted_at__isnull=True).first()
    return existing or Cluster.objects.create(
        name="shared-eu", handle="shared-eu-test", shared=True, provider="local",
        region="eu-central", node_count=1, min_nodes=1, max_nodes=1)
