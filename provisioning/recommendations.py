"""Sizing advice (SPEC §7): an initial size and node count from the workload a customer
states, with the reasoning shown; and the forecast the autoscaler's forecast mode reads.

Both are pure. The capacity figures below are deliberately round *defaults* — a starting
point the autoscaler then corrects from real metrics, not a promise.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from .sizes import SIZES, Size

# Simple indexed queries one vCPU serves at full load; a write costs about twice a read
# (WAL, index upkeep, replication). We plan for the default CPU target, not for 100 %.
READS_PER_VCPU = 500
WRITE_COST = 2.0
PLANNING_UTILISATION = 0.70
# The hot part of the data that should stay in memory, and the share of a node's memory
# left for the page cache and shared buffers (the rest: connections, work_mem, the OS).
HOT_FRACTION = 0.2
CACHE_SHARE = 0.5
MIN_NODES = 3  # a primary and two replicas: one node can fail or be replaced (SPEC §7)
MAX_NODES = 100
# Inputs beyond these are typing mistakes rather than workloads.
MAX_QPS = 1_000_000
MAX_DATA_GB = 1_000_000  # 1 PB


@dataclass(frozen=True)
class Workload:
    qps: float  # queries per second at peak
    data_gb: float  # total data size
    read_fraction: float  # 0..1: the share of queries that only read


@dataclass(frozen=True)
class Recommendation:
    size: str
    nodes: int
    reasoning: list[str]


def _number(name: str, value, low: float, high: float, unit: str = "") -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        try:
            value = float(str(value).strip())
        except ValueError:
            raise ValueError(f"{name} must be a number, got {value!r}.") from None
    value = float(value)
    if math.isnan(value) or math.isinf(value):
        raise ValueError(f"{name} must be a finite number, got {value}.")
    if value < low:
        raise ValueError(f"{name} cannot be below {low:g}{unit}, got {value:g}.")
    if value > high:
        raise ValueError(f"{name} of {value:g}{unit} is beyond what one cluster serves "
                         f"(at most {high:g}{unit}); check the figure or talk to us.")
    return value


def workload_validate(workload: Workload | Mapping) -> Workload:
    """The workload with its numbers checked; ValueError says which one is wrong."""
    if isinstance(workload, Mapping):
        unknown = set(workload) - {"qps", "data_gb", "read_fraction"}
        if unknown:
            raise ValueError(f"Unknown workload fields: {', '.join(sorted(unknown))}; "
                             "send qps, data_gb and read_fraction.")
        try:
            workload = Workload(qps=workload["qps"], data_gb=workload["data_gb"],
                                read_fraction=workload["read_fraction"])
        except KeyError as exc:
            raise ValueError(f"The workload needs {exc.args[0]}.") from None
    return Workload(
        qps=_number("qps", workload.qps, 0, MAX_QPS),
        data_gb=_number("data_gb", workload.data_gb, 0, MAX_DATA_GB, " GB"),
        read_fraction=_number("read_fraction", workload.read_fraction, 0, 1),
    )


def recommend(workload: Workload | Mapping) -> Recommendation:
    """Size and node count for `workload`: the smallest size whose memory holds the hot
    data and whose primary takes every write, then enough replicas for the reads."""
    w = workload_validate(workload)
    reads = w.qps * w.read_fraction
    writes = w.qps - reads
    hot_gb = w.data_gb * HOT_FRACTION
    reasoning = [
        f"{w.qps:g} queries/s at peak: {reads:g} reads and {writes:g} writes "
        f"({w.read_fraction:.0%} reads).",
        f"About {HOT_FRACTION:.0%} of {w.data_gb:g} GB is assumed hot ({hot_gb:g} GB); it should "
        f"fit in the {CACHE_SHARE:.0%} of a node's memory left for caching.",
    ]

    def read_capacity(size: Size) -> float:
        return size.vcpus * READS_PER_VCPU * PLANNING_UTILISATION

    def fits(size: Size) -> tuple[bool, bool]:
        memory_ok = size.memory_gb * CACHE_SHARE >= hot_gb
        writes_ok = writes * WRITE_COST <= read_capacity(size)
        return memory_ok, writes_ok

    ordered = sorted(SIZES.values(), key=lambda s: s.vcpus)
    chosen = next((s for s in ordered if all(fits(s))), ordered[-1])
    memory_ok, writes_ok = fits(chosen)
    # Prefer a bigger size to a crowd of small replicas (fewer nodes to replicate to).
    while _replicas_for(reads, read_capacity(chosen)) > 15 and chosen is not ordered[-1]:
        chosen = ordered[ordered.index(chosen) + 1]
    replicas = _replicas_for(reads, read_capacity(chosen))
    nodes = max(MIN_NODES, 1 + replicas)

    reasoning.append(
        f"Size {chosen.code} ({chosen.vcpus} vCPU / {chosen.memory_gb} GB): "
        + ("holds the hot data in memory" if memory_ok else
           f"the largest size; the hot data ({hot_gb:g} GB) will not fit in memory, so expect "
           "disk reads (consider partitioning or archiving cold data)")
        + "; " + (f"its primary takes the {writes:g} writes/s at "
                  f"{writes * WRITE_COST / read_capacity(chosen):.0%} of its planned capacity."
                  if writes_ok else
                  f"the {writes:g} writes/s exceed what one primary takes "
                  f"(~{read_capacity(chosen) / WRITE_COST:.0f}/s); batch writes or shard."))
    reasoning.append(
        f"Reads: one node of this size serves ~{read_capacity(chosen):.0f} reads/s at "
        f"{PLANNING_UTILISATION:.0%} CPU, so {replicas} replica(s) carry {reads:g} reads/s.")
    if nodes > 1 + replicas:
        reasoning.append(f"At least {MIN_NODES} nodes (a primary and two replicas) so a node can "
                         "fail or be replaced without downtime.")
    if nodes > MAX_NODES:
        reasoning.append(f"{nodes} nodes is more than one cluster should run ({MAX_NODES}); "
                         "consider splitting the data across clusters.")
    reasoning.append(f"Start with {nodes} nodes (1 primary + {nodes - 1} replicas); the "
                     "autoscaler adjusts the count from real CPU and memory use.")
    return Recommendation(size=chosen.code, nodes=nodes, reasoning=reasoning)


def _replicas_for(reads: float, per_node: float) -> int:
    return math.ceil(reads / per_node) if reads > 0 else 0


# --- forecast ---------------------------------------------------------------------------

WEEK = timedelta(days=7)


def forecast_load(points: Sequence[tuple[datetime, float]], now: datetime, *,
                  horizon: timedelta = timedelta(hours=1),
                  trend_window: timedelta = timedelta(hours=1)) -> float | None:
    """Predicted peak load for the next `horizon` from (time, load) points, load being
    mean utilisation × nodes (so it does not depend on how many nodes served it).

    Same hour last week: the highest load in [now − 7 d, now − 7 d + horizon]. Plus the
    trend: the least-squares slope over the last `trend_window`, carried over the horizon.
    Without last week's data, the recent level (fitted at now) plus the trend. None when
    there is nothing to go on. Never negative.
    """
    clean = [(t, float(v)) for t, v in points if v is not None and math.isfinite(v)]
    start = now - WEEK
    seasonal = [v for t, v in clean if start <= t <= start + horizon]
    recent = [((t - now).total_seconds(), v) for t, v in clean if now - trend_window <= t <= now]
    slope, level = _trend(recent)
    if seasonal:
        predicted = max(seasonal) + slope * horizon.total_seconds()
    elif level is not None:
        predicted = level + slope * horizon.total_seconds()
    else:
        return None
    return max(0.0, predicted)


def _trend(points: Sequence[tuple[float, float]]) -> tuple[float, float | None]:
    """(slope per second, fitted value at x = 0) by least squares; slope 0 with < 2 points."""
    if not points:
        return 0.0, None
    n = len(points)
    mean_x = sum(x for x, _ in points) / n
    mean_y = sum(y for _, y in points) / n
    var = sum((x - mean_x) ** 2 for x, _ in points)
    if n < 2 or var == 0:
        return 0.0, mean_y
    slope = sum((x - mean_x) * (y - mean_y) for x, y in points) / var
    return slope, mean_y - slope * mean_x
