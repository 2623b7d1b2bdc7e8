"""The pure planner the cloud drivers share: which steps turn what a provider runs into
what we want, one node at a time, never removing the primary (SPEC §7).

Node names are `<handle>-<n>`. A new replica takes the lowest free number; a scale-in
removes the replica with the highest number first, which is also what CloudNativePG does
on its own when `spec.instances` drops, so the plan names the node that really goes.

Nodes already on their way out (health `deleting`) are not counted: the step that removes
them was accepted, so the plan is empty once every needed step has been accepted, and the
cluster's health (`scaling`) says the provider is still working on it.
"""
from __future__ import annotations

import re

from .base import DELETING, REPLICA, ClusterSpec, ClusterState, DriverError, Step

_SERIAL = re.compile(r"-(\d+)$")


def node_name(handle: str, serial: int) -> str:
    return f"{handle}-{serial}"


def serial_of(name: str) -> int:
    """The number at the end of a node name (0 when there is none)."""
    match = _SERIAL.search(name)
    return int(match.group(1)) if match else 0


def plan_steps(current: ClusterState | None, spec: ClusterSpec | None) -> list[Step]:
    if spec is None:
        return [] if current is None else [Step("delete_cluster")]
    if spec.nodes < 1:
        raise DriverError(
            f"A cluster needs at least one node (its primary); {spec.nodes} was asked for. "
            "Delete the cluster instead of scaling it to zero.")
    live = [] if current is None else [n for n in current.nodes if n.health != DELETING]
    taken = {serial_of(n.name) for n in (current.nodes if current else ())}
    steps: list[Step] = []
    if not live:
        steps.append(Step("create_primary", node_name(spec.handle, 1) if 1 not in taken
                          else node_name(spec.handle, max(taken) + 1)))
        taken.add(serial_of(steps[0].node))
        count = 1
    else:
        count = len(live)
    serial = 1
    while count < spec.nodes:
        while serial in taken:
            serial += 1
        taken.add(serial)
        steps.append(Step("add_replica", node_name(spec.handle, serial)))
        count += 1
    if count > spec.nodes:
        replicas = sorted((n for n in live if n.role == REPLICA),
                          key=lambda n: (serial_of(n.name), n.name), reverse=True)
        for node in replicas[:count - spec.nodes]:
            steps.append(Step("remove_replica", node.name))
    return steps
