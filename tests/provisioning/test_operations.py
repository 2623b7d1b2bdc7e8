"""The operation runner and cluster services against an in-memory provider: idempotent,
resumable after a failed or interrupted step, one at a time per cluster; health checks
that repair failed nodes and accrue compute hours."""
from datetime import timedelta
from decimal import Decimal

import psycopg
import pytest
from django.conf import settings
from django.db import connection

from aerolith import clock
from aerolith.errors import Conflict, ValidationFailed
from billing.models import Plan, Subscription
from metering.models import Meter, UsageEvent
from provisioning.errors import OperationInFlight, PlanNotAllowed
from provisioning.models import Cluster, Health, Node, Operation, OperationState
from provisioning.services import health, operations
from provisioning.services.clusters import (
    cluster_create,
    cluster_delete,
    cluster_policy_update,
    cluster_scale,
    node_replace,
)
from provisioning.services.operations import LOCK_NAMESPACE, operation_run, operations_resume

from .memory_driver import MemoryDriver


@pytest.fixture
def driver(monkeypatch):
    memory = MemoryDriver()
    monkeypatch.setattr(operations, "driver_for", lambda provider: memory)
    monkeypatch.setattr(health, "driver_for", lambda provider: memory)
    # Operations are run by hand here, step by step, instead of by the eager task.
    monkeypatch.setattr(operations, "_enqueue", lambda operation_id: None)
    return memory


@pytest.fixture
def enterprise(alice):
    Subscription.objects.filter(tenant=alice).update(plan=Plan.objects.get(code="enterprise"))
    return alice


def _create(tenant, **kwargs):
    kwargs.setdefault("name", "main")
    kwargs.setdefault("node_count", 3)
    return cluster_create(tenant=tenant, actor="test", **kwargs)


def test_create_runs_to_a_healthy_cluster_with_one_primary(driver, enterprise):
    cluster, operation = _create(enterprise)
    assert cluster.health == Health.PROVISIONING
    operation_run(operation.pk)
    operation.refresh_from_db()
    cluster.refresh_from_db()
    assert operation.state == OperationState.SUCCEEDED
    assert cluster.health == Health.HEALTHY
    roles = sorted(cluster.nodes.values_list("role", flat=True))
    assert roles == ["primary", "replica", "replica"]
    assert [entry["action"] for entry in operation.log] == ["create_primary", "add_replica",
                                                            "add_replica"]


def test_the_same_idempotency_key_finds_the_same_cluster_and_operation(driver, enterprise):
    first, op1 = _create(enterprise, idempotency_key="api:1:abc")
    again, op2 = _create(enterprise, idempotency_key="api:1:abc")
    assert (first.pk, op1.pk) == (again.pk, op2.pk)
    assert Cluster.objects.filter(tenant=enterprise).count() == 1


def test_a_second_operation_while_one_is_in_flight_is_refused(driver, enterprise):
    cluster, _ = _create(enterprise)
    with pytest.raises(OperationInFlight) as caught:
        cluster_scale(cluster=cluster, node_count=5, actor="test")
    assert "busy" in caught.value.detail
    assert Operation.objects.filter(cluster=cluster).count() == 1
    assert Cluster.objects.get(pk=cluster.pk).node_count == 3


def test_a_failed_step_is_resumed_without_repeating_what_was_done(driver, enterprise):
    cluster, operation = _create(enterprise)
    driver.fail_next = ["add_replica"]
    operation_run(operation.pk)
    operation.refresh_from_db()
    assert operation.state == OperationState.RUNNING and "injected" in operation.error
    assert driver.applied == ["create_primary:main-1"] or driver.applied[0].startswith("create_primary")
    operation_run(operation.pk)  # the retry (beat or the countdown task) runs it again
    operation.refresh_from_db()
    assert operation.state == OperationState.SUCCEEDED and operation.attempts == 2
    created = [a for a in driver.applied if a.startswith(("create_primary", "add_replica"))]
    assert len(created) == len(set(created)) == 3


def test_an_operation_fails_after_its_attempts_and_the_cluster_is_marked_failed(driver, enterprise,
                                                                                 settings):
    settings.AEROLITH_OPERATION_ATTEMPTS = 2
    cluster, operation = _create(enterprise)
    driver.fail_next = ["create_primary", "create_primary"]
    operation_run(operation.pk)
    operation_run(operation.pk)
    operation.refresh_from_db()
    cluster.refresh_from_db()
    assert operation.state == OperationState.FAILED
    assert cluster.health == Health.FAILED


def test_scaling_out_and_in_never_removes_the_primary(driver, enterprise):
    cluster, operation = _create(enterprise, node_count=1)
    operation_run(operation.pk)
    primary = Node.objects.get(cluster=cluster, role="primary").name
    operation_run(cluster_scale(cluster=cluster, node_count=5, actor="test").pk)
    assert Node.objects.filter(cluster=cluster).count() == 5
    operation_run(cluster_scale(cluster=cluster, node_count=1, actor="test").pk)
    assert list(Node.objects.filter(cluster=cluster).values_list("name", flat=True)) == [primary]
    cluster.refresh_from_db()
    assert cluster.node_count == 1 and cluster.health == Health.HEALTHY


def test_delete_removes_the_cluster_at_the_provider_and_keeps_the_row(driver, enterprise):
    cluster, operation = _create(enterprise)
    operation_run(operation.pk)
    operation_run(cluster_delete(cluster=cluster, actor="test").pk)
    cluster.refresh_from_db()
    assert cluster.health == Health.DELETED and cluster.deleted_at is not None
    assert driver.poll(cluster.handle) is None and not cluster.nodes.exists()
    with pytest.raises(Conflict):
        cluster_scale(cluster=cluster, node_count=2, actor="test")


def test_a_failed_node_is_detected_restarted_and_staff_alerted(driver, enterprise, mailoutbox,
                                                                settings):
    settings.ADMINS = [("Ops", "ops@aerolith.localhost")]
    cluster, operation = _create(enterprise)
    operation_run(operation.pk)
    replica = Node.objects.filter(cluster=cluster, role="replica").first().name
    driver.kill(cluster.handle, replica)
    health.cluster_check(cluster)
    cluster.refresh_from_db()
    assert cluster.health == "degraded"
    assert Node.objects.get(cluster=cluster, name=replica).health == Health.FAILED
    repair = Operation.objects.get(cluster=cluster, state=OperationState.PENDING)
    assert any("Node failure" in m.subject for m in mailoutbox)
    operation_run(repair.pk)
    assert f"restart_node:{replica}" in driver.applied
    cluster.refresh_from_db()
    assert cluster.health == Health.HEALTHY


def test_a_node_that_will_not_restart_is_replaced(driver, enterprise):
    cluster, operation = _create(enterprise)
    operation_run(operation.pk)
    replica = Node.objects.filter(cluster=cluster, role="replica").first().name
    driver.kill(cluster.handle, replica)
    driver.fail_next = ["restart_node"]
    health.cluster_check(cluster)
    operation_run(Operation.objects.get(cluster=cluster, state=OperationState.PENDING).pk)
    assert f"replace_node:{replica}" in driver.applied
    assert not Node.objects.filter(cluster=cluster, name=replica).exists()
    assert Node.objects.filter(cluster=cluster, health=Health.HEALTHY).count() == 3


def test_staff_replace_a_node(driver, enterprise):
    cluster, operation = _create(enterprise)
    operation_run(operation.pk)
    node = Node.objects.filter(cluster=cluster, role="replica").first()
    operation_run(node_replace(node=node, actor="staff").pk)
    assert f"replace_node:{node.name}" in driver.applied
    assert Node.objects.filter(cluster=cluster).count() == 3


def test_an_interrupted_operation_is_resumed_by_beat(driver, enterprise):
    cluster, operation = _create(enterprise)
    # A worker took it and died: running, no heartbeat for longer than the stale limit.
    old = operation.created_at - timedelta(seconds=settings.AEROLITH_OPERATION_STALE_SECONDS + 5)
    Operation.objects.filter(pk=operation.pk).update(state=OperationState.RUNNING, heartbeat_at=old,
                                                     created_at=old)
    resumed = []
    operations._enqueue = lambda pk: resumed.append(operation_run(pk))
    assert operations_resume() == [operation.pk]
    operation.refresh_from_db()
    assert operation.state == OperationState.SUCCEEDED


def test_a_cluster_locked_by_another_worker_is_left_alone(driver, enterprise):
    cluster, operation = _create(enterprise)
    with psycopg.connect(_dsn(), autocommit=True) as other:
        other.execute("SELECT pg_advisory_lock(%s, %s)", [LOCK_NAMESPACE, cluster.pk])
        operation_run(operation.pk)
    operation.refresh_from_db()
    assert operation.state == OperationState.PENDING and driver.applied == []


def _dsn() -> str:
    params = connection.get_connection_params()
    params.pop("cursor_factory", None)
    params.pop("context", None)
    return psycopg.conninfo.make_conninfo(**{k: v for k, v in params.items()
                                             if isinstance(v, str | int)})


def test_running_dedicated_nodes_accrue_compute_hours(driver, enterprise):
    cluster, operation = _create(enterprise, size="medium")
    operation_run(operation.pk)
    now = clock.wall_now()
    start = now - timedelta(minutes=30)
    assert health.compute_hours_accrue(cluster, now=start) == 0
    hours = health.compute_hours_accrue(cluster, now=now)
    # medium = 4 vCPU = 2 compute-hours per node-hour; 3 nodes for half an hour.
    assert hours == Decimal("3.000000")
    assert health.compute_hours_accrue(cluster, now=now) == 0
    recorded = UsageEvent.objects.filter(tenant_id=enterprise.pk,
                                         meter_id=Meter.objects.get(code="compute_hours").pk)
    assert [(e.quantity, e.properties["nodes"]) for e in recorded] == [(Decimal("3"), 3)]


@pytest.mark.parametrize("field,value", [
    ("size", "huge"), ("node_count", 0), ("node_count", 101), ("node_count", "3"),
    ("node_count", True), ("name", "Main DB"), ("name", ""), ("provider", "gcp"),
    ("region", "mars"),
])
def test_bad_cluster_values_are_refused_and_nothing_is_made(driver, enterprise, field, value):
    with pytest.raises(ValidationFailed) as caught:
        _create(enterprise, **{field: value})
    assert field in caught.value.errors
    assert not Cluster.objects.filter(tenant=enterprise).exists()


def test_policy_bounds_and_unknown_fields_are_refused(driver, enterprise):
    cluster, _ = _create(enterprise)
    for changes in ({"min_nodes": 5, "max_nodes": 4}, {"cpu_target": 50},
                    {"cpu_target_percent": 150}, {"autoscale_enabled": "yes"}):
        with pytest.raises(ValidationFailed):
            cluster_policy_update(cluster=cluster, actor="test", changes=changes)
    cluster.refresh_from_db()
    assert (cluster.min_nodes, cluster.max_nodes, cluster.cpu_target_percent) == (1, 10, 70)


def test_a_duplicate_cluster_name_is_refused(driver, enterprise):
    _create(enterprise)
    with pytest.raises(Conflict) as caught:
        _create(enterprise)
    assert caught.value.code == "duplicate_name"


def test_a_plan_without_dedicated_clusters_is_told_to_upgrade(driver, charlie):
    plan = Plan.objects.get(code="free")
    if not hasattr(plan, "database_placement"):
        pytest.skip("plans have no placement field yet")
    with pytest.raises(PlanNotAllowed) as caught:
        _create(charlie)
    assert "Upgrade" in caught.value.detail
