"""Demo databases and a dedicated cluster on real local PostgreSQL servers, for the demo
organisations `load_demo` made: acme (Professional) gets two databases with a few rows,
hooli (Enterprise) a two-node dedicated cluster with autoscaling on, a database on it and
two days of scaling history, played through the real autoscaler's `decide()` over a
daily load curve (the servers themselves stay at two nodes). Run after `clusters_local
start`; safe to run again (what exists is left alone)."""
import math
from datetime import timedelta

import psycopg
from django.core.management import BaseCommand
from django.db import transaction
from django_tenants.utils import tenant_context

from aerolith import clock
from provisioning.autoscaler import History, Sample, decide
from provisioning.models import Cluster, ClusterSample, Database, ScalingEvent
from provisioning.services.autoscaling import policy_of
from provisioning.services.clusters import cluster_create
from provisioning.services.databases import database_create
from provisioning.services.operations import operation_run
from tenants.models import Tenant

HISTORY_DAYS = 2
STEP = timedelta(minutes=1)  # beat evaluates every minute
SAMPLE_EVERY_MINUTES = 5


class Command(BaseCommand):
    help = __doc__

    def handle(self, *args, **options):
        acme = Tenant.objects.filter(slug="acme").first()
        if acme is not None:
            for name in ("orders", "analytics"):
                self._database(acme, name)
        hooli = Tenant.objects.filter(slug="hooli").first()
        if hooli is not None:
            cluster = self._cluster(hooli)
            self._database(hooli, "events", cluster_id=cluster.pk)

    def _database(self, tenant, name: str, cluster_id: int | None = None) -> None:
        with tenant_context(tenant):
            if Database.objects.filter(name=name).exists():
                return
            database, uri = database_create(tenant=tenant, actor="demo", name=name,
                                            cluster_id=cluster_id)
        with psycopg.connect(uri, autocommit=True) as conn:
            conn.execute("CREATE TABLE items (id bigserial PRIMARY KEY, label text NOT NULL, "
                         "amount numeric(12, 2) NOT NULL, created_at timestamptz DEFAULT now())")
            conn.execute("INSERT INTO items (label, amount) SELECT 'item ' || n, n * 1.25 "
                         "FROM generate_series(1, 250) AS n")
        self.stdout.write(f"{tenant.slug}: database {name} ({database.placement}) with 250 rows")

    def _cluster(self, tenant) -> Cluster:
        cluster = Cluster.objects.filter(tenant=tenant, name="main", deleted_at__isnull=True).first()
        if cluster is None:
            cluster, operation = cluster_create(
                tenant=tenant, actor="demo", name="main", size="small", node_count=2,
                policy={"autoscale_enabled": True, "min_nodes": 2, "max_nodes": 5,
                        "cpu_target_percent": 60, "memory_target_percent": 80},
                idempotency_key="demo:hooli:main")
            operation_run(operation.pk)
            cluster.refresh_from_db()
            self.stdout.write(f"{tenant.slug}: cluster main, {cluster.node_count} nodes, "
                              f"{cluster.health}")
        if not cluster.samples.exists():
            self._history(cluster)
        return cluster

    def _history(self, cluster: Cluster) -> None:
        """Two days of a daily load curve fed through decide() once a minute, as beat does;
        the chart's samples (every 5 minutes) and the scaling history are what the
        autoscaler would have written. The busy hours are placed so that the last few
        hours are quiet and the history ends at the cluster's real size."""
        policy = policy_of(cluster)
        end = clock.now(cluster.tenant)
        at = end - timedelta(days=HISTORY_DAYS)
        nodes, recent, last = policy.min_nodes, [], ("", "")
        samples, events = [], []
        minute = 0
        while at < end:
            hours_ago = (end - at).total_seconds() / 3600 % 24
            # Demand in "node-percent": busy between 20 and 4 hours ago, quiet otherwise.
            demand = 90 + 150 * max(0.0, math.sin((hours_ago - 4) / 16 * math.pi))
            cpu = min(100.0, demand / nodes)
            observed = [Sample(node=f"n{i}", ready=True, cpu_percent=cpu, memory_percent=35.0,
                               observed_at=at) for i in range(nodes)]
            history = History(current_nodes=nodes, recent=recent, last_outcome=last[0],
                              last_reason=last[1])
            decision = decide(policy, history, observed, at)
            if minute % SAMPLE_EVERY_MINUTES == 0:
                samples.append(ClusterSample(cluster=cluster, at=at, nodes=nodes,
                                             cpu_percent=round(cpu, 1), memory_percent=35.0))
            if decision.changed:
                events.append(ScalingEvent(cluster=cluster, at=at, outcome=decision.outcome,
                                           reason=decision.reason, current_nodes=decision.current,
                                           desired_nodes=decision.desired, inputs=decision.inputs))
            nodes, recent = decision.desired, decision.recent
            last = (decision.outcome, decision.reason)
            at += STEP
            minute += 1
        with transaction.atomic():
            ClusterSample.objects.bulk_create(samples)
            ScalingEvent.objects.bulk_create(events)
        self.stdout.write(f"{cluster.tenant.slug}: {len(samples)} chart samples, "
                          f"{len(events)} scaling events over {HISTORY_DAYS} days, ending at "
                          f"{nodes} nodes")
