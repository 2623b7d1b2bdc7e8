"""Reads of provisioning that more than one caller needs."""
from django.db.models import Count, Prefetch, Q
from psycopg.conninfo import make_conninfo

from aerolith import crypto

from .errors import ClusterUnavailable
from .models import Cluster, Health, Node, NodeRole, Operation, OperationState

LIVE = ~Q(health__in=[Health.DELETED])
IN_FLIGHT = (OperationState.PENDING, OperationState.RUNNING)


def admin_password(cluster: Cluster) -> str:
    return crypto.decrypt(cluster.admin_password_sealed, context=f"cluster:{cluster.handle}").decode()


def cluster_primary(cluster: Cluster) -> Node | None:
    return cluster.nodes.filter(role=NodeRole.PRIMARY).first()


def cluster_dsn(cluster: Cluster, dbname: str = "postgres", user: str | None = None,
                password: str | None = None, **options) -> str:
    """libpq conninfo for the cluster's primary, as the platform's superuser by default."""
    primary = cluster_primary(cluster)
    if primary is None or not primary.port:
        raise ClusterUnavailable(f"Cluster {cluster.name} has no reachable primary yet; wait until "
                                 "it is healthy and try again.")
    if user is None:
        user, password = cluster.admin_user, admin_password(cluster)
    return make_conninfo(host=primary.host or "127.0.0.1", port=primary.port, dbname=dbname,
                         user=user, password=password, connect_timeout=5, **options)


def shared_cluster_for(region: str) -> Cluster:
    """The region's shared cluster (SPEC §7 shared tier), when it can take work."""
    cluster = Cluster.objects.filter(shared=True, region=region, deleted_at__isnull=True).first()
    if cluster is None or cluster.health not in (Health.HEALTHY, Health.DEGRADED, Health.SCALING):
        raise ClusterUnavailable(
            f"The shared database cluster of region {region} is not available right now; try "
            "again in a minute. Staff have been told.")
    return cluster


def operation_in_flight(cluster: Cluster) -> Operation | None:
    prefetched = getattr(cluster, "operations_in_flight", None)  # see with_operation_in_flight
    if prefetched is not None:
        return prefetched[0] if prefetched else None
    return cluster.operations.filter(state__in=IN_FLIGHT).first()


def with_operation_in_flight(clusters):
    """`clusters` with each one's operation in flight read in one query for the page (a
    list would otherwise ask once per cluster); operation_in_flight() uses it."""
    return clusters.prefetch_related(Prefetch(
        "operations", queryset=Operation.objects.filter(state__in=IN_FLIGHT),
        to_attr="operations_in_flight"))


def tenant_clusters(tenant):
    return (Cluster.objects.filter(tenant=tenant, deleted_at__isnull=True)
            .annotate(ready_nodes=Count("nodes", filter=Q(nodes__health=Health.HEALTHY))))


def databases_on_cluster(cluster: Cluster) -> int:
    """How many customer databases live on `cluster` (they are tenant-private rows)."""
    from django_tenants.utils import schema_context

    from .models import Database

    if cluster.tenant is None:
        return 0
    with schema_context(cluster.tenant.schema_name):
        return Database.objects.filter(cluster_id=cluster.pk).count()
