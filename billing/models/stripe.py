"""What Stripe tells us: the customer of each tenant, webhook events (stored by id and
processed once), refunds and disputes of card payments."""
from django.db import models
from django.db.models import Q

from aerolith import clock


class StripeCustomer(models.Model):
    tenant = models.OneToOneField("tenants.Tenant", on_delete=models.CASCADE, related_name="stripe_customer")
    customer_id = models.CharField(max_length=255, unique=True)
    created_at = models.DateTimeField(default=clock.wall_now)

    def __str__(self):
        return self.customer_id


class StripeEvent(models.Model):
    """A webhook event, kept by its id: a redelivery finds it and is not processed again;
    a failure stays here for staff to retry."""

    class Status(models.TextChoices):
        RECEIVED = "received", "Received"
        PROCESSED = "processed", "Processed"
        IGNORED = "ignored", "Ignored (nothing to do)"
        FAILED = "failed", "Failed"

    event_id = models.CharField(max_length=255, unique=True)
    type = models.CharField(max_length=100, db_index=True)
    created = models.BigIntegerField(help_text="Stripe's creation time (Unix seconds).")
    livemode = models.BooleanField(default=False)
    payload = models.JSONField()
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.RECEIVED)
    attempts = models.PositiveSmallIntegerField(default=0)
    last_error = models.TextField(blank=True)
    received_at = models.DateTimeField(default=clock.wall_now)
    processed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-received_at", "-id"]

    def __str__(self):
        return f"{self.type} {self.event_id}"


class Refund(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"

    payment = models.ForeignKey("billing.Payment", on_delete=models.PROTECT, related_name="refunds")
    amount_cents = models.BigIntegerField()
    reason = models.CharField(max_length=300, blank=True)
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.PENDING)
    gateway_reference = models.CharField(max_length=255, blank=True)
    idempotency_key = models.CharField(max_length=120, unique=True)
    created_by = models.ForeignKey("tenants.User", null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    created_at = models.DateTimeField(default=clock.wall_now)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [models.CheckConstraint(condition=Q(amount_cents__gt=0), name="refund_amount_positive")]

    def __str__(self):
        return f"Refund {self.amount_cents}¢ of payment {self.payment_id}"


class Dispute(models.Model):
    payment = models.ForeignKey("billing.Payment", on_delete=models.PROTECT, related_name="disputes")
    gateway_reference = models.CharField(max_length=255, unique=True)
    amount_cents = models.BigIntegerField()
    reason = models.CharField(max_length=100, blank=True)
    status = models.CharField(max_length=40)
    stripe_created = models.BigIntegerField(help_text="Time of the newest event applied (Unix s).")
    created_at = models.DateTimeField(default=clock.wall_now)
    updated_at = models.DateTimeField(default=clock.wall_now)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self):
        return f"Dispute {self.gateway_reference} ({self.status})"
