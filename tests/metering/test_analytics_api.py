"""GET /api/v1/usage and /api/v1/usage/timeseries (SPEC §5, §10): the current period per
meter with allowance, overage, projection and growth; hourly and daily series; bad queries
answered with problem+json; and nobody reads another organisation's usage."""
from datetime import UTC, datetime, timedelta
from urllib.parse import urlencode

import pytest

from aerolith import clock
from tests.conftest import api_client, assert_problem, jwt_for, make_key
from tests.metering.conftest import (
    DAY,
    HOUR,
    custom_meter,
    event,
    freeze,
    ingest,
    post_events,
    set_period,
    writer,
)

START = datetime(2031, 1, 10, 10, 37, 12, tzinfo=UTC)
END = START + timedelta(days=30)
NOW = START + timedelta(days=10)  # a third of the period has passed


@pytest.fixture
def frame(alice):
    set_period(alice, START, END)
    freeze(alice, NOW)
    return alice


def _accept(tenant, events):
    result = ingest(tenant, events)
    assert result.rejected == [] and result.accepted == len(events), result


def _reader(tenant):
    return api_client(tenant.slug, make_key(tenant, ["read"]))


def _series(client, **params):
    return client.get(f"/api/v1/usage/timeseries?{urlencode(params)}")


# --- the current period ---------------------------------------------------------------------

@pytest.mark.django_db
def test_usage_lists_each_meter_with_used_included_overage_and_projection(frame):
    _accept(frame, [
        event("calls", meter="api_calls", quantity=60_000, at=START + DAY),
        event("compute", quantity=50, at=START + 2 * DAY),
        event("bw", meter="bandwidth_gb", quantity=10, at=NOW - HOUR),
        event("disk", meter="storage_gb", quantity=6, at=START),
        event("compute-before", quantity=100, at=START - 5 * DAY),  # the previous period
    ])
    response = _reader(frame).get("/api/v1/usage")
    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["period_start"], body["period_end"], body["as_of"]) == (
        "2031-01-10T10:37:12Z", "2031-02-09T10:37:12Z", "2031-01-20T10:37:12Z")
    assert (body["plan"], body["plan_price_cents"]) == ("starter", 2900)
    meters = {m["meter"]: m for m in body["meters"]}
    assert set(meters) == {"api_calls", "storage_gb", "compute_hours", "bandwidth_gb"}

    def row(code, *fields):
        return tuple(meters[code][f] for f in fields)

    fields = ("used", "included", "overage", "overage_amount_cents", "projected",
              "projected_overage_amount_cents")
    # 60,000 calls in a third of the period: 180,000 projected, 80,000 over at 1c/1,000.
    assert row("api_calls", *fields) == ("60000", "100000", "0", 0, "180000", 80)
    # 50 hours so far: 150 projected, 50 over at 10c.
    assert row("compute_hours", *fields) == ("50", "100", "0", 0, "150", 500)
    assert row("bandwidth_gb", *fields) == ("10", "50", "0", 0, "30", 0)
    # 6 GB held from the start: 2 GB-months so far, 6 by the end, 1 over at 25c.
    assert row("storage_gb", *fields) == ("2", "5", "0", 0, "6", 25)
    assert body["projected_total_cents"] == 2900 + 80 + 500 + 25
    # Growth against the previous period (100 compute hours then).
    assert row("compute_hours", "previous_period", "growth_percent") == ("100", "50")
    assert row("api_calls", "previous_period", "growth_percent") == ("0", None)
    assert meters["storage_gb"]["unit"] == "GB-months"
    assert meters["api_calls"]["aggregation"] == "count"


@pytest.mark.django_db
def test_usage_shows_overage_already_incurred_and_custom_meters(frame):
    custom_meter("reports", "sum", unit_price_cents=3, price_per=1)
    _accept(frame, [event("calls", meter="api_calls", quantity=101_500, at=START + HOUR),
                    event("r", meter="reports", quantity=2, at=START + HOUR)])
    meters = {m["meter"]: m for m in _reader(frame).get("/api/v1/usage").json()["meters"]}
    calls = meters["api_calls"]
    assert (calls["used"], calls["overage"], calls["overage_amount_cents"]) == ("101500", "1500", 2)
    reports = meters["reports"]
    assert (reports["included"], reports["overage"], reports["overage_amount_cents"]) == (
        "0", "2", 6)
    assert (reports["projected"], reports["projected_overage_amount_cents"]) == ("6", 18)


@pytest.mark.django_db
def test_usage_of_a_fresh_period_is_zero_and_projects_the_plan_price(charlie):
    body = _reader(charlie).get("/api/v1/usage").json()
    assert body["plan"] == "free" and body["projected_total_cents"] == 0
    assert {m["used"] for m in body["meters"]} == {"0"}
    assert {m["meter"]: m["included"] for m in body["meters"]}["api_calls"] == "10000"


# --- series -----------------------------------------------------------------------------------

@pytest.mark.django_db
def test_hourly_and_daily_series_add_up_the_events_of_each_bucket(frame):
    day = datetime(2031, 1, 15, tzinfo=UTC)
    _accept(frame, [event("a", quantity=1, at=day + timedelta(hours=3, minutes=5)),
                    event("b", quantity=2.5, at=day + timedelta(hours=3, minutes=55)),
                    event("c", quantity=4, at=day + timedelta(hours=7)),
                    event("d", quantity=8, at=day + DAY + HOUR),
                    event("outside", quantity=100, at=day - HOUR)])
    client = _reader(frame)
    hourly = _series(client, meter="compute_hours", granularity="hour", start=day.isoformat(),
                     end=(day + 2 * DAY).isoformat())
    assert hourly.status_code == 200, hourly.content
    assert hourly.json() == {"meter": "compute_hours", "unit": "hours", "granularity": "hour",
                             "points": [{"t": "2031-01-15T03:00:00Z", "value": "3.5"},
                                        {"t": "2031-01-15T07:00:00Z", "value": "4"},
                                        {"t": "2031-01-16T01:00:00Z", "value": "8"}]}
    daily = _series(client, meter="compute_hours", start=day.isoformat(),
                    end=(day + 2 * DAY).isoformat()).json()
    assert daily["granularity"] == "day"
    assert daily["points"] == [{"t": "2031-01-15T00:00:00Z", "value": "7.5"},
                               {"t": "2031-01-16T00:00:00Z", "value": "8"}]
    # Default range: the 30 days up to now.
    default = _series(client, meter="compute_hours").json()["points"]
    assert [p["value"] for p in default] == ["100", "7.5", "8"]


@pytest.mark.django_db
def test_series_of_max_latest_and_unique_meters_use_their_own_aggregation(frame):
    custom_meter("peak", "max")
    custom_meter("seats", "latest")
    custom_meter("users", "unique_count", unique_property="user")
    day = datetime(2031, 1, 12, tzinfo=UTC)
    _accept(frame, [
        event("p1", meter="peak", quantity=5, at=day + HOUR),
        event("p2", meter="peak", quantity=3, at=day + 2 * HOUR),
        event("s1", meter="seats", quantity=9, at=day + HOUR),
        event("s2", meter="seats", quantity=4, at=day + 2 * HOUR),
        event("u1", meter="users", at=day + HOUR, user="ann"),
        event("u2", meter="users", at=day + 2 * HOUR, user="bob"),
        event("u3", meter="users", at=day + 3 * HOUR, user="ann"),
        event("u4", meter="users", at=day + DAY, user="ann"),
    ])
    client = _reader(frame)
    span = {"start": day.isoformat(), "end": (day + 3 * DAY).isoformat()}

    def values(meter):
        return [(p["t"][:10], p["value"]) for p in _series(client, meter=meter, **span).json()["points"]]

    assert values("peak") == [("2031-01-12", "5")]
    assert values("seats") == [("2031-01-12", "4")]
    assert values("users") == [("2031-01-12", "2"), ("2031-01-13", "1")]


@pytest.mark.django_db
@pytest.mark.parametrize("params, field", [
    ({"meter": "nope"}, "meter"),
    ({"meter": "not a slug!"}, "meter"),
    ({}, "meter"),
    ({"meter": "compute_hours", "granularity": "week"}, "granularity"),
    ({"meter": "compute_hours", "start": "2031-01-12T00:00:00Z", "end": "2031-01-11T00:00:00Z"},
     "start"),
    ({"meter": "compute_hours", "start": "2031-01-12T00:00:00Z", "end": "2031-01-12T00:00:00Z"},
     "start"),
    ({"meter": "compute_hours", "granularity": "hour", "start": "2030-12-01T00:00:00Z",
      "end": "2031-01-02T00:00:00Z"}, "start"),
    ({"meter": "compute_hours", "start": "2029-01-01T00:00:00Z", "end": "2031-01-02T00:00:00Z"},
     "start"),
    ({"meter": "users", "granularity": "hour"}, "granularity"),
    ({"meter": "compute_hours", "start": "yesterday"}, "start"),
    ({"meter": "compute_hours", "start": "2031-01-12T00:00:00"}, "start"),
    ({"meter": "compute_hours", "start": "2031-02-30T00:00:00Z"}, "start"),
    ({"meter": "compute_hours", "end": "2031-13-01T00:00:00Z"}, "end"),
    ({"meter": "compute_hours", "end": "0001-01-01T00:00:00Z"}, "start"),
])
def test_bad_series_queries_are_400_problems_naming_the_field(frame, params, field):
    custom_meter("users", "unique_count", unique_property="user")
    body = assert_problem(_series(_reader(frame), **params), 400, "validation_error")
    assert [e["field"] for e in body["errors"]] == [field], body


@pytest.mark.django_db
def test_the_longest_allowed_ranges_are_served(frame):
    client = _reader(frame)
    assert _series(client, meter="compute_hours", granularity="hour",
                   start="2031-01-01T00:00:00Z", end="2031-02-01T00:00:00Z").status_code == 200
    assert _series(client, meter="compute_hours", start="2030-01-01T00:00:00Z",
                   end="2031-02-04T00:00:00Z").status_code == 200
    assert _series(client, meter="compute_hours", end="0001-01-20T00:00:00Z").json()[
        "points"] == []


# --- isolation ------------------------------------------------------------------------------

@pytest.mark.django_db
def test_another_tenants_credentials_get_nothing_from_the_usage_endpoints(frame, bob):
    _accept(frame, [event("secret", quantity=4242, at=NOW - HOUR)])
    bob_jwt = api_client("alice", jwt_for("bob", "owner@bob.test"))
    bob_key = api_client("alice", make_key(bob, ["read", "usage:write"]))
    for client, status in ((bob_jwt, 404), (bob_key, 401)):
        for response in (client.get("/api/v1/usage"),
                         _series(client, meter="compute_hours"),
                         post_events(client, [event("spy", quantity=1)])):
            assert_problem(response, status)
            assert "4242" not in response.content.decode()
    assert _reader(frame).get("/api/v1/usage").status_code == 200
    points = _series(_reader(frame), meter="compute_hours").json()["points"]
    assert [p["value"] for p in points] == ["4242"]
    assert ingest(frame, [event("spy")]).accepted == 1  # bob's "spy" never landed here


@pytest.mark.django_db
def test_charlies_usage_never_includes_alices_events(alice, charlie):
    custom_meter("reports", "sum")
    now = clock.now(alice)
    response = post_events(writer(alice), [event("a1", quantity=77, at=now),
                                           event("a2", meter="reports", quantity=5, at=now)])
    assert response.json()["accepted"] == 2
    charlie_reader = _reader(charlie)
    meters = {m["meter"]: m["used"] for m in charlie_reader.get("/api/v1/usage").json()["meters"]}
    assert meters["compute_hours"] == "0" and meters["reports"] == "0"
    for meter in ("compute_hours", "reports"):
        assert _series(charlie_reader, meter=meter, granularity="hour",
                       start=(now - DAY).isoformat(),
                       end=(now + HOUR).isoformat()).json()["points"] == []
    alice_meters = {m["meter"]: m["used"]
                    for m in _reader(alice).get("/api/v1/usage").json()["meters"]}
    assert alice_meters["compute_hours"] == "77" and alice_meters["reports"] == "5"
