"""Real-time counters (SPEC §5): after any mix of batches, meters, quantities, times and
repeated ids, the Redis counters equal what PostgreSQL says the current period holds; when
they are lost or drift, the rebuild, the management command and the periodic check make
them exact again."""
import random
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from metering.models import Meter
from metering.quantities import decimal_to_micro
from metering.selectors import gauge_integral, meter_quantity
from metering.services.collectors import buffer_flush
from metering.services.counters import client, counter_key, counters_read
from metering.services.rebuild import counters_drift, counters_rebuild
from metering.tasks import usage_counters_check
from tests.conftest import api_client, make_key
from tests.metering.conftest import custom_meter, event, freeze, ingest, set_period, stored_events

NOW = datetime(2031, 3, 15, 8, 20, 5, 123456, tzinfo=UTC)
START = NOW - timedelta(days=10, hours=3, minutes=7, seconds=1)
END = START + timedelta(days=30)
MICRO = 1_000_000
ADDITIVE = ("compute_hours", "api_calls", "bandwidth_gb")
UNIQUE = "active_users"


@pytest.fixture
def frame(alice):
    set_period(alice, START, END)
    freeze(alice, NOW)
    custom_meter("peak_connections", "max")
    custom_meter("seats", "latest")
    custom_meter(UNIQUE, "unique_count", unique_property="user")
    return alice


def _random_load(tenant, seed: int, batches: int = 12, size: int = 60) -> dict[str, int]:
    """Send random batches; return the expected totals (micro-units) of the additive
    meters in the period, computed here independently: the first event of each id wins."""
    rng = random.Random(seed)
    codes = [*ADDITIVE, "peak_connections", "seats", "storage_gb", UNIQUE]
    ids = [f"ev-{i}" for i in range(batches * size // 2)]  # so that ids repeat
    window = int((NOW + timedelta(minutes=4) - (START - timedelta(days=3))).total_seconds())
    seen, expected = set(), dict.fromkeys(ADDITIVE, 0)
    duplicates = 0
    for _ in range(batches):
        batch = []
        for _ in range(size):
            micro = rng.randint(0, 5_000_000_000)
            at = START - timedelta(days=3) + timedelta(seconds=rng.randint(0, window),
                                                       microseconds=rng.randint(0, 999_999))
            code = rng.choice(codes)
            batch.append(event(rng.choice(ids), meter=code, quantity=Decimal(micro).scaleb(-6),
                               at=at, user=f"user-{rng.randint(1, 25)}"))
        for e in batch:
            if e["id"] in seen:
                duplicates += 1
                continue
            seen.add(e["id"])
            at = datetime.fromisoformat(e["timestamp"])
            if e["meter"] in ADDITIVE and START <= at < END:
                expected[e["meter"]] += decimal_to_micro(e["quantity"])
        result = ingest(tenant, batch)
        assert result.rejected == [], result.rejected
    assert duplicates > 50  # the load did repeat ids
    return expected


def _truth(tenant) -> dict[str, int]:
    """What PostgreSQL says, through the billing selector, in counter terms."""
    out = {}
    for meter in Meter.objects.filter(is_active=True):
        if meter.aggregation == "weighted_sum":
            _integral, level = gauge_integral(tenant.pk, meter, START, END)
            out[meter.code] = decimal_to_micro(level)
        elif meter.aggregation == "unique_count":
            out[meter.code] = int(meter_quantity(tenant.pk, meter, START, END))
        else:
            out[meter.code] = decimal_to_micro(meter_quantity(tenant.pk, meter, START, END))
    return out


def _live(tenant) -> dict[str, int]:
    return counters_read(tenant.pk, START, unique_codes=[UNIQUE])


@pytest.mark.django_db
@pytest.mark.parametrize("seed", [7, 20311115])
def test_counters_equal_the_postgresql_truth_after_a_random_load(frame, seed):
    expected = _random_load(frame, seed)
    truth = _truth(frame)
    for code in ADDITIVE:
        assert truth[code] == expected[code], code
    assert 10 < truth[UNIQUE] <= 25 and all(truth[c] > 0 for c in truth)
    assert _live(frame) == truth


@pytest.mark.django_db
def test_rebuild_restores_lost_counters_exactly(frame):
    _random_load(frame, 99, batches=6)
    truth = _truth(frame)
    r = client()
    keys = list(r.scan_iter(f"{counter_key(frame.pk, START)}*"))
    assert len(keys) == 2  # the hash and the HyperLogLog of the unique meter
    r.delete(*keys)
    assert _live(frame) == {UNIQUE: 0}
    written = counters_rebuild(frame)
    assert _live(frame) == truth
    assert written == {code: v for code, v in truth.items() if code != UNIQUE}
    # And the counters keep counting from there.
    ingest(frame, [event("after-rebuild", quantity=2, at=NOW)])
    assert _live(frame)["compute_hours"] == truth["compute_hours"] + 2 * MICRO


@pytest.mark.django_db
def test_rebuild_counts_events_stamped_a_little_ahead_as_ingestion_does(frame):
    ingest(frame, [event("ahead", quantity=3, at=NOW + timedelta(minutes=4)),
                   event("now", quantity=1, at=NOW)])
    assert counters_read(frame.pk, START)["compute_hours"] == 4 * MICRO
    assert counters_drift(frame) == {}
    counters_rebuild(frame)
    assert counters_read(frame.pk, START)["compute_hours"] == 4 * MICRO


@pytest.mark.django_db
def test_drift_is_reported_per_meter_and_the_periodic_check_repairs_it(frame):
    _random_load(frame, 3, batches=4)
    truth = _truth(frame)
    r = client()
    key = counter_key(frame.pk, START)
    r.hincrby(key, "compute_hours", 5 * MICRO)
    r.hdel(key, "peak_connections")
    assert counters_drift(frame) == {
        "compute_hours": (truth["compute_hours"] + 5 * MICRO, truth["compute_hours"]),
        "peak_connections": (0, truth["peak_connections"])}
    assert usage_counters_check() == {"alice": ["compute_hours", "peak_connections"]}
    assert _live(frame) == truth
    assert counters_drift(frame) == {}
    assert usage_counters_check() == {}


@pytest.mark.django_db
def test_the_check_keeps_api_calls_counted_but_not_yet_flushed(frame):
    """Calls are counted in Redis on the request path and reach PostgreSQL with the next
    buffer flush; a check in between must not take them away from the counter."""
    ingest(frame, [event("recent", quantity=1, at=NOW)])
    client_ = api_client("alice", make_key(frame, ["read"]))
    for _ in range(3):
        assert client_.get("/api/v1/tenant").status_code == 200
    assert counters_read(frame.pk, START)["api_calls"] == 3 * MICRO
    assert counters_drift(frame) == {}
    assert usage_counters_check() == {}
    counters_rebuild(frame)
    assert counters_read(frame.pk, START)["api_calls"] == 3 * MICRO
    assert buffer_flush() == 1
    assert [q for _i, q, _t, _p in stored_events(frame, "api_calls")] == [Decimal(3)]
    assert counters_read(frame.pk, START)["api_calls"] == 3 * MICRO
    assert counters_drift(frame) == {}


# --- the management command -----------------------------------------------------------------

def _command(*args) -> str:
    out = StringIO()
    call_command("usage_counters", *args, stdout=out)
    return out.getvalue()


@pytest.mark.django_db
def test_command_check_reports_drift_and_rebuild_repairs_it(frame):
    ingest(frame, [event("a", quantity=2.5, at=NOW), event("b", meter="api_calls", at=NOW)])
    client().hset(counter_key(frame.pk, START), "compute_hours", 7 * MICRO)

    report = _command("check", "--tenant", "alice")
    assert "alice: compute_hours is 7 in Redis, 2.5 in PostgreSQL" in report
    assert "1 organisation(s) adrift" in report
    assert counters_read(frame.pk, START)["compute_hours"] == 7 * MICRO  # check changes nothing

    assert "alice: rebuilt 2 counter(s)" in _command("rebuild", "--tenant", "alice")
    assert counters_read(frame.pk, START) == {"compute_hours": 2_500_000, "api_calls": MICRO}
    assert "0 organisation(s) adrift" in _command("check", "--tenant", "alice")


@pytest.mark.django_db
def test_command_check_repair_and_rebuild_of_every_tenant(frame, bob, charlie):
    ingest(frame, [event("a", quantity=1, at=NOW)])
    client().hset(counter_key(frame.pk, START), "compute_hours", 9 * MICRO)
    report = _command("check", "--repair")
    assert "alice: repaired" in report and "1 organisation(s) adrift, repaired" in report
    assert counters_read(frame.pk, START)["compute_hours"] == MICRO
    rebuilt = _command("rebuild")
    assert all(f"{slug}: rebuilt" in rebuilt for slug in ("alice", "bob", "charlie"))


@pytest.mark.django_db
def test_command_refuses_an_unknown_tenant_and_a_missing_action():
    with pytest.raises(CommandError, match="No organisation with slug 'nobody'"):
        _command("rebuild", "--tenant", "nobody")
    with pytest.raises(CommandError):
        _command()
