"""Storage of customer databases for metering's hourly storage_gb reading (SPEC §5, §7):
pg_database_size of each own database plus the relations of each shared-database schema.
Registered as a metering storage source in ProvisioningConfig.ready()."""
from django_tenants.utils import tenant_context

from .models import Cluster, Database
from .services import pg_admin


def customer_databases_size(tenant) -> int:
    """Bytes held by the tenant's customer databases. Raises when a cluster cannot be
    reached, so no reading lower than the truth is recorded."""
    with tenant_context(tenant):
        databases = list(Database.objects.all())
    by_cluster: dict[int, list[Database]] = {}
    for database in databases:
        by_cluster.setdefault(database.cluster_id, []).append(database)
    clusters = Cluster.objects.in_bulk(list(by_cluster))
    return sum(pg_admin.storage_bytes(clusters[cid], group)
               for cid, group in by_cluster.items() if cid in clusters)
