#!/usr/bin/env python3
"""Autoscaler benchmark (issue 6): one round of scaling decisions for 10,000 clusters
through the real task path, and the time to provision a real local 3-node cluster.

    python3 bench/autoscale.py                      # 10,000 clusters
    python3 bench/autoscale.py --clusters 2000 --database aerolith_bench_autoscale
    python3 bench/autoscale.py --skip-local         # decisions only

Creates a fresh database (--database, default `aerolith_bench_autoscale`) on the PostgreSQL
of DATABASE_URL (or an embedded one, as the README commands do) and migrates it. Then:

1. Loads --clusters dedicated clusters spread over --tenants tenants (rows only), each
   with 3-5 nodes whose metrics were observed seconds ago and a full stabilisation window
   (five recommendations over the last 300 s) in its compact state. Loads are mixed: a
   third busy (scale up), a third near target (hold within tolerance), a third quiet —
   half of those with a window that still remembers more nodes (hold, stabilised), half
   with a window that agrees (scale down). One in ten has forecast mode on, with samples
   of last week's same hour and of the last hour.
2. Baseline, same run: the pure `decide` alone over the same inputs (no database).
3. The real path, in this process: `provisioning.tasks.autoscale_dispatch` as beat calls
   it, its `autoscale_chunk.delay(ids)` calls executed here as they are sent (so the
   round is timed without a worker's start-up or broker latency; each chunk is one
   transaction: reads, decisions, the state UPDATE, history rows, samples, operations and
   webhook events). Scale operations the round starts are recorded (one INSERT per
   chunk) and their runs sent as one `operations_enqueue` task per chunk to the Redis
   broker, where no worker consumes them (they are purged at the end): no server is
   started by this part.
4. A second round a minute later (the steady state: acting clusters now have an
   operation in flight, the rest repeat their decision without a history row).
5. A real local cluster: `LocalDriver` in a temporary directory, poll / plan / apply until
   the plan is empty for 3 nodes (a primary and two `pg_basebackup -R` replicas), timed;
   then deleted and its directory checked gone.
"""
import argparse
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
import _bootstrap  # noqa: E402

_bootstrap.reexec_in_virtualenv(__file__)
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from _common import recreate_database  # noqa: E402

from aerolith.devservices import running_services  # noqa: E402

TARGET_SECONDS = 10


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clusters", type=int, default=10_000)
    parser.add_argument("--tenants", type=int, default=100)
    parser.add_argument("--database", default="aerolith_bench_autoscale")
    parser.add_argument("--skip-local", action="store_true",
                        help="Do not provision the real local 3-node cluster.")
    args = parser.parse_args()

    with running_services() as env:
        url = recreate_database(env["DATABASE_URL"], args.database)
        os.environ.update(DATABASE_URL=url, REDIS_URL=env["REDIS_URL"],
                          DJANGO_SETTINGS_MODULE="aerolith.settings.base", AEROLITH_TEST_MODE="0",
                          AEROLITH_SCHEMA_POOL_SIZE="0", LOG_LEVEL="ERROR")
        import django

        django.setup()
        run(args)


def load(n: int, tenant_count: int):
    """n clusters with nodes, fresh metrics and a full window. Returns the load time."""
    import random
    from datetime import timedelta

    from django.db import connection

    from aerolith import clock
    from provisioning.models import Cluster, ClusterSample, Health, Node
    from tenants.models import Tenant

    rng = random.Random(6)
    now = clock.wall_now()
    epoch = int(now.timestamp())
    t0 = time.perf_counter()
    tenants = Tenant.objects.bulk_create(
        [Tenant(name=f"Bench {i}", slug=f"bench-{i}", schema_name=f"t_bench_{i}", status="active")
         for i in range(tenant_count)], batch_size=2000)
    clusters, plans = [], []
    for i in range(n):
        nodes = rng.randint(3, 5)
        kind = ("busy", "busy", "steady", "steady", "quiet_remembering", "quiet_agreeing")[i % 6]
        cpu = {"busy": lambda: rng.uniform(85, 99), "steady": lambda: rng.uniform(66, 74),
               "quiet_remembering": lambda: rng.uniform(15, 35),
               "quiet_agreeing": lambda: rng.uniform(15, 35)}[kind]
        window_value = nodes if kind != "quiet_agreeing" else max(1, nodes - 2)
        recent = [[epoch - s, window_value] for s in (290, 230, 170, 110, 50)]
        clusters.append(Cluster(
            tenant=tenants[i % tenant_count], name=f"c{i}", handle=f"bench-c{i}", provider="local",
            region="eu-central", node_count=nodes, health=Health.HEALTHY, autoscale_enabled=True,
            min_nodes=1, max_nodes=20, cpu_target_percent=70, memory_target_percent=80,
            forecast_enabled=i % 10 == 0, recent_recommendations=recent, last_outcome="hold",
            last_reason="desired_within_tolerance", last_evaluated_at=now - timedelta(seconds=50)))
        plans.append((nodes, cpu))
    clusters = Cluster.objects.bulk_create(clusters, batch_size=2000)
    rows = []
    for cluster, (nodes, cpu) in zip(clusters, plans, strict=True):
        for k in range(nodes):
            rows.append(Node(cluster=cluster, name=f"{cluster.handle}-{k}",
                             role="primary" if k == 0 else "replica", health=Health.HEALTHY,
                             host="127.0.0.1", port=20000 + k, cpu_percent=round(cpu(), 1),
                             memory_percent=round(rng.uniform(30, 60), 1), connections=10,
                             replication_lag_bytes=0, observed_at=now - timedelta(seconds=20)))
    Node.objects.bulk_create(rows, batch_size=5000)
    samples = []
    week = timedelta(days=7)
    for cluster in clusters:
        if not cluster.forecast_enabled:
            continue
        for minutes in range(0, 61, 5):
            samples.append(ClusterSample(cluster=cluster, at=now - week + timedelta(minutes=minutes),
                                         nodes=cluster.node_count, cpu_percent=60.0,
                                         memory_percent=50.0))
            samples.append(ClusterSample(cluster=cluster, at=now - timedelta(minutes=minutes),
                                         nodes=cluster.node_count, cpu_percent=55.0,
                                         memory_percent=45.0))
    ClusterSample.objects.bulk_create(samples, batch_size=5000)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
    print(f"Loaded {n} clusters ({len(rows)} nodes, {len(samples)} chart samples) over "
          f"{tenant_count} tenants in {time.perf_counter() - t0:.1f} s\n", flush=True)


def baseline():
    """The pure decision alone over the loaded inputs (read once, untimed)."""
    from collections import defaultdict

    from aerolith import clock
    from provisioning.autoscaler import History, Sample, decide
    from provisioning.models import Cluster, Node
    from provisioning.services.autoscaling import _recent, policy_of

    clusters = list(Cluster.objects.all())
    nodes = defaultdict(list)
    for n in Node.objects.values_list("cluster_id", "name", "cpu_percent", "memory_percent",
                                      "observed_at"):
        nodes[n[0]].append(Sample(n[1], True, n[2], n[3], n[4]))
    now = clock.wall_now()
    t0 = time.perf_counter()
    for cluster in clusters:
        decide(policy_of(cluster), History(current_nodes=cluster.node_count,
                                           recent=_recent(cluster.recent_recommendations)),
               nodes[cluster.pk], now)
    elapsed = time.perf_counter() - t0
    print(f"Baseline: decide() alone, no database: {len(clusters) / elapsed:10.0f} decisions/s "
          f"({elapsed:.2f} s for {len(clusters)})\n", flush=True)


def round_through_tasks(label: str) -> tuple[dict, float]:
    from collections import Counter
    from unittest import mock

    from provisioning import tasks

    totals: Counter = Counter()

    def run_here(ids):
        totals.update(tasks.autoscale_chunk(ids))

    t0 = time.perf_counter()
    with mock.patch.object(tasks.autoscale_chunk, "delay", side_effect=run_here):
        dispatched = tasks.autoscale_dispatch()
    elapsed = time.perf_counter() - t0
    evaluated = totals["evaluated"]
    print(f"{label}: autoscale_dispatch -> {dispatched} clusters in chunks of "
          f"{_chunk()} -> autoscale_chunk, in this process:")
    print(f"  {evaluated} clusters evaluated in {elapsed:.2f} s = "
          f"{evaluated / elapsed:.0f} decisions/s")
    print(f"  outcomes: scale_up {totals['scale_up']}, scale_down {totals['scale_down']}, "
          f"hold {totals['hold']}; history rows written: {totals['recorded']}")
    return totals, elapsed


def _chunk():
    from django.conf import settings

    return settings.AEROLITH_AUTOSCALE_CHUNK


def local_cluster():
    import secrets
    import shutil
    import tempfile

    from provisioning.drivers.base import ClusterSpec
    from provisioning.drivers.local import LocalDriver

    root = Path(tempfile.mkdtemp(prefix="aerolith-bench-local-"))
    root.chmod(0o755)  # the server processes run as an unprivileged user
    driver = LocalDriver(root=root)
    handle = "bench-local"
    spec = ClusterSpec(handle=handle, size="small", nodes=3, region="local",
                       admin_password=secrets.token_urlsafe(24))
    print("Local provider: a real 3-node cluster (LocalDriver, poll / plan / apply) in "
          f"{root}:", flush=True)
    try:
        t0 = time.perf_counter()
        while True:
            steps = driver.plan(driver.poll(handle), spec)
            if not steps:
                break
            started = time.perf_counter()
            driver.apply(handle, steps[0], spec)
            print(f"  {steps[0].action:<15} {steps[0].node or '':<16} "
                  f"{time.perf_counter() - started:6.2f} s", flush=True)
        elapsed = time.perf_counter() - t0
        state = driver.poll(handle)
        roles = ", ".join(f"{n.name} {n.role} {n.health}" for n in state.nodes)
        print(f"  provisioned in {elapsed:.1f} s: {roles}")
        t1 = time.perf_counter()
        for step in driver.plan(state, None):
            driver.apply(handle, step, None)
        gone = driver.poll(handle) is None and not (root / handle).exists()
        print(f"  deleted in {time.perf_counter() - t1:.1f} s; files gone: {gone}\n")
    finally:
        if driver.poll(handle) is not None:
            for step in driver.plan(driver.poll(handle), None):
                driver.apply(handle, step, None)
        shutil.rmtree(root, ignore_errors=True)


def run(args):
    from datetime import timedelta
    from unittest import mock

    from django.conf import settings
    from django.core.management import call_command
    from django.db import connection

    from aerolith import clock
    from aerolith.celery import app
    from provisioning.models import Node, Operation

    with connection.cursor() as cursor:
        cursor.execute("SHOW server_version")
        pg_version = cursor.fetchone()[0]
    print(f"Machine: {os.cpu_count()} cores, {platform.processor() or platform.machine()}, "
          f"Python {platform.python_version()}, PostgreSQL {pg_version}")
    print(f"Database: {settings.DATABASES['default']['NAME']} (fresh)\n", flush=True)
    call_command("migrate_schemas", shared=True, interactive=False, verbosity=0)
    load(args.clusters, args.tenants)
    baseline()

    totals, elapsed = round_through_tasks("Round 1")
    verdict = "met" if elapsed < TARGET_SECONDS and totals["evaluated"] >= args.clusters else "NOT met"
    print(f"  target: all {args.clusters} in under {TARGET_SECONDS} s: {verdict}")
    print(f"  history rows by reason: {_reasons()}")
    print(f"  scale operations recorded: {Operation.objects.count()} (their runs are queued as "
          "one operations_enqueue task per chunk, not consumed: no server started)\n", flush=True)

    # A minute later, metrics refreshed: the steady state.
    later = clock.wall_now() + timedelta(minutes=1)
    Node.objects.update(observed_at=later - timedelta(seconds=20))
    with mock.patch("aerolith.clock.wall_now", return_value=later):
        round_through_tasks("Round 2 (a minute later)")
    print()
    purged = app.control.purge()
    print(f"Purged {purged} queued operations_enqueue tasks from the broker.\n", flush=True)

    if args.skip_local:
        print("Local provider: skipped (--skip-local).")
    else:
        local_cluster()


def _reasons() -> dict:
    from django.db.models import Count

    from provisioning.models import ScalingEvent

    return dict(ScalingEvent.objects.order_by().values("reason").annotate(n=Count("id"))
                .values_list("reason", "n"))


if __name__ == "__main__":
    main()
