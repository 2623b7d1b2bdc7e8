"""The autoscaler's pure decision and the sizing advice: plain values, no database."""
import math
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from provisioning.autoscaler import HOLD, REASONS, History, Policy, Sample, decide
from provisioning.recommendations import Workload, forecast_load, recommend

NOW = datetime(2026, 11, 2, 12, 0, tzinfo=UTC)
CPU_ONLY = dict(memory_target_percent=0)


def nodes(*cpu, memory=None, ready=True, at=NOW, start=0):
    return [Sample(node=f"n{start + i}", ready=ready, cpu_percent=c,
                   memory_percent=memory, observed_at=at) for i, c in enumerate(cpu)]


def run(policy, samples, current=None, now=NOW, **history):
    current = len(samples) if current is None else current
    return decide(policy, History(current_nodes=current, **history), samples, now)


# --- the HPA's own examples --------------------------------------------------------------


def test_fifty_nodes_at_90_percent_against_a_75_percent_target_scale_to_sixty():
    policy = Policy(min_nodes=1, max_nodes=100, cpu_target_percent=75, scale_up_step=100,
                    **CPU_ONLY)
    decision = run(policy, nodes(*[90.0] * 50))
    assert (decision.outcome, decision.reason, decision.desired) == ("scale_up", "scale_up", 60)


def test_a_ratio_of_1_05_is_within_tolerance_and_changes_nothing():
    policy = Policy(cpu_target_percent=60, max_nodes=100, **CPU_ONLY)
    decision = run(policy, nodes(*[63.0] * 10))  # 63 / 60 = 1.05
    assert (decision.outcome, decision.reason, decision.desired) == (
        HOLD, "desired_within_tolerance", 10)


def test_the_higher_of_cpu_and_memory_ratios_decides():
    policy = Policy(cpu_target_percent=70, memory_target_percent=50, max_nodes=20)
    decision = run(policy, nodes(35.0, 35.0, 35.0, 35.0, memory=75.0))  # memory ratio 1.5
    assert decision.desired == 6 and decision.outcome == "scale_up"


# --- scale-down stabilisation ------------------------------------------------------------


def simulate(policy, loads, base_nodes, minutes_apart=60, recent=()):
    """Run one decision a minute; `loads` are per-node CPU at `base_nodes` nodes (a fixed
    amount of work, so more nodes each carry less). The cluster resizes at once."""
    current, changes, outcome, reason = base_nodes, [], "", ""
    recent = list(recent)
    for minute, load in enumerate(loads):
        now = NOW + timedelta(seconds=minutes_apart * minute)
        per_node = load * base_nodes / current
        decision = decide(policy, History(current_nodes=current, recent=recent,
                                          last_outcome=outcome, last_reason=reason),
                          nodes(*[per_node] * current, at=now), now)
        recent, outcome, reason = decision.recent, decision.outcome, decision.reason
        if decision.desired != current:
            changes.append((minute, current, decision.desired))
            current = decision.desired
    return current, changes


def test_flapping_load_for_ten_minutes_changes_the_node_count_at_most_once():
    policy = Policy(cpu_target_percent=70, max_nodes=20, **CPU_ONLY)
    for first in (80.0, 40.0):
        second = 40.0 if first == 80.0 else 80.0
        loads = [first if m % 2 == 0 else second for m in range(10)]
        for base in (3, 4, 6, 10):
            _, changes = simulate(policy, loads, base)
            assert len(changes) <= 1, (first, base, changes)


def test_scale_down_waits_for_the_stabilisation_window():
    policy = Policy(cpu_target_percent=70, min_nodes=1, **CPU_ONLY)
    busy = decide(policy, History(current_nodes=4), nodes(*[70.0] * 4), NOW)
    recent = busy.recent
    for minute in range(1, 5):
        now = NOW + timedelta(minutes=minute)
        quiet = decide(policy, History(current_nodes=4, recent=recent), nodes(*[20.0] * 4, at=now),
                       now)
        assert (quiet.outcome, quiet.reason) == (HOLD, "scale_down_stabilized")
        recent = quiet.recent
    now = NOW + timedelta(minutes=5)
    down = decide(policy, History(current_nodes=4, recent=recent), nodes(*[20.0] * 4, at=now), now)
    assert (down.outcome, down.desired) == ("scale_down", 3)  # scale_down_step 1


def test_stabilisation_survives_a_restart_from_the_persisted_window():
    """The window is all the state: rebuilt from its stored (JSON) form, the same decision."""
    import json

    policy = Policy(cpu_target_percent=70, scale_down_step=5, **CPU_ONLY)
    recent = decide(policy, History(current_nodes=6), nodes(*[70.0] * 6), NOW).recent
    stored = json.loads(json.dumps(recent))  # what the cluster row keeps
    later = NOW + timedelta(minutes=3)
    in_memory = decide(policy, History(current_nodes=6, recent=recent),
                       nodes(*[10.0] * 6, at=later), later)
    restarted = decide(policy, History(current_nodes=6, recent=[tuple(x) for x in stored]),
                       nodes(*[10.0] * 6, at=later), later)
    assert in_memory == restarted
    assert restarted.reason == "scale_down_stabilized"


def test_a_cluster_without_a_window_waits_a_full_window_before_scaling_in():
    policy = Policy(cpu_target_percent=70, **CPU_ONLY)
    first = run(policy, nodes(*[10.0] * 5))
    assert (first.outcome, first.reason) == (HOLD, "scale_down_stabilized")
    assert first.recent == [(int(NOW.timestamp()), 5)]


def test_without_a_stabilisation_window_scale_down_is_immediate():
    policy = Policy(cpu_target_percent=70, stabilization_seconds=0, **CPU_ONLY)
    decision = run(policy, nodes(*[10.0] * 5))
    assert (decision.outcome, decision.desired) == ("scale_down", 4)


def test_the_window_forgets_recommendations_older_than_the_stabilisation_period():
    policy = Policy(cpu_target_percent=70, stabilization_seconds=300, **CPU_ONLY)
    epoch = int(NOW.timestamp())
    recent = [(epoch - 400, 9), (epoch - 240, 5), (epoch - 60, 4)]
    decision = run(policy, nodes(*[10.0] * 5), recent=recent)
    assert [d for _, d in decision.recent] == [5, 4, 1]
    assert decision.reason == "scale_down_stabilized"  # 5 in the window holds five nodes


def test_scale_up_happens_at_once_even_with_a_window_of_lower_recommendations():
    policy = Policy(cpu_target_percent=50, **CPU_ONLY)
    epoch = int(NOW.timestamp())
    decision = run(policy, nodes(90.0, 90.0, 90.0),
                   recent=[(epoch - 60, 2), (epoch - 120, 2)])
    assert (decision.outcome, decision.desired) == ("scale_up", 6)


# --- missing and stale metrics -----------------------------------------------------------


def test_all_metrics_missing_holds():
    decision = run(Policy(), nodes(None, None, None))
    assert (decision.outcome, decision.reason, decision.desired) == (HOLD, "metrics_missing", 3)


def test_all_metrics_stale_holds_with_its_own_reason():
    old = NOW - timedelta(minutes=10)
    decision = run(Policy(), nodes(90.0, 90.0, 90.0, at=old))
    assert (decision.outcome, decision.reason) == (HOLD, "metrics_stale")


def test_missing_nodes_count_as_full_when_the_others_say_scale_down():
    # Two nodes at 20 % of a 50 % target would say 1 node; the missing one at 100 % makes
    # the mean (20 + 20 + 100) / 3 = 46.7 %: within tolerance of the target, so hold.
    policy = Policy(cpu_target_percent=50, **CPU_ONLY)
    decision = run(policy, nodes(20.0, 20.0) + nodes(None, start=2))
    assert (decision.outcome, decision.reason) == (HOLD, "metrics_inconclusive")


def test_missing_nodes_count_as_idle_when_the_others_say_scale_up():
    policy = Policy(cpu_target_percent=50, max_nodes=20, **CPU_ONLY)
    # Three at 100 % and one missing: (300 + 0) / 4 = 75 % → ratio 1.5 → 6 nodes.
    decision = run(policy, nodes(100.0, 100.0, 100.0) + nodes(None, start=3))
    assert (decision.outcome, decision.desired) == ("scale_up", 6)
    # One at 60 % and three missing: (60 + 0) / 4 = 15 % flips to scale-down: hold.
    flipped = run(policy, nodes(60.0) + nodes(None, None, None, start=1))
    assert (flipped.outcome, flipped.reason) == (HOLD, "metrics_inconclusive")


def test_a_stale_node_is_treated_as_missing():
    policy = Policy(cpu_target_percent=50, **CPU_ONLY)
    old = NOW - timedelta(minutes=10)
    decision = run(policy, nodes(20.0, 20.0) + nodes(20.0, at=old, start=2))
    assert decision.reason == "metrics_inconclusive"
    assert decision.inputs["stale"] == 1


def test_unready_nodes_count_as_idle_on_a_scale_up():
    policy = Policy(cpu_target_percent=50, max_nodes=20, **CPU_ONLY)
    # Ready: two at 60 % (ratio 1.2); with the unready one at 0 %: 40 % → flips: hold.
    decision = run(policy, nodes(60.0, 60.0) + nodes(None, ready=False, start=2))
    assert decision.outcome == HOLD


def test_no_action_while_an_operation_is_in_flight():
    decision = run(Policy(**CPU_ONLY), nodes(99.0, 99.0), operation_in_flight=True)
    assert (decision.outcome, decision.reason, decision.desired) == (HOLD, "operation_in_flight", 2)
    assert decision.recent  # the recommendation is still remembered for the window


def test_paused_policy_holds():
    decision = run(Policy(paused=True), nodes(99.0, 99.0))
    assert (decision.outcome, decision.reason) == (HOLD, "paused")


# --- bounds and steps --------------------------------------------------------------------


def test_at_max_holds_with_reason():
    decision = run(Policy(max_nodes=3, **CPU_ONLY), nodes(99.0, 99.0, 99.0))
    assert (decision.outcome, decision.reason, decision.desired) == (HOLD, "at_max", 3)


def test_step_limit_caps_a_large_scale_up():
    policy = Policy(cpu_target_percent=10, max_nodes=50, scale_up_step=2, **CPU_ONLY)
    decision = run(policy, nodes(90.0, 90.0, 90.0))
    assert (decision.outcome, decision.reason, decision.desired) == ("scale_up", "step_limited", 5)


def test_below_min_is_brought_up_to_min():
    decision = run(Policy(min_nodes=3, **CPU_ONLY), nodes(70.0), current=1)
    assert (decision.outcome, decision.reason, decision.desired) == ("scale_up", "out_of_bounds", 3)


loads = st.one_of(st.none(), st.floats(0, 100, allow_nan=False))


@st.composite
def scenarios(draw):
    low = draw(st.integers(0, 10))
    high = draw(st.integers(low, 40))
    policy = Policy(min_nodes=low, max_nodes=high,
                    cpu_target_percent=draw(st.integers(1, 100)),
                    memory_target_percent=draw(st.integers(0, 100)),
                    scale_up_step=draw(st.integers(0, 10)),
                    scale_down_step=draw(st.integers(0, 10)),
                    stabilization_seconds=draw(st.sampled_from([0, 60, 300, 900])),
                    forecast_enabled=draw(st.booleans()))
    lo, hi = policy.bounds
    current = draw(st.integers(lo, hi))
    count = draw(st.integers(0, 12))
    samples = [Sample(f"n{i}", draw(st.booleans()), draw(loads), draw(loads),
                      NOW - timedelta(seconds=draw(st.integers(0, 400))))
               for i in range(count)]
    epoch = int(NOW.timestamp())
    recent = draw(st.lists(st.tuples(st.integers(epoch - 1200, epoch), st.integers(0, 60)),
                           max_size=12))
    history = History(current_nodes=current, recent=recent,
                      operation_in_flight=draw(st.booleans()),
                      forecast_cpu_load=draw(st.one_of(st.none(), st.floats(0, 5000))),
                      forecast_memory_load=draw(st.one_of(st.none(), st.floats(0, 5000))))
    return policy, history, samples


@settings(max_examples=400, deadline=None)
@given(scenarios())
def test_desired_stays_within_bounds_and_steps_and_never_below_one(scenario):
    policy, history, samples = scenario
    decision = decide(policy, history, samples, NOW)
    lo, hi = policy.bounds
    assert lo <= decision.desired <= hi
    assert decision.desired >= 1
    assert decision.reason in REASONS
    if decision.outcome == "scale_up":
        assert 0 < decision.desired - history.current_nodes <= max(1, policy.scale_up_step)
    elif decision.outcome == "scale_down":
        assert 0 < history.current_nodes - decision.desired <= max(1, policy.scale_down_step)
    else:
        assert decision.desired == history.current_nodes
    if history.operation_in_flight:
        assert decision.outcome == HOLD
    epoch = int(NOW.timestamp())
    assert all(epoch - policy.stabilization_seconds < t <= epoch or t == epoch
               for t, _ in decision.recent)


@settings(max_examples=300, deadline=None)
@given(scenarios(), st.floats(0, 10_000), st.floats(0, 10_000))
def test_the_forecast_never_scales_in_by_itself(scenario, cpu_load, memory_load):
    """With forecast mode on, the outcome is never lower than without it: a forecast can
    only raise the recommendation."""
    policy, history, samples = scenario
    from dataclasses import replace

    plain = decide(replace(policy, forecast_enabled=False), history, samples, NOW)
    forecast = decide(replace(policy, forecast_enabled=True),
                      replace(history, forecast_cpu_load=cpu_load, forecast_memory_load=memory_load),
                      samples, NOW)
    assert forecast.desired >= plain.desired
    if forecast.outcome == "scale_down":
        assert plain.outcome == "scale_down"
        assert forecast.reason != "forecast_scale_up"


def test_forecast_scales_up_ahead_of_a_predicted_peak():
    policy = Policy(cpu_target_percent=70, max_nodes=20, forecast_enabled=True, **CPU_ONLY)
    # Now 3 nodes at 50 % (load 150 node-%); last week this hour peaked at 420 node-%.
    decision = run(policy, nodes(50.0, 50.0, 50.0), forecast_cpu_load=420.0)
    assert (decision.outcome, decision.reason, decision.desired) == (
        "scale_up", "forecast_scale_up", 6)
    off = run(Policy(cpu_target_percent=70, max_nodes=20, **CPU_ONLY), nodes(50.0, 50.0, 50.0),
              forecast_cpu_load=420.0)
    assert off.outcome == HOLD


def test_a_low_forecast_does_not_scale_in():
    policy = Policy(cpu_target_percent=70, forecast_enabled=True, **CPU_ONLY)
    decision = run(policy, nodes(70.0, 70.0, 70.0), forecast_cpu_load=10.0)
    assert decision.outcome == HOLD


def test_history_flag_is_set_only_when_acting_or_changing():
    policy = Policy(**CPU_ONLY)
    first = run(policy, nodes(70.0, 70.0))
    again = run(policy, nodes(70.0, 70.0), last_outcome=first.outcome, last_reason=first.reason)
    assert first.changed and not again.changed


# --- forecast_load -----------------------------------------------------------------------


def test_forecast_load_takes_last_weeks_same_hour_plus_the_trend():
    week = timedelta(days=7)
    points = [(NOW - week + timedelta(minutes=m), 100.0 + m) for m in range(0, 61, 5)]
    # Recent hour: rising 1 node-% a minute.
    points += [(NOW - timedelta(minutes=m), 200.0 - m) for m in range(0, 61, 5)]
    predicted = forecast_load(points, NOW)
    assert predicted == pytest.approx(160.0 + 60.0)


def test_forecast_load_without_last_week_extrapolates_the_recent_trend():
    points = [(NOW - timedelta(minutes=m), 100.0 - m) for m in range(0, 31, 5)]
    assert forecast_load(points, NOW) == pytest.approx(160.0)
    assert forecast_load([], NOW) is None
    assert forecast_load([(NOW, 50.0)], NOW) == pytest.approx(50.0)


def test_forecast_load_is_never_negative():
    points = [(NOW - timedelta(minutes=m), 10.0 + m * 5) for m in range(0, 31, 5)]
    assert forecast_load(points, NOW) == 0.0


# --- recommend ---------------------------------------------------------------------------


def test_a_small_read_mostly_workload_gets_three_small_nodes():
    advice = recommend(Workload(qps=200, data_gb=2, read_fraction=0.9))
    assert (advice.size, advice.nodes) == ("small", 3)
    assert any("primary" in line for line in advice.reasoning)


def test_a_large_data_set_needs_a_bigger_size_for_memory():
    # 12 GB of 60 is hot; half of a large node's 32 GB holds it, a medium's 8 GB does not.
    advice = recommend({"qps": 500, "data_gb": 60, "read_fraction": 0.8})
    assert advice.size == "large"
    assert advice.nodes >= 3


def test_heavy_reads_add_replicas():
    advice = recommend(Workload(qps=20_000, data_gb=10, read_fraction=0.95))
    per_node = {"small": 700, "medium": 1400, "large": 2800, "xlarge": 5600}[advice.size]
    assert advice.nodes == 1 + math.ceil(19_000 / per_node)
    assert advice.nodes <= 16


def test_write_heavy_workload_beyond_one_primary_says_so():
    advice = recommend(Workload(qps=50_000, data_gb=10, read_fraction=0.0))
    assert advice.size == "xlarge"
    assert any("shard" in line for line in advice.reasoning)


@pytest.mark.parametrize("bad, message", [
    (dict(qps=-1, data_gb=1, read_fraction=0.5), "qps cannot be below"),
    (dict(qps=float("nan"), data_gb=1, read_fraction=0.5), "finite"),
    (dict(qps=10, data_gb=float("inf"), read_fraction=0.5), "finite"),
    (dict(qps=10, data_gb=1, read_fraction=1.5), "read_fraction of 1.5"),
    (dict(qps=10**9, data_gb=1, read_fraction=0.5), "beyond what one cluster"),
    (dict(qps=10, data_gb=10**8, read_fraction=0.5), "beyond what one cluster"),
    (dict(qps="lots", data_gb=1, read_fraction=0.5), "must be a number"),
    (dict(qps=True, data_gb=1, read_fraction=0.5), "must be a number"),
    (dict(qps=10, data_gb=1), "needs read_fraction"),
    (dict(qps=10, data_gb=1, read_fraction=0.5, colour="red"), "Unknown workload fields"),
])
def test_bad_workloads_are_refused_with_a_clear_message(bad, message):
    with pytest.raises(ValueError, match=message):
        recommend(bad)
