"""What the autoscaler would do to a cluster right now (SPEC §7 "advice"), for the API and
the portal: the pure decision fed from the cluster's rows, changing nothing.

The beat-driven autoscaler makes the same call and then acts on it and records it; here
the decision is only shown, so customers and staff can see why a cluster holds or moves.
"""
from dataclasses import dataclass
from datetime import datetime

from django.db.models import Q

from aerolith import clock

from .autoscaler import Decision, History, Sample, decide
from .models import Cluster, ClusterSample, Health
from .recommendations import WEEK, forecast_load
from .selectors import operation_in_flight
from .services.autoscaling import FORECAST_HORIZON, FORECAST_TREND, policy_of


@dataclass(frozen=True)
class Advice:
    decision: Decision
    evaluated_at: datetime
    forecast_cpu_load: float | None
    forecast_memory_load: float | None


def samples_of(cluster: Cluster) -> list[Sample]:
    return [Sample(node=n.name, ready=n.health == Health.HEALTHY, cpu_percent=n.cpu_percent,
                   memory_percent=n.memory_percent, observed_at=n.observed_at)
            for n in cluster.nodes.all()]


def _forecast(cluster: Cluster, now: datetime) -> tuple[float | None, float | None]:
    """Predicted load (mean % × nodes) per metric, as the autoscaler's round computes it:
    last week's same hour and the last hour's trend."""
    last_week = Q(at__gte=now - WEEK, at__lte=now - WEEK + FORECAST_HORIZON)
    last_hour = Q(at__gte=now - FORECAST_TREND, at__lte=now)
    rows = list(ClusterSample.objects.filter(last_week | last_hour, cluster=cluster)
                .values_list("at", "nodes", "cpu_percent", "memory_percent"))
    cpu = [(at, c * nodes) for at, nodes, c, _ in rows if c is not None]
    memory = [(at, m * nodes) for at, nodes, _, m in rows if m is not None]
    options = {"horizon": FORECAST_HORIZON, "trend_window": FORECAST_TREND}
    return forecast_load(cpu, now, **options), forecast_load(memory, now, **options)


def _recent(value) -> list[tuple[int, int]]:
    out = []
    for item in value if isinstance(value, list) else []:
        if isinstance(item, list | tuple) and len(item) == 2:
            try:
                out.append((int(item[0]), int(item[1])))
            except (TypeError, ValueError):
                continue
    return out


def autoscale_preview(cluster: Cluster, now: datetime | None = None) -> Advice:
    """The decision the autoscaler would take for `cluster` at `now`; writes nothing."""
    now = now or clock.now(cluster.tenant)
    cpu_load = memory_load = None
    if cluster.forecast_enabled:
        cpu_load, memory_load = _forecast(cluster, now)
    history = History(
        current_nodes=cluster.node_count,
        recent=_recent(cluster.recent_recommendations),
        last_outcome=cluster.last_outcome, last_reason=cluster.last_reason,
        operation_in_flight=operation_in_flight(cluster) is not None,
        forecast_cpu_load=cpu_load, forecast_memory_load=memory_load)
    decision = decide(policy_of(cluster), history, samples_of(cluster), now)
    return Advice(decision=decision, evaluated_at=now, forecast_cpu_load=cpu_load,
                  forecast_memory_load=memory_load)


REASON_TEXT = {
    "paused": "Autoscaling is paused by staff.",
    "operation_in_flight": "Another change to the cluster is in progress.",
    "metrics_missing": "No node has reported CPU and memory yet.",
    "metrics_stale": "The nodes' latest metrics are too old to act on.",
    "desired_within_tolerance": "Utilisation is within 10% of the targets.",
    "metrics_inconclusive": "Some nodes have no fresh metrics, and the rest do not say "
                            "clearly which way to go.",
    "scale_down_stabilized": "Load fell, but a higher count was needed within the "
                             "stabilisation window.",
    "at_max": "More nodes are needed, but the cluster is at its maximum.",
    "at_min": "Fewer nodes would do, but the cluster is at its minimum.",
    "scale_up": "Utilisation is above the target.",
    "scale_down": "Utilisation has stayed below the target for the whole window.",
    "step_limited": "The change is limited by the policy's step size.",
    "forecast_scale_up": "The forecast predicts a peak ahead.",
    "out_of_bounds": "The node count is outside the policy's bounds.",
}


def reason_text(reason: str) -> str:
    return REASON_TEXT.get(reason, reason.replace("_", " ").capitalize() + ".")
