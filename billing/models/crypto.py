"""Crypto payments (SPEC §6): a quote locks the amount in coins for 15 minutes (the BTCPay
"invoice" model), and every transfer seen on chain for it is kept once, by network,
transaction id and position, so the same transaction seen twice or by two workers at once
counts once. Written for Solana (SOL, USDC) and generic enough for Tron (TRX, USDT):
`address` is the recipient (the merchant wallet on Solana, a derived deposit address on
Tron with its `derivation_index`), `reference` is Solana Pay's reference key."""
from django.db import models
from django.db.models import F, Q

from aerolith import clock


class Currency(models.TextChoices):
    SOL = "sol", "SOL"
    USDC = "usdc", "USDC (Solana)"
    TRX = "trx", "TRX"
    USDT = "usdt", "USDT (TRC-20)"


class Network(models.TextChoices):
    SOLANA = "solana", "Solana"
    TRON = "tron", "Tron"


class CryptoQuote(models.Model):
    class Status(models.TextChoices):
        NEW = "new", "New (waiting for payment)"
        PROCESSING = "processing", "Processing (paid, waiting for finality)"
        SETTLED = "settled", "Settled"
        EXPIRED = "expired", "Expired"
        INVALID = "invalid", "Invalid (staff to resolve)"

    tenant = models.ForeignKey("tenants.Tenant", on_delete=models.PROTECT, related_name="crypto_quotes")
    invoice = models.ForeignKey("billing.Invoice", on_delete=models.PROTECT, related_name="crypto_quotes")
    currency = models.CharField(max_length=8, choices=Currency.choices)
    network = models.CharField(max_length=10, choices=Network.choices)
    amount_cents = models.BigIntegerField(help_text="What the quote pays of the invoice, in US cents.")
    rate = models.DecimalField(max_digits=30, decimal_places=12, help_text="US dollars per coin, locked.")
    rate_source = models.CharField(max_length=120, help_text="fixed (stablecoin), the rate source, or fallback.")
    amount_base_units = models.DecimalField(
        max_digits=40, decimal_places=0,
        help_text="The amount to pay in base units (lamports, 6-decimal USDC units).")
    decimals = models.PositiveSmallIntegerField()
    address = models.CharField(max_length=64, help_text="The recipient: the merchant wallet or a deposit address.")
    token = models.CharField(max_length=64, blank=True,
                             help_text="The token's mint (SPL) or contract (TRC-20); blank for SOL and TRX.")
    derivation_index = models.BigIntegerField(null=True, blank=True,
                                              help_text="HD index of a derived deposit address (Tron).")
    reference = models.CharField(max_length=64, null=True, blank=True, unique=True,
                                 help_text="Solana Pay reference key, fresh per quote.")
    memo = models.CharField(max_length=64, blank=True, help_text="The invoice number.")
    url = models.CharField(max_length=600, blank=True, help_text="The solana: transfer request URL.")
    expires_at = models.DateTimeField()
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.NEW)
    paid_partial = models.BooleanField(default=False)
    paid_over = models.BooleanField(default=False)
    paid_late = models.BooleanField(default=False)
    received_base_units = models.DecimalField(max_digits=40, decimal_places=0, default=0,
                                              help_text="All transfers seen, confirmed or finalized.")
    applied_cents = models.BigIntegerField(default=0, help_text="Paid to the invoice at settlement.")
    credited_cents = models.BigIntegerField(default=0, help_text="Credited to the tenant's balance.")
    settled_at = models.DateTimeField(null=True, blank=True)
    payment = models.OneToOneField("billing.Payment", null=True, blank=True, on_delete=models.PROTECT,
                                   related_name="crypto_quote")
    last_checked_at = models.DateTimeField(null=True, blank=True)
    last_error = models.CharField(max_length=500, blank=True,
                                  help_text="The last chain error met while looking for payments.")
    created_at = models.DateTimeField(default=clock.wall_now)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["status", "expires_at"], name="cryptoquote_status_expiry")]
        constraints = [
            models.CheckConstraint(condition=Q(amount_cents__gt=0, amount_base_units__gt=0,
                                               rate__gt=0, received_base_units__gte=0,
                                               applied_cents__gte=0, credited_cents__gte=0),
                                   name="cryptoquote_amounts_not_negative"),
            models.CheckConstraint(condition=Q(applied_cents__lte=F("amount_cents")),
                                   name="cryptoquote_applied_within_quote"),
            models.CheckConstraint(condition=Q(currency__in=["sol", "usdc"], network="solana")
                                   | Q(currency__in=["trx", "usdt"], network="tron"),
                                   name="cryptoquote_currency_on_its_network"),
            models.CheckConstraint(condition=~Q(network="solana") | Q(reference__isnull=False),
                                   name="cryptoquote_solana_has_reference"),
            models.CheckConstraint(condition=~Q(status="settled") | Q(settled_at__isnull=False),
                                   name="cryptoquote_settled_has_time"),
            models.CheckConstraint(condition=~Q(network="tron") | Q(derivation_index__gte=0),
                                   name="cryptoquote_tron_has_derivation_index"),
            models.UniqueConstraint(fields=["derivation_index"], name="cryptoquote_derivation_index_once"),
            models.UniqueConstraint(fields=["address"], condition=Q(network="tron"),
                                    name="cryptoquote_tron_address_once"),
        ]

    def __str__(self):
        return f"{self.get_currency_display()} quote {self.pk} for {self.invoice_id}"

    @property
    def is_open(self) -> bool:
        return self.status in (self.Status.NEW, self.Status.PROCESSING)

    @property
    def amount_text(self) -> str:
        """The amount in coins, exact: 29000000 units of 6 decimals -> "29"."""
        return units_text(int(self.amount_base_units), self.decimals)

    @property
    def received_text(self) -> str:
        return units_text(int(self.received_base_units), self.decimals)


def units_text(units: int, decimals: int) -> str:
    """Base units as a decimal number of coins without exponent or trailing zeros."""
    whole, fraction = divmod(units, 10 ** decimals)
    text = f"{whole}.{fraction:0{decimals}d}".rstrip("0").rstrip(".") if decimals else str(whole)
    return text


class ChainTransfer(models.Model):
    """A transfer to a quote's recipient seen on chain. `position` tells transfers of one
    transaction apart (0 on Solana, where the recipient's balance change is per
    transaction; the log index on Tron)."""

    class Finality(models.TextChoices):
        CONFIRMED = "confirmed", "Confirmed"
        FINALIZED = "finalized", "Finalized"

    quote = models.ForeignKey(CryptoQuote, on_delete=models.PROTECT, related_name="transfers")
    network = models.CharField(max_length=10, choices=Network.choices)
    txid = models.CharField(max_length=100)
    position = models.PositiveIntegerField(default=0)
    amount_base_units = models.DecimalField(max_digits=40, decimal_places=0)
    sender = models.CharField(max_length=64, blank=True)
    slot = models.BigIntegerField(null=True, blank=True, help_text="Slot (Solana) or block number (Tron).")
    block_time = models.DateTimeField(null=True, blank=True)
    finality = models.CharField(max_length=10, choices=Finality.choices)
    late = models.BooleanField(default=False, help_text="First seen after the quote had expired.")
    seen_at = models.DateTimeField(default=clock.wall_now)
    finalized_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["seen_at", "id"]
        constraints = [
            models.UniqueConstraint(fields=["network", "txid", "position"], name="chaintransfer_once"),
            models.CheckConstraint(condition=Q(amount_base_units__gt=0), name="chaintransfer_amount_positive"),
        ]

    def __str__(self):
        return f"{self.txid[:12]}… {self.amount_base_units}"

    @property
    def explorer_url(self) -> str:
        if self.network == Network.SOLANA:
            return f"https://explorer.solana.com/tx/{self.txid}"
        return f"https://tronscan.org/#/transaction/{self.txid}"


class CryptoRate(models.Model):
    """Per coin, the fallback rate staff set (used when the rate source cannot be reached)
    and the last rate the source gave."""

    currency = models.CharField(max_length=8, choices=Currency.choices, unique=True)
    fallback_usd = models.DecimalField(max_digits=30, decimal_places=12, null=True, blank=True,
                                       help_text="US dollars per coin when the rate source fails.")
    last_usd = models.DecimalField(max_digits=30, decimal_places=12, null=True, blank=True, editable=False)
    last_fetched_at = models.DateTimeField(null=True, blank=True, editable=False)
    last_error = models.CharField(max_length=500, blank=True, editable=False)
    updated_at = models.DateTimeField(default=clock.wall_now, editable=False)

    class Meta:
        constraints = [models.CheckConstraint(condition=Q(fallback_usd__isnull=True) | Q(fallback_usd__gt=0),
                                              name="cryptorate_fallback_positive")]

    def __str__(self):
        return f"{self.get_currency_display()} rate"
