"""Durability and concurrency of ingestion (SPEC §5): an acknowledged event is committed
in PostgreSQL before the 202, whatever Redis does, and the counters can be rebuilt exactly
afterwards; clients racing with the same or overlapping batches count each event once.

The racing tests commit for real: their clients run in threads, each with a connection of
its own outside the test's transaction; they delete what they wrote afterwards."""
import tempfile
import time
import uuid
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from django.db import connection

from aerolith import clock
from aerolith.devservices import embedded_redis
from billing.models import Subscription
from metering.models import Meter
from metering.quantities import decimal_to_micro
from metering.selectors import meter_quantity
from metering.services.counters import counters_read
from metering.services.ingest import usage_ingest
from metering.services.rebuild import counters_rebuild
from tests.conftest import api_client, jwt_for
from tests.metering.conftest import (
    committed_cleanup,
    event,
    in_threads,
    post_events,
    stored_events,
    stored_keys,
    writer,
)

NOWHERE = "redis://127.0.0.1:1/0"  # nothing listens on port 1


def _period(tenant):
    subscription = Subscription.objects.get(tenant=tenant)
    return subscription.current_period_start, subscription.current_period_end


def _truth(tenant, codes) -> dict[str, int]:
    start, end = _period(tenant)
    return {code: decimal_to_micro(meter_quantity(tenant.pk, Meter.objects.get(code=code),
                                                  start, end)) for code in codes}


def _batch(prefix, n, at, quantity=1):
    return [event(f"{prefix}-{i}", quantity=quantity, at=at) for i in range(n)]


# --- Redis away ------------------------------------------------------------------------------

@pytest.mark.django_db
def test_ingestion_answers_202_and_stores_everything_while_redis_is_unreachable(alice, settings):
    client = writer(alice)
    now = clock.now(alice)
    assert post_events(client, _batch("before", 3, now, 2)).json()["accepted"] == 3
    start, _end = _period(alice)
    assert counters_read(alice.pk, start)["compute_hours"] == 6_000_000

    real_redis, settings.REDIS_URL = settings.REDIS_URL, NOWHERE
    began = time.monotonic()
    response = post_events(client, _batch("during", 5, now, 1.5)
                           + [event("bw", meter="bandwidth_gb", quantity=0.5, at=now)])
    elapsed = time.monotonic() - began
    assert response.status_code == 202, response.content
    assert response.json() == {"accepted": 6, "duplicates": 0, "rejected": []}
    assert elapsed < 10, elapsed  # a Redis outage costs freshness, not availability
    # A retry while Redis is still away is recognised as a retry: idempotency is in PostgreSQL.
    assert post_events(client, _batch("during", 5, now)).json()["duplicates"] == 5
    assert len(stored_events(alice)) == 9
    assert stored_keys(alice, [f"during-{i}" for i in range(5)] + ["bw"]) == 6

    settings.REDIS_URL = real_redis
    assert counters_read(alice.pk, start)["compute_hours"] == 6_000_000  # missed the outage
    counters_rebuild(alice)
    truth = _truth(alice, ["compute_hours", "bandwidth_gb"])
    assert truth == {"compute_hours": 13_500_000, "bandwidth_gb": 500_000}
    live = counters_read(alice.pk, start)
    assert {code: live[code] for code in truth} == truth


@pytest.mark.django_db
def test_counters_are_rebuilt_exactly_after_redis_dies_and_restarts_empty(alice, settings):
    # A private directory rather than tmp_path: concurrent pytest sessions prune each
    # other's tmp_path roots.
    with tempfile.TemporaryDirectory(prefix="aerolith-redis-") as directory:
        _die_and_restart(alice, settings, Path(directory))


def _die_and_restart(alice, settings, tmp_path):
    client = writer(alice)
    now = clock.now(alice)
    start, _end = _period(alice)
    with embedded_redis(tmp_path / "first") as url:
        settings.REDIS_URL = url
        assert post_events(client, _batch("one", 4, now, 0.25)).json()["accepted"] == 4
        assert counters_read(alice.pk, start)["compute_hours"] == 1_000_000
    # The private Redis is gone (terminated); events keep being acknowledged.
    response = post_events(client, _batch("two", 3, now, 2))
    assert response.status_code == 202 and response.json()["accepted"] == 3
    with embedded_redis(tmp_path / "second") as url:  # restarted, without its data
        settings.REDIS_URL = url
        assert counters_read(alice.pk, start) == {}
        assert counters_rebuild(alice)["compute_hours"] == 7_000_000
        assert counters_read(alice.pk, start)["compute_hours"] == 7_000_000
        assert _truth(alice, ["compute_hours"]) == {"compute_hours": 7_000_000}
    assert len(stored_events(alice)) == 7


# --- racing clients (committed) -----------------------------------------------------------------

@pytest.fixture
def committing(alice):
    """alice, a fresh id prefix, and after the test the deletion of what threads committed
    under it (the test itself runs in its transaction; its threads do not)."""
    compute = Meter.objects.get(code="compute_hours")
    prefix = f"race-{uuid.uuid4().hex[:8]}"
    written: list[str] = []
    yield alice, prefix, written
    committed_cleanup([alice.pk], written, [compute.pk])


def _committed_rows(tenant, ids) -> tuple[int, Decimal]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*), coalesce(sum(quantity), 0) FROM metering_usageevent "
                       "WHERE tenant_id = %s AND event_id = ANY(%s)", [tenant.pk, list(ids)])
        return cursor.fetchone()


def _aggregate_total(tenant, granularity) -> tuple[int, Decimal]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT coalesce(sum(event_count), 0), coalesce(sum(total), 0) FROM "
                       "metering_usageaggregate WHERE tenant_id = %s AND meter_id = %s AND "
                       "granularity = %s", [tenant.pk, Meter.objects.get(code="compute_hours").pk,
                                            granularity])
        return cursor.fetchone()


@pytest.mark.django_db
def test_two_clients_sending_the_same_batch_at_once_count_it_once(committing):
    alice, prefix, written = committing
    now = clock.now(alice)
    batch = _batch(prefix, 300, now - timedelta(minutes=1), 0.001)
    written += [e["id"] for e in batch]

    results = in_threads(lambda: usage_ingest(tenant=alice, events=batch),
                         lambda: usage_ingest(tenant=alice, events=batch))
    assert not any(isinstance(r, BaseException) for r in results), results
    assert sorted(r.accepted for r in results) == [0, 300]
    assert sorted(r.duplicates for r in results) == [0, 300]
    # Committed: visible from this (other) connection, each event once.
    assert _committed_rows(alice, written) == (300, Decimal("0.3"))
    assert stored_keys(alice, written) == 300
    assert _aggregate_total(alice, "hour") == (300, Decimal("0.3"))
    assert _aggregate_total(alice, "day") == (300, Decimal("0.3"))


@pytest.mark.django_db
@pytest.mark.parametrize("rep", range(6))
def test_overlapping_batches_in_opposite_orders_count_each_event_once(committing, rep):
    """Two clients retrying overlapping batches, one in reverse order, over many hours:
    nobody deadlocks, nobody gets an error, every event counts once."""
    alice, prefix, written = committing
    now = clock.now(alice)
    events = [event(f"{prefix}-{i}", quantity=0.001, at=now - timedelta(hours=i % 48))
              for i in range(2000)]
    written += [e["id"] for e in events]
    first, second = events[:1500], list(reversed(events[500:]))

    results = in_threads(lambda: usage_ingest(tenant=alice, events=first),
                         lambda: usage_ingest(tenant=alice, events=second))
    assert not any(isinstance(r, BaseException) for r in results), results
    assert sum(r.accepted for r in results) == 2000
    assert sum(r.duplicates for r in results) == 1000
    assert _committed_rows(alice, written) == (2000, Decimal(2))
    assert _aggregate_total(alice, "hour") == (2000, Decimal(2))


@pytest.mark.django_db
@pytest.mark.parametrize("rep", range(6))
def test_disjoint_batches_over_the_same_hours_in_opposite_orders_both_commit(committing, rep):
    """Each process adds into its own aggregate rows, shared by its threads: two threads
    adding into the same hours, in opposite orders, must not deadlock."""
    alice, prefix, written = committing
    now = clock.now(alice)
    hours = [now - timedelta(hours=h) for h in range(600)]
    ascending = [event(f"{prefix}-a{i}", quantity=0.001, at=at) for i, at in enumerate(hours)]
    descending = [event(f"{prefix}-d{i}", quantity=0.001, at=at)
                  for i, at in enumerate(reversed(hours))]
    written += [e["id"] for e in ascending + descending]

    results = in_threads(lambda: usage_ingest(tenant=alice, events=ascending),
                         lambda: usage_ingest(tenant=alice, events=descending))
    assert not any(isinstance(r, BaseException) for r in results), results
    assert [r.accepted for r in results] == [600, 600]
    assert _aggregate_total(alice, "hour") == (1200, Decimal("1.2"))
    assert _aggregate_total(alice, "day") == (1200, Decimal("1.2"))


@pytest.mark.django_db
def test_a_202_over_http_means_the_events_are_committed(committing):
    """The answer goes out after the commit: another connection sees the rows as soon as
    the client has its 202."""
    alice, prefix, written = committing
    token = jwt_for("alice", "owner@alice.test")
    batch = _batch(prefix, 20, clock.now(alice) - timedelta(seconds=30), 0.5)
    written += [e["id"] for e in batch]

    (response,) = in_threads(lambda: post_events(api_client("alice", token), batch))
    assert not isinstance(response, BaseException), response
    assert response.status_code == 202 and response.json()["accepted"] == 20
    assert _committed_rows(alice, written) == (20, Decimal(10))
    assert stored_keys(alice, written) == 20
