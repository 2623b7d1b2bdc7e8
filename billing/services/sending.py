"""Sending crypto (SPEC §6 "Sending"): refunds of over-payments on chain (Solana: SOL and
USDC). Sweeping Tron deposit addresses lives in services/sweeping.py.

Money: when an over-paid quote settles, services.crypto credits the excess (at the
quote's locked rate, rounded down to the cent) to the tenant's balance. Refunding the
excess on chain is staff's alternative to that credit: `overpayment_refund` takes the
same cents back from the balance (a CRYPTO_REFUND ledger row) in the transaction that
reserves the refund, and refuses (Conflict balance_too_low) once the tenant has used the
credit — the money is then already spent as credit and cannot go back on chain too. The
quote's `credited_cents` stays as it was (it records what was credited); the refund row
records what was taken back. If the refund fails on chain, the cents are credited again.

Flow, each step its own transaction, so a crash anywhere leaves a state a retry resumes:
1. reserve: checks, balance debit, an OutgoingTransaction `built` (unique per quote and
   purpose while not failed: a refund is made once, even with two staff clicking);
2. sign: fee asked of the node, transfer built and signed with the decrypted merchant
   key, signed bytes and signature persisted (`signed`) — before anything is sent;
3. broadcast: the persisted bytes sent (`broadcast`); a retry sends the same bytes, so
   the same signature, which a node executes at most once;
4. confirm (beat, `outgoing_confirm_pass`): getSignatureStatuses; `confirmed` once
   finalized without error, `failed` (balance credit restored) when it landed with an
   error, or when it never landed and the finalized block height is past its blockhash's
   lastValidBlockHeight (recorded at signing) — it can never land then, so the debit is
   returned and a new refund may be made. Unknown while the blockhash is still valid: it
   stays pending.
The excess is refunded in full; the merchant wallet pays the network fee (recorded as
`fee_estimate`) and, for USDC, the rent of the payer's token account if it was closed.
"""
import logging

from django.db import IntegrityError, transaction

from aerolith import clock
from aerolith import crypto as secret_box
from aerolith.errors import Conflict, DomainError, NotFound
from tenants.services.audit import audit_record

from ..models import (
    BalanceTransaction,
    ChainTransfer,
    CryptoQuote,
    OutgoingTransaction,
    SigningKey,
    Subscription,
)
from ..payments.solana import ChainUnavailable
from ..payments.solana_send import solana_sender
from .crypto import cents_for
from .invoices import _actor_label, balance_move

logger = logging.getLogger(__name__)
Out = OutgoingTransaction.Status


class SigningKeyUnavailable(DomainError):
    status = 503
    code = "signing_key_unavailable"
    title = "Signing key unavailable"


def merchant_secret(network: str, address: str) -> bytes:
    """The decrypted secret of the wallet key for `address`. Raises
    SigningKeyUnavailable when none is imported or it cannot be opened (wrong or missing
    AEROLITH_SECRET_KEYS) — never guessing, never logging the secret."""
    key = SigningKey.objects.filter(network=network, address=address).first()
    if key is None:
        raise SigningKeyUnavailable(
            f"No signing key for the {network} wallet {address} is imported; run "
            f"`manage.py wallet import-key --network {network}` first.")
    try:
        return secret_box.decrypt(key.secret_sealed, context=key.secret_context)
    except secret_box.SecretBoxError as error:
        raise SigningKeyUnavailable(f"The signing key for {address} cannot be decrypted: {error}") from error


def _excess_and_payer(quote: CryptoQuote) -> tuple[int, str]:
    transfers = list(quote.transfers.all())
    if any(t.finality != ChainTransfer.Finality.FINALIZED for t in transfers):
        raise Conflict(f"Quote {quote.pk} has transfers not yet final; refund once they are.",
                       code="refund_not_final")
    excess = sum(int(t.amount_base_units) for t in transfers) - int(quote.amount_base_units)
    if excess <= 0:
        raise Conflict(f"Quote {quote.pk} received no more than its amount; nothing to refund.",
                       code="nothing_to_refund")
    senders = {t.sender for t in transfers}
    if len(senders) != 1 or not next(iter(senders)):
        raise Conflict(f"Quote {quote.pk} was paid from {len(senders)} wallets (or an unknown one); "
                       "refund it by hand and record it.", code="refund_sender_ambiguous")
    return excess, senders.pop()


def overpayment_refund(*, quote: CryptoQuote, actor, sender=None) -> OutgoingTransaction:
    """Refund the excess of a settled, over-paid Solana quote to the wallet that paid it,
    instead of the balance credit it got (see the module docstring). Returns the
    outgoing transaction, broadcast when the node took it (else `built`/`signed` with
    `last_error`; `outgoing_send` retries). Raises Conflict (not over-paid or settled,
    not final, refunded already, credit used), SigningKeyUnavailable; nothing is
    written then."""
    quote = CryptoQuote.objects.select_related("tenant").get(pk=quote.pk)
    if quote.network != "solana":
        raise Conflict("Refunds on chain are built for Solana quotes only; resolve Tron by hand.",
                       code="refund_network_unsupported")
    merchant_secret("solana", quote.address)  # fail before reserving anything
    with transaction.atomic():
        quote = CryptoQuote.objects.select_for_update().select_related("tenant").get(pk=quote.pk)
        if quote.status != CryptoQuote.Status.SETTLED or not quote.paid_over:
            raise Conflict(f"Quote {quote.pk} is not a settled over-payment; only its excess can be "
                           "refunded on chain.", code="refund_not_overpaid")
        if OutgoingTransaction.objects.filter(quote=quote, purpose="refund").exclude(status=Out.FAILED).exists():
            raise Conflict(f"The excess of quote {quote.pk} is already being refunded.", code="refund_exists")
        excess, payer = _excess_and_payer(quote)
        debit = min(cents_for(excess, quote.rate, quote.decimals), quote.credited_cents)
        now = clock.now(quote.tenant)
        try:
            with transaction.atomic():
                outgoing = OutgoingTransaction.objects.create(
                    network="solana", purpose=OutgoingTransaction.Purpose.REFUND, quote=quote,
                    tenant=quote.tenant, currency=quote.currency, from_address=quote.address,
                    to_address=payer, token=quote.token, amount_base_units=excess,
                    balance_debit_cents=debit, actor_label=_actor_label(actor)[:200], created_at=now)
        except IntegrityError:
            raise Conflict(f"The excess of quote {quote.pk} is already being refunded.",
                           code="refund_exists") from None
        if debit:
            subscription = Subscription.objects.select_for_update().select_related("tenant").get(
                tenant_id=quote.tenant_id)
            balance_move(subscription=subscription, kind=BalanceTransaction.Kind.CRYPTO_REFUND,
                         amount_cents=-debit, invoice=quote.invoice, actor=actor,
                         description=f"{quote.get_currency_display()} excess of quote {quote.pk} refunded "
                                     f"on chain instead of credited")
        audit_record(action="crypto_refund.created", tenant=quote.tenant, actor=actor, target=outgoing,
                     after={"quote": quote.pk, "currency": quote.currency, "amount_base_units": excess,
                            "to": payer, "balance_debit_cents": debit})
    return outgoing_send(outgoing_id=outgoing.pk, sender=sender)


def outgoing_send(*, outgoing_id: int, sender=None) -> OutgoingTransaction:
    """Sign if never signed, then broadcast the persisted bytes. Safe to run again and
    on two workers: signing happens once (row lock, `built` only), and broadcasting the
    same bytes twice moves money once. Chain errors are recorded on the row and returned
    with it, not raised; a key that cannot be opened raises SigningKeyUnavailable."""
    sender = sender or solana_sender()
    outgoing = OutgoingTransaction.objects.get(pk=outgoing_id)
    if outgoing.status in (Out.CONFIRMED, Out.FAILED):
        raise Conflict(f"Outgoing transaction {outgoing.pk} is {outgoing.status}; nothing to send.",
                       code="outgoing_closed")
    if outgoing.status == Out.BUILT:
        outgoing = _sign(outgoing, sender)
        if outgoing.status == Out.BUILT:
            return outgoing
    return broadcast_signed(outgoing, sender)


def _sign(outgoing: OutgoingTransaction, sender) -> OutgoingTransaction:
    secret = merchant_secret(outgoing.network, outgoing.from_address)
    decimals = CryptoQuote.objects.values_list("decimals", flat=True).get(pk=outgoing.quote_id)
    try:
        signed = sender.transfer_signed(secret=secret, to_owner=outgoing.to_address,
                                        amount=int(outgoing.amount_base_units), mint=outgoing.token or None,
                                        decimals=decimals)
    except ChainUnavailable as error:
        OutgoingTransaction.objects.filter(pk=outgoing.pk).update(last_error=error.detail[:500])
        outgoing.refresh_from_db()
        return outgoing
    finally:
        del secret
    with transaction.atomic():
        row = OutgoingTransaction.objects.select_for_update().select_related("tenant").get(pk=outgoing.pk)
        if row.status != Out.BUILT:  # another worker signed meanwhile: its bytes win
            return row
        row.signed_bytes, row.txid, row.fee_estimate = signed.signed_bytes, signed.signature, signed.fee_lamports
        row.last_valid_block_height = signed.last_valid_block_height
        row.status, row.last_error = Out.SIGNED, ""
        row.save(update_fields=["signed_bytes", "txid", "fee_estimate", "last_valid_block_height", "status",
                                "last_error"])
        audit_record(action="crypto_refund.signed", tenant=row.tenant, target=row,
                     after={"txid": row.txid, "fee_lamports": signed.fee_lamports,
                            "last_valid_block_height": row.last_valid_block_height})
    return row


def broadcast_signed(outgoing: OutgoingTransaction, sender, *,
                     audit_prefix: str = "crypto_refund") -> OutgoingTransaction:
    """Send the stored signed bytes (never signing again) and record the attempt; an
    unreachable node is recorded on the row and retried later. Shared by refunds and sweeps."""
    try:
        sender.broadcast(bytes(outgoing.signed_bytes))
    except ChainUnavailable as error:
        with transaction.atomic():
            row = OutgoingTransaction.objects.select_for_update().get(pk=outgoing.pk)
            row.attempts += 1
            row.last_error = error.detail[:500]
            row.save(update_fields=["attempts", "last_error"])
        logger.warning("Outgoing transaction %s (%s) not broadcast: %s", outgoing.pk, audit_prefix,
                       error.detail)
        return row
    with transaction.atomic():
        row = OutgoingTransaction.objects.select_for_update().select_related("tenant").get(pk=outgoing.pk)
        row.attempts += 1
        row.last_error = ""
        fields = ["attempts", "last_error"]
        if row.status == Out.SIGNED:
            row.status, row.broadcast_at = Out.BROADCAST, clock.now(row.tenant)
            fields += ["status", "broadcast_at"]
        row.save(update_fields=fields)
        audit_record(action=f"{audit_prefix}.broadcast", tenant=row.tenant, target=row,
                     after={"txid": row.txid, "attempt": row.attempts})
    return row


def outgoing_for(outgoing_id) -> OutgoingTransaction:
    row = OutgoingTransaction.objects.filter(pk=outgoing_id).first()
    if row is None:
        raise NotFound(f"No outgoing transaction {outgoing_id}.", code="outgoing_not_found")
    return row


def outgoing_confirm_pass(*, sender=None) -> dict:
    """The beat pass: statuses of signed and broadcast transactions. Finalized without
    error → confirmed; landed with an error → failed, and the balance debit is credited
    back; unknown to the node while the finalized block height is past the blockhash's
    lastValidBlockHeight → failed the same way (expired unlanded: it can never land).
    Other unknown signatures stay as they are (a signed one is broadcast again)."""
    sender = sender or solana_sender()
    pending = list(OutgoingTransaction.objects.filter(network="solana", status__in=[Out.SIGNED, Out.BROADCAST])
                   .values_list("id", "txid", "last_valid_block_height"))
    if not pending:
        return {"confirmed": 0, "failed": 0, "pending": 0}
    # The height before the statuses: if it is already past a blockhash's last valid height,
    # any block that could hold that transaction is final, so the status read next sees it.
    height = sender.block_height() if any(valid is not None for *_rest, valid in pending) else None
    states = sender.statuses([txid for _id, txid, _valid in pending])
    counts = {"confirmed": 0, "failed": 0, "pending": 0}
    for outgoing_id, txid, last_valid in pending:
        state = states.get(txid)
        if state is not None and state.err is not None:
            _close(outgoing_id, failed=True, error=str(state.err))
            counts["failed"] += 1
        elif state is not None and state.confirmation == "finalized":
            _close(outgoing_id, failed=False)
            counts["confirmed"] += 1
        elif (state is None and last_valid is not None and height is not None and height > last_valid
              and _close(outgoing_id, failed=True, expired_at_height=height)):
            counts["failed"] += 1
        else:
            counts["pending"] += 1
            if state is None and OutgoingTransaction.objects.filter(pk=outgoing_id, status=Out.SIGNED).exists():
                outgoing_send(outgoing_id=outgoing_id, sender=sender)  # the same bytes again
    return counts


def _close(outgoing_id: int, *, failed: bool, error: str = "", expired_at_height: int | None = None) -> bool:
    """Confirm or fail the row (a failure credits the balance debit back); with
    `expired_at_height` (the finalized block height) only when it is past the row's
    lastValidBlockHeight. False when nothing changed."""
    with transaction.atomic():
        row = OutgoingTransaction.objects.select_for_update().select_related("tenant", "quote").get(pk=outgoing_id)
        if row.status not in (Out.SIGNED, Out.BROADCAST):
            return False
        if expired_at_height is not None and (row.last_valid_block_height is None
                                              or expired_at_height <= row.last_valid_block_height):
            return False
        now = clock.now(row.tenant)
        if failed:
            if expired_at_height is not None:
                reason = "expired without landing"
                row.last_error = (f"Expired unlanded: finalized block height {expired_at_height} is past the "
                                  f"blockhash's last valid height {row.last_valid_block_height}; "
                                  "it can never land.")[:500]
            else:
                reason = "failed on chain"
                row.last_error = f"Failed on chain: {error}"[:500]
            row.status = Out.FAILED
            if row.balance_debit_cents:
                subscription = Subscription.objects.select_for_update().select_related("tenant").get(
                    tenant_id=row.tenant_id)
                balance_move(subscription=subscription, kind=BalanceTransaction.Kind.CRYPTO_CREDIT,
                             amount_cents=row.balance_debit_cents, invoice=row.quote.invoice, actor="system",
                             description=f"Refund {row.pk} of quote {row.quote_id} {reason}; "
                                         "credit restored")
        else:
            row.status, row.confirmed_at = Out.CONFIRMED, now
        row.save(update_fields=["status", "last_error", "confirmed_at"])
        audit_record(action=f"crypto_refund.{row.status}", tenant=row.tenant, target=row,
                     after={"txid": row.txid, "error": row.last_error,
                            "expired": expired_at_height is not None})
    return True
