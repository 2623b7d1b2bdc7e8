"""Sending crypto (SPEC §6 "Sending"): the merchant's signing keys, sealed at rest by the
secret box (aerolith/crypto.py), and the transactions Aerolith sends — refunds of
over-payments now, sweeps of Tron deposit addresses later.

An outgoing transaction is built, signed and its signed bytes persisted before it is
broadcast; a retry broadcasts the very same bytes (same signature), never a new
signature, so a refund can land at most once. One per (quote, purpose) unless the one
before failed on chain."""
from django.db import models
from django.db.models import Q

from aerolith import clock

from .crypto import Network


class SigningKey(models.Model):
    """A private key the wallet signs with. `secret_sealed` is a secret box token; the
    plaintext never reaches the database, the admin or the logs."""

    network = models.CharField(max_length=10, choices=Network.choices)
    address = models.CharField(max_length=64, help_text="The public address (base58 on Solana).")
    secret_sealed = models.TextField(editable=False,
                                     help_text="The secret key sealed with AEROLITH_SECRET_KEYS.")
    label = models.CharField(max_length=100, blank=True)
    created_at = models.DateTimeField(default=clock.wall_now, editable=False)

    class Meta:
        ordering = ["network", "created_at", "id"]
        constraints = [models.UniqueConstraint(fields=["network", "address"], name="signingkey_once")]

    def __str__(self):
        return f"{self.get_network_display()} key {self.address}"

    def __repr__(self):
        return f"<SigningKey {self.network} {self.address}>"

    @property
    def secret_context(self) -> str:
        """Binds the sealed secret to its network and address (associated data)."""
        return f"signing_key:{self.network}:{self.address}"


class OutgoingTransaction(models.Model):
    class Purpose(models.TextChoices):
        REFUND = "refund", "Refund of an over-payment"
        SWEEP = "sweep", "Sweep of a deposit address"
        SWEEP_FUND = "sweep_fund", "TRX sent to a deposit address to pay a token sweep's energy"

    class Status(models.TextChoices):
        BUILT = "built", "Built"
        SIGNED = "signed", "Signed (persisted, not yet accepted by a node)"
        BROADCAST = "broadcast", "Broadcast (waiting for confirmation)"
        CONFIRMED = "confirmed", "Confirmed"
        FAILED = "failed", "Failed on chain"

    network = models.CharField(max_length=10, choices=Network.choices)
    purpose = models.CharField(max_length=10, choices=Purpose.choices)
    quote = models.ForeignKey("billing.CryptoQuote", on_delete=models.PROTECT, related_name="outgoing")
    tenant = models.ForeignKey("tenants.Tenant", on_delete=models.PROTECT, related_name="outgoing_transactions")
    currency = models.CharField(max_length=8)
    from_address = models.CharField(max_length=64)
    to_address = models.CharField(max_length=64)
    token = models.CharField(max_length=64, blank=True, help_text="Mint or contract; blank for SOL/TRX.")
    amount_base_units = models.DecimalField(max_digits=40, decimal_places=0)
    fee_estimate = models.DecimalField(max_digits=40, decimal_places=0, null=True, blank=True,
                                       help_text="Network fee in the chain's base units (lamports, sun).")
    balance_debit_cents = models.BigIntegerField(
        default=0, help_text="Taken back from the tenant's balance (the excess had been credited).")
    signed_bytes = models.BinaryField(null=True, blank=True, editable=False,
                                      help_text="The signed transaction, broadcast as is on every retry.")
    txid = models.CharField(max_length=100, blank=True, help_text="Signature (Solana) or txid (Tron).")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.BUILT)
    attempts = models.PositiveIntegerField(default=0, help_text="Broadcast attempts.")
    last_error = models.CharField(max_length=500, blank=True)
    actor_label = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(default=clock.wall_now)
    broadcast_at = models.DateTimeField(null=True, blank=True)
    confirmed_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField(
        null=True, blank=True, help_text="Tron: the signed transaction cannot land after this (chain time); "
                                         "only then may it be signed again.")
    last_valid_block_height = models.BigIntegerField(
        null=True, blank=True, help_text="Solana: the blockhash signed with is refused past this block height; "
                                         "not landed once the finalized height is past it → failed.")

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["status"], name="outgoingtx_status")]
        constraints = [
            models.UniqueConstraint(fields=["quote", "purpose"], condition=~Q(status="failed"),
                                    name="outgoingtx_once_per_quote"),
            models.UniqueConstraint(fields=["network", "txid"], condition=~Q(txid=""),
                                    name="outgoingtx_txid_once"),
            models.CheckConstraint(condition=Q(amount_base_units__gt=0, balance_debit_cents__gte=0),
                                   name="outgoingtx_amounts_positive"),
            models.CheckConstraint(condition=Q(status="built") | (Q(signed_bytes__isnull=False) & ~Q(txid="")),
                                   name="outgoingtx_signed_has_bytes"),
        ]

    def __str__(self):
        return f"{self.get_purpose_display()} {self.pk} ({self.status})"

    @property
    def explorer_url(self) -> str:
        if not self.txid:
            return ""
        if self.network == Network.SOLANA:
            return f"https://explorer.solana.com/tx/{self.txid}"
        return f"https://tronscan.org/#/transaction/{self.txid}"
