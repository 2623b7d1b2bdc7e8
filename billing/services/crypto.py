"""Crypto payments on Solana (SOL, USDC) and Tron (TRX, USDT-TRC20): quotes, the transfers
seen for them, settlement (SPEC §6, the BTCPay invoice model).

A quote locks the rate for AEROLITH_CRYPTO_QUOTE_MINUTES (15) and asks for an exact amount
in base units: on Solana through a Solana Pay transfer request with a fresh reference key,
on Tron to a deposit address of its own (derived from the merchant's xpub at an index from
the billing_tron_derivation_index_seq sequence; payments.tron). The beat pass
(billing.tasks.crypto_quotes_scan) and the quote's expiry job look for transfers carrying
the reference (Solana) or sent to the address (Tron) and apply them here, the same way
for both networks:

- states `new` → `processing` (paid in full at `confirmed`) → `settled` (paid in full at
  `finalized` before expiry), else `expired` (nothing or too little before expiry) or
  `invalid` (paid at `confirmed` but never final within the processing timeout);
- flags as BTCPay sets them: `paid_partial` while something but less than the amount was
  received, `paid_over` when more was, `paid_late` when a transfer was first seen after
  the quote had expired;
- money: settlement pays the invoice what the quote covers (a Payment of the coin's method
  and invoice_receive, which ends dunning); everything else final — the excess of an
  over-payment, partial payments of a quote that expired, late payments, money for an
  invoice already paid some other way — is credited to the tenant's balance at the quote's
  locked rate, rounded down to the cent. A late payment leaves the quote `expired` (as in
  BTCPay) and the invoice open: staff resolve it from the admin, where the credit shows.

"Late" means first seen after the quote expired. Expiry always looks at the chain first,
so a payment sent in time but not yet seen by the beat pass is never late.

Locks: the quote row first, then subscription and invoice (invoices._locked); nothing
locks a quote after a subscription, so the order never inverts. A transfer is stored once
by (network, txid, position), so passes that overlap, or two workers, count it once.
"""
import logging
from datetime import timedelta
from decimal import Decimal
from urllib.parse import quote as url_quote

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import Q

from aerolith import clock
from aerolith.errors import Conflict, DomainError, NotFound, ValidationFailed
from aerolith.money import cents_to_text
from tenants.services.audit import audit_record
from tenants.services.scheduling import job_schedule

from ..models import (
    BalanceTransaction,
    ChainTransfer,
    CryptoQuote,
    CryptoRate,
    Invoice,
    Payment,
    Subscription,
)
from ..models.crypto import units_text
from ..payments import rates
from ..payments.solana import (
    ChainUnavailable,
    ObservedTransfer,
    is_pubkey,
    new_reference,
    solana_chain,
)
from ..payments.tron import USDT_DECIMALS, deposit_address, normalise, tron_chain, xpub_usable
from .invoices import _locked, invoice_receive

logger = logging.getLogger(__name__)

QUOTE_EXPIRE_JOB = "billing.crypto_quote_expire"
SOLANA_DECIMALS = {"sol": 9, "usdc": 6}
SOLANA_METHODS = tuple(SOLANA_DECIMALS)
TRON_DECIMALS = {"trx": 6, "usdt": USDT_DECIMALS}
TRON_METHODS = tuple(TRON_DECIMALS)
CRYPTO_METHODS = SOLANA_METHODS + TRON_METHODS
TRON_INDEX_SEQUENCE = "billing_tron_derivation_index_seq"
LABEL = "Aerolith Cloud"
RATE_SCALE = 10 ** 12  # rates are kept with 12 decimals: integer math on rate × 10**12
Status = CryptoQuote.Status
OPEN = (Status.NEW, Status.PROCESSING)


class RateUnavailable(DomainError):
    status = 503
    code = "rate_unavailable"
    title = "Exchange rate unavailable"


# --- amounts: integers only ------------------------------------------------------------------

def _rate_units(rate: Decimal) -> int:
    scaled = Decimal(rate) * RATE_SCALE
    if scaled != scaled.to_integral_value() or scaled <= 0:
        raise ValueError(f"A rate needs at most 12 decimals and must be positive, not {rate}.")
    return int(scaled)


def base_units_for(cents: int, rate: Decimal, decimals: int) -> int:
    """ceil(cents × 10**decimals / (rate × 100)): the fewest base units worth `cents` at
    `rate` US dollars per coin. Exact integer arithmetic."""
    numerator = cents * 10 ** decimals * RATE_SCALE
    denominator = _rate_units(rate) * 100
    return -(-numerator // denominator)


def cents_for(units: int, rate: Decimal, decimals: int) -> int:
    """floor(units × rate × 100 / 10**decimals): what `units` are worth in whole cents."""
    return units * _rate_units(rate) * 100 // (10 ** decimals * RATE_SCALE)


def solana_pay_url(*, recipient: str, units: int, decimals: int, mint: str | None, reference: str,
                   number: str) -> str:
    """A Solana Pay transfer request (https://docs.solanapay.com/spec): the amount in
    coins as a plain decimal (no exponent, no more decimals than the coin has), the token
    mint for SPL transfers, the reference key, and label, message and memo URL-encoded."""
    params = [("amount", units_text(units, decimals))]
    if mint:
        params.append(("spl-token", mint))
    params += [("reference", reference), ("label", LABEL), ("message", f"Invoice {number}"),
               ("memo", number)]
    return f"solana:{recipient}?" + "&".join(f"{key}={url_quote(value, safe='')}" for key, value in params)


# --- rates -----------------------------------------------------------------------------------

def rate_row(currency: str) -> CryptoRate:
    fallback = None
    configured = {"sol": settings.AEROLITH_SOL_FALLBACK_USD,
                  "trx": getattr(settings, "AEROLITH_TRX_FALLBACK_USD", "")}.get(currency)
    if configured:
        fallback = rates.checked_rate(Decimal(configured))
    row, _ = CryptoRate.objects.get_or_create(currency=currency, defaults={"fallback_usd": fallback})
    return row


def rate_for(currency: str) -> tuple[Decimal, str]:
    """(US dollars per coin, where it came from). Stablecoins are 1:1; others come from
    the rate source, else staff's fallback rate. Raises RateUnavailable when neither."""
    if currency in rates.STABLECOINS:
        return Decimal(1), "fixed 1:1"
    row = rate_row(currency)
    if settings.AEROLITH_RATE_SOURCE_URL:
        try:
            rate = rates.fetch_rate(currency)
        except rates.RateSourceError as error:
            logger.warning("Rate source failed for %s: %s", currency, error)
            CryptoRate.objects.filter(pk=row.pk).update(last_error=str(error)[:500])
        else:
            CryptoRate.objects.filter(pk=row.pk).update(last_usd=rate, last_fetched_at=clock.wall_now(),
                                                        last_error="")
            return rate, rates.source_label()[:120]
    if row.fallback_usd:
        return row.fallback_usd, "fallback"
    raise RateUnavailable(f"No {currency.upper()} exchange rate is available right now; pay by card "
                          "or USDC, or try again later.")


# --- quotes ----------------------------------------------------------------------------------

def _method_refused(currency: str, why: str):
    return ValidationFailed({"method": [("method_unavailable", why)]})


def quote_create(*, tenant, invoice: Invoice, currency: str, actor) -> CryptoQuote:
    """A quote for what `invoice` owes now, paid in `currency`: the rate locked, the exact
    amount in base units, expiry in AEROLITH_CRYPTO_QUOTE_MINUTES; on Solana (sol, usdc) a
    Solana Pay request with a fresh reference key, on Tron (trx, usdt) a fresh deposit
    address. Raises ValidationFailed (method not offered), TronNotSetUp (no usable xpub),
    Conflict (invoice owes nothing) or RateUnavailable; nothing is written then."""
    if currency in TRON_METHODS:
        return _tron_quote_create(tenant=tenant, invoice=invoice, currency=currency, actor=actor)
    if currency not in SOLANA_METHODS:
        raise _method_refused(currency, f"Paying by {str(currency).upper()} is not available; "
                                        "pay by card, SOL, USDC, TRX or USDT.")
    merchant = settings.AEROLITH_SOLANA_MERCHANT
    mint = settings.AEROLITH_USDC_MINT if currency == "usdc" else ""
    if not is_pubkey(merchant) or (mint and not is_pubkey(mint)):
        raise _method_refused(currency, f"Paying by {currency.upper()} is not set up on this "
                                        "installation; pay by card.")
    if invoice.tenant_id != tenant.pk:
        raise NotFound(f"No invoice numbered '{invoice.number}' in this organisation.", code="invoice_not_found")
    _payable_or_conflict(invoice)
    rate, source = rate_for(currency)  # may call the rate source: outside the transaction
    decimals = SOLANA_DECIMALS[currency]
    with transaction.atomic():
        _subscription, invoice = _locked(invoice.pk)
        _payable_or_conflict(invoice)
        now = clock.now(tenant)
        units = base_units_for(invoice.amount_due_cents, rate, decimals)
        reference = new_reference()
        quote = CryptoQuote.objects.create(
            tenant=tenant, invoice=invoice, currency=currency, network="solana",
            amount_cents=invoice.amount_due_cents, rate=rate, rate_source=source,
            amount_base_units=units, decimals=decimals, address=merchant, token=mint,
            reference=reference, memo=invoice.number,
            url=solana_pay_url(recipient=merchant, units=units, decimals=decimals, mint=mint or None,
                               reference=reference, number=invoice.number),
            expires_at=now + timedelta(minutes=settings.AEROLITH_CRYPTO_QUOTE_MINUTES), created_at=now)
        job_schedule(tenant=tenant, kind=QUOTE_EXPIRE_JOB, key=str(quote.pk), due_at=quote.expires_at,
                     payload={"quote_id": quote.pk})
        audit_record(action="crypto_quote.created", tenant=tenant, actor=actor, target=quote,
                     after={"invoice": invoice.number, "currency": currency, "amount_cents": quote.amount_cents,
                            "amount": quote.amount_text, "rate": str(rate.normalize()),
                            "rate_source": source, "expires_at": quote.expires_at.isoformat()})
    return quote


class TronNotSetUp(DomainError):
    status = 503
    code = "tron_not_set_up"
    title = "Tron payments not set up"


def tron_uri(address: str, units: int, decimals: int, contract: str | None) -> str:
    """A `tron:` payment URI for display (the QR code itself carries the plain address,
    which every Tron wallet scans)."""
    params = [("amount", units_text(units, decimals))] + ([("token", contract)] if contract else [])
    return f"tron:{address}?" + "&".join(f"{key}={url_quote(value, safe='')}" for key, value in params)


def _tron_quote_create(*, tenant, invoice: Invoice, currency: str, actor) -> CryptoQuote:
    xpub = settings.AEROLITH_TRON_XPUB
    contract = normalise(settings.AEROLITH_USDT_CONTRACT) if currency == "usdt" else ""
    if not xpub_usable(xpub) or contract is None:
        raise TronNotSetUp(f"Paying by {currency.upper()} is not set up on this installation (no usable "
                           "Tron extended public key or USDT contract); pay by card or another coin.")
    if invoice.tenant_id != tenant.pk:
        raise NotFound(f"No invoice numbered '{invoice.number}' in this organisation.", code="invoice_not_found")
    _payable_or_conflict(invoice)
    rate, source = rate_for(currency)
    decimals = TRON_DECIMALS[currency]
    with transaction.atomic():
        _subscription, invoice = _locked(invoice.pk)
        _payable_or_conflict(invoice)
        now = clock.now(tenant)
        units = base_units_for(invoice.amount_due_cents, rate, decimals)
        with connection.cursor() as cursor:
            cursor.execute("SELECT nextval(%s)", [TRON_INDEX_SEQUENCE])
            index = int(cursor.fetchone()[0])
        address = deposit_address(xpub, index)
        quote = CryptoQuote.objects.create(
            tenant=tenant, invoice=invoice, currency=currency, network="tron",
            amount_cents=invoice.amount_due_cents, rate=rate, rate_source=source,
            amount_base_units=units, decimals=decimals, address=address, token=contract,
            derivation_index=index, reference=None, memo=invoice.number,
            url=tron_uri(address, units, decimals, contract or None),
            expires_at=now + timedelta(minutes=settings.AEROLITH_CRYPTO_QUOTE_MINUTES), created_at=now)
        job_schedule(tenant=tenant, kind=QUOTE_EXPIRE_JOB, key=str(quote.pk), due_at=quote.expires_at,
                     payload={"quote_id": quote.pk})
        audit_record(action="crypto_quote.created", tenant=tenant, actor=actor, target=quote,
                     after={"invoice": invoice.number, "currency": currency, "amount_cents": quote.amount_cents,
                            "amount": quote.amount_text, "rate": str(rate.normalize()),
                            "rate_source": source, "address": address, "derivation_index": index,
                            "expires_at": quote.expires_at.isoformat()})
    return quote


def _payable_or_conflict(invoice: Invoice) -> None:
    if not invoice.is_payable:
        raise Conflict(f"Invoice {invoice.number} is {invoice.get_status_display().lower()} and owes "
                       "nothing.", code="invoice_not_payable")


def quote_for(tenant, quote_id) -> CryptoQuote:
    """The tenant's quote with this id; NotFound for another tenant's or a missing one."""
    quote = None
    if isinstance(quote_id, int) and 0 < quote_id < 2 ** 63:
        quote = CryptoQuote.objects.select_related("invoice", "payment").filter(
            tenant_id=tenant.pk, pk=quote_id).first()
    if quote is None:
        raise NotFound(f"There is no crypto payment '{quote_id}' in this organisation.",
                       code="crypto_quote_not_found")
    return quote


# --- transfers and state ---------------------------------------------------------------------

def transfer_record(*, quote_id: int, transfer: ObservedTransfer) -> CryptoQuote:
    """Apply one transfer seen on chain to the quote. Idempotent: a transfer already stored
    (this or another quote's) changes nothing, except moving confirmed → finalized. Settles,
    flags and credits as the module docstring says."""
    with transaction.atomic():
        quote = CryptoQuote.objects.select_for_update().select_related("tenant").get(pk=quote_id)
        now = clock.now(quote.tenant)
        finalized = transfer.finality == ChainTransfer.Finality.FINALIZED
        row = (ChainTransfer.objects.select_for_update()
               .filter(network=quote.network, txid=transfer.txid, position=transfer.position).first())
        if row is None:
            try:
                with transaction.atomic():
                    row = ChainTransfer.objects.create(
                        quote=quote, network=quote.network, txid=transfer.txid, position=transfer.position,
                        amount_base_units=transfer.amount_base_units, sender=transfer.sender[:64],
                        slot=transfer.slot, block_time=transfer.block_time, finality=transfer.finality,
                        late=quote.status == Status.EXPIRED, seen_at=now,
                        finalized_at=now if finalized else None)
            except IntegrityError:  # stored meanwhile for another quote carrying the same tx
                return quote
            if row.late:
                quote.paid_late = True
        elif row.quote_id != quote.pk:
            return quote
        elif finalized and row.finality != ChainTransfer.Finality.FINALIZED:
            row.finality, row.finalized_at = ChainTransfer.Finality.FINALIZED, now
            row.save(update_fields=["finality", "finalized_at"])
        else:
            return quote
        _apply(quote, now, txid=row.txid)
    return quote


def _sums(quote: CryptoQuote) -> tuple[int, int]:
    total = final = 0
    for amount, finality in quote.transfers.values_list("amount_base_units", "finality"):
        total += int(amount)
        if finality == ChainTransfer.Finality.FINALIZED:
            final += int(amount)
    return total, final


def _apply(quote: CryptoQuote, now, *, txid: str) -> None:
    total, final = _sums(quote)
    amount = int(quote.amount_base_units)
    before = quote.status
    quote.received_base_units = total
    quote.paid_partial = 0 < total < amount
    quote.paid_over = total > amount
    if quote.status in OPEN:
        if final >= amount:
            _settle(quote, now, txid=txid)
        elif total >= amount:
            quote.status = Status.PROCESSING
    _credit(quote, final)
    quote.save(update_fields=["status", "received_base_units", "paid_partial", "paid_over", "paid_late",
                              "settled_at", "applied_cents", "credited_cents", "payment"])
    if quote.status != before and quote.status == Status.PROCESSING:
        audit_record(action="crypto_quote.processing", tenant=quote.tenant, target=quote,
                     after={"received": quote.received_text, "txid": txid})


def _settle(quote: CryptoQuote, now, *, txid: str) -> None:
    subscription, invoice = _locked(quote.invoice_id)
    applied = min(quote.amount_cents, invoice.amount_due_cents) if invoice.is_payable else 0
    payment = None
    if applied:
        payment = Payment.objects.create(
            tenant=quote.tenant, invoice=invoice, method=quote.currency, status=Payment.Status.SUCCEEDED,
            amount_cents=applied, currency=invoice.currency, gateway_reference=txid,
            reference=quote.reference or quote.address, received_on=now.date(), created_at=now)
        invoice_receive(subscription=subscription, invoice=invoice, amount_cents=applied, actor="system")
    quote.status, quote.settled_at = Status.SETTLED, now
    quote.applied_cents, quote.payment = applied, payment
    audit_record(action="crypto_quote.settled", tenant=quote.tenant, target=quote,
                 after={"invoice": invoice.number, "applied_cents": applied, "txid": txid,
                        "received": quote.received_text, "currency": quote.currency})


def _credit(quote: CryptoQuote, final: int) -> None:
    """Credit the tenant's balance with final money the invoice did not take, at the
    quote's rate: the excess over the amount once settled (and what the invoice no longer
    owed), everything final once expired or invalid. Tracked as a running target so
    rounding never loses more than one cent in total."""
    if quote.status in OPEN:
        return
    settled = quote.status == Status.SETTLED
    invoice_units = int(quote.amount_base_units) if settled else 0
    shortfall = quote.amount_cents - quote.applied_cents if settled else 0
    target = shortfall + cents_for(max(final - invoice_units, 0), quote.rate, quote.decimals)
    delta = target - quote.credited_cents
    if delta <= 0:
        return
    subscription = Subscription.objects.select_for_update().select_related("tenant").filter(
        tenant_id=quote.tenant_id).first()
    if subscription is None:  # no balance to hold it: staff resolve (the quote shows it)
        logger.warning("Crypto quote %s: %s cents received but the tenant has no subscription",
                       quote.pk, delta)
        return
    from .invoices import balance_move

    reason = {Status.SETTLED: "over-payment", Status.EXPIRED: "payment after expiry or partial payment",
              Status.INVALID: "payment of an invalid quote"}[quote.status]
    balance_move(subscription=subscription, kind=BalanceTransaction.Kind.CRYPTO_CREDIT, amount_cents=delta,
                 invoice=quote.invoice, actor="system",
                 description=f"{quote.get_currency_display()} {reason}, quote {quote.pk} for invoice {quote.memo}")
    quote.credited_cents = target
    audit_record(action="crypto_quote.credited", tenant=quote.tenant, target=quote,
                 after={"amount_cents": delta, "credited_cents": target, "reason": reason})


def quote_expire_if_due(*, quote_id: int) -> CryptoQuote:
    """new → expired once the tenant's clock passes expires_at (final partial payments
    credited); processing → invalid when still not final after the processing timeout."""
    with transaction.atomic():
        quote = CryptoQuote.objects.select_for_update().select_related("tenant").get(pk=quote_id)
        now = clock.now(quote.tenant)
        timeout = timedelta(minutes=settings.AEROLITH_CRYPTO_PROCESSING_TIMEOUT_MINUTES)
        if quote.status == Status.NEW and now >= quote.expires_at:
            quote.status = Status.EXPIRED
        elif quote.status == Status.PROCESSING and now >= quote.expires_at + timeout:
            quote.status = Status.INVALID
        else:
            return quote
        _credit(quote, _sums(quote)[1])
        quote.save(update_fields=["status", "credited_cents"])
        audit_record(action=f"crypto_quote.{quote.status}", tenant=quote.tenant, target=quote,
                     after={"received": quote.received_text, "credited_cents": quote.credited_cents})
    return quote


# --- looking at the chain --------------------------------------------------------------------

def _watched(quote: CryptoQuote, now) -> bool:
    if quote.status in OPEN:
        return True
    if quote.transfers.filter(finality=ChainTransfer.Finality.CONFIRMED).exists():
        return True
    return now <= quote.expires_at + timedelta(hours=settings.AEROLITH_CRYPTO_WATCH_HOURS)


def quote_refresh(*, quote_id: int, chain=None) -> CryptoQuote:
    """Look for the quote's transfers on chain, apply them, then expire it if due.
    Raises ChainUnavailable (recorded on the quote) when the chain cannot be read; the
    quote is then neither changed nor expired."""
    quote = CryptoQuote.objects.select_related("tenant").get(pk=quote_id)
    now = clock.now(quote.tenant)
    if not _watched(quote, now):
        return quote
    known_final = frozenset(quote.transfers.filter(finality=ChainTransfer.Finality.FINALIZED)
                            .values_list("txid", flat=True))
    try:
        if chain is not None and getattr(chain, "network", "solana") != quote.network:
            chain = None  # a chain given for the other network (quotes_scan passes one for all)
        if quote.network == "tron":
            observed = (chain or tron_chain()).transfers(
                address=quote.address, contract=quote.token or None, known_final=known_final)
        else:
            observed = (chain or solana_chain()).transfers(
                reference=quote.reference, recipient=quote.address, mint=quote.token or None,
                known_final=known_final)
    except ChainUnavailable as error:
        CryptoQuote.objects.filter(pk=quote.pk).update(last_error=error.detail[:500], last_checked_at=now)
        raise
    for transfer in observed:
        transfer_record(quote_id=quote.pk, transfer=transfer)
    quote = quote_expire_if_due(quote_id=quote.pk)
    CryptoQuote.objects.filter(pk=quote.pk).update(last_error="", last_checked_at=clock.now(quote.tenant))
    return quote


def watched_quotes():
    """Quotes the beat pass looks at: open ones, and recent others (late or extra money)."""
    horizon = clock.wall_now() - timedelta(hours=settings.AEROLITH_CRYPTO_WATCH_HOURS)
    return (CryptoQuote.objects
            .filter(Q(status__in=OPEN) | Q(expires_at__gte=horizon) | Q(transfers__finality="confirmed"))
            .distinct().order_by("expires_at", "id"))


def quotes_scan(*, chain=None) -> dict:
    """The beat pass: every watched quote refreshed (chain read, transfers applied, expiry).
    A quote whose chain read fails is skipped and tried again next pass."""
    done = failed = 0
    for quote_id in watched_quotes().values_list("id", flat=True):
        try:
            quote_refresh(quote_id=quote_id, chain=chain)
        except ChainUnavailable as error:
            failed += 1
            logger.warning("Crypto quote %s not refreshed: %s", quote_id, error.detail)
        else:
            done += 1
    return {"refreshed": done, "failed": failed}


def quotes_expire(*, chain=None) -> int:
    """Open quotes past their expiry (by their tenant's clock), each looked at on chain first.
    Returns how many changed state."""
    changed = 0
    for quote_id in CryptoQuote.objects.filter(status__in=OPEN).values_list("id", flat=True):
        quote = CryptoQuote.objects.select_related("tenant").get(pk=quote_id)
        if clock.now(quote.tenant) < quote.expires_at:
            continue
        before = quote.status
        try:
            quote = quote_refresh(quote_id=quote_id, chain=chain)
        except ChainUnavailable:
            continue
        changed += quote.status != before
    return changed


def quote_summary(quote: CryptoQuote) -> str:
    """One line for staff and receipts."""
    return (f"{quote.amount_text} {quote.get_currency_display()} for {cents_to_text(quote.amount_cents)} USD "
            f"({quote.get_status_display()})")
