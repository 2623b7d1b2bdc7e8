"""The autoscaler's round against the database: clusters and their Node rows in, operations,
compact window state, history rows, chart samples and webhook events out. Clusters are
provider "local" rows only: the autoscaler reads Node rows, no server is started."""
import itertools
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from aerolith import clock
from provisioning import tasks
from provisioning.models import (
    Cluster,
    ClusterSample,
    Health,
    Node,
    Operation,
    OperationState,
    ScalingEvent,
)
from provisioning.services import autoscaling, operations
from provisioning.services.autoscaling import autoscale_evaluate
from tenants.models import OutboxEvent, TestClock

T0 = datetime(2026, 11, 2, 12, 0, tzinfo=UTC)
_names = itertools.count()


@pytest.fixture(autouse=True)
def _no_workers(monkeypatch):
    # Operations are recorded, never run: no provider is touched here.
    monkeypatch.setattr(operations, "_enqueue", lambda operation_id: None)
    monkeypatch.setattr(autoscaling, "_enqueue_many", lambda operation_ids: None)


def make_cluster(tenant, cpu, *, nodes=3, memory=None, at=None, **policy):
    n = next(_names)
    policy.setdefault("memory_target_percent", 0)
    policy.setdefault("autoscale_enabled", True)
    cluster = Cluster.objects.create(
        tenant=tenant, name=f"as-{n}", handle=f"as-{n}-{tenant.pk if tenant else 'shared'}",
        # Shared ones in a region without the session's real shared cluster (eu-central).
        provider="local", region="ap-southeast" if policy.get("shared") else "eu-central",
        node_count=nodes, health=Health.HEALTHY,
        cpu_target_percent=70, **policy)
    set_metrics(cluster, cpu, memory=memory, at=at, count=nodes)
    return cluster


def set_metrics(cluster, cpu, *, memory=None, at=None, count=None):
    """Nodes observed at `at` (real time, as the health check stamps them; default: now)."""
    count = count or cluster.node_count
    at = at or clock.wall_now()
    Node.objects.filter(cluster=cluster).delete()
    Node.objects.bulk_create([
        Node(cluster=cluster, name=f"{cluster.handle}-{i}", role="primary" if i == 0 else "replica",
             health=Health.HEALTHY, cpu_percent=cpu, memory_percent=memory, observed_at=at)
        for i in range(count)])


def freeze(tenant, moment):
    TestClock.objects.update_or_create(tenant=tenant, defaults={"frozen_time": moment})


def test_a_busy_cluster_scales_up_with_an_operation_history_row_and_a_webhook_event(alice):
    freeze(alice, T0)
    cluster = make_cluster(alice, 95.0)  # 3 × 95 / 70 = 4.07 → 5 nodes

    result = autoscale_evaluate([cluster.pk])

    assert result["scale_up"] == 1 and result["evaluated"] == 1
    cluster.refresh_from_db()
    assert (cluster.node_count, cluster.health) == (5, Health.SCALING)
    assert (cluster.last_outcome, cluster.last_reason) == ("scale_up", "scale_up")
    assert cluster.last_evaluated_at == T0
    operation = Operation.objects.get(cluster=cluster)
    assert (operation.kind, operation.target_nodes, operation.requested_by) == ("scale", 5, "autoscaler")
    assert operation.idempotency_key == f"autoscale:{cluster.pk}:{int(T0.timestamp())}"
    event = ScalingEvent.objects.get(cluster=cluster)
    assert (event.outcome, event.current_nodes, event.desired_nodes, event.operation_id) == (
        "scale_up", 3, 5, operation.pk)
    assert event.at == T0 and event.inputs["cpu_mean"] == 95.0
    outbox = OutboxEvent.objects.get(tenant=alice, type="cluster.scaled")
    assert outbox.payload["to_nodes"] == 5 and outbox.payload["cluster_id"] == cluster.pk


def test_ten_identical_evaluations_write_one_history_row(alice):
    cluster = make_cluster(alice, 70.0)
    for minute in range(10):
        now = T0 + timedelta(minutes=minute)
        freeze(alice, now)
        Node.objects.filter(cluster=cluster).update(observed_at=clock.wall_now())
        autoscale_evaluate([cluster.pk])
    events = ScalingEvent.objects.filter(cluster=cluster)
    assert [(e.outcome, e.reason) for e in events] == [("hold", "desired_within_tolerance")]
    cluster.refresh_from_db()
    assert len(cluster.recent_recommendations) == 5  # the last 300 s, one a minute


def test_scale_down_waits_out_the_window_across_restarts_from_the_stored_state(alice):
    freeze(alice, T0)
    cluster = make_cluster(alice, 70.0, nodes=4)
    autoscale_evaluate([cluster.pk])
    outcomes = []
    for minute in range(1, 6):
        now = T0 + timedelta(minutes=minute)
        freeze(alice, now)
        set_metrics(cluster, 20.0, count=4)
        # Each round starts from nothing but the database (a fresh worker).
        autoscale_evaluate([cluster.pk])
        fresh = Cluster.objects.get(pk=cluster.pk)
        outcomes.append((fresh.last_outcome, fresh.last_reason, fresh.node_count))
    assert outcomes[:4] == [("hold", "scale_down_stabilized", 4)] * 4
    # 4 × 20 / 70 → 2 nodes wanted; one at a time (scale_down_step 1).
    assert outcomes[4] == ("scale_down", "step_limited", 3)
    assert [e.reason for e in ScalingEvent.objects.filter(cluster=cluster).order_by("at")] == [
        "desired_within_tolerance", "scale_down_stabilized", "step_limited"]


def test_no_new_operation_while_one_is_in_flight(alice):
    cluster = make_cluster(alice, 99.0)
    Operation.objects.create(cluster=cluster, kind="scale", idempotency_key=f"manual:{cluster.pk}",
                             target_nodes=4, state=OperationState.RUNNING)
    result = autoscale_evaluate([cluster.pk])
    assert result["hold"] == 1
    cluster.refresh_from_db()
    assert (cluster.last_reason, cluster.node_count) == ("operation_in_flight", 3)
    assert Operation.objects.filter(cluster=cluster).count() == 1


def test_an_operation_that_cannot_be_recorded_turns_the_decision_into_a_hold(alice):
    """The same cluster evaluated twice in one second (a retried task): one operation."""
    freeze(alice, T0)
    cluster = make_cluster(alice, 99.0)
    Operation.objects.create(cluster=cluster, kind="scale", target_nodes=5,
                             idempotency_key=f"autoscale:{cluster.pk}:{int(T0.timestamp())}",
                             state=OperationState.SUCCEEDED)
    assert autoscale_evaluate([cluster.pk])["hold"] == 1
    cluster.refresh_from_db()
    assert (cluster.last_reason, cluster.node_count) == ("operation_in_flight", 3)


def test_missing_and_stale_metrics_hold_with_their_reasons(alice):
    missing = make_cluster(alice, None)
    stale = make_cluster(alice, 90.0, at=clock.wall_now() - timedelta(minutes=10))
    autoscale_evaluate([missing.pk, stale.pk])
    assert Cluster.objects.get(pk=missing.pk).last_reason == "metrics_missing"
    assert Cluster.objects.get(pk=stale.pk).last_reason == "metrics_stale"
    assert not Operation.objects.filter(cluster__in=[missing, stale]).exists()


def test_paused_disabled_and_deleting_clusters_are_not_evaluated(alice):
    paused = make_cluster(alice, 99.0, autoscale_paused=True)
    off = make_cluster(alice, 99.0, autoscale_enabled=False)
    deleting = make_cluster(alice, 99.0)
    Cluster.objects.filter(pk=deleting.pk).update(health=Health.DELETING)
    ids = [paused.pk, off.pk, deleting.pk]
    assert autoscale_evaluate(ids) == {"evaluated": 0}
    assert not set(ids) & set(autoscaling.clusters_to_autoscale())
    assert not ScalingEvent.objects.filter(cluster_id__in=ids).exists()


def test_a_shared_cluster_scales_without_a_tenant_event(db):
    cluster = make_cluster(None, 95.0, shared=True)
    before = OutboxEvent.objects.count()
    assert autoscale_evaluate([cluster.pk])["scale_up"] == 1
    assert OutboxEvent.objects.count() == before


def test_chart_samples_are_recorded_once_per_five_minutes(alice):
    cluster = make_cluster(alice, 70.0)
    for minute in range(11):
        now = T0 + timedelta(minutes=minute)
        freeze(alice, now)
        Node.objects.filter(cluster=cluster).update(observed_at=clock.wall_now())
        autoscale_evaluate([cluster.pk])
    samples = list(ClusterSample.objects.filter(cluster=cluster).order_by("at"))
    assert [s.at for s in samples] == [T0, T0 + timedelta(minutes=5), T0 + timedelta(minutes=10)]
    assert samples[0].nodes == 3 and samples[0].cpu_percent == 70.0


def test_forecast_mode_scales_up_ahead_of_last_weeks_peak(alice):
    freeze(alice, T0)
    cluster = make_cluster(alice, 50.0, forecast_enabled=True)
    # Same hour last week: 3 nodes at 95 % (load 285 node-%) → 285 / 70 → 5 nodes.
    ClusterSample.objects.bulk_create([
        ClusterSample(cluster=cluster, at=T0 - timedelta(days=7) + timedelta(minutes=m), nodes=3,
                      cpu_percent=95.0) for m in (10, 20, 30)])
    autoscale_evaluate([cluster.pk])
    cluster.refresh_from_db()
    assert (cluster.last_outcome, cluster.last_reason, cluster.node_count) == (
        "scale_up", "forecast_scale_up", 5)


def test_the_dispatcher_sends_every_eligible_cluster_in_chunks(alice, settings):
    settings.AEROLITH_AUTOSCALE_CHUNK = 2
    clusters = [make_cluster(alice, 70.0) for _ in range(5)]
    sent = tasks.autoscale_dispatch()  # eager Celery in tests: the chunks run here
    assert sent >= 5
    for cluster in clusters:
        cluster.refresh_from_db()
        assert cluster.last_outcome == "hold"


def test_a_round_costs_the_same_queries_for_five_clusters_as_for_twenty(alice):
    def queries(count):
        ids = [make_cluster(alice, 70.0).pk for _ in range(count)]
        with CaptureQueriesContext(connection) as captured:
            autoscale_evaluate(ids)
        return len(captured)

    assert queries(5) == queries(20)


def test_freshness_is_real_time_while_the_window_follows_the_tenants_clock(alice):
    """A tenant whose clock is weeks away still scales on metrics taken seconds ago."""
    freeze(alice, T0 - timedelta(days=40))
    cluster = make_cluster(alice, 95.0)
    assert autoscale_evaluate([cluster.pk])["scale_up"] == 1
    cluster.refresh_from_db()
    assert cluster.last_evaluated_at == T0 - timedelta(days=40)
    assert cluster.recent_recommendations == [[int((T0 - timedelta(days=40)).timestamp()), 5]]


def test_now_many_reads_every_tenants_clock_in_one_query(alice, bob, django_assert_num_queries):
    freeze(alice, T0)
    with django_assert_num_queries(1):
        times = clock.now_many([alice.pk, bob.pk])
    assert times[alice.pk] == T0
    assert abs((times[bob.pk] - clock.wall_now()).total_seconds()) < 60
