"""A tenant's subscription and the staff-editable billing schedule."""
from django.conf import settings
from django.contrib.postgres.fields import ArrayField
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models

from aerolith import clock
from tenants.models import TenantStatus

DAYS = [MinValueValidator(0), MaxValueValidator(365)]


class Subscription(models.Model):
    """A tenant's subscription to a plan (SPEC §3). Periods are anchored on
    `billing_anchor` (anniversary billing): period k ends at anchor + k months."""

    Status = TenantStatus  # the tenant's status follows its subscription's (SPEC §2)

    class TrialOutcome(models.TextChoices):
        NONE = "", "No trial or still running"
        CONVERTED = "converted", "Converted"
        FELL_BACK = "fell_back", "Fell back to Free"

    tenant = models.OneToOneField("tenants.Tenant", on_delete=models.PROTECT, related_name="subscription")
    plan = models.ForeignKey("billing.Plan", on_delete=models.PROTECT, related_name="subscriptions")
    status = models.CharField(max_length=20, choices=Status.choices, db_index=True)
    trial_end = models.DateTimeField(null=True, blank=True)
    trial_outcome = models.CharField(max_length=12, choices=TrialOutcome.choices, blank=True)
    billing_anchor = models.DateTimeField(null=True, blank=True)
    current_period_start = models.DateTimeField()
    current_period_end = models.DateTimeField()
    pending_plan = models.ForeignKey(
        "billing.Plan", null=True, blank=True, on_delete=models.PROTECT, related_name="+",
        help_text="A downgrade that takes effect at the end of the current period.")
    cancel_at_period_end = models.BooleanField(default=False)
    default_payment_method = models.ForeignKey(
        "billing.PaymentMethod", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    balance_cents = models.BigIntegerField(
        default=0, help_text="Credit the tenant holds; applied to the next invoices first.")
    past_due_since = models.DateTimeField(null=True, blank=True)
    suspended_at = models.DateTimeField(null=True, blank=True)
    cancelled_at = models.DateTimeField(null=True, blank=True)
    data_kept_until = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=clock.wall_now)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=models.Q(current_period_end__gt=models.F("current_period_start")),
                name="subscription_period_not_empty",
            ),
            models.CheckConstraint(condition=models.Q(balance_cents__gte=0),
                                   name="subscription_balance_not_negative"),
        ]

    def __str__(self):
        return f"{self.tenant} on {self.plan}"


def _default_trial_days():
    return settings.AEROLITH_TRIAL_DAYS


def _default_grace_days():
    return settings.AEROLITH_GRACE_DAYS


def _default_suspension_days():
    return settings.AEROLITH_SUSPENSION_DAYS


def _default_retention_days():
    return settings.AEROLITH_RETENTION_DAYS


def _default_retry_days():
    return list(settings.AEROLITH_DUNNING_RETRY_DAYS)


def _default_reminder_days():
    return list(settings.AEROLITH_TRIAL_REMINDER_DAYS)


class BillingSettings(models.Model):
    """The one row of schedules staff can change from the admin (SPEC §4 defaults come
    from Django settings). Changes apply to steps scheduled afterwards."""

    trial_days = models.PositiveSmallIntegerField(default=_default_trial_days, validators=DAYS)
    trial_reminder_days = ArrayField(models.PositiveSmallIntegerField(validators=DAYS),
                                     default=_default_reminder_days, size=10,
                                     help_text="Days before trial end to remind, e.g. 3,1.")
    retry_days = ArrayField(models.PositiveSmallIntegerField(validators=DAYS),
                            default=_default_retry_days, size=10,
                            help_text="Days after the due date to retry a failed charge.")
    grace_days = models.PositiveSmallIntegerField(default=_default_grace_days, validators=DAYS,
                                                  help_text="Full service while past due.")
    suspension_days = models.PositiveSmallIntegerField(
        default=_default_suspension_days, validators=DAYS, help_text="Suspended this long, the tenant is cancelled.")
    retention_days = models.PositiveSmallIntegerField(
        default=_default_retention_days, validators=DAYS, help_text="Data kept this long after cancellation.")

    class Meta:
        verbose_name = verbose_name_plural = "billing settings"
        constraints = [models.CheckConstraint(condition=models.Q(pk=1), name="billingsettings_single_row")]

    def __str__(self):
        return "Billing schedule"
