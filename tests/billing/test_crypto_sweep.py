"""Sweeping Tron deposit addresses (SPEC §6 "Sending"): the sealed account xprv derives each
deposit key; TRX is swept whole, USDT after a TRX funding step for energy; transactions are
built offline, signed, persisted, then broadcast to the TronGrid fake, which checks the
encoding, the signature, the expiration and balances; a retry sends the same bytes."""
import base64
import io
import json
import logging
import os

import pytest
from bip_utils import Bip39SeedGenerator, Bip44, Bip44Coins
from django.core.management import CommandError, call_command
from django.db import connection
from tronpy.keys import PrivateKey

from aerolith.errors import Conflict
from billing.models import CryptoQuote, OutgoingTransaction, SigningKey
from billing.payments.tron_tx import txid_of
from billing.services.crypto import quote_create, quote_refresh
from billing.services.sending import SigningKeyUnavailable
from billing.services.sweeping import (
    deposit_sweep,
    merchant_address,
    treasury_address,
    tron_confirm_pass,
    tron_send,
)

from ..fakes.trongrid import TronGridServer
from .api_support import open_invoice

pytestmark = pytest.mark.django_db

USDT_MAINNET = "TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6t"
TRX = 10**6
TEST_MNEMONIC = "abandon " * 11 + "about"


def _xprv(mnemonic=TEST_MNEMONIC) -> str:
    seed = Bip39SeedGenerator(mnemonic).Generate()
    return Bip44.FromSeed(seed, Bip44Coins.TRON).Purpose().Coin().Account(0).PrivateKey().ToExtended()


XPRV = _xprv()


@pytest.fixture(name="tron")
def tron_fixture(settings):
    settings.AEROLITH_SECRET_KEYS = base64.b64encode(os.urandom(32)).decode()
    server = TronGridServer().start()
    settings.AEROLITH_TRONGRID_URL = server.url
    settings.AEROLITH_USDT_CONTRACT = USDT_MAINNET
    settings.AEROLITH_TRONGRID_TIMEOUT = 0.5
    settings.AEROLITH_TRONGRID_RETRIES = 2
    settings.AEROLITH_TRONGRID_BACKOFF = 0.01
    settings.AEROLITH_TRON_MERCHANT = PrivateKey.random().public_key.to_base58check_address()
    server.payer = PrivateKey.random()
    try:
        yield server
    finally:
        server.stop()


def _import(text=XPRV) -> str:
    out = io.StringIO()
    call_command("wallet", "import-key", "--network", "tron", stdin=io.StringIO(text + "\n"), stdout=out)
    return out.getvalue()


def _settled(tron, tenant, currency, units=None) -> CryptoQuote:
    quote = quote_create(tenant=tenant, invoice=open_invoice(tenant, 1500), currency=currency, actor="test")
    units = int(quote.amount_base_units) if units is None else units
    if currency == "trx":
        tron.ledger.pay_trx(tron.payer, quote.address, units)
    else:
        tron.ledger.pay_trc20(tron.payer, USDT_MAINNET, quote.address, units)
    tron.ledger.solidify()
    quote_refresh(quote_id=quote.pk)
    quote.refresh_from_db()
    assert quote.status == "settled"
    return quote


def test_import_key_seals_the_xprv_checks_it_against_the_xpub_and_never_echoes_it(tron):
    out = _import()
    assert XPRV not in out and "tron signing key" in out
    key = SigningKey.objects.get(network="tron")
    assert key.secret_sealed.startswith("ab1:") and XPRV not in key.secret_sealed
    with pytest.raises(CommandError, match="already stored"):
        _import()
    other = _xprv("legal winner thank year wave sausage worth useful legal winner thank yellow")
    for bad, message in ((other, "does not belong to AEROLITH_TRON_XPUB"), ("xprv-nonsense", "not a valid"),
                         (tron.payer.hex(), "not an extended private key")):
        with pytest.raises(CommandError, match=message) as raised:
            _import(bad)
        assert bad not in str(raised.value)
    assert SigningKey.objects.filter(network="tron").count() == 1


def test_trx_sweep_is_recorded_then_broadcast_and_a_retry_sends_the_identical_bytes(alice, tron):
    _import()
    quote = _settled(tron, alice, "trx")
    amount = int(quote.amount_base_units)
    tron.refuse_broadcasts = 10  # signed and persisted, then the node fails
    outgoing = deposit_sweep(quote=quote, actor="staff@test")
    assert outgoing.purpose == "sweep" and outgoing.status == "signed" and "HTTP 500" in outgoing.last_error
    assert (outgoing.from_address, outgoing.to_address, int(outgoing.amount_base_units)) == (
        quote.address, merchant_address(), amount)
    signed, txid = bytes(outgoing.signed_bytes), outgoing.txid
    assert txid_of(signed) == txid and outgoing.expires_at is not None and tron.broadcasts == []

    tron.refuse_broadcasts = 0
    outgoing = tron_send(outgoing_id=outgoing.pk)
    assert outgoing.status == "broadcast" and outgoing.txid == txid and bytes(outgoing.signed_bytes) == signed
    outgoing = tron_send(outgoing_id=outgoing.pk)  # once more: DUP_TRANSACTION_ERROR is success
    assert outgoing.status == "broadcast" and outgoing.last_error == ""
    assert tron.broadcasts == [signed, signed]
    assert tron.ledger.trx_balance(merchant_address()) == amount and tron.ledger.trx_balance(quote.address) == 0
    assert json.loads(signed)["signature"] and OutgoingTransaction.objects.count() == 1

    assert tron_confirm_pass() == {"confirmed": 0, "failed": 0, "pending": 1}
    tron.ledger.solidify()
    assert tron_confirm_pass()["confirmed"] == 1
    outgoing.refresh_from_db()
    assert outgoing.status == "confirmed" and outgoing.confirmed_at is not None
    with pytest.raises(Conflict, match="already swept"):
        deposit_sweep(quote=quote, actor="staff@test")
    assert len(tron.broadcasts) == 2


def test_usdt_sweep_funds_the_deposit_with_trx_first_then_transfers_the_token(alice, tron):
    _import()
    tron.ledger.pay_trx(tron.payer, treasury_address(), 100 * TRX)
    quote = _settled(tron, alice, "usdt")
    amount = int(quote.amount_base_units)

    funding = deposit_sweep(quote=quote, actor="staff@test")
    assert funding.purpose == "sweep_fund" and funding.status == "broadcast"
    assert (funding.from_address, funding.to_address, funding.currency) == (treasury_address(), quote.address, "trx")
    sweep = OutgoingTransaction.objects.get(quote=quote, purpose="sweep")
    assert sweep.status == "built" and "Waiting for the TRX funding" in sweep.last_error
    assert tron.ledger.trx_balance(quote.address) == 30 * TRX

    assert tron_confirm_pass() == {"confirmed": 0, "failed": 0, "pending": 2}
    sweep.refresh_from_db()
    assert sweep.status == "built"  # not signed before the funding is solidified
    tron.ledger.solidify()
    assert tron_confirm_pass()["confirmed"] == 1
    sweep.refresh_from_db()
    assert sweep.status == "broadcast" and sweep.token == USDT_MAINNET
    assert tron.ledger.token_balance(USDT_MAINNET, merchant_address()) == amount
    assert tron.ledger.token_balance(USDT_MAINNET, quote.address) == 0
    tron.ledger.solidify()
    assert tron_confirm_pass()["confirmed"] == 1
    sweep.refresh_from_db()
    assert sweep.status == "confirmed"
    with pytest.raises(Conflict, match="already swept"):
        deposit_sweep(quote=quote, actor="staff@test")


def test_usdt_sweep_without_energy_fails_on_chain(alice, tron, settings):
    """Funding too small for the energy: the transfer lands OUT_OF_ENERGY and is marked failed."""
    settings.AEROLITH_TRON_SWEEP_FEE_LIMIT = 1 * TRX
    _import()
    tron.ledger.pay_trx(tron.payer, treasury_address(), 100 * TRX)
    quote = _settled(tron, alice, "usdt")
    deposit_sweep(quote=quote, actor="staff@test")
    tron.ledger.solidify()
    tron_confirm_pass()
    tron.ledger.solidify()
    assert tron_confirm_pass()["failed"] == 1
    sweep = OutgoingTransaction.objects.get(quote=quote, purpose="sweep")
    assert sweep.status == "failed" and "OUT_OF_ENERGY" in sweep.last_error
    assert tron.ledger.token_balance(USDT_MAINNET, quote.address) == int(quote.amount_base_units)


def test_an_expired_unlanded_transaction_is_signed_again_once(alice, tron):
    _import()
    quote = _settled(tron, alice, "trx")
    tron.refuse_broadcasts = 100
    outgoing = deposit_sweep(quote=quote, actor="staff@test")
    old = outgoing.txid
    tron_confirm_pass()  # not expired yet: same bytes again (refused again)
    outgoing.refresh_from_db()
    assert outgoing.txid == old and outgoing.status == "signed"
    tron.refuse_broadcasts = 0
    tron.ledger.clock_ms += 120_000  # the solidified head passes the expiration; it never landed
    tron_confirm_pass()
    outgoing.refresh_from_db()
    assert outgoing.status == "broadcast" and outgoing.txid != old
    assert [txid_of(b) for b in tron.broadcasts] == [outgoing.txid]
    assert tron.ledger.trx_balance(merchant_address()) == int(quote.amount_base_units)


def test_refuses_unsettled_quotes_and_sends_nothing(alice, tron):
    _import()
    quote = quote_create(tenant=alice, invoice=open_invoice(alice, 1500), currency="trx", actor="test")
    with pytest.raises(Conflict, match="only settled quotes"):
        deposit_sweep(quote=quote, actor="staff@test")
    assert not OutgoingTransaction.objects.exists() and tron.broadcasts == []


def test_a_missing_or_unopenable_key_fails_loudly_and_nothing_is_sent(alice, tron, settings):
    quote = _settled(tron, alice, "trx")
    with pytest.raises(SigningKeyUnavailable, match="import-key --network tron"):
        deposit_sweep(quote=quote, actor="staff@test")
    _import()
    settings.AEROLITH_SECRET_KEYS = base64.b64encode(os.urandom(32)).decode()
    with pytest.raises(SigningKeyUnavailable, match="cannot be decrypted"):
        deposit_sweep(quote=quote, actor="staff@test")
    assert not OutgoingTransaction.objects.exists() and tron.broadcasts == []


def test_no_secret_in_the_database_or_the_logs_in_clear(alice, tron, caplog, capsys):
    caplog.set_level(logging.DEBUG)
    _import()
    quote = _settled(tron, alice, "trx")
    deposit_sweep(quote=quote, actor="staff@test")
    from billing.payments.tron_tx import derived_private_key
    deposit_key = derived_private_key(XPRV, 0, quote.derivation_index)
    with connection.cursor() as cursor:
        for table in (SigningKey._meta.db_table, OutgoingTransaction._meta.db_table, "tenants_auditevent"):
            cursor.execute(f"SELECT * FROM {table}")  # noqa: S608 - fixed table names
            dump = repr(cursor.fetchall()).encode()
            for needle in (XPRV.encode(), deposit_key.hex().encode(), deposit_key):
                assert needle not in dump, table
    out = capsys.readouterr()
    for text in (caplog.text, out.out, out.err):
        assert XPRV not in text and deposit_key.hex() not in text
