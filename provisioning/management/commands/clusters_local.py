"""Start or stop this host's PostgreSQL servers of the `local` provider.

`clusters_local start [--region R ...]` makes sure each region's shared cluster exists and
runs (created on first use) and brings back every local node that is down, through the
same operations the health check would start; the run command calls it before the web
server starts, so the portal can create databases at once.

`clusters_local stop` stops every local server (their data stays under the clusters
directory); the run command calls it on Ctrl-C so no PostgreSQL outlives the product.
"""
from django.core.management.base import BaseCommand, CommandError
from django.db.models import Q

from provisioning.drivers import driver_for
from provisioning.drivers.local import clusters_root
from provisioning.drivers.local_pg import stop
from provisioning.models import Cluster, Health, OperationKind, Provider
from provisioning.selectors import operation_in_flight
from provisioning.services.clusters import shared_cluster_ensure
from provisioning.services.operations import operation_run, operation_start
from tenants.models import Region, Tenant


class Command(BaseCommand):
    help = "Start (creating shared clusters when missing) or stop the local PostgreSQL clusters."

    def add_arguments(self, parser):
        parser.add_argument("action", choices=["start", "stop"])
        parser.add_argument("--region", action="append", choices=Region.values,
                            help="Shared cluster regions to ensure (default: every region that "
                                 "has tenants).")

    def handle(self, *args, action, region, **options):
        if action == "stop":
            return self._stop()
        regions = region or sorted(set(Tenant.objects.exclude(schema_name="public")
                                       .values_list("region", flat=True))) or [Region.US_EAST]
        for name in regions:
            cluster, operation = shared_cluster_ensure(name)
            if operation is not None:
                operation_run(operation.pk)
        for cluster in self._local_clusters():
            self._bring_back(cluster)
        for cluster in self._local_clusters():
            self.stdout.write(f"{cluster.handle}: {cluster.health} "
                              f"({cluster.nodes.count()} node(s))")

    def _local_clusters(self):
        return Cluster.objects.filter(provider=Provider.LOCAL, deleted_at__isnull=True).exclude(
            Q(health=Health.DELETED))

    def _bring_back(self, cluster: Cluster) -> None:
        driver = driver_for(cluster.provider)
        state = driver.poll(cluster.handle)
        running = operation_in_flight(cluster)
        if running is not None:
            operation_run(running.pk)
            return
        if state is None:
            raise CommandError(f"Cluster {cluster.handle} has no files under {clusters_root()}; "
                               "its data is gone. Delete it in the admin.")
        if state.health != Health.HEALTHY or len(state.nodes) != cluster.node_count:
            operation = operation_start(cluster=cluster, kind=OperationKind.SCALE,
                                        target_nodes=cluster.node_count,
                                        requested_by="clusters_local start")
            operation_run(operation.pk)

    def _stop(self) -> None:
        root = clusters_root()
        stopped = 0
        for node_json in sorted(root.glob("*/*/node.json")) if root.is_dir() else []:
            stop(node_json.parent)
            stopped += 1
        self.stdout.write(f"Stopped the servers of {stopped} local node(s) under {root}.")
