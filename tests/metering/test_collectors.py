"""Built-in collectors (SPEC §5): every authenticated API request counts one api_calls and
its bytes as bandwidth, in Redis on the request path and then in PostgreSQL through the
buffer flush, which a retry after a crash never records twice; storage is measured as a
gauge reading."""
from decimal import Decimal

import orjson
import pytest

from aerolith import clock
from billing.models import Subscription
from metering.models import GaugeReading
from metering.services import collectors
from metering.services.collectors import BUFFER_KEY, FLUSHING_PREFIX, buffer_flush
from metering.services.counters import client, counters_read
from metering.tasks import usage_buffer_flush, usage_storage_collect
from tenants.models import Tenant
from tests.conftest import api_client, jwt_for, make_key
from tests.metering.conftest import event, post_events, stored_events

MICRO = 1_000_000


def _buffer(key=BUFFER_KEY) -> dict[str, int]:
    return {k.decode(): int(v) for k, v in client().hgetall(key).items()}


def _live(tenant) -> dict[str, int]:
    return counters_read(tenant.pk, Subscription.objects.get(tenant=tenant).current_period_start)


def _quantities(tenant, meter) -> list[Decimal]:
    return [q for _i, q, _t, _p in stored_events(tenant, meter)]


@pytest.mark.django_db
def test_each_authenticated_request_counts_one_call_and_its_bytes(alice):
    key_client = api_client("alice", make_key(alice, ["read", "usage:write"]))
    jwt_client = api_client("alice", jwt_for("alice", "owner@alice.test"))
    assert _buffer() == {} and _live(alice) == {}

    first = key_client.get("/api/v1/tenant")
    body = orjson.dumps([event("e1")])
    second = post_events(key_client, body)
    third = jwt_client.get("/api/v1/subscription")
    assert [r.status_code for r in (first, second, third)] == [200, 202, 200]

    sent = len(first.content) + len(body) + len(second.content) + len(third.content)
    assert _buffer() == {f"{alice.pk}:api_calls": 3, f"{alice.pk}:bandwidth_bytes": sent}
    assert _live(alice)["api_calls"] == 3 * MICRO
    # Nothing of it is in PostgreSQL yet: the request path writes no row for it.
    assert stored_events(alice, "api_calls") == [] == stored_events(alice, "bandwidth_gb")


@pytest.mark.django_db
def test_requests_refused_before_the_view_are_not_counted(alice):
    assert api_client("alice").get("/api/v1/tenant").status_code == 401
    assert api_client("alice", "ak_nope.nope").get("/api/v1/tenant").status_code == 401
    read_only = api_client("alice", make_key(alice, ["read"]))
    assert post_events(read_only, [event("x")]).status_code == 403
    assert _buffer() == {} and _live(alice) == {}


@pytest.mark.django_db
def test_buffer_flush_records_calls_and_whole_micro_gigabytes_once(alice, bob):
    for _ in range(2):
        assert api_client("alice", make_key(alice, ["read"])).get("/api/v1/tenant").status_code == 200
    collectors.bandwidth_count(alice.pk, 2_500_000_123)  # 2.500000 GB and 123 bytes
    collectors.bandwidth_count(bob.pk, 999)  # less than a micro-GB
    alice_bytes = _buffer()[f"{alice.pk}:bandwidth_bytes"]
    live_before = _live(alice)

    assert buffer_flush() == 2  # alice's calls and her bandwidth; bob's bytes wait
    assert _quantities(alice, "api_calls") == [Decimal(2)]
    assert _quantities(alice, "bandwidth_gb") == [Decimal(alice_bytes // 1000) / MICRO]
    assert stored_events(bob) == []
    # Sub-micro-GB remainders wait in the buffer for the next flush.
    assert _buffer() == {f"{alice.pk}:bandwidth_bytes": alice_bytes % 1000,
                         f"{bob.pk}:bandwidth_bytes": 999}
    assert list(client().scan_iter(f"{FLUSHING_PREFIX}*")) == []
    # The calls were counted in real time already; the bandwidth is counted now.
    live = _live(alice)
    assert live["api_calls"] == live_before["api_calls"] == 2 * MICRO
    assert live["bandwidth_gb"] == alice_bytes // 1000

    collectors.bandwidth_count(bob.pk, 1)
    assert usage_buffer_flush() == 1  # bob: 1,000 bytes make one micro-GB
    assert _quantities(bob, "bandwidth_gb") == [Decimal("0.000001")]


@pytest.mark.django_db
def test_a_flush_retried_after_a_crash_records_nothing_twice(alice):
    r = client()
    r.hset(BUFFER_KEY, mapping={f"{alice.pk}:api_calls": 7,
                                f"{alice.pk}:bandwidth_bytes": 3_000_000_000})
    # A flush renamed the buffer and crashed: the batch stays under its flushing name.
    crashed = f"{FLUSHING_PREFIX}crash-1"
    r.rename(BUFFER_KEY, crashed)
    left_behind = r.hgetall(crashed)
    assert buffer_flush() == 2
    # It crashed once more after recording, before deleting the batch: run it again.
    r.hset(crashed, mapping=left_behind)
    assert buffer_flush() == 0
    assert buffer_flush() == 0
    assert _quantities(alice, "api_calls") == [Decimal(7)]
    assert _quantities(alice, "bandwidth_gb") == [Decimal(3)]
    assert [row[0] for row in stored_events(alice)] == [
        "collector:crash-1:api_calls", "collector:crash-1:bandwidth_gb"]
    assert list(r.scan_iter(f"{FLUSHING_PREFIX}*")) == [] and _buffer() == {}


@pytest.mark.django_db
def test_flushing_an_empty_buffer_records_nothing():
    assert buffer_flush() == 0


@pytest.mark.django_db
def test_requests_after_a_flush_count_into_a_fresh_buffer(alice):
    c = api_client("alice", make_key(alice, ["read"]))
    c.get("/api/v1/tenant")
    buffer_flush()
    c.get("/api/v1/tenant")
    assert _buffer()[f"{alice.pk}:api_calls"] == 1
    buffer_flush()
    assert sorted(_quantities(alice, "api_calls")) == [Decimal(1), Decimal(1)]
    assert _live(alice)["api_calls"] == 2 * MICRO


@pytest.mark.django_db
def test_storage_is_recorded_as_a_gauge_reading_once_per_instant(alice):
    size = collectors.tenant_data_size(alice)
    assert size > 0
    at = clock.now(alice)
    collectors.storage_record(alice, 2_500_000_999, at=at)
    collectors.storage_record(alice, 2_500_000_999, at=at)  # the same reading again
    readings = list(GaugeReading.objects.filter(tenant_id=alice.pk)
                    .values_list("timestamp", "quantity"))
    assert readings == [(at, Decimal("2.500000"))]
    assert _quantities(alice, "storage_gb") == [Decimal("2.5")]
    assert _live(alice)["storage_gb"] == 2_500_000


@pytest.mark.django_db
def test_the_storage_task_measures_every_subscribed_tenant(alice, bob, charlie):
    count = usage_storage_collect()
    subscribed = Tenant.objects.exclude(schema_name="public").filter(subscription__isnull=False)
    assert count == subscribed.count() >= 3
    for tenant in (alice, bob, charlie):
        (quantity,) = GaugeReading.objects.filter(tenant_id=tenant.pk).values_list(
            "quantity", flat=True)
        assert quantity == Decimal(collectors.tenant_data_size(tenant) // 1000) / MICRO
