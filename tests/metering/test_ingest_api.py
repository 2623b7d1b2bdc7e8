"""POST /api/v1/usage/events (SPEC §5, §10): batches of up to 10,000 events, each kept
once per tenant and id, invalid ones refused one by one with their index and a reason
while the valid ones are stored, and whole-request problems answered with problem+json."""
from datetime import timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import orjson
import pytest

from aerolith import clock
from metering.models import EventKey, UsageAggregate
from metering.services.ingest import MAX_BATCH
from tests.conftest import api_client, assert_problem, jwt_for, make_key
from tests.metering.conftest import (
    custom_meter,
    event,
    ingest,
    meter_id,
    post_events,
    stored_events,
    stored_keys,
    writer,
)


def _ids(rows):
    return [row[0] for row in rows]


# --- who may send ---------------------------------------------------------------------------

@pytest.mark.django_db
def test_a_key_with_usage_write_scope_records_events_and_gets_202(alice):
    response = post_events(writer(alice, ["usage:write"]), [event("e1", quantity=2.5)])
    assert response.status_code == 202, response.content
    assert response.json() == {"accepted": 1, "duplicates": 0, "rejected": []}
    assert [(i, q) for i, q, _t, _p in stored_events(alice)] == [("e1", Decimal("2.500000"))]


@pytest.mark.django_db
def test_a_read_only_key_is_refused_with_403_and_nothing_is_stored(alice):
    response = post_events(api_client("alice", make_key(alice, ["read"])), [event("e1")])
    body = assert_problem(response, 403, "insufficient_scope")
    assert "usage:write" in body["detail"]
    assert stored_events(alice) == [] and stored_keys(alice, ["e1"]) == 0


@pytest.mark.django_db
def test_an_anonymous_request_is_refused_with_401(alice):
    assert_problem(post_events(api_client("alice"), [event("e1")]), 401)
    assert stored_events(alice) == []


@pytest.mark.django_db
def test_a_members_jwt_may_send_events(alice):
    client = api_client("alice", jwt_for("alice", "owner@alice.test"))
    response = post_events(client, {"events": [event("wrapped")]})
    assert response.status_code == 202 and response.json()["accepted"] == 1
    assert _ids(stored_events(alice)) == ["wrapped"]


# --- idempotency ----------------------------------------------------------------------------

@pytest.mark.django_db
def test_a_repeated_id_in_one_batch_or_a_later_one_counts_once(alice):
    client = writer(alice)
    first = post_events(client, [event("a", quantity=1), event("b", quantity=2),
                                 event("a", quantity=100)])
    assert first.json() == {"accepted": 2, "duplicates": 1, "rejected": []}
    again = post_events(client, [event("a", quantity=7), event("c", quantity=3)])
    assert again.json() == {"accepted": 1, "duplicates": 1, "rejected": []}
    retry = post_events(client, [event("a"), event("b"), event("c")])
    assert retry.json() == {"accepted": 0, "duplicates": 3, "rejected": []}

    rows = stored_events(alice)
    assert [(i, q) for i, q, _t, _p in rows] == [
        ("a", Decimal("1.000000")), ("b", Decimal("2.000000")), ("c", Decimal("3.000000"))]
    assert stored_keys(alice, ["a", "b", "c"]) == 3
    # The hourly and daily aggregates saw each event once as well.
    day = UsageAggregate.objects.filter(tenant_id=alice.pk, meter_id=meter_id("compute_hours"),
                                        granularity="day")
    assert sum(a.total for a in day) == Decimal(6) and sum(a.event_count for a in day) == 3


@pytest.mark.django_db
def test_the_same_id_in_two_tenants_counts_in_each(alice, bob):
    batch = [event("shared-id", quantity=4)]
    assert post_events(writer(alice), batch).json()["accepted"] == 1
    assert post_events(writer(bob), batch).json()["accepted"] == 1
    assert post_events(writer(bob), batch).json() == {"accepted": 0, "duplicates": 1,
                                                      "rejected": []}
    assert _ids(stored_events(alice)) == ["shared-id"] == _ids(stored_events(bob))
    assert stored_keys(alice, ["shared-id"]) == 1 and stored_keys(bob, ["shared-id"]) == 1


@pytest.mark.django_db
def test_an_invalid_event_does_not_reserve_its_id(alice):
    client = writer(alice)
    first = post_events(client, [event("x", meter="nope")])
    assert first.json()["rejected"][0]["code"] == "unknown_meter"
    assert post_events(client, [event("x")]).json() == {"accepted": 1, "duplicates": 0,
                                                        "rejected": []}


# --- rejections one by one ------------------------------------------------------------------

@pytest.mark.django_db
def test_each_invalid_event_is_rejected_with_its_index_while_valid_ones_are_stored(alice):
    custom_meter("seats", "unique_count", unique_property="user")
    now = clock.now(alice)
    cases = [
        (event("ok-0"), None),
        (event("m", meter="no_such_meter"), "unknown_meter"),
        (event("neg", quantity=-1), "negative_quantity"),
        (event("inf", quantity="__INF__"), "non_finite_quantity"),
        (event("fine", quantity=1.0000001), "quantity_too_precise"),
        (event("str", quantity="12"), "invalid_quantity"),
        (event("bool", quantity=True), "invalid_quantity"),
        (event("null", quantity=None), "invalid_quantity"),
        (event("huge", quantity=10**16), "quantity_too_large"),
        (event("old", at=now - timedelta(days=35, seconds=1)), "timestamp_too_old"),
        (event("future", at=now + timedelta(minutes=5, seconds=1)), "timestamp_in_future"),
        ({"id": "words", "meter": "compute_hours", "timestamp": "yesterday"}, "invalid_timestamp"),
        ({"id": "naive", "meter": "compute_hours", "timestamp": "2026-11-28T10:00:00"},
         "invalid_timestamp"),
        ({"id": "number", "meter": "compute_hours", "timestamp": 1764324000}, "invalid_timestamp"),
        ({"meter": "compute_hours", "quantity": 1}, "missing_id"),
        ({"id": "", "meter": "compute_hours"}, "missing_id"),
        ({"id": 17, "meter": "compute_hours"}, "missing_id"),
        (event("i" * 201), "id_too_long"),
        (event("big-props", note="x" * 4096), "properties_too_large"),
        ({"id": "list-props", "meter": "compute_hours", "properties": [1, 2]},
         "invalid_properties"),
        (event("no-user", meter="seats"), "missing_property"),
        (event("obj-user", meter="seats", user={"id": 1}), "missing_property"),
        (42, "invalid_event"),
        (event("ok-1", quantity=0.000001), None),
    ]
    body = orjson.dumps([e for e, _code in cases]).replace(b'"__INF__"', b"1e400")
    response = post_events(writer(alice), body)
    assert response.status_code == 202, response.content
    result = response.json()
    expected = [(i, code) for i, (_e, code) in enumerate(cases) if code]
    assert [(r["index"], r["code"]) for r in result["rejected"]] == expected
    assert all(r["detail"] for r in result["rejected"])
    assert result["accepted"] == 2 and result["duplicates"] == 0
    assert [(i, q) for i, q, _t, _p in stored_events(alice)] == [
        ("ok-0", Decimal("1.000000")), ("ok-1", Decimal("0.000001"))]


@pytest.mark.django_db
def test_values_at_the_limits_are_accepted(alice):
    custom_meter("seats", "unique_count", unique_property="user")
    now = clock.now(alice)
    props = {"note": "x" * (4096 - len('{"note":""}'))}
    assert len(orjson.dumps(props)) == 4096
    batch = [
        event("six-decimals", quantity=123.456789),
        event("at-the-max", quantity=10**15),
        event("zero", quantity=0),
        event("almost-too-old", at=now - timedelta(days=35) + timedelta(seconds=5)),
        event("almost-too-new", at=now + timedelta(minutes=5) - timedelta(seconds=5)),
        {**event("props-4096"), "properties": props},
        event("i" * 200),
        event("number-user", meter="seats", user=7),
        {"id": "defaults", "meter": "compute_hours"},
        event("other-zone", at=now.astimezone(ZoneInfo("Asia/Tokyo"))),
    ]
    result = post_events(writer(alice), batch).json()
    assert result == {"accepted": len(batch), "duplicates": 0, "rejected": []}
    rows = {i: (q, t, p) for i, q, t, p in stored_events(alice)}
    assert rows["six-decimals"][0] == Decimal("123.456789")
    assert rows["at-the-max"][0] == Decimal(10**15)
    assert rows["defaults"][0] == Decimal(1) and rows["defaults"][2] == {}
    assert abs(rows["defaults"][1] - now) < timedelta(minutes=1)
    assert rows["other-zone"][1] == now
    assert rows["props-4096"][2] == props


@pytest.mark.django_db
def test_non_finite_quantities_from_internal_callers_are_rejected(alice):
    result = ingest(alice, [event("inf", quantity=float("inf")),
                            event("-inf", quantity=float("-inf")),
                            event("nan", quantity=float("nan")),
                            event("dnan", quantity=Decimal("NaN")),
                            event("dinf", quantity=Decimal("Infinity")),
                            event("ok", quantity=Decimal("2.5"))])
    assert [(r["index"], r["code"]) for r in result.rejected] == [
        (0, "non_finite_quantity"), (1, "non_finite_quantity"), (2, "non_finite_quantity"),
        (3, "non_finite_quantity"), (4, "non_finite_quantity")]
    assert result.accepted == 1
    assert [(i, q) for i, q, _t, _p in stored_events(alice)] == [("ok", Decimal("2.500000"))]


@pytest.mark.django_db
def test_text_postgresql_cannot_store_is_rejected_per_event_not_a_500(alice):
    """PostgreSQL text and jsonb cannot hold U+0000, and Python's datetime cannot move
    year 1 or 9999 across zones; such events are refused, not a server error."""
    batch = [
        event("nul\u0000id"),
        event("nul-props", note="a\u0000b"),
        {"id": "nul-key", "meter": "compute_hours", "properties": {"a\u0000": 1}},
        {"id": "year-1", "meter": "compute_hours", "timestamp": "0001-01-01T00:00:00+01:00"},
        {"id": "year-9999", "meter": "compute_hours",
         "timestamp": "9999-12-31T23:59:59-01:00"},
        {"id": "meter-list", "meter": ["compute_hours"]},
        {"id": "meter-object", "meter": {"code": "compute_hours"}},
        {"id": "deep", "meter": "compute_hours", "properties": "__DEEP__"},
        event("backslash-text", note="\\u0000 is how JSON writes NUL"),
        event("fine"),
    ]
    deep = b'{"a":' * 300 + b"1" + b"}" * 300
    body = orjson.dumps(batch).replace(b'"__DEEP__"', deep)
    response = post_events(writer(alice), body)
    assert response.status_code == 202, response.content
    assert [(r["index"], r["code"]) for r in response.json()["rejected"]] == [
        (0, "invalid_id"), (1, "invalid_properties"), (2, "invalid_properties"),
        (3, "invalid_timestamp"), (4, "invalid_timestamp"), (5, "unknown_meter"),
        (6, "unknown_meter"), (7, "invalid_properties")]
    assert _ids(stored_events(alice)) == ["backslash-text", "fine"]


@pytest.mark.django_db
def test_nothing_is_stored_when_every_event_is_rejected(alice):
    before = (EventKey.objects.count(), UsageAggregate.objects.count())
    response = post_events(writer(alice), [event("a", meter="nope"), event("b", quantity=-2),
                                           {"id": "c"}])
    assert response.status_code == 202
    assert response.json()["accepted"] == 0 and len(response.json()["rejected"]) == 3
    assert stored_events(alice) == []
    assert (EventKey.objects.count(), UsageAggregate.objects.count()) == before


@pytest.mark.django_db
def test_an_empty_batch_is_accepted_with_nothing_to_do(alice):
    assert post_events(writer(alice), []).json() == {"accepted": 0, "duplicates": 0,
                                                     "rejected": []}


# --- whole-request problems ------------------------------------------------------------------

@pytest.mark.django_db
@pytest.mark.parametrize("body", [b"not json", b"[{]", b"", b"[NaN]", b"[Infinity]",
                                  b'[{"id": "\\ud800", "meter": "compute_hours"}]'])
def test_a_body_that_is_not_json_is_a_400_problem(alice, body):
    assert_problem(post_events(writer(alice), body), 400, "malformed_request")
    assert stored_events(alice) == []


@pytest.mark.django_db
@pytest.mark.parametrize("body", [{"id": "x"}, 17, "events", {"events": "x"}, None])
def test_a_body_that_is_not_a_list_of_events_is_a_400_problem(alice, body):
    problem = assert_problem(post_events(writer(alice), body), 400, "validation_error")
    assert problem["errors"][0]["field"] == "events"


@pytest.mark.django_db
def test_a_body_over_the_size_limit_is_a_413_problem(alice, settings):
    settings.AEROLITH_USAGE_MAX_BODY_BYTES = 200
    client = writer(alice)
    small = orjson.dumps([event("s")])
    assert len(small) < 200 and post_events(client, small).status_code == 202
    big = orjson.dumps([event(f"e{i}") for i in range(10)])
    assert len(big) > 200
    body = assert_problem(post_events(client, big), 413, "payload_too_large")
    assert "200 bytes" in body["detail"]
    assert _ids(stored_events(alice)) == ["s"]


@pytest.mark.django_db
def test_more_than_ten_thousand_events_is_a_413_problem(alice):
    batch = [event(f"e{i}") for i in range(MAX_BATCH + 1)]
    body = assert_problem(post_events(writer(alice), batch), 413, "payload_too_large")
    assert "10000" in body["detail"]
    assert stored_events(alice) == []


@pytest.mark.django_db
def test_a_full_batch_of_ten_thousand_is_stored_at_once(alice):
    now = clock.now(alice)
    batch = [event(f"e{i:05d}", quantity=i / 1000, at=now - timedelta(seconds=i))
             for i in range(MAX_BATCH)]
    result = post_events(writer(alice), batch).json()
    assert result == {"accepted": MAX_BATCH, "duplicates": 0, "rejected": []}
    rows = stored_events(alice)
    assert len(rows) == MAX_BATCH
    assert sum(q for _i, q, _t, _p in rows) == sum(Decimal(i) / 1000 for i in range(MAX_BATCH))


@pytest.mark.django_db
@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded",
                                          "application/xml", ""])
def test_a_body_that_is_not_declared_json_is_a_415_problem(alice, content_type):
    response = post_events(writer(alice), orjson.dumps([event("a")]), content_type=content_type)
    assert_problem(response, 415, "unsupported_media_type")
    assert stored_events(alice) == []


@pytest.mark.django_db
def test_json_with_a_charset_parameter_is_accepted(alice):
    response = post_events(writer(alice), [event("a")],
                           content_type="application/json; charset=utf-8")
    assert response.status_code == 202 and response.json()["accepted"] == 1


# --- durability -----------------------------------------------------------------------------

@pytest.mark.django_db
def test_after_a_202_the_events_and_their_keys_are_in_postgresql(alice):
    now = clock.now(alice).replace(microsecond=0)
    batch = [event("d1", quantity=1.5, at=now - timedelta(minutes=3), region="eu"),
             event("d2", meter="bandwidth_gb", quantity=0.25, at=now - timedelta(minutes=2))]
    assert post_events(writer(alice), batch).status_code == 202
    assert stored_events(alice) == [
        ("d1", Decimal("1.500000"), now - timedelta(minutes=3), {"region": "eu"}),
        ("d2", Decimal("0.250000"), now - timedelta(minutes=2), {})]
    assert stored_keys(alice, ["d1", "d2"]) == 2
    hour = UsageAggregate.objects.filter(tenant_id=alice.pk, granularity="hour",
                                         meter_id=meter_id("compute_hours"))
    assert sum(a.total for a in hour) == Decimal("1.5")
