"""plan() is pure and the same for every cloud driver: one node a step, the primary never
removed, no spec means delete."""
import pytest

from provisioning.drivers.aws import AwsDriver
from provisioning.drivers.base import (
    DELETING,
    HEALTHY,
    PRIMARY,
    PROVISIONING,
    REPLICA,
    ClusterSpec,
    ClusterState,
    DriverError,
    NodeState,
    Step,
)
from provisioning.drivers.kubernetes import KubernetesDriver

DRIVERS = [AwsDriver(), KubernetesDriver()]


def state(*roles, health=HEALTHY) -> ClusterState:
    nodes = tuple(NodeState(f"c-{i}", role, health) for i, role in enumerate(roles, start=1))
    return ClusterState("c", HEALTHY, nodes)


def spec(nodes: int) -> ClusterSpec:
    return ClusterSpec(handle="c", size="small", nodes=nodes, region="eu-central")


@pytest.fixture(params=DRIVERS, ids=lambda d: d.name)
def driver(request):
    return request.param


def test_nothing_to_create(driver):
    assert driver.plan(None, spec(3)) == [Step("create_primary", "c-1"),
                                          Step("add_replica", "c-2"), Step("add_replica", "c-3")]


def test_scale_out_adds_one_replica_a_step_with_free_names(driver):
    current = ClusterState("c", HEALTHY, (NodeState("c-1", PRIMARY, HEALTHY),
                                          NodeState("c-3", REPLICA, HEALTHY)))
    assert driver.plan(current, spec(4)) == [Step("add_replica", "c-2"),
                                             Step("add_replica", "c-4")]


def test_scale_in_removes_replicas_only_highest_first(driver):
    current = state(REPLICA, PRIMARY, REPLICA, REPLICA)
    assert driver.plan(current, spec(1)) == [Step("remove_replica", "c-4"),
                                             Step("remove_replica", "c-3"),
                                             Step("remove_replica", "c-1")]
    assert all(s.node != "c-2" for s in driver.plan(current, spec(1)))


def test_as_wanted_is_an_empty_plan(driver):
    assert driver.plan(state(PRIMARY, REPLICA), spec(2)) == []


def test_nodes_on_their_way_count_and_nodes_leaving_do_not(driver):
    current = ClusterState("c", HEALTHY, (
        NodeState("c-1", PRIMARY, HEALTHY), NodeState("c-2", REPLICA, PROVISIONING),
        NodeState("c-3", REPLICA, DELETING)))
    assert driver.plan(current, spec(2)) == []
    assert driver.plan(current, spec(3)) == [Step("add_replica", "c-4")]


def test_fewer_than_one_node_is_refused(driver):
    with pytest.raises(DriverError, match="at least one node"):
        driver.plan(state(PRIMARY), spec(0))
    with pytest.raises(DriverError):
        driver.plan(None, spec(-1))


def test_no_spec_means_delete(driver):
    assert driver.plan(state(PRIMARY, REPLICA), None) == [Step("delete_cluster")]
    assert driver.plan(None, None) == []


def test_plan_does_not_touch_its_inputs(driver):
    current = state(PRIMARY, REPLICA, REPLICA)
    before = repr(current)
    driver.plan(current, spec(1))
    driver.plan(current, spec(5))
    assert repr(current) == before
