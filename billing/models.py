"""Plans and subscriptions. Invoices, payments and dunning arrive with the billing issues."""
from django.db import models

from aerolith import clock
from tenants.models import TenantStatus


class Plan(models.Model):
    """A plan from SPEC §3. Limits and allowances of None mean unlimited. Prices in cents."""

    code = models.SlugField(max_length=40, unique=True)
    name = models.CharField(max_length=80)
    price_cents = models.PositiveBigIntegerField(default=0)
    currency = models.CharField(max_length=3, default="USD")
    max_databases = models.PositiveIntegerField(null=True, blank=True)
    storage_gb = models.DecimalField(max_digits=12, decimal_places=3, null=True, blank=True)
    api_calls = models.PositiveBigIntegerField(null=True, blank=True)
    compute_hours = models.DecimalField(max_digits=12, decimal_places=3, null=True, blank=True)
    bandwidth_gb = models.DecimalField(max_digits=12, decimal_places=3, null=True, blank=True)
    support = models.CharField(max_length=40)
    overage_allowed = models.BooleanField(default=True)
    # Overage unit prices in cents (Decimal: $0.01 per 1,000 calls is 0.001 cents a call).
    overage_api_calls_per_1000_cents = models.DecimalField(max_digits=12, decimal_places=4, default=1)
    overage_storage_gb_month_cents = models.DecimalField(max_digits=12, decimal_places=4, default=25)
    overage_compute_hour_cents = models.DecimalField(max_digits=12, decimal_places=4, default=10)
    overage_bandwidth_gb_cents = models.DecimalField(max_digits=12, decimal_places=4, default=9)
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
            models.CheckConstraint(
                condition=models.Q(overage_api_calls_per_1000_cents__gte=0)
                & models.Q(overage_storage_gb_month_cents__gte=0)
                & models.Q(overage_compute_hour_cents__gte=0)
                & models.Q(overage_bandwidth_gb_cents__gte=0),
                name="plan_overage_prices_not_negative",
            )
        ]

    def __str__(self):
        return self.name

    @property
    def is_free(self) -> bool:
        return self.price_cents == 0 and not self.is_custom


class Subscription(models.Model):
    """A tenant's subscription to a plan. The lifecycle (renewal, proration, dunning) is
    built by the billing issue on top of these fields."""

    Status = TenantStatus  # the tenant's status follows its subscription's (SPEC §2)

    tenant = models.OneToOneField("tenants.Tenant", on_delete=models.PROTECT, related_name="subscription")
    plan = models.ForeignKey(Plan, on_delete=models.PROTECT, related_name="subscriptions")
    status = models.CharField(max_length=20, choices=Status.choices)
    trial_end = models.DateTimeField(null=True, blank=True)
    current_period_start = models.DateTimeField()
    current_period_end = models.DateTimeField()
    cancel_at_period_end = models.BooleanField(default=False)
    created_at = models.DateTimeField(default=clock.wall_now)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=models.Q(current_period_end__gt=models.F("current_period_start")),
                name="subscription_period_not_empty",
            )
        ]

    def __str__(self):
        return f"{self.tenant} on {self.plan}"
