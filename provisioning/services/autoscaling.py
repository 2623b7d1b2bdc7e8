"""The autoscaler's round (SPEC §7): every minute, each cluster under autoscaling is
evaluated by the pure `autoscaler.decide` and acted on.

Built for thousands of clusters per round: a chunk of clusters is read in a handful of
queries (clusters, nodes, operations in flight, test clocks, forecast samples), decided in
memory, and written back in a handful more — the compact window state of every cluster in
one UPDATE, the scale operations of acting clusters in one INSERT, history rows only for
evaluations that act or change outcome/reason, chart samples once per five minutes,
webhook events for tenants' clusters that scale. One transaction per chunk; the clusters
are locked with SKIP LOCKED so two overlapping rounds never evaluate a cluster twice.
"""
import json
import math
from collections import Counter, defaultdict
from dataclasses import replace
from datetime import timedelta

from django.db import connection, transaction
from django.db.models import Q

from aerolith import clock
from tenants.models import Tenant
from tenants.services.events import event_emit_many

from ..autoscaler import History, Policy, Sample, decide
from ..models import (
    Cluster,
    ClusterSample,
    Health,
    Node,
    Operation,
    OperationKind,
    OperationState,
    ScalingEvent,
)
from ..recommendations import WEEK, forecast_load
from ..selectors import IN_FLIGHT

ELIGIBLE = (Q(autoscale_enabled=True, autoscale_paused=False, deleted_at__isnull=True)
            & ~Q(health__in=[Health.DELETING, Health.DELETED]))
SAMPLE_EVERY_SECONDS = 300  # one chart/forecast sample per cluster per five minutes
METRICS_MAX_AGE_SECONDS = 180  # three missed one-minute observations make a sample stale
FORECAST_HORIZON = timedelta(hours=1)
FORECAST_TREND = timedelta(hours=1)
REQUESTED_BY = "autoscaler"
_FIELDS = ("id", "tenant_id", "name", "handle", "shared", "node_count", "health",
           "autoscale_enabled", "autoscale_paused", "min_nodes", "max_nodes",
           "cpu_target_percent", "memory_target_percent", "scale_up_step", "scale_down_step",
           "stabilization_seconds", "forecast_enabled", "recent_recommendations",
           "last_outcome", "last_reason", "last_evaluated_at")


def clusters_to_autoscale() -> list[int]:
    """Ids of the clusters the autoscaler evaluates this round, in id order."""
    return list(Cluster.objects.filter(ELIGIBLE).order_by("pk").values_list("pk", flat=True))


def policy_of(cluster: Cluster) -> Policy:
    return Policy(min_nodes=cluster.min_nodes, max_nodes=cluster.max_nodes,
                  cpu_target_percent=cluster.cpu_target_percent,
                  memory_target_percent=cluster.memory_target_percent,
                  scale_up_step=cluster.scale_up_step, scale_down_step=cluster.scale_down_step,
                  stabilization_seconds=cluster.stabilization_seconds,
                  metrics_max_age_seconds=METRICS_MAX_AGE_SECONDS,
                  forecast_enabled=cluster.forecast_enabled, paused=cluster.autoscale_paused)


def _recent(value) -> list[tuple[int, int]]:
    """The persisted window, tolerating a hand-edited or truncated value."""
    out = []
    for item in value if isinstance(value, list) else []:
        if isinstance(item, list | tuple) and len(item) == 2:
            try:
                out.append((int(item[0]), int(item[1])))
            except (TypeError, ValueError):
                continue
    return out


def autoscale_evaluate(cluster_ids) -> dict:
    """Evaluate and act on `cluster_ids` (those still eligible: autoscaling on, not paused,
    not being deleted). Returns counts by outcome plus "evaluated" and "recorded"."""
    counts: Counter = Counter()
    with transaction.atomic():
        clusters = list(Cluster.objects.select_for_update(skip_locked=True, of=("self",))
                        .filter(ELIGIBLE, pk__in=list(cluster_ids)).only(*_FIELDS).order_by("pk"))
        if not clusters:
            return {"evaluated": 0}
        ids = [c.pk for c in clusters]
        samples = _samples(ids)
        busy = set(Operation.objects.filter(cluster_id__in=ids, state__in=IN_FLIGHT)
                   .values_list("cluster_id", flat=True))
        times = clock.now_many({c.tenant_id for c in clusters})
        wall = clock.wall_now()
        nows = {c.pk: times.get(c.tenant_id, wall) if c.tenant_id else wall for c in clusters}
        forecasts = _forecasts([c for c in clusters if c.forecast_enabled], nows)

        decided = []
        for cluster in clusters:
            history = History(
                current_nodes=cluster.node_count, recent=_recent(cluster.recent_recommendations),
                last_outcome=cluster.last_outcome, last_reason=cluster.last_reason,
                operation_in_flight=cluster.pk in busy,
                forecast_cpu_load=forecasts.get(cluster.pk, (None, None))[0],
                forecast_memory_load=forecasts.get(cluster.pk, (None, None))[1])
            decision = decide(policy_of(cluster), history,
                              _on_clock(samples.get(cluster.pk, ()), nows[cluster.pk] - wall),
                              nows[cluster.pk])
            decided.append((cluster, decision))

        decided = _start_operations(decided, nows)
        counts.update(d.outcome for _, d, _ in decided)
        _write_state(decided, nows)
        events = [ScalingEvent(cluster_id=c.pk, at=nows[c.pk], outcome=d.outcome, reason=d.reason,
                               current_nodes=d.current, desired_nodes=d.desired, inputs=d.inputs,
                               operation_id=op)
                  for c, d, op in decided if d.changed]
        ScalingEvent.objects.bulk_create(events)
        ClusterSample.objects.bulk_create(
            [_chart_sample(c, d, nows[c.pk]) for c, d, _ in decided if _sample_due(c, nows[c.pk])])
        _emit_scaled([(c, d, op) for c, d, op in decided if op is not None and c.tenant_id],
                     nows)
    counts.update(evaluated=len(clusters), recorded=len(events))
    return dict(counts)


def _samples(ids: list[int]) -> dict[int, list[Sample]]:
    by_cluster = defaultdict(list)
    rows = Node.objects.filter(cluster_id__in=ids).values_list(
        "cluster_id", "name", "health", "cpu_percent", "memory_percent", "observed_at")
    for cluster_id, name, health, cpu, memory, observed_at in rows:
        by_cluster[cluster_id].append(Sample(node=name, ready=health == Health.HEALTHY,
                                             cpu_percent=cpu, memory_percent=memory,
                                             observed_at=observed_at))
    return by_cluster


def _on_clock(samples: list[Sample], offset: timedelta) -> list[Sample]:
    """Observations are stamped with real time; a tenant on a test clock sees them shifted
    onto its clock, so "fresh" keeps meaning seconds ago in reality while the window
    follows the tenant's time."""
    if abs(offset) < timedelta(seconds=1):  # two reads of the wall clock, not a test clock
        return samples
    return [replace(s, observed_at=s.observed_at + offset) if s.observed_at else s
            for s in samples]


def _forecasts(clusters: list[Cluster], nows: dict) -> dict[int, tuple]:
    """Predicted (cpu, memory) load in node-percent for the coming hour, per cluster with
    forecast mode on: last week's same hour and the last hour's trend, in one query."""
    if not clusters:
        return {}
    values = ", ".join(["(%s, %s::timestamptz)"] * len(clusters))
    params = [p for c in clusters for p in (c.pk, nows[c.pk])]
    sql = (
        f"SELECT s.cluster_id, s.at, s.nodes, s.cpu_percent, s.memory_percent "  # nosec B608 - table names are the models'; values are parameters
        f"FROM {ClusterSample._meta.db_table} s JOIN (VALUES {values}) AS v(id, now) "
        "ON s.cluster_id = v.id AND ("
        " s.at BETWEEN v.now - %s AND v.now - %s + %s OR s.at BETWEEN v.now - %s AND v.now)")
    params += [WEEK, WEEK, FORECAST_HORIZON, FORECAST_TREND]
    points = defaultdict(lambda: ([], []))
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        for cluster_id, at, nodes, cpu, memory in cursor.fetchall():
            cpu_points, memory_points = points[cluster_id]
            if cpu is not None:
                cpu_points.append((at, cpu * nodes))
            if memory is not None:
                memory_points.append((at, memory * nodes))
    return {
        cluster_id: tuple(forecast_load(p, nows[cluster_id], horizon=FORECAST_HORIZON,
                                        trend_window=FORECAST_TREND) for p in pair)
        for cluster_id, pair in points.items()
    }


def _start_operations(decided, nows) -> list[tuple]:
    """A scale operation for every acting decision, all in one INSERT, and their runs sent
    to the workers after commit by one fan-out task (a publish per operation would cost
    more than the whole round's decisions; see bench/autoscale.py).

    The rows are what `operations.operation_start` makes: the idempotency key
    autoscale:<cluster>:<epoch of the cluster's clock>, pending, requested by the
    autoscaler. A row that cannot be inserted (another operation of the cluster got in
    flight, or this chunk already ran for this second) turns the decision into a hold
    with reason operation_in_flight. Returns (cluster, decision, operation id or None).
    """
    acting = [(c, d) for c, d in decided if d.acts]
    started: dict[int, int] = {}
    if acting:
        table = Operation._meta.db_table
        sql = (
            f"INSERT INTO {table} (cluster_id, kind, idempotency_key, target_nodes, node_name,"  # nosec B608 - table names are the models'; values are parameters
            " state, requested_by, attempts, error, log, created_at)"
            " SELECT c, %s, k, n, '', %s, %s, 0, '', '[]'::jsonb, %s"
            " FROM unnest(%s::bigint[], %s::text[], %s::int[]) AS v(c, k, n)"
            " ON CONFLICT DO NOTHING RETURNING id, cluster_id")
        params = [OperationKind.SCALE, OperationState.PENDING, REQUESTED_BY, clock.wall_now(),
                  [c.pk for c, _ in acting],
                  [f"autoscale:{c.pk}:{int(nows[c.pk].timestamp())}" for c, _ in acting],
                  [d.desired for _, d in acting]]
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            started = {cluster_id: op_id for op_id, cluster_id in cursor.fetchall()}
        if started:
            ids = sorted(started.values())
            transaction.on_commit(lambda: _enqueue_many(ids))
    out = []
    for cluster, decision in decided:
        if decision.acts and cluster.pk not in started:
            changed = ("hold", "operation_in_flight") != (cluster.last_outcome, cluster.last_reason)
            decision = replace(decision, outcome="hold", reason="operation_in_flight",
                               desired=decision.current, changed=changed)
        out.append((cluster, decision, started.get(cluster.pk)))
    return out


def _enqueue_many(operation_ids: list[int]) -> None:
    from ..tasks import operations_enqueue

    operations_enqueue.delay(operation_ids)


def _write_state(decided, nows) -> None:
    """Every evaluated cluster's window and last outcome in one UPDATE; acting ones also
    get their new node count and the scaling health."""
    columns = ([], [], [], [], [], [], [])
    for cluster, decision, operation_id in decided:
        acted = operation_id is not None
        for column, value in zip(columns, (
                cluster.pk, json.dumps(decision.recent), decision.outcome, decision.reason,
                nows[cluster.pk], decision.desired if acted else None,
                Health.SCALING if acted else None), strict=True):
            column.append(value)
    sql = (
        f"UPDATE {Cluster._meta.db_table} AS c SET recent_recommendations = v.recent,"  # nosec B608 - table names are the models'; values are parameters
        " last_outcome = v.outcome, last_reason = v.reason, last_evaluated_at = v.at,"
        " node_count = COALESCE(v.nodes, c.node_count), health = COALESCE(v.health, c.health)"
        " FROM unnest(%s::bigint[], %s::jsonb[], %s::text[], %s::text[], %s::timestamptz[],"
        " %s::int[], %s::text[]) AS v(id, recent, outcome, reason, at, nodes, health)"
        " WHERE c.id = v.id")
    with connection.cursor() as cursor:
        cursor.execute(sql, list(columns))


def _sample_due(cluster: Cluster, now) -> bool:
    """One sample per five-minute slot of the cluster's clock."""
    last = cluster.last_evaluated_at
    if last is None or now < last:
        return True
    slot = SAMPLE_EVERY_SECONDS
    return int(now.timestamp()) // slot != int(last.timestamp()) // slot


def _chart_sample(cluster: Cluster, decision, now) -> ClusterSample:
    def mean(metric):
        value = decision.inputs.get(f"{metric}_mean")
        return value if value is not None and math.isfinite(value) else None

    return ClusterSample(cluster_id=cluster.pk, at=now, nodes=decision.current,
                         cpu_percent=mean("cpu"), memory_percent=mean("memory"))


def _emit_scaled(acted, nows) -> None:
    if not acted:
        return
    tenants = Tenant.objects.in_bulk({c.tenant_id for c, _, _ in acted})
    event_emit_many([
        (tenants[c.tenant_id], "cluster.scaled",
         {"cluster": c.name, "cluster_id": c.pk, "from_nodes": d.current, "to_nodes": d.desired,
          "outcome": d.outcome, "reason": d.reason, "operation": op,
          "at": nows[c.pk].isoformat()})
        for c, d, op in acted])
