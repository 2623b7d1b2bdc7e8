"""An in-memory provider for testing the operation runner itself (idempotency, resuming
after a crash, failures). It follows the driver contract of provisioning/drivers/base.py
and plans with the same pure planner as the cloud drivers; the real providers have their
own tests (test_local_driver.py, test_kubernetes_driver.py, test_aws_driver.py)."""
from provisioning.drivers.base import (
    FAILED,
    HEALTHY,
    PRIMARY,
    REPLICA,
    ClusterState,
    DriverError,
    NodeMetrics,
    NodeState,
    Step,
)
from provisioning.drivers.planning import plan_steps


class MemoryDriver:
    name = "memory"

    def __init__(self):
        self.clusters: dict[str, dict[str, NodeState]] = {}
        self.applied: list[str] = []
        self.fail_next: list[str] = []  # actions whose next apply raises once
        self.metrics: dict[str, tuple[float, float]] = {}

    def poll(self, handle):
        nodes = self.clusters.get(handle)
        if nodes is None:
            return None
        states = tuple(nodes.values())
        if any(n.health == FAILED and n.role == PRIMARY for n in states):
            health = FAILED
        elif any(n.health == FAILED for n in states):
            health = "degraded"
        else:
            health = HEALTHY
        return ClusterState(handle=handle, health=health, nodes=states)

    def plan(self, current, spec):
        if current is not None and spec is not None:
            failed = [Step("restart_node", n.name) for n in current.nodes if n.health == FAILED]
            if failed:
                return failed
        return plan_steps(current, spec)

    def apply(self, handle, step: Step, spec):
        if step.action in self.fail_next:
            self.fail_next.remove(step.action)
            raise DriverError(f"{step.action} failed (injected)")
        self.applied.append(f"{step.action}:{step.node}")
        nodes = self.clusters.setdefault(handle, {})
        port = 6000 + len(self.applied)
        if step.action == "create_primary":
            nodes[step.node] = NodeState(step.node, PRIMARY, HEALTHY, "127.0.0.1", port)
        elif step.action == "add_replica":
            nodes[step.node] = NodeState(step.node, REPLICA, HEALTHY, "127.0.0.1", port)
        elif step.action == "remove_replica":
            nodes.pop(step.node, None)
        elif step.action in ("restart_node", "replace_node"):
            old = nodes.pop(step.node)
            name = step.node if step.action == "restart_node" else f"{step.node}r"
            nodes[name] = NodeState(name, old.role, HEALTHY, "127.0.0.1", port)
        elif step.action == "delete_cluster":
            del self.clusters[handle]

    def observe(self, handle):
        return [NodeMetrics(node=n, cpu_percent=self.metrics.get(n, (50.0, 40.0))[0],
                            memory_percent=self.metrics.get(n, (50.0, 40.0))[1], connections=3)
                for n in self.clusters.get(handle, {})]

    def kill(self, handle, node):
        old = self.clusters[handle][node]
        self.clusters[handle][node] = NodeState(old.name, old.role, FAILED, old.host, old.port)
