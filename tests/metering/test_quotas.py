"""Allowances in force (SPEC §5): the Free plan's limits are hard (429 problem+json with
the limit, what was used and when it resets); paid plans go over and are told once at 80%
and once at 100% of each allowance per period, by email, audit trail and webhook outbox."""
from decimal import Decimal

import pytest
from django.core import mail

from billing.models import Subscription
from metering.models import ThresholdNotice
from metering.services.counters import counters_read
from metering.services.quotas import crossed_thresholds
from metering.tasks import usage_threshold_notify
from tenants.models import AuditEvent, OutboxEvent
from tests.conftest import api_client, assert_problem, make_key
from tests.metering.conftest import event, meter_id, post_events, set_allowance, stored_events

MICRO = 1_000_000


def _reset_at(tenant) -> str:
    return Subscription.objects.get(tenant=tenant).current_period_end.isoformat()


# --- the Free plan: hard limits -------------------------------------------------------------

@pytest.mark.django_db
def test_free_plan_refuses_the_api_call_after_the_allowance_with_a_429(charlie):
    set_allowance("free", "api_calls", 3)
    client = api_client("charlie", make_key(charlie, ["read"]))
    for _ in range(3):
        assert client.get("/api/v1/tenant").status_code == 200
    body = assert_problem(client.get("/api/v1/tenant"), 429, "quota_exceeded")
    assert body["meter"] == "api_calls"
    assert body["limit"] == "3" and body["used"] == "3"
    assert body["reset_at"] == _reset_at(charlie)
    assert _reset_at(charlie) in body["detail"] and "upgrade" in body["detail"].lower()
    # Refused calls are not counted, and every endpoint is behind the same limit.
    assert_problem(client.get("/api/v1/usage"), 429, "quota_exceeded")
    period_start = Subscription.objects.get(tenant=charlie).current_period_start
    assert counters_read(charlie.pk, period_start)["api_calls"] == 3 * MICRO


@pytest.mark.django_db
def test_free_plan_refuses_events_of_a_meter_at_its_limit_with_a_429(charlie):
    set_allowance("free", "compute_hours", 10)
    client = api_client("charlie", make_key(charlie, ["usage:write"]))
    assert post_events(client, [event("c1", quantity=4), event("c2", quantity=6)]).json()[
        "accepted"] == 2
    body = assert_problem(post_events(client, [event("c3", quantity=1), event("c4")]), 429,
                          "quota_exceeded")
    assert (body["meter"], body["limit"], body["used"]) == ("compute_hours", "10", "10")
    assert body["reset_at"] == _reset_at(charlie)
    assert [row[0] for row in stored_events(charlie)] == ["c1", "c2"]


@pytest.mark.django_db
def test_free_plan_mixed_batch_refuses_only_the_events_of_the_full_meter(charlie):
    set_allowance("free", "compute_hours", 2)
    client = api_client("charlie", make_key(charlie, ["usage:write"]))
    assert post_events(client, [event("fill", quantity=2)]).json()["accepted"] == 1
    result = post_events(client, [event("over-1"), event("bw", meter="bandwidth_gb"),
                                  event("over-2", quantity=0.5), event("bad", meter="nope")])
    assert result.status_code == 202, result.content
    body = result.json()
    assert [(r["index"], r["code"]) for r in body["rejected"]] == [
        (0, "quota_exceeded"), (2, "quota_exceeded"), (3, "unknown_meter")]
    assert "Compute" in body["rejected"][0]["detail"]
    assert body["accepted"] == 1
    assert [row[0] for row in stored_events(charlie)] == ["bw", "fill"]


@pytest.mark.django_db
def test_free_plan_batch_that_reaches_the_limit_is_accepted_and_the_next_is_refused(charlie):
    """The limit is checked against what was used before the batch: the batch that reaches
    it is kept whole, the next one is refused."""
    set_allowance("free", "compute_hours", 5)
    client = api_client("charlie", make_key(charlie, ["usage:write"]))
    assert post_events(client, [event("a", quantity=4.5)]).json()["accepted"] == 1
    assert post_events(client, [event("b", quantity=3)]).json()["accepted"] == 1
    body = assert_problem(post_events(client, [event("c", quantity=0.1)]), 429)
    assert body["used"] == "7.5" and body["limit"] == "5"


@pytest.mark.django_db
def test_free_plan_unlimited_meter_is_never_refused(charlie):
    set_allowance("free", "compute_hours", None)
    client = api_client("charlie", make_key(charlie, ["usage:write"]))
    result = post_events(client, [event(f"e{i}", quantity=10**6) for i in range(3)]).json()
    assert result == {"accepted": 3, "duplicates": 0, "rejected": []}


# --- paid plans: overage and notices --------------------------------------------------------

def _notices(tenant, code):
    return list(ThresholdNotice.objects.filter(tenant=tenant, meter_id=meter_id(code))
                .order_by("percent").values_list("percent", "used", "included"))


@pytest.mark.django_db
def test_paid_plan_goes_over_and_is_told_once_at_80_and_once_at_100_percent(
        alice, django_capture_on_commit_callbacks):
    set_allowance("starter", "compute_hours", 10)
    client = api_client("alice", make_key(alice, ["usage:write"]))
    steps = [(7, []), (1, [80]), (1, [80]), (1.5, [80, 100]), (5, [80, 100]), (20, [80, 100])]
    for number, (quantity, expected) in enumerate(steps):
        with django_capture_on_commit_callbacks(execute=True):
            response = post_events(client, [event(f"step-{number}", quantity=quantity)])
        assert response.status_code == 202 and response.json()["accepted"] == 1
        assert [p for p, _u, _i in _notices(alice, "compute_hours")] == expected, number

    assert _notices(alice, "compute_hours") == [(80, Decimal(8), Decimal(10)),
                                                (100, Decimal("10.5"), Decimal(10))]
    assert len(mail.outbox) == 2
    eighty, hundred = mail.outbox
    assert eighty.to == ["owner@alice.test"] and hundred.to == ["owner@alice.test"]
    assert "reached 80% of your allowance" in eighty.subject
    assert "reached your allowance" in hundred.subject
    assert "8 of 10 hours" in eighty.body and "overage price" in eighty.body
    audits = AuditEvent.objects.filter(tenant=alice, action="usage.threshold").order_by("id")
    assert [a.after["percent"] for a in audits] == [80, 100]
    assert audits[0].after["meter"] == "compute_hours" and audits[0].after["used"] == "8"
    outbox = OutboxEvent.objects.filter(tenant=alice, type="usage.threshold").order_by("id")
    assert [(o.payload["percent"], o.payload["included"]) for o in outbox] == [(80, "10"),
                                                                             (100, "10")]
    assert sum(q for _i, q, _t, _p in stored_events(alice)) == Decimal("35.5")


@pytest.mark.django_db
def test_one_batch_crossing_both_thresholds_sends_both_notices(
        alice, django_capture_on_commit_callbacks):
    set_allowance("starter", "bandwidth_gb", 2)
    with django_capture_on_commit_callbacks(execute=True):
        post_events(api_client("alice", make_key(alice, ["usage:write"])),
                    [event("a", meter="bandwidth_gb", quantity=1),
                     event("b", meter="bandwidth_gb", quantity=1.5)])
    assert [p for p, _u, _i in _notices(alice, "bandwidth_gb")] == [80, 100]
    assert len(mail.outbox) == 2


@pytest.mark.django_db
def test_paid_plan_api_calls_over_the_allowance_are_served_and_noticed_once(
        alice, django_capture_on_commit_callbacks):
    set_allowance("starter", "api_calls", 5)
    client = api_client("alice", make_key(alice, ["read"]))
    with django_capture_on_commit_callbacks(execute=True):
        statuses = [client.get("/api/v1/tenant").status_code for _ in range(8)]
    assert statuses == [200] * 8
    assert _notices(alice, "api_calls") == [(80, Decimal(4), Decimal(5)),
                                            (100, Decimal(5), Decimal(5))]
    assert [m.subject for m in mail.outbox] == [
        "Alice Ltd: API calls usage reached 80% of your allowance",
        "Alice Ltd: API calls usage reached your allowance"]
    assert OutboxEvent.objects.filter(tenant=alice, type="usage.threshold").count() == 2


@pytest.mark.django_db
def test_a_notice_goes_out_once_per_period_even_when_asked_twice(
        alice, django_capture_on_commit_callbacks):
    start = Subscription.objects.get(tenant=alice).current_period_start.isoformat()
    compute = meter_id("compute_hours")
    with django_capture_on_commit_callbacks(execute=True):
        first = usage_threshold_notify(alice.pk, compute, start, 80, 8 * MICRO, 10 * MICRO)
        again = usage_threshold_notify(alice.pk, compute, start, 80, 9 * MICRO, 10 * MICRO)
    assert (first, again) == (True, False)
    assert len(mail.outbox) == 1
    assert AuditEvent.objects.filter(tenant=alice, action="usage.threshold").count() == 1
    assert usage_threshold_notify(alice.pk, 10**6, start, 80, 1, 1) is False


def test_crossed_thresholds_are_the_ones_passed_by_the_change():
    ten = 10 * MICRO
    assert crossed_thresholds(0, 7 * MICRO, ten) == []
    assert crossed_thresholds(7 * MICRO, 8 * MICRO, ten) == [80]
    assert crossed_thresholds(8 * MICRO, 9 * MICRO, ten) == []
    assert crossed_thresholds(0, 10 * MICRO, ten) == [80, 100]
    assert crossed_thresholds(10 * MICRO, 50 * MICRO, ten) == []
    assert crossed_thresholds(0, 5, 0) == []
    assert crossed_thresholds(7_999_999, 8_000_000, ten) == [80]


@pytest.mark.django_db
def test_a_notice_whose_queueing_failed_is_sent_by_the_periodic_check(alice, monkeypatch,
                                                                       django_capture_on_commit_callbacks):
    """The broker being down when a batch crosses 80% must neither fail the batch (its
    events are stored) nor lose the notice: the periodic check sends it."""
    from metering.tasks import usage_counters_check

    set_allowance("starter", "compute_hours", 10)

    def broker_down(*args, **kwargs):
        raise ConnectionError("broker unreachable")

    monkeypatch.setattr(usage_threshold_notify, "delay", broker_down)
    key = make_key(alice, ["usage:write"])
    response = post_events(api_client("alice", key), [event("sweep-1", "compute_hours", 9)])
    assert response.status_code == 202 and response.json()["accepted"] == 1
    assert not ThresholdNotice.objects.filter(tenant=alice).exists()
    monkeypatch.undo()
    with django_capture_on_commit_callbacks(execute=True):
        usage_counters_check()
    notice = ThresholdNotice.objects.get(tenant=alice)
    assert notice.percent == 80 and notice.used == Decimal(9)
    with django_capture_on_commit_callbacks(execute=True):
        usage_counters_check()  # once per period
    assert ThresholdNotice.objects.filter(tenant=alice).count() == 1
