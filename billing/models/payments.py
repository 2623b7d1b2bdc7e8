"""Payment methods on file, payments against invoices, and the balance ledger."""
from django.db import models
from django.db.models import Q

from aerolith import clock


class PaymentMethod(models.Model):
    """A card on file, known by the gateway's id (Stripe's `pm_…`). No card data is kept
    beyond what the gateway tells us to display."""

    tenant = models.ForeignKey("tenants.Tenant", on_delete=models.CASCADE, related_name="payment_methods")
    kind = models.CharField(max_length=20, default="card")
    gateway_id = models.CharField(max_length=255)
    brand = models.CharField(max_length=20, blank=True)
    last4 = models.CharField(max_length=4, blank=True)
    exp_month = models.PositiveSmallIntegerField(null=True, blank=True)
    exp_year = models.PositiveSmallIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(default=clock.wall_now)
    detached_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["tenant", "gateway_id"], condition=Q(detached_at__isnull=True),
                                    name="paymentmethod_attached_once")
        ]

    def __str__(self):
        return f"{self.brand or self.kind} ···· {self.last4}" if self.last4 else self.gateway_id


class Payment(models.Model):
    """One attempt to collect money for an invoice, or money received for it."""

    class Method(models.TextChoices):
        CARD = "card", "Card"
        BANK_TRANSFER = "bank_transfer", "Bank transfer"
        SOL = "sol", "SOL"
        USDC = "usdc", "USDC (Solana)"
        TRX = "trx", "TRX"
        USDT = "usdt", "USDT (TRC-20)"

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        REQUIRES_ACTION = "requires_action", "Requires action"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"

    tenant = models.ForeignKey("tenants.Tenant", on_delete=models.PROTECT, related_name="payments")
    invoice = models.ForeignKey("billing.Invoice", on_delete=models.PROTECT, related_name="payments")
    method = models.CharField(max_length=20, choices=Method.choices)
    payment_method = models.ForeignKey(PaymentMethod, null=True, blank=True, on_delete=models.SET_NULL,
                                       related_name="payments")
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.PENDING)
    amount_cents = models.BigIntegerField()
    currency = models.CharField(max_length=3, default="USD")
    attempt = models.PositiveSmallIntegerField(default=0)
    idempotency_key = models.CharField(max_length=120, unique=True, null=True, blank=True)
    gateway_reference = models.CharField(max_length=255, blank=True)
    reference = models.CharField(max_length=140, blank=True, help_text="Bank transfer reference.")
    received_on = models.DateField(null=True, blank=True)
    decline_code = models.CharField(max_length=60, blank=True)
    failure_message = models.CharField(max_length=300, blank=True)
    hard_decline = models.BooleanField(default=False)
    action_url = models.URLField(max_length=500, blank=True,
                                 help_text="Where the customer confirms a payment that requires action (3-D Secure).")
    refunded_cents = models.BigIntegerField(default=0)
    gateway_updated = models.BigIntegerField(
        null=True, blank=True, help_text="Time of the newest gateway event applied (Unix s); older ones are ignored.")
    recorded_by = models.ForeignKey("tenants.User", null=True, blank=True, on_delete=models.SET_NULL,
                                    related_name="+")
    created_at = models.DateTimeField(default=clock.wall_now)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [models.CheckConstraint(condition=Q(amount_cents__gt=0), name="payment_amount_positive")]

    def __str__(self):
        return f"{self.get_method_display()} {self.amount_cents}¢ {self.status}"


class BalanceTransaction(models.Model):
    """One movement of the tenant's credit balance: positive adds credit, negative uses it."""

    class Kind(models.TextChoices):
        DOWNGRADE_CREDIT = "downgrade_credit", "Downgrade credit"
        REFUND_TO_BALANCE = "refund_to_balance", "Refund to balance"
        STAFF_GRANT = "staff_grant", "Staff grant"
        APPLIED = "applied", "Applied to an invoice"
        CRYPTO_CREDIT = "crypto_credit", "Crypto payment credited"
        CRYPTO_REFUND = "crypto_refund", "Crypto excess refunded on chain"

    tenant = models.ForeignKey("tenants.Tenant", on_delete=models.PROTECT, related_name="balance_transactions")
    kind = models.CharField(max_length=20, choices=Kind.choices)
    amount_cents = models.BigIntegerField()
    balance_after_cents = models.BigIntegerField()
    invoice = models.ForeignKey("billing.Invoice", null=True, blank=True, on_delete=models.PROTECT,
                                related_name="balance_transactions")
    description = models.CharField(max_length=300)
    actor_label = models.CharField(max_length=200, default="system")
    created_at = models.DateTimeField(default=clock.wall_now)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(condition=~Q(amount_cents=0), name="balancetx_not_zero"),
            models.CheckConstraint(condition=Q(balance_after_cents__gte=0), name="balancetx_balance_not_negative"),
        ]

    def __str__(self):
        return f"{self.amount_cents:+d}¢ {self.get_kind_display()}"
