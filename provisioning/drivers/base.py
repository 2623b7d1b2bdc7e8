"""The one interface every provider implements (SPEC §7): plan / apply / poll / observe.

Services never import an SDK: they ask `driver_for(provider)` for a driver and speak only
in the values below. A driver keeps no state of its own between calls; what exists is
whatever the provider reports, so any step can be re-planned and re-applied after a crash.

- `poll(handle)` reports what the provider runs now (None when nothing exists).
- `plan(current, spec)` is pure: the steps that turn `current` into `spec`, one node at a
  time, never removing the primary. An empty plan means the cluster is as wanted.
- `apply(handle, step, spec)` performs one step and returns when the provider accepted it
  (a local step is done when it returns; a cloud step may still be in progress, and the
  next `poll` shows it as `scaling`/`provisioning`). Applying a step that is already done
  does nothing (idempotent).
- `observe(handle)` measures each running node.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

# One health vocabulary for clusters and nodes, whatever the provider calls its states.
PROVISIONING = "provisioning"
HEALTHY = "healthy"
DEGRADED = "degraded"
SCALING = "scaling"
FAILED = "failed"
DELETING = "deleting"
HEALTH_STATES = (PROVISIONING, HEALTHY, DEGRADED, SCALING, FAILED, DELETING)

PRIMARY = "primary"
REPLICA = "replica"


@dataclass(frozen=True)
class ClusterSpec:
    """What we want: `nodes` nodes (one primary) of `size` in `region`."""

    handle: str
    size: str
    nodes: int
    region: str
    admin_user: str = "aerolith_admin"
    admin_password: str = field(default="", repr=False)


@dataclass(frozen=True)
class NodeState:
    name: str
    role: str  # PRIMARY or REPLICA
    health: str  # one of HEALTH_STATES
    host: str = ""
    port: int | None = None
    detail: str = ""


@dataclass(frozen=True)
class ClusterState:
    handle: str
    health: str
    nodes: tuple[NodeState, ...]
    detail: str = ""

    @property
    def primary(self) -> NodeState | None:
        return next((n for n in self.nodes if n.role == PRIMARY), None)


@dataclass(frozen=True)
class Step:
    """One change: create_primary, add_replica, remove_replica, restart_node,
    replace_node, delete_cluster. `node` names the node it concerns."""

    action: str
    node: str = ""


@dataclass(frozen=True)
class NodeMetrics:
    node: str
    cpu_percent: float | None  # of the node's vCPUs, 0..100
    memory_percent: float | None  # of the node's memory, 0..100
    connections: int | None = None
    replication_lag_bytes: int | None = None
    up: bool = True


class DriverError(Exception):
    """The provider refused or failed a step; the message says what happened."""


class Driver(Protocol):
    name: str

    def poll(self, handle: str) -> ClusterState | None: ...
    def plan(self, current: ClusterState | None, spec: ClusterSpec | None) -> list[Step]: ...
    def apply(self, handle: str, step: Step, spec: ClusterSpec | None) -> None: ...
    def observe(self, handle: str) -> list[NodeMetrics]: ...
