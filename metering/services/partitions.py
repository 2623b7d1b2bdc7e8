"""Daily partitions of the raw event table: made ahead of time, dropped after retention."""
import logging
from datetime import date, datetime, time, timedelta, timezone

from django.db import connection, transaction

logger = logging.getLogger(__name__)
PARENT = "metering_usageevent"
DEFAULT = "metering_usageevent_default"


def partition_name(day: date) -> str:
    return f"metering_usageevent_p{day:%Y%m%d}"


def existing_partitions() -> dict[date, str]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname = %s AND c.relname <> %s",
            [PARENT, DEFAULT],
        )
        names = [row[0] for row in cursor.fetchall()]
    return {datetime.strptime(name[-8:], "%Y%m%d").date(): name for name in names}


def partition_create(day: date) -> bool:
    """Make the partition for `day`, moving that day's rows out of the default partition
    first (attaching a range the default partition holds rows for would fail)."""
    if day in existing_partitions():
        return False
    start = datetime.combine(day, time.min, tzinfo=timezone.utc)
    end = start + timedelta(days=1)
    name = partition_name(day)
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(f"LOCK TABLE {DEFAULT} IN SHARE ROW EXCLUSIVE MODE")
        cursor.execute(f"CREATE TABLE {name} (LIKE {PARENT} INCLUDING DEFAULTS INCLUDING CONSTRAINTS)")  # nosec B608 - names are constants or built from a date
        cursor.execute(
            f"WITH moved AS (DELETE FROM {DEFAULT} WHERE \"timestamp\" >= %s AND \"timestamp\" < %s "  # nosec B608 - names are constants or built from a date
            f"RETURNING *) INSERT INTO {name} SELECT * FROM moved",
            [start, end],
        )
        cursor.execute(f"ALTER TABLE {PARENT} ATTACH PARTITION {name} FOR VALUES FROM (%s) TO (%s)",
                       [start, end])
    return True


def partitions_ensure(around: date, *, back: int, ahead: int) -> int:
    """Make the daily partitions from `around - back` to `around + ahead` days."""
    have = existing_partitions()
    made = 0
    for offset in range(-back, ahead + 1):
        day = around + timedelta(days=offset)
        if day not in have and partition_create(day):
            made += 1
    return made


def partitions_drop_before(day: date) -> list[str]:
    """Drop whole daily partitions older than `day` (retention: no row-by-row deletes), and
    delete what the default partition holds from before it."""
    dropped = []
    for partition_day, name in sorted(existing_partitions().items()):
        if partition_day < day:
            with connection.cursor() as cursor:
                cursor.execute(f"DROP TABLE {name}")
            dropped.append(name)
    with connection.cursor() as cursor:
        cursor.execute(f'DELETE FROM {DEFAULT} WHERE "timestamp" < %s',  # nosec B608 - DEFAULT is a constant table name
                       [datetime.combine(day, time.min, tzinfo=timezone.utc)])
    return dropped
