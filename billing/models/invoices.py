"""Invoices and their lines (SPEC §4). An invoice's totals always equal the sum of its
lines: the service computes both in one place and a deferred database trigger (migration
0008) refuses to commit a finalised invoice whose lines say otherwise."""
from django.db import models
from django.db.models import F, Q

from aerolith import clock


class Invoice(models.Model):
    class Status(models.TextChoices):
        DRAFT = "draft", "Draft"
        OPEN = "open", "Open"
        PAID = "paid", "Paid"
        VOID = "void", "Void"
        UNCOLLECTIBLE = "uncollectible", "Uncollectible"

    class Reason(models.TextChoices):
        RENEWAL = "renewal", "Renewal"
        TRIAL_CONVERSION = "trial_conversion", "Trial conversion"
        PLAN_CHANGE = "plan_change", "Plan change"
        FINAL = "final", "Final invoice"
        MANUAL = "manual", "Manual"

    tenant = models.ForeignKey("tenants.Tenant", on_delete=models.PROTECT, related_name="invoices")
    subscription = models.ForeignKey("billing.Subscription", null=True, blank=True,
                                     on_delete=models.PROTECT, related_name="invoices")
    number = models.CharField(max_length=20, unique=True, null=True, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.DRAFT)
    reason = models.CharField(max_length=20, choices=Reason.choices, default=Reason.MANUAL)
    currency = models.CharField(max_length=3, default="USD")
    period_start = models.DateTimeField()
    period_end = models.DateTimeField()
    subtotal_cents = models.BigIntegerField(default=0)
    credit_applied_cents = models.BigIntegerField(default=0)
    total_cents = models.BigIntegerField(default=0)
    amount_paid_cents = models.BigIntegerField(default=0)
    amount_due_cents = models.BigIntegerField(default=0)
    amount_refunded_cents = models.BigIntegerField(
        default=0, help_text="Paid money given back (to the balance or the card).")
    created_at = models.DateTimeField(default=clock.wall_now)
    finalized_at = models.DateTimeField(null=True, blank=True)
    due_at = models.DateTimeField(null=True, blank=True)
    paid_at = models.DateTimeField(null=True, blank=True)
    closed_at = models.DateTimeField(null=True, blank=True, help_text="When voided or written off.")
    attempt_count = models.PositiveSmallIntegerField(default=0)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["tenant", "status"], name="invoice_tenant_status")]
        constraints = [
            # Renewal is idempotent: one renewal invoice per subscription and period.
            models.UniqueConstraint(fields=["subscription", "period_start"],
                                    condition=Q(reason="renewal"), name="invoice_one_renewal_per_period"),
            models.UniqueConstraint(fields=["subscription"], condition=Q(reason="trial_conversion"),
                                    name="invoice_one_trial_conversion"),
            models.CheckConstraint(condition=Q(total_cents=F("subtotal_cents") - F("credit_applied_cents")),
                                   name="invoice_total_is_subtotal_less_credit"),
            models.CheckConstraint(condition=Q(credit_applied_cents__gte=0, amount_paid_cents__gte=0,
                                               amount_due_cents__gte=0, amount_refunded_cents__gte=0),
                                   name="invoice_amounts_not_negative"),
            models.CheckConstraint(condition=Q(amount_refunded_cents__lte=F("amount_paid_cents")),
                                   name="invoice_refund_within_paid"),
            models.CheckConstraint(condition=Q(status="draft") | Q(number__isnull=False),
                                   name="invoice_numbered_once_final"),
            models.CheckConstraint(condition=~Q(status="paid") | Q(amount_due_cents=0),
                                   name="invoice_paid_owes_nothing"),
            models.CheckConstraint(condition=Q(period_end__gte=F("period_start")),
                                   name="invoice_period_ordered"),
        ]

    def __str__(self):
        return self.number or f"Draft #{self.pk}"

    @property
    def is_payable(self) -> bool:
        return self.status in (self.Status.OPEN, self.Status.UNCOLLECTIBLE) and self.amount_due_cents > 0


class InvoiceLine(models.Model):
    class Kind(models.TextChoices):
        PLAN = "plan", "Plan fee"
        PRORATION = "proration", "Proration"
        OVERAGE = "overage", "Overage"
        CREDIT = "credit", "Credit applied"
        ADJUSTMENT = "adjustment", "Adjustment"

    invoice = models.ForeignKey(Invoice, on_delete=models.CASCADE, related_name="lines")
    position = models.PositiveSmallIntegerField(default=0)
    kind = models.CharField(max_length=12, choices=Kind.choices)
    description = models.CharField(max_length=300)
    meter = models.ForeignKey("metering.Meter", null=True, blank=True, on_delete=models.PROTECT,
                              related_name="+")
    quantity = models.DecimalField(max_digits=24, decimal_places=6, default=1)
    unit_amount_cents = models.DecimalField(
        max_digits=24, decimal_places=10, null=True, blank=True,
        help_text="Price of one unit in cents; may be a fraction of a cent (API calls).")
    amount_cents = models.BigIntegerField()
    period_start = models.DateTimeField(null=True, blank=True)
    period_end = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["invoice", "position", "id"]

    def __str__(self):
        return self.description


class InvoiceCounter(models.Model):
    """The last invoice number issued per year. Incremented under a row lock in the
    finalising transaction, so numbers are gapless: a rolled-back finalisation also
    rolls back its number."""

    year = models.PositiveSmallIntegerField(primary_key=True)
    last_number = models.PositiveIntegerField(default=0)

    def __str__(self):
        return f"{self.year}: {self.last_number}"
