"""Plans and their allowances per meter (SPEC §3)."""
from django.db import models


class DatabasePlacement(models.TextChoices):
    """Where a plan's customer databases live (SPEC §7); provisioning reads it."""

    SHARED_SCHEMA = "shared_schema", "Schema in the shared database"
    SHARED_DATABASE = "shared_database", "Own database on the shared cluster"
    DEDICATED = "dedicated", "Dedicated cluster"


class Plan(models.Model):
    """A plan from SPEC §3. Prices in cents; allowances per meter are PlanMeter rows."""

    code = models.SlugField(max_length=40, unique=True)
    name = models.CharField(max_length=80)
    price_cents = models.PositiveBigIntegerField(default=0)
    currency = models.CharField(max_length=3, default="USD")
    max_databases = models.PositiveIntegerField(null=True, blank=True,
                                                help_text="Empty means unlimited.")
    database_placement = models.CharField(max_length=20, choices=DatabasePlacement.choices,
                                          default=DatabasePlacement.SHARED_SCHEMA)
    support = models.CharField(max_length=40)
    api_rate_per_second = models.PositiveIntegerField(
        null=True, blank=True,
        help_text="API requests per second for the whole organisation, with a burst of one "
                  "second's worth (SPEC §8). Empty means unlimited.")
    overage_allowed = models.BooleanField(
        default=True, help_text="Without overage, allowances are hard limits (Free).")
    is_public = models.BooleanField(default=True, help_text="Offered at signup and on pricing.")
    is_custom = models.BooleanField(default=False, help_text="Priced by contract.")
    for_tenant = models.ForeignKey(
        "tenants.Tenant", null=True, blank=True, on_delete=models.PROTECT, related_name="+",
        help_text="Set for a custom plan that belongs to one tenant.",
    )
    sort_order = models.PositiveSmallIntegerField(default=0)

    class Meta:
        ordering = ["sort_order", "price_cents"]
        constraints = [
            # 0 would refuse every request; "unlimited" is written as empty.
            models.CheckConstraint(condition=models.Q(api_rate_per_second__gte=1)
                                   | models.Q(api_rate_per_second__isnull=True),
                                   name="plan_api_rate_positive"),
        ]

    def __str__(self):
        return self.name

    @property
    def is_free(self) -> bool:
        return self.price_cents == 0 and not self.is_custom


class PlanMeter(models.Model):
    """A plan's allowance for one meter and its overage price (SPEC §3). A meter a plan
    does not list has no allowance and the meter's default price."""

    plan = models.ForeignKey(Plan, on_delete=models.CASCADE, related_name="meters")
    meter = models.ForeignKey("metering.Meter", on_delete=models.PROTECT, related_name="+")
    included = models.DecimalField(max_digits=24, decimal_places=6, null=True, blank=True,
                                   help_text="Empty means unlimited.")
    unit_price_cents = models.DecimalField(
        max_digits=14, decimal_places=6, null=True, blank=True,
        help_text="Overage price in cents per `price_per` units; empty: the meter's default.")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["plan", "meter"], name="planmeter_unique"),
            models.CheckConstraint(condition=models.Q(included__gte=0) | models.Q(included__isnull=True),
                                   name="planmeter_included_not_negative"),
            models.CheckConstraint(
                condition=models.Q(unit_price_cents__gte=0) | models.Q(unit_price_cents__isnull=True),
                name="planmeter_price_not_negative"),
        ]

    def __str__(self):
        return f"{self.plan} · {self.meter_id}"
