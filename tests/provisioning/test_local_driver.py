"""The `local` provider against real PostgreSQL servers on this host (a temp clusters dir,
everything stopped and deleted afterwards even when a test fails), plus its pure planning
on hand-made states."""
import os
import signal
import time

import psutil
import psycopg
import pytest

from provisioning.drivers import local_pg
from provisioning.drivers.base import (
    DEGRADED,
    FAILED,
    HEALTHY,
    PRIMARY,
    REPLICA,
    ClusterSpec,
    ClusterState,
    DriverError,
    NodeState,
    Step,
)
from provisioning.drivers.local import LocalDriver, plan_steps
from tests.conftest import server_tmpdir

from .drivers_support import converge

PASSWORD = "pw:with\\odd chars'42"


def spec(handle: str, nodes: int) -> ClusterSpec:
    return ClusterSpec(handle=handle, size="small", nodes=nodes, region="eu-central",
                       admin_password=PASSWORD)


@pytest.fixture
def root():
    yield from server_tmpdir("aerolith-test-local-")


@pytest.fixture
def driver(root):
    driver = LocalDriver(root)
    yield driver
    for cluster_dir in root.iterdir():
        if cluster_dir.is_dir():
            try:
                driver.apply(cluster_dir.name, Step("delete_cluster"), None)
            except DriverError:
                pass
    # Whatever survived (a test that broke half-way): kill it by its data directory.
    for node_dir in root.glob("*/*"):
        process = local_pg.postmaster(node_dir / "data")
        if process is not None:
            local_pg.kill(process)


def query(driver, handle, node, sql, params=None):
    """Run `sql` on `node` over TCP with the admin password, as callers do."""
    port = next(n.port for n in driver.poll(handle).nodes if n.name == node)
    with psycopg.connect(host="127.0.0.1", port=port, user="aerolith_admin", dbname="postgres",
                         password=PASSWORD, autocommit=True, connect_timeout=5) as conn:
        cursor = conn.execute(sql, params)
        return cursor.fetchall() if cursor.description else None


def eventually(check, timeout=20.0):
    deadline = time.monotonic() + timeout
    while True:
        try:
            result = check()
            if result:
                return result
        except psycopg.Error:
            if time.monotonic() > deadline:
                raise
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(0.1)


def rows_on(driver, handle, node):
    return query(driver, handle, node, "SELECT note FROM notes ORDER BY id")


def postmaster_pid(driver, handle, node) -> int:
    return local_pg.postmaster(driver._cluster_dir(handle) / node / "data").pid


def running(pid: int) -> bool:
    """Alive, not merely a zombie its new parent has yet to reap."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def healthy(driver, handle):
    state = driver.poll(handle)
    return state.health == HEALTHY and all(n.health == HEALTHY for n in state.nodes)


# --- real servers ---------------------------------------------------------------------


def test_scale_out_and_in_keeps_data_and_never_touches_the_primary(driver):
    handle = "scale"
    assert driver.poll(handle) is None
    converge(driver, handle, spec(handle, 1))
    query(driver, handle, "scale-0", "CREATE TABLE notes (id serial PRIMARY KEY, note text)")
    query(driver, handle, "scale-0", "INSERT INTO notes (note) VALUES ('kept')")
    primary_pid = postmaster_pid(driver, handle, "scale-0")

    steps = driver.plan(driver.poll(handle), spec(handle, 3))
    assert steps == [Step("add_replica", "scale-1"), Step("add_replica", "scale-2")]
    for step in steps:
        driver.apply(handle, step, spec(handle, 3))
        driver.apply(handle, step, spec(handle, 3))  # re-applying a done step does nothing

    state = driver.poll(handle)
    assert state.health == HEALTHY
    assert [(n.name, n.role, n.host) for n in state.nodes] == [
        ("scale-0", PRIMARY, "127.0.0.1"), ("scale-1", REPLICA, "127.0.0.1"),
        ("scale-2", REPLICA, "127.0.0.1")]
    for replica in ("scale-1", "scale-2"):
        assert eventually(lambda r=replica: rows_on(driver, handle, r)) == [("kept",)]
        assert query(driver, handle, replica, "SELECT pg_is_in_recovery()") == [(True,)]
    assert driver.connection_info(handle)["port"] == state.primary.port

    metrics = {m.node: m for m in driver.observe(handle)}
    assert set(metrics) == {"scale-0", "scale-1", "scale-2"}
    for m in metrics.values():
        assert m.up and 0 <= m.cpu_percent <= 100 and 0 < m.memory_percent <= 100
        assert m.connections >= 0
    assert metrics["scale-0"].replication_lag_bytes is None
    assert all(metrics[r].replication_lag_bytes >= 0 for r in ("scale-1", "scale-2"))

    assert driver.plan(driver.poll(handle), spec(handle, 2)) == [
        Step("remove_replica", "scale-2")]
    converge(driver, handle, spec(handle, 2))
    assert not (driver._cluster_dir(handle) / "scale-2").exists()
    assert [n.name for n in driver.poll(handle).nodes] == ["scale-0", "scale-1"]
    assert postmaster_pid(driver, handle, "scale-0") == primary_pid

    # A removed node's name is not handed out again.
    converge(driver, handle, spec(handle, 3))
    assert [n.name for n in driver.poll(handle).nodes] == ["scale-0", "scale-1", "scale-3"]
    assert eventually(lambda: rows_on(driver, handle, "scale-3")) == [("kept",)]

    pids = [postmaster_pid(driver, handle, n) for n in ("scale-0", "scale-1", "scale-3")]
    assert converge(driver, handle, None) == ["delete_cluster:"]
    assert driver.poll(handle) is None
    assert not driver._cluster_dir(handle).exists()
    assert not any(running(pid) for pid in pids)
    assert driver.observe(handle) == []


def test_a_killed_replica_is_reported_restarted_and_replaced_under_a_new_name(driver):
    handle = "heal"
    converge(driver, handle, spec(handle, 2))
    query(driver, handle, "heal-0", "CREATE TABLE notes (id serial PRIMARY KEY, note text)")

    os.kill(postmaster_pid(driver, handle, "heal-1"), signal.SIGKILL)
    state = eventually(lambda: (s := driver.poll(handle)).health == DEGRADED and s)
    assert [(n.name, n.health) for n in state.nodes] == [("heal-0", HEALTHY), ("heal-1", FAILED)]
    assert {m.node: m.up for m in driver.observe(handle)} == {"heal-0": True, "heal-1": False}

    steps = driver.plan(state, spec(handle, 2))
    assert steps == [Step("restart_node", "heal-1")]
    driver.apply(handle, steps[0], spec(handle, 2))
    assert healthy(driver, handle)
    query(driver, handle, "heal-0", "INSERT INTO notes (note) VALUES ('after restart')")
    assert eventually(lambda: rows_on(driver, handle, "heal-1")) == [("after restart",)]

    # When a node will not restart, the caller replaces it: a fresh copy, a new name.
    driver.apply(handle, Step("replace_node", "heal-1"), spec(handle, 2))
    driver.apply(handle, Step("replace_node", "heal-1"), spec(handle, 2))  # done: no-op
    assert [n.name for n in driver.poll(handle).nodes] == ["heal-0", "heal-2"]
    assert not (driver._cluster_dir(handle) / "heal-1").exists()
    assert healthy(driver, handle)
    assert eventually(lambda: rows_on(driver, handle, "heal-2")) == [("after restart",)]


def test_a_failed_primary_is_replaced_by_promoting_a_replica(driver):
    handle = "promo"
    converge(driver, handle, spec(handle, 3))
    query(driver, handle, "promo-0", "CREATE TABLE notes (id serial PRIMARY KEY, note text)")
    query(driver, handle, "promo-0", "INSERT INTO notes (note) VALUES ('before')")
    for replica in ("promo-1", "promo-2"):
        eventually(lambda r=replica: rows_on(driver, handle, r))

    os.kill(postmaster_pid(driver, handle, "promo-0"), signal.SIGKILL)
    state = eventually(lambda: (s := driver.poll(handle)).health == FAILED and s)
    assert state.primary.name == "promo-0" and state.primary.health == FAILED
    assert driver.plan(state, spec(handle, 3)) == [Step("restart_node", "promo-0")]

    driver.apply(handle, Step("replace_node", "promo-0"), spec(handle, 3))

    state = driver.poll(handle)
    assert state.health == HEALTHY
    assert not (driver._cluster_dir(handle) / "promo-0").exists()
    new_primary = state.primary.name
    assert new_primary in ("promo-1", "promo-2")
    assert [n.name for n in state.nodes if n.role == REPLICA] == sorted(
        {"promo-1", "promo-2", "promo-3"} - {new_primary})
    assert rows_on(driver, handle, new_primary) == [("before",)]
    query(driver, handle, new_primary, "INSERT INTO notes (note) VALUES ('after')")
    for replica in (n.name for n in state.nodes if n.role == REPLICA):
        assert eventually(lambda r=replica: len(rows_on(driver, handle, r)) == 2 and
                          rows_on(driver, handle, r)) == [("before",), ("after",)]
    assert driver.plan(state, spec(handle, 3)) == []


def test_a_lone_primary_is_only_ever_restarted(driver):
    handle = "lone"
    converge(driver, handle, spec(handle, 1))
    os.kill(postmaster_pid(driver, handle, "lone-0"), signal.SIGKILL)
    eventually(lambda: driver.poll(handle).health == FAILED)
    driver.apply(handle, Step("replace_node", "lone-0"), spec(handle, 1))
    assert healthy(driver, handle)
    assert [n.name for n in driver.poll(handle).nodes] == ["lone-0"]
    with pytest.raises(DriverError, match="never removed"):
        driver.apply(handle, Step("remove_replica", "lone-0"), spec(handle, 1))

    # A node that cannot start says why (the server log's tail), and its data is kept.
    node_dir = driver._cluster_dir(handle) / "lone-0"
    local_pg.stop(node_dir)
    (node_dir / "data" / "global" / "pg_control").unlink()
    with pytest.raises(DriverError, match="pg_control"):
        driver.apply(handle, Step("replace_node", "lone-0"), spec(handle, 1))
    assert (node_dir / "data" / "PG_VERSION").exists()


# --- planning (pure) ------------------------------------------------------------------


def node(name, role=REPLICA, health=HEALTHY):
    return NodeState(name=name, role=role, health=health, host="127.0.0.1", port=5432)


def cluster(*nodes, handle="c"):
    return ClusterState(handle=handle, health=HEALTHY, nodes=tuple(nodes))


def test_plan_creates_a_primary_then_replicas_from_nothing():
    assert plan_steps(None, spec("c", 3)) == [
        Step("create_primary", "c-0"), Step("add_replica", "c-1"), Step("add_replica", "c-2")]


def test_plan_scale_in_removes_the_newest_replicas_and_never_the_primary():
    # After a promotion the primary can be the highest-numbered node.
    state = cluster(node("c-1"), node("c-4"), node("c-5", PRIMARY), node("c-7"))
    assert plan_steps(state, spec("c", 2)) == [
        Step("remove_replica", "c-7"), Step("remove_replica", "c-4")]
    assert plan_steps(state, spec("c", 1)) == [
        Step("remove_replica", "c-7"), Step("remove_replica", "c-4"),
        Step("remove_replica", "c-1")]


def test_plan_scale_out_names_new_nodes_after_the_highest_number():
    state = cluster(node("c-0", PRIMARY), node("c-3"))
    assert plan_steps(state, spec("c", 4)) == [
        Step("add_replica", "c-4"), Step("add_replica", "c-5")]
    assert plan_steps(state, spec("c", 2)) == []


def test_plan_refuses_a_cluster_without_nodes():
    with pytest.raises(DriverError, match="at least one node"):
        plan_steps(cluster(node("c-0", PRIMARY)), spec("c", 0))


def test_plan_restarts_failed_nodes_first_but_not_ones_it_removes():
    state = cluster(node("c-0", PRIMARY, FAILED), node("c-1", health=FAILED),
                    node("c-2", health=FAILED))
    assert plan_steps(state, spec("c", 2)) == [
        Step("restart_node", "c-0"), Step("restart_node", "c-1"),
        Step("remove_replica", "c-2")]


def test_plan_deletes_only_what_exists():
    assert plan_steps(cluster(node("c-0", PRIMARY)), None) == [Step("delete_cluster")]
    assert plan_steps(None, None) == []


def test_an_unsafe_handle_is_refused():
    with pytest.raises(DriverError, match="not a valid cluster handle"):
        LocalDriver("/nonexistent").poll("../etc")


def test_a_promotion_not_yet_recorded_is_reported_and_then_recorded(driver):
    """A worker that died between `pg_ctl promote` and rewriting node.json."""
    handle = "crash"
    converge(driver, handle, spec(handle, 2))
    cluster_dir = driver._cluster_dir(handle)
    local_pg.stop(cluster_dir / "crash-0")
    local_pg.run_tool("pg_ctl", ["-D", str(cluster_dir / "crash-1" / "data"), "-w", "promote"],
                      cwd=cluster_dir / "crash-1", timeout=60)
    local_pg.discard(cluster_dir / "crash-0")

    state = driver.poll(handle)
    assert [(n.name, n.role, n.health) for n in state.nodes] == [("crash-1", PRIMARY, HEALTHY)]
    steps = driver.plan(state, spec(handle, 2))
    assert steps == [Step("add_replica", "crash-2")]
    driver.apply(handle, steps[0], spec(handle, 2))
    assert local_pg.NodeRecord.load(cluster_dir / "crash-1").role == PRIMARY
    assert healthy(driver, handle)
