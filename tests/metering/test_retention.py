"""Retention (SPEC §5): raw events live in daily partitions made ahead of time, rows that
landed in the default partition move into their day's partition when it is made, whole
partitions are dropped after retention while daily aggregates keep the counts, and old
idempotency keys and hourly aggregates are deleted. Partitions are DDL on a shared table,
so every test makes them inside its own (rolled back) transaction."""
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.test import override_settings

from aerolith import clock
from metering.models import EventKey, Meter, UsageAggregate
from metering.selectors import meter_quantity
from metering.services.ingest import event_key
from metering.services.partitions import (
    DEFAULT,
    existing_partitions,
    partition_create,
    partition_name,
    partitions_drop_before,
    partitions_ensure,
)
from metering.tasks import usage_retention
from tests.metering.conftest import DAY, event, freeze, ingest

D = date(2031, 5, 10)
MIDNIGHT = datetime.combine(D, time.min, tzinfo=UTC)


def _count(table, tenant=None) -> int:
    with connection.cursor() as cursor:
        if tenant is None:
            cursor.execute(f"SELECT count(*) FROM {table}")
        else:
            cursor.execute(f"SELECT count(*) FROM {table} WHERE tenant_id = %s", [tenant.pk])
        return cursor.fetchone()[0]


def _day_events(alice):
    freeze(alice, MIDNIGHT + DAY + timedelta(hours=12))
    result = ingest(alice, [
        event("d-early", quantity=1, at=MIDNIGHT + timedelta(hours=5)),
        event("d-last", quantity=2, at=MIDNIGHT + DAY - timedelta(microseconds=1)),
        event("next-day", quantity=4, at=MIDNIGHT + DAY),
        event("day-before", quantity=8, at=MIDNIGHT - timedelta(hours=1)),
    ])
    assert result.accepted == 4


@pytest.mark.django_db
def test_partitions_ensure_makes_each_missing_day_once():
    before = set(existing_partitions())
    assert partitions_ensure(D, back=1, ahead=2) == 4
    have = existing_partitions()
    assert set(have) - before == {D + timedelta(days=k) for k in (-1, 0, 1, 2)}
    assert have[D] == partition_name(D) == "metering_usageevent_p20310510"
    assert partitions_ensure(D, back=1, ahead=2) == 0
    assert partition_create(D) is False


@pytest.mark.django_db
def test_rows_in_the_default_partition_move_into_their_new_partition(alice):
    _day_events(alice)
    compute = Meter.objects.get(code="compute_hours")
    before = meter_quantity(alice.pk, compute, MIDNIGHT - DAY, MIDNIGHT + 2 * DAY)
    assert _count(DEFAULT, alice) == 4

    assert partition_create(D) is True
    assert _count(partition_name(D), alice) == 2  # d-early and d-last
    assert _count(DEFAULT, alice) == 2  # the neighbours stay where they were
    assert meter_quantity(alice.pk, compute, MIDNIGHT - DAY, MIDNIGHT + 2 * DAY) == before == 15
    # New events of that day go straight into the partition.
    ingest(alice, [event("d-late", quantity=16, at=MIDNIGHT + timedelta(hours=20))])
    assert _count(partition_name(D), alice) == 3 and _count(DEFAULT, alice) == 2


@pytest.mark.django_db
def test_dropping_whole_partitions_keeps_the_counts_in_daily_aggregates(alice):
    _day_events(alice)
    partitions_ensure(D, back=0, ahead=0)
    compute = Meter.objects.get(code="compute_hours")
    assert meter_quantity(alice.pk, compute, MIDNIGHT, MIDNIGHT + DAY) == Decimal(3)

    dropped = partitions_drop_before(D + DAY)
    assert partition_name(D) in dropped
    assert D not in existing_partitions()
    # The raw events of that day and before are gone ...
    with connection.cursor() as cursor:
        cursor.execute("SELECT event_id FROM metering_usageevent WHERE tenant_id = %s",
                       [alice.pk])
        assert [row[0] for row in cursor.fetchall()] == ["next-day"]
    # ... and whole days still count right, from the daily aggregates.
    assert meter_quantity(alice.pk, compute, MIDNIGHT, MIDNIGHT + DAY) == Decimal(3)
    assert meter_quantity(alice.pk, compute, MIDNIGHT - DAY, MIDNIGHT + 2 * DAY) == Decimal(15)


@pytest.mark.django_db
@override_settings(AEROLITH_USAGE_RAW_RETENTION_DAYS=90, AEROLITH_USAGE_IDEMPOTENCY_DAYS=40,
                   AEROLITH_USAGE_HOURLY_RETENTION_DAYS=397)
def test_the_retention_task_makes_partitions_and_deletes_what_is_past_retention(alice):
    now = clock.wall_now()
    today = now.date()
    compute = Meter.objects.get(code="compute_hours")
    old_key, new_key = event_key(alice.pk, "old"), event_key(alice.pk, "new")
    EventKey.objects.bulk_create([
        EventKey(key=old_key, received_at=now - timedelta(days=41)),
        EventKey(key=new_key, received_at=now - timedelta(days=39))])

    def aggregate(granularity, age):
        bucket = (now - age).replace(minute=0, second=0, microsecond=0)
        if granularity == "day":
            bucket = bucket.replace(hour=0)
        return UsageAggregate(tenant_id=alice.pk, meter_id=compute.pk, granularity=granularity,
                              bucket=bucket, shard=0, event_count=1, total=1)

    UsageAggregate.objects.bulk_create([
        aggregate("hour", timedelta(days=400)), aggregate("hour", timedelta(days=390)),
        aggregate("day", timedelta(days=800))])
    with connection.cursor() as cursor:
        for event_id, age in (("ancient", 100), ("recent", 10)):
            cursor.execute(
                "INSERT INTO metering_usageevent (tenant_id, meter_id, event_id, quantity, "
                "\"timestamp\", properties, received_at) VALUES (%s, %s, %s, 1, %s, '{}', %s)",
                [alice.pk, compute.pk, event_id, now - timedelta(days=age), now])

    result = usage_retention()

    assert result["partitions_made"] == 10  # two days back to a week ahead
    assert {today + timedelta(days=k) for k in range(-2, 8)} <= set(existing_partitions())
    assert result["keys_deleted"] >= 1
    assert list(EventKey.objects.filter(key__in=[old_key, new_key])
                .values_list("key", flat=True)) == [new_key]
    assert result["hourly_deleted"] >= 1
    kept = UsageAggregate.objects.filter(tenant_id=alice.pk, meter_id=compute.pk)
    assert sorted((a.granularity, (now - a.bucket).days) for a in kept) == [
        ("day", 800), ("hour", 390)]
    with connection.cursor() as cursor:
        cursor.execute("SELECT event_id FROM metering_usageevent WHERE tenant_id = %s",
                       [alice.pk])
        assert [row[0] for row in cursor.fetchall()] == ["recent"]
    # Run again: nothing more to do, nothing breaks.
    again = usage_retention()
    assert again["partitions_made"] == 0 and again["keys_deleted"] == 0
