"""The autoscaler's decision (SPEC §7): a pure function of plain values, modelled on the
Kubernetes Horizontal Pod Autoscaler, with nodes in place of pods.

Per metric (CPU, memory), as the HPA's replica calculator does:

- ratio = mean utilisation of the ready nodes with a fresh sample / target;
- within `tolerance` of 1.0 the metric proposes the current count, otherwise
  ceil(ready × ratio);
- nodes without a fresh sample ("missing") are filled in at 100 % when the ratio says
  scale down and at 0 % when it says scale up, and unready nodes at 0 % on a scale-up;
  the ratio is recomputed over all of them, and if it then lands within tolerance or
  points the other way, the metric proposes the current count (the data cannot tell).

The recommendation is the largest proposal of the metrics (and of the forecast, which may
only raise it). Then, like the HPA's behaviours: a scale-up happens at once; a scale-down
goes only to the highest recommendation of the last `stabilization_seconds`, so one quiet
minute does not remove a node that the next busy one needs. That window is persisted by
the caller (`Decision.recent`), so a restarted worker decides as the old one would have.
Step limits, then the [min, max] bounds (min is at least 1, so the primary is never
removed), then: no new action while an operation is in flight.

Reason codes (stored on history rows and shown to staff):

hold:   paused, operation_in_flight, metrics_missing, metrics_stale,
        desired_within_tolerance, metrics_inconclusive, scale_down_stabilized,
        at_max, at_min
act:    scale_up, scale_down, step_limited, forecast_scale_up, out_of_bounds
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

SCALE_UP = "scale_up"
SCALE_DOWN = "scale_down"
HOLD = "hold"

HOLD_REASONS = ("paused", "operation_in_flight", "metrics_missing", "metrics_stale",
                "desired_within_tolerance", "metrics_inconclusive", "scale_down_stabilized",
                "at_max", "at_min")
ACT_REASONS = ("scale_up", "scale_down", "step_limited", "forecast_scale_up", "out_of_bounds")
REASONS = HOLD_REASONS + ACT_REASONS

# What a missing node is assumed to use when the others say "scale down" (HPA: 100 % of
# the request, or the target if that is higher).
MISSING_ON_SCALE_DOWN = 100.0


@dataclass(frozen=True)
class Policy:
    min_nodes: int = 1
    max_nodes: int = 10
    cpu_target_percent: float = 70
    memory_target_percent: float = 80  # 0 (or less) leaves memory out
    scale_up_step: int = 4
    scale_down_step: int = 1
    stabilization_seconds: int = 300
    tolerance: float = 0.1
    metrics_max_age_seconds: int = 180
    forecast_enabled: bool = False
    paused: bool = False

    @property
    def bounds(self) -> tuple[int, int]:
        low = max(1, self.min_nodes)  # never below one node: the primary stays
        return low, max(low, self.max_nodes)


@dataclass(frozen=True)
class Sample:
    """One node's latest observation."""

    node: str
    ready: bool
    cpu_percent: float | None
    memory_percent: float | None
    observed_at: datetime | None


@dataclass(frozen=True)
class History:
    """What the previous evaluations left behind, plus facts about the cluster now."""

    current_nodes: int
    recent: Sequence[tuple[int, int]] = ()  # [(epoch seconds, recommendation)]
    last_outcome: str = ""
    last_reason: str = ""
    operation_in_flight: bool = False
    # Predicted load for the coming period in node-percent (mean % × nodes), per metric;
    # None when there is no forecast (see recommendations.forecast_load).
    forecast_cpu_load: float | None = None
    forecast_memory_load: float | None = None


@dataclass(frozen=True)
class Decision:
    outcome: str  # scale_up, scale_down, hold
    reason: str
    current: int
    desired: int  # the node count to go to (== current when holding)
    recent: list[tuple[int, int]]  # the window to persist for the next evaluation
    inputs: dict = field(default_factory=dict)
    changed: bool = False  # acts, or outcome/reason differ from the previous evaluation

    @property
    def acts(self) -> bool:
        return self.outcome != HOLD


@dataclass(frozen=True)
class _Proposal:
    replicas: int
    ratio: float | None
    status: str  # "change", "within_tolerance", "inconclusive", "no_data"


def _ratio(values: Sequence[float], target: float) -> float:
    return (sum(values) / len(values)) / target


def propose(values: Sequence[float], missing: int, unready: int, target: float,
            tolerance: float, current: int) -> _Proposal:
    """The HPA replica calculator for one metric: `values` are the ready nodes' fresh
    utilisations, `missing` the ready nodes without one, `unready` the nodes not ready."""
    if not values:
        return _Proposal(current, None, "no_data")
    ratio = _ratio(values, target)
    scale_up_with_unready = unready > 0 and ratio > 1.0
    if not missing and not scale_up_with_unready:
        if abs(1.0 - ratio) <= tolerance:
            return _Proposal(current, ratio, "within_tolerance")
        return _Proposal(math.ceil(ratio * len(values)), ratio, "change")
    filled = list(values)
    if ratio < 1.0:
        filled += [max(MISSING_ON_SCALE_DOWN, target)] * missing
    elif ratio > 1.0:
        filled += [0.0] * missing
    if scale_up_with_unready:
        filled += [0.0] * unready
    new_ratio = _ratio(filled, target)
    if (abs(1.0 - new_ratio) <= tolerance or (ratio < 1.0 < new_ratio)
            or (ratio > 1.0 > new_ratio)):
        return _Proposal(current, new_ratio, "inconclusive")
    replicas = math.ceil(new_ratio * len(filled))
    if (new_ratio < 1.0 and replicas > current) or (new_ratio > 1.0 and replicas < current):
        return _Proposal(current, new_ratio, "inconclusive")
    return _Proposal(replicas, new_ratio, "change")


def _epoch(moment: datetime) -> int:
    return int(moment.timestamp())


def decide(policy: Policy, history: History, samples: Sequence[Sample], now: datetime) -> Decision:
    """The scaling decision for one cluster at `now` (see the module docstring)."""
    current = history.current_nodes
    low, high = policy.bounds
    now_s = _epoch(now)
    window = [(int(t), int(d)) for t, d in history.recent
              if now_s - policy.stabilization_seconds < int(t) <= now_s]
    inputs: dict = {"nodes": len(samples), "min": low, "max": high}

    def result(outcome, reason, desired, recent):
        changed = outcome != HOLD or (outcome, reason) != (history.last_outcome, history.last_reason)
        return Decision(outcome, reason, current, desired, sorted(recent), inputs, changed)

    if policy.paused:
        return result(HOLD, "paused", current, window)

    # Which samples count: ready nodes with a sample younger than the age limit.
    max_age = policy.metrics_max_age_seconds
    ready = [s for s in samples if s.ready]
    unready = len(samples) - len(ready)
    fresh = [s for s in ready if s.observed_at is not None
             and 0 <= (now - s.observed_at).total_seconds() <= max_age]
    stale = len([s for s in ready if s.observed_at is not None]) - len(fresh)
    inputs.update(ready=len(ready), fresh=len(fresh), stale=stale)

    proposals = {}
    for metric, target in (("cpu", policy.cpu_target_percent),
                           ("memory", policy.memory_target_percent)):
        if not target or target <= 0:
            continue
        values = [getattr(s, f"{metric}_percent") for s in fresh]
        values = [float(v) for v in values if v is not None and math.isfinite(v)]
        proposal = propose(values, len(ready) - len(values), unready, float(target),
                           policy.tolerance, current)
        proposals[metric] = proposal
        if values:
            inputs[f"{metric}_mean"] = round(sum(values) / len(values), 2)
            inputs[f"{metric}_target"] = target
            inputs[f"{metric}_ratio"] = round(proposal.ratio, 4)
    usable = [p for p in proposals.values() if p.status != "no_data"]

    recommendation = None
    forecast_raised = False
    if usable:
        recommendation = max(p.replicas for p in usable)
        forecast = _forecast_replicas(policy, history, current)
        if forecast is not None:
            inputs["forecast_nodes"] = forecast
            if forecast > recommendation:
                recommendation, forecast_raised = forecast, True
        inputs["recommended"] = recommendation
        # With no earlier recommendation in the window (a new policy, or the autoscaler
        # was away longer than the window) the current size counts as recommended now:
        # a scale-down then waits one full window, as if the window had been watched.
        seed = not window and policy.stabilization_seconds > 0
        entry = max(recommendation, current) if seed else recommendation
        window.append((now_s, entry))

    if history.operation_in_flight:
        return result(HOLD, "operation_in_flight", current, window)
    if recommendation is None:
        return result(HOLD, "metrics_stale" if stale else "metrics_missing", current, window)

    base_reason = "desired_within_tolerance"
    if recommendation > current:
        target_nodes = recommendation
    elif recommendation < current:
        stabilized = max(d for _, d in window)
        inputs["stabilized"] = stabilized
        target_nodes = stabilized if stabilized < current else current
        base_reason = "scale_down_stabilized" if target_nodes == current else base_reason
    else:
        target_nodes = current
        if any(p.status == "inconclusive" for p in usable):
            base_reason = "metrics_inconclusive"

    up_step, down_step = max(1, policy.scale_up_step), max(1, policy.scale_down_step)
    limited = min(target_nodes, current + up_step) if target_nodes > current else \
        max(target_nodes, current - down_step)
    desired = min(max(limited, low), high)
    inputs["desired"] = desired

    if desired == current:
        if target_nodes > current and current >= high:
            return result(HOLD, "at_max", current, window)
        if target_nodes < current and current <= low:
            return result(HOLD, "at_min", current, window)
        return result(HOLD, base_reason, current, window)
    outcome = SCALE_UP if desired > current else SCALE_DOWN
    if (current < low and desired == low) or (current > high and desired == high):
        reason = "out_of_bounds"
    elif limited != target_nodes:
        reason = "step_limited"
    elif forecast_raised and outcome == SCALE_UP:
        reason = "forecast_scale_up"
    else:
        reason = outcome
    return result(outcome, reason, desired, window)


def _forecast_replicas(policy: Policy, history: History, current: int) -> int | None:
    """Nodes the predicted load needs, when it needs more than now beyond tolerance; the
    forecast only ever raises the recommendation (it never scales in by itself)."""
    if not policy.forecast_enabled or current < 1:
        return None
    needed = []
    for load, target in ((history.forecast_cpu_load, policy.cpu_target_percent),
                         (history.forecast_memory_load, policy.memory_target_percent)):
        if load is None or not target or target <= 0 or not math.isfinite(load) or load < 0:
            continue
        needed.append(load / target)
    if not needed:
        return None
    nodes = max(needed)
    if nodes / current <= 1.0 + policy.tolerance:
        return None
    return math.ceil(nodes)
