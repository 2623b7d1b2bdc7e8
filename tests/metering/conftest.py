"""Helpers for the metering tests: a clean slate of usage keys in Redis and of the
per-process meter and allowance caches around every test, periods and clocks placed where
a test wants them, and plain-SQL views of what PostgreSQL holds."""
import threading
from datetime import datetime, timedelta
from decimal import Decimal

import orjson
import pytest
from django.db import connection, connections

from aerolith import clock
from billing.models import PlanMeter, Subscription
from metering.models import Meter
from metering.services import quotas
from metering.services.counters import client
from metering.services.ingest import event_key, usage_ingest
from tenants.services.clocks import tenant_clock_attach
from tests.conftest import api_client, make_key

USAGE_KEY_PATTERN = "aerolith:usage*"  # counters, HyperLogLogs, the collector buffer


def redis_wipe() -> None:
    r = client()
    keys = list(r.scan_iter(USAGE_KEY_PATTERN, count=1000))
    if keys:
        r.delete(*keys)


@pytest.fixture(autouse=True)
def _clean_usage_state():
    redis_wipe()
    quotas.cache_clear()
    yield
    redis_wipe()
    quotas.cache_clear()


def iso(t: datetime) -> str:
    return t.isoformat()


def event(event_id, meter="compute_hours", quantity=1, at=None, **properties) -> dict:
    body = {"id": event_id, "meter": meter, "quantity": quantity}
    if at is not None:
        body["timestamp"] = iso(at)
    if properties:
        body["properties"] = properties
    return body


def ingest(tenant, events, **kwargs):
    return usage_ingest(tenant=tenant, events=events, **kwargs)


def set_period(tenant, start: datetime, end: datetime) -> Subscription:
    Subscription.objects.filter(tenant=tenant).update(current_period_start=start,
                                                      current_period_end=end)
    return Subscription.objects.get(tenant=tenant)


def freeze(tenant, at: datetime) -> datetime:
    tenant_clock_attach(tenant=tenant, actor="system", at=at)
    assert clock.now(tenant) == at
    return at


def custom_meter(code: str, aggregation: str, **fields) -> Meter:
    meter = Meter.objects.create(code=code, name=code.replace("_", " ").title(),
                                 unit=fields.pop("unit", "units"), aggregation=aggregation,
                                 **fields)
    quotas.cache_clear()
    return meter


def set_allowance(plan_code: str, meter_code: str, included) -> None:
    updated = PlanMeter.objects.filter(plan__code=plan_code, meter__code=meter_code).update(
        included=None if included is None else Decimal(included))
    assert updated == 1
    quotas.cache_clear()


def writer(tenant, scopes=("usage:write", "read")):
    return api_client(tenant.slug, make_key(tenant, list(scopes), name="usage writer"))


def post_events(client, events, **extra):
    body = events if isinstance(events, bytes) else orjson.dumps(events)
    return client.generic("POST", "/api/v1/usage/events", body,
                          content_type=extra.pop("content_type", "application/json"), **extra)


def meter_id(code: str) -> int:
    return Meter.objects.get(code=code).pk


def stored_events(tenant, meter_code: str | None = None) -> list[tuple]:
    """(event_id, quantity, timestamp, properties) of the tenant's raw events, by SQL."""
    sql = ("SELECT event_id, quantity, \"timestamp\", properties FROM metering_usageevent "
           "WHERE tenant_id = %s")
    params = [tenant.pk]
    if meter_code is not None:
        sql += " AND meter_id = %s"
        params.append(meter_id(meter_code))
    with connection.cursor() as cursor:
        cursor.execute(sql + " ORDER BY event_id", params)
        return [(a, b, c, orjson.loads(d) if isinstance(d, str) else d)
                for a, b, c, d in cursor.fetchall()]


def stored_keys(tenant, ids) -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM metering_eventkey WHERE key = ANY(%s)",
                       [[event_key(tenant.pk, i) for i in ids]])
        return cursor.fetchone()[0]


def in_threads(*targets, timeout: float = 30.0) -> list:
    """Run each callable in its own thread, so with its own database connection (in
    autocommit, outside the test's transaction), all released together; returns their
    results (an exception is returned, not raised)."""
    barrier = threading.Barrier(len(targets))
    results: list = [None] * len(targets)

    def run(index, target):
        try:
            barrier.wait(timeout)
            results[index] = target()
        except BaseException as exc:  # noqa: BLE001 - reported to the test
            results[index] = exc
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run, args=(i, t)) for i, t in enumerate(targets)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout)
        assert not thread.is_alive(), "a thread did not finish (a lock held by the test?)"
    return results


def committed_cleanup(tenant_ids, event_ids=(), meter_ids=()) -> None:
    """Delete what a committing test wrote (raw events, keys, aggregates, gauges), from a
    connection of its own so the deletion commits whatever the test's transaction does."""
    def delete():
        with connections["default"].cursor() as cursor:
            for tenant_id in tenant_ids:
                cursor.execute("DELETE FROM metering_usageevent WHERE tenant_id = %s AND "
                               "event_id = ANY(%s)", [tenant_id, list(event_ids)])
                cursor.execute("DELETE FROM metering_eventkey WHERE key = ANY(%s)",
                               [[event_key(tenant_id, i) for i in event_ids]])
                for table in ("metering_usageaggregate", "metering_gaugereading",
                              "metering_uniquevalue"):
                    cursor.execute(f"DELETE FROM {table} WHERE tenant_id = %s AND "
                                   "meter_id = ANY(%s)", [tenant_id, list(meter_ids)])

    (outcome,) = in_threads(delete)
    if isinstance(outcome, BaseException):
        raise outcome


HOUR = timedelta(hours=1)
DAY = timedelta(days=1)
