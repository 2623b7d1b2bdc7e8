"""Sweeping Tron deposit addresses (SPEC §6 "Sending"): the coins a settled Tron quote
received at its own deposit address are moved to the merchant address.

Keys: the account-level extended private key (m/44'/195'/0') is imported once
(`manage.py wallet import-key --network tron`), checked against AEROLITH_TRON_XPUB and
sealed as SigningKey(network="tron", address=<receive address 0/0>). Each deposit key is
derived from it at 0/<quote.derivation_index> only while signing; the treasury — the
address paying a USDT sweep's energy — is 1/0 (the internal chain) and must hold TRX.
The merchant address is AEROLITH_TRON_MERCHANT, or the treasury when that is unset.

Amounts: what the quote received (its transfers, all final). TRX: the whole amount is
sent (a transfer only spends bandwidth, free up to the daily allowance of an activated
account). USDT: a deposit address has no TRX for energy, so the treasury first sends it
AEROLITH_TRON_SWEEP_FEE_LIMIT sun (a `sweep_fund` transaction); the TRC20 transfer (a
`sweep`, fee_limit the same) is signed only once that funding is solidified. What the
energy does not burn stays at the deposit address. (Delegating energy from a staked
treasury instead would avoid burning TRX; not built.)

Flow, as for Solana refunds (services/sending.py): reserve (rows `built`, one sweep per
quote while not failed) → sign (signed JSON, txid and expiration persisted) → broadcast
the same bytes (a retry too; DUP_TRANSACTION_ERROR is success) → confirm on the beat
(`tron_confirm_pass`, /walletsolidity/gettransactioninfobyid). A Tron transaction
expires 60 s after its reference block; one that is not solidified once the solidified
head is past its expiration can never land, and only then is it signed again.
"""
import logging
from datetime import UTC, datetime

from django.conf import settings
from django.db import IntegrityError, transaction

from aerolith import clock
from aerolith.errors import Conflict, NotFound
from tenants.services.audit import audit_record

from ..models import ChainTransfer, CryptoQuote, OutgoingTransaction
from ..payments.solana import ChainUnavailable
from ..payments.tron import deposit_address, same_address
from ..payments.tron_tx import (
    account_from_xprv,
    derived_private_key,
    internal_address,
    outcome,
    raw_for,
    sign_raw,
    trc20_transfer_contract,
    tron_sender,
    trx_contract,
)
from .invoices import _actor_label
from .sending import SigningKeyUnavailable, broadcast_signed, merchant_secret

logger = logging.getLogger(__name__)
Out = OutgoingTransaction.Status
Purpose = OutgoingTransaction.Purpose


def _xpub() -> str:
    xpub = getattr(settings, "AEROLITH_TRON_XPUB", "") or ""
    if not xpub:
        raise SigningKeyUnavailable("AEROLITH_TRON_XPUB is not set; Tron deposit addresses cannot be swept.")
    return xpub


def key_address() -> str:
    """The address a Tron SigningKey is stored under: the receive address 0/0."""
    return deposit_address(_xpub(), 0)


def treasury_address() -> str:
    return internal_address(_xpub(), 0)


def merchant_address() -> str:
    return getattr(settings, "AEROLITH_TRON_MERCHANT", "") or treasury_address()


def fee_limit() -> int:
    return int(getattr(settings, "AEROLITH_TRON_SWEEP_FEE_LIMIT", 30_000_000))


def _xprv() -> str:
    """The sealed account xprv, opened and checked against AEROLITH_TRON_XPUB; raises
    SigningKeyUnavailable (never showing the key)."""
    xprv = merchant_secret("tron", key_address()).decode()
    try:
        account = account_from_xprv(xprv)
    except ValueError as error:
        raise SigningKeyUnavailable(f"The stored Tron key is unusable: {error}") from None
    if account.PublicKey().ToExtended() != _xpub():
        raise SigningKeyUnavailable("The stored Tron key does not match AEROLITH_TRON_XPUB; import the "
                                    "extended private key of that account.")
    return xprv


def _private_key_for(outgoing: OutgoingTransaction, index: int | None) -> bytes:
    xprv = _xprv()
    try:
        if outgoing.purpose == Purpose.SWEEP_FUND:
            return derived_private_key(xprv, 1, 0)
        return derived_private_key(xprv, 0, index)
    finally:
        del xprv


def deposit_sweep(*, quote: CryptoQuote, actor, sender=None) -> OutgoingTransaction:
    """Sweep what a settled Tron quote received to the merchant address. Returns the row
    sent first (the TRX sweep, or the USDT sweep's funding), broadcast when the node took
    it. Raises Conflict (not Tron, not settled, not final, swept already) or
    SigningKeyUnavailable (no key, wrong key); nothing is written or sent then."""
    quote = CryptoQuote.objects.select_related("tenant").get(pk=quote.pk)
    if quote.network != "tron":
        raise Conflict(f"Quote {quote.pk} is not a Tron quote; only Tron deposit addresses are swept.",
                       code="sweep_network_unsupported")
    xprv = _xprv()  # fail before reserving anything
    try:
        deposit = derived_private_key(xprv, 0, int(quote.derivation_index))
    finally:
        del xprv
    from tronpy.keys import PrivateKey

    if not same_address(PrivateKey(deposit).public_key.to_base58check_address(), quote.address):
        raise SigningKeyUnavailable(f"The key derived at 0/{quote.derivation_index} does not own "
                                    f"{quote.address}; the quote was made under another xpub.")
    del deposit
    merchant, treasury = merchant_address(), treasury_address()
    with transaction.atomic():
        quote = CryptoQuote.objects.select_for_update().select_related("tenant").get(pk=quote.pk)
        if quote.status != CryptoQuote.Status.SETTLED:
            raise Conflict(f"Quote {quote.pk} is {quote.status}; only settled quotes are swept.",
                           code="sweep_not_settled")
        transfers = list(quote.transfers.all())
        if any(t.finality != ChainTransfer.Finality.FINALIZED for t in transfers):
            raise Conflict(f"Quote {quote.pk} has transfers not yet final; sweep once they are.",
                           code="sweep_not_final")
        amount = sum(int(t.amount_base_units) for t in transfers)
        if amount <= 0:
            raise Conflict(f"Quote {quote.pk} received nothing to sweep.", code="nothing_to_sweep")
        if OutgoingTransaction.objects.filter(quote=quote, purpose=Purpose.SWEEP).exclude(
                status=Out.FAILED).exists():
            raise Conflict(f"The deposit address of quote {quote.pk} is already swept.", code="sweep_exists")
        now, label = clock.now(quote.tenant), _actor_label(actor)[:200]
        common = {"network": "tron", "quote": quote, "tenant": quote.tenant, "actor_label": label,
                  "created_at": now}
        try:
            with transaction.atomic():
                funding = None
                if quote.token:
                    funding = OutgoingTransaction.objects.create(
                        purpose=Purpose.SWEEP_FUND, currency="trx", from_address=treasury,
                        to_address=quote.address, amount_base_units=fee_limit(), **common)
                sweep = OutgoingTransaction.objects.create(
                    purpose=Purpose.SWEEP, currency=quote.currency, from_address=quote.address,
                    to_address=merchant, token=quote.token, amount_base_units=amount,
                    fee_estimate=fee_limit() if quote.token else None, **common)
        except IntegrityError:
            raise Conflict(f"The deposit address of quote {quote.pk} is already swept.",
                           code="sweep_exists") from None
        audit_record(action="crypto_sweep.created", tenant=quote.tenant, actor=actor, target=sweep,
                     after={"quote": quote.pk, "currency": quote.currency, "amount_base_units": amount,
                            "to": merchant, "funding": funding.pk if funding else None})
    first = tron_send(outgoing_id=(funding or sweep).pk, sender=sender)
    if funding is not None:
        tron_send(outgoing_id=sweep.pk, sender=sender)  # records that it waits for the funding
    return first


def _funding_blocks(outgoing: OutgoingTransaction) -> str:
    """Why a USDT sweep cannot be signed yet ('' when it can)."""
    if outgoing.purpose != Purpose.SWEEP or not outgoing.token:
        return ""
    funding = OutgoingTransaction.objects.filter(quote_id=outgoing.quote_id, purpose=Purpose.SWEEP_FUND) \
        .order_by("-id").first()
    if funding is None or funding.status == Out.CONFIRMED:
        return ""
    return f"Waiting for the TRX funding {funding.pk} ({funding.status}) to be solidified."


def tron_send(*, outgoing_id: int, sender=None) -> OutgoingTransaction:
    """Sign if never signed (a USDT sweep only once its funding is solidified), then
    broadcast the persisted bytes. Safe to run again; chain errors are recorded on the
    row, a key that cannot be opened raises SigningKeyUnavailable."""
    sender = sender or tron_sender()
    outgoing = OutgoingTransaction.objects.get(pk=outgoing_id, network="tron")
    if outgoing.status in (Out.CONFIRMED, Out.FAILED):
        raise Conflict(f"Outgoing transaction {outgoing.pk} is {outgoing.status}; nothing to send.",
                       code="outgoing_closed")
    if outgoing.status == Out.BUILT:
        waiting = _funding_blocks(outgoing)
        if waiting:
            OutgoingTransaction.objects.filter(pk=outgoing.pk).update(last_error=waiting[:500])
            outgoing.refresh_from_db()
            return outgoing
        outgoing = _sign(outgoing, sender)
        if outgoing.status == Out.BUILT:
            return outgoing
    return broadcast_signed(outgoing, sender, audit_prefix="crypto_sweep")


def _contract(outgoing: OutgoingTransaction) -> tuple[dict, int]:
    if outgoing.token:
        return (trc20_transfer_contract(outgoing.from_address, outgoing.token, outgoing.to_address,
                                        int(outgoing.amount_base_units)), int(outgoing.fee_estimate or fee_limit()))
    return trx_contract(outgoing.from_address, outgoing.to_address, int(outgoing.amount_base_units)), 0


def _sign(outgoing: OutgoingTransaction, sender) -> OutgoingTransaction:
    index = CryptoQuote.objects.values_list("derivation_index", flat=True).get(pk=outgoing.quote_id)
    private_key = _private_key_for(outgoing, index)
    try:
        contract, limit = _contract(outgoing)
        head = sender.head()
        signed = sign_raw(raw_for(contract, head, fee_limit=limit), private_key)
    except ChainUnavailable as error:
        OutgoingTransaction.objects.filter(pk=outgoing.pk).update(last_error=error.detail[:500])
        outgoing.refresh_from_db()
        return outgoing
    except ValueError as error:
        raise SigningKeyUnavailable(f"Outgoing transaction {outgoing.pk} cannot be signed: {error}") from None
    finally:
        del private_key
    with transaction.atomic():
        row = OutgoingTransaction.objects.select_for_update().select_related("tenant").get(pk=outgoing.pk)
        if row.status != Out.BUILT:  # another worker signed meanwhile: its bytes win
            return row
        row.signed_bytes, row.txid = signed.signed_bytes, signed.txid
        row.expires_at = datetime.fromtimestamp(signed.expiration_ms / 1000, UTC)
        row.status, row.last_error = Out.SIGNED, ""
        row.save(update_fields=["signed_bytes", "txid", "expires_at", "status", "last_error"])
        audit_record(action="crypto_sweep.signed", tenant=row.tenant, target=row,
                     after={"txid": row.txid, "purpose": row.purpose, "expires_at": row.expires_at.isoformat()})
    return row


def _close(outgoing_id: int, *, failed: bool, error: str = "") -> None:
    with transaction.atomic():
        row = OutgoingTransaction.objects.select_for_update().select_related("tenant").get(pk=outgoing_id)
        if row.status not in (Out.SIGNED, Out.BROADCAST):
            return
        if failed:
            row.status, row.last_error = Out.FAILED, f"Failed on chain: {error}"[:500]
        else:
            row.status, row.confirmed_at, row.last_error = Out.CONFIRMED, clock.now(row.tenant), ""
        row.save(update_fields=["status", "last_error", "confirmed_at"])
        audit_record(action=f"crypto_sweep.{row.status}", tenant=row.tenant, target=row,
                     after={"txid": row.txid, "error": row.last_error})


def _expired_unlanded(outgoing_id: int, solid_head_ms: int) -> bool:
    """Back to `built` (bytes and txid cleared) when the solidified head is past the
    expiration and the transaction is not solidified: it can never land."""
    with transaction.atomic():
        row = OutgoingTransaction.objects.select_for_update().select_related("tenant").get(pk=outgoing_id)
        if row.status not in (Out.SIGNED, Out.BROADCAST) or row.expires_at is None:
            return False
        if solid_head_ms <= int(row.expires_at.timestamp() * 1000):
            return False
        old = row.txid
        row.status, row.signed_bytes, row.txid, row.expires_at = Out.BUILT, None, "", None
        row.last_error = f"Transaction {old} expired without landing; signed again."[:500]
        row.save(update_fields=["status", "signed_bytes", "txid", "expires_at", "last_error"])
        audit_record(action="crypto_sweep.expired", tenant=row.tenant, target=row, after={"txid": old})
    return True


def tron_confirm_pass(*, sender=None) -> dict:
    """The beat pass for Tron sweeps: solidified → confirmed (or failed, e.g.
    OUT_OF_ENERGY); expired without landing → signed again and sent; signed but not
    accepted → the same bytes again; a USDT sweep waiting for its funding → sent once the
    funding is confirmed."""
    counts = {"confirmed": 0, "failed": 0, "pending": 0}
    rows = list(OutgoingTransaction.objects.filter(network="tron", status__in=[Out.BUILT, Out.SIGNED,
                                                                              Out.BROADCAST])
                .order_by("id").values_list("id", "txid", "status"))
    if not rows:
        return counts
    sender = sender or tron_sender()
    solid_head = None
    for outgoing_id, txid, status in rows:
        if status == Out.BUILT:
            counts["pending"] += 1
            continue  # sent below, after the fundings of this pass are confirmed
        info = sender.solid_info(txid)
        if info:
            ok, error = outcome(info)
            _close(outgoing_id, failed=not ok, error=error)
            counts["confirmed" if ok else "failed"] += 1
            continue
        counts["pending"] += 1
        if solid_head is None:
            solid_head = sender.head(solid=True).timestamp_ms
        if _expired_unlanded(outgoing_id, solid_head) or status == Out.SIGNED:
            tron_send(outgoing_id=outgoing_id, sender=sender)
    for outgoing_id in OutgoingTransaction.objects.filter(network="tron", status=Out.BUILT) \
            .order_by("id").values_list("id", flat=True):
        if outgoing_id in {r[0] for r in rows if r[2] == Out.BUILT}:
            tron_send(outgoing_id=outgoing_id, sender=sender)
    return counts


def sweep_for(outgoing_id) -> OutgoingTransaction:
    row = OutgoingTransaction.objects.filter(pk=outgoing_id, network="tron").first()
    if row is None:
        raise NotFound(f"No Tron outgoing transaction {outgoing_id}.", code="outgoing_not_found")
    return row
