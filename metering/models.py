"""Meters, raw usage events and their aggregates (SPEC §5).

Quantities are stored as NUMERIC with six decimal places and handled as Decimal; in Redis
they are integer micro-units. The raw event table is partitioned by day of the event's
timestamp (created by migration 0002 in SQL), so retention drops whole partitions.
"""
from django.contrib.postgres.indexes import BrinIndex
from django.db import models

from aerolith import clock
from tenants.models import Tenant


class Aggregation(models.TextChoices):
    COUNT = "count", "Count (an event's quantity says how many occurrences it stands for)"
    SUM = "sum", "Sum of quantities"
    MAX = "max", "Maximum quantity in the period"
    UNIQUE_COUNT = "unique_count", "Distinct values of a property"
    LATEST = "latest", "Quantity of the latest event in the period"
    WEIGHTED_SUM = "weighted_sum", "Time-weighted level (a gauge), e.g. GB-months"


class Meter(models.Model):
    """What is measured. Built-in meters are created by migration; staff add custom ones."""

    code = models.SlugField(max_length=40, unique=True,
                            help_text="What events name in their `meter` field.")
    name = models.CharField(max_length=80)
    unit = models.CharField(max_length=20, help_text="e.g. calls, GB, hours")
    aggregation = models.CharField(max_length=20, choices=Aggregation.choices)
    unique_property = models.CharField(
        max_length=60, blank=True,
        help_text="For unique_count: the event property whose distinct values are counted.")
    unit_price_cents = models.DecimalField(
        max_digits=14, decimal_places=6, default=0,
        help_text="Default overage price in cents per `price_per` units; plans may override.")
    price_per = models.PositiveIntegerField(default=1, help_text="e.g. 1000 for 'per 1,000 calls'")
    is_builtin = models.BooleanField(default=False, editable=False)
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(default=clock.wall_now)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.CheckConstraint(condition=models.Q(unit_price_cents__gte=0),
                                   name="meter_price_not_negative"),
            models.CheckConstraint(
                condition=~models.Q(aggregation="unique_count") | ~models.Q(unique_property=""),
                name="meter_unique_count_names_property"),
        ]

    def __str__(self):
        return f"{self.name} ({self.code})"


class UsageEvent(models.Model):
    """A raw event, as accepted. Partitioned by day of `timestamp`; no indexes beyond the
    partition key, so ingestion stays cheap. Written with COPY by metering.services."""

    id = models.BigAutoField(primary_key=True)
    tenant_id = models.BigIntegerField()
    meter_id = models.IntegerField()
    event_id = models.TextField()
    quantity = models.DecimalField(max_digits=24, decimal_places=6)
    timestamp = models.DateTimeField()
    properties = models.JSONField(default=dict)
    received_at = models.DateTimeField()

    class Meta:
        managed = False
        db_table = "metering_usageevent"


class EventKey(models.Model):
    """Idempotency: one row per accepted (tenant, event id), keyed by a UUID digest of
    both. Kept for AEROLITH_USAGE_IDEMPOTENCY_DAYS (at least 35)."""

    key = models.UUIDField(primary_key=True)
    received_at = models.DateTimeField()

    class Meta:
        # BRIN: keys arrive in time order, and a BRIN index costs almost nothing to keep
        # while still letting retention find the old ones.
        indexes = [BrinIndex(fields=["received_at"], name="eventkey_received_brin")]


class UsageAggregate(models.Model):
    """Per tenant, meter and bucket (an hour or a day) and writer shard: the count, sum,
    maximum and latest value of the events in it. Each ingesting process writes its own
    shard row, so concurrent batches never wait on each other's row locks; readers sum
    the shards."""

    class Granularity(models.TextChoices):
        HOUR = "hour", "Hour"
        DAY = "day", "Day"

    pk = models.CompositePrimaryKey("tenant_id", "meter_id", "granularity", "bucket", "shard")
    tenant_id = models.BigIntegerField()
    meter_id = models.IntegerField()
    granularity = models.CharField(max_length=4, choices=Granularity.choices)
    bucket = models.DateTimeField()
    shard = models.SmallIntegerField()
    event_count = models.BigIntegerField(default=0)
    total = models.DecimalField(max_digits=30, decimal_places=6, default=0)
    maximum = models.DecimalField(max_digits=24, decimal_places=6, null=True)
    latest_at = models.DateTimeField(null=True)
    latest_value = models.DecimalField(max_digits=24, decimal_places=6, null=True)

    class Meta:
        indexes = [models.Index(fields=["granularity", "bucket"], name="usageagg_bucket")]


class GaugeReading(models.Model):
    """Readings of weighted_sum meters (low volume), kept apart so the time-weighted
    level can be integrated exactly without scanning raw partitions."""

    tenant_id = models.BigIntegerField()
    meter_id = models.IntegerField()
    timestamp = models.DateTimeField()
    quantity = models.DecimalField(max_digits=24, decimal_places=6)

    class Meta:
        indexes = [models.Index(fields=["tenant_id", "meter_id", "timestamp"], name="gauge_lookup")]


class UniqueValue(models.Model):
    """Distinct property values of unique_count meters, per day."""

    pk = models.CompositePrimaryKey("tenant_id", "meter_id", "day", "value")
    tenant_id = models.BigIntegerField()
    meter_id = models.IntegerField()
    day = models.DateField()
    value = models.TextField()
    first_seen = models.DateTimeField()


class ThresholdNotice(models.Model):
    """That a tenant was told it reached `percent`% of a meter's allowance in a period;
    the unique constraint makes the notice go out once per period."""

    tenant = models.ForeignKey("tenants.Tenant", on_delete=models.CASCADE, related_name="+")
    meter = models.ForeignKey(Meter, on_delete=models.CASCADE, related_name="+")
    period_start = models.DateTimeField()
    percent = models.PositiveSmallIntegerField()
    used = models.DecimalField(max_digits=30, decimal_places=6)
    included = models.DecimalField(max_digits=30, decimal_places=6)
    created_at = models.DateTimeField(default=clock.wall_now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["tenant", "meter", "period_start", "percent"],
                                               name="threshold_once_per_period")]


class TenantUsage(Tenant):
    """Tenants seen from metering, for the staff console's usage pages."""

    class Meta:
        proxy = True
        verbose_name = "tenant usage"
        verbose_name_plural = "tenant usage"
