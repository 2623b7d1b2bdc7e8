"""Tron payments end to end (SPEC §6): deposit addresses derived from the xpub, real
offline-signed Tron transactions served by a TronGrid-shaped fake (tests/fakes/trongrid.py)
to the product's client, validated and applied to quotes with the Solana state rules."""
import hashlib

import pytest
from bip_utils import Bip39SeedGenerator, Bip44, Bip44Changes, Bip44Coins
from tronpy.keys import PrivateKey, to_hex_address

from billing.models import BalanceTransaction, ChainTransfer, CryptoQuote, Invoice
from billing.payments.solana import ChainUnavailable
from billing.payments.tron import deposit_address, normalise, same_address, tron_chain
from billing.services.crypto import quote_create, quote_refresh, quotes_scan
from tenants.services.clocks import tenant_clock_advance, tenant_clock_attach

from ..conftest import assert_problem
from ..fakes.trongrid import TRANSFER_TOPIC, TronGridServer, encode_raw_data
from .api_support import billing_state, client_as, open_invoice

pytestmark = pytest.mark.django_db

USDT_MAINNET = "TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6t"
USDT = 10**6
TRX = 10**6
TEST_MNEMONIC = "abandon " * 11 + "about"


@pytest.fixture(name="tron")
def tron_fixture(settings):
    server = TronGridServer().start()
    settings.AEROLITH_TRONGRID_URL = server.url
    settings.AEROLITH_USDT_CONTRACT = USDT_MAINNET
    settings.AEROLITH_TRONGRID_TIMEOUT = 0.3
    settings.AEROLITH_TRONGRID_RETRIES = 3
    settings.AEROLITH_TRONGRID_BACKOFF = 0.01
    server.payer = PrivateKey.random()
    try:
        yield server
    finally:
        server.stop()


def _quote(tenant, cents=1500, currency="usdt") -> CryptoQuote:
    return quote_create(tenant=tenant, invoice=open_invoice(tenant, cents), currency=currency, actor="test")


def _pay(tron, quote, units=None, **kwargs) -> str:
    units = int(quote.amount_base_units) if units is None else units
    if quote.currency == "trx":
        return tron.ledger.pay_trx(tron.payer, quote.address, units, **kwargs)
    contract = kwargs.pop("contract", USDT_MAINNET)
    return tron.ledger.pay_trc20(tron.payer, contract, quote.address, units, **kwargs)


def _scan(quote) -> CryptoQuote:
    quote_refresh(quote_id=quote.pk)
    quote.refresh_from_db()
    return quote


def _credits(tenant) -> list[int]:
    return list(BalanceTransaction.objects.filter(tenant=tenant, kind="crypto_credit")
                .order_by("id").values_list("amount_cents", flat=True))


# --- the fake's transactions are real -----------------------------------------------------------

def test_raw_data_encoding_matches_a_real_nile_transaction():
    """raw_data and raw_data_hex of a real TransferContract (TRON docs, /wallet/broadcasttransaction)."""
    raw = {"contract": [{"parameter": {"value": {
        "amount": 1000, "owner_address": "41608f8da72479edc7dd921e4c30bb7e7cddbe722e",
        "to_address": "41e9d79cc47518930bc322d9bf7cddd260a0260a8d"},
        "type_url": "type.googleapis.com/protocol.TransferContract"}, "type": "TransferContract"}],
        "ref_block_bytes": "5e4b", "ref_block_hash": "47c9dc89341b300d", "expiration": 1591089627000,
        "timestamp": 1591089567635}
    assert encode_raw_data(raw).hex() == (
        "0a025e4b220847c9dc89341b300d40f8fed3a2a72e5a66080112620a2d747970652e676f6f676c65617069732e636f"
        "6d2f70726f746f636f6c2e5472616e73666572436f6e747261637412310a1541608f8da72479edc7dd921e4c30bb7e7c"
        "ddbe722e121541e9d79cc47518930bc322d9bf7cddd260a0260a8d18e8077093afd0a2a72e")


def test_fake_transactions_have_real_ids_and_signatures(tron):
    to = PrivateKey.random().public_key.to_base58check_address()
    txid = tron.ledger.pay_trx(tron.payer, to, 5 * TRX)
    row = tron.ledger.txs[0].row
    assert hashlib.sha256(bytes.fromhex(row["raw_data_hex"])).hexdigest() == txid == row["txID"]
    from tronpy.keys import Signature
    signature = Signature.fromhex(row["signature"][0])
    assert signature.recover_public_key_from_msg_hash(bytes.fromhex(txid)) == tron.payer.public_key


# --- deposit addresses ------------------------------------------------------------------------------

def test_derivation_is_distinct_stable_and_matches_the_private_side(settings):
    seed = Bip39SeedGenerator(TEST_MNEMONIC).Generate()
    account = Bip44.FromSeed(seed, Bip44Coins.TRON).Purpose().Coin().Account(0)
    assert account.PublicKey().ToExtended() == settings.AEROLITH_TRON_XPUB  # the documented test xpub
    addresses = [deposit_address(settings.AEROLITH_TRON_XPUB, i) for i in range(5)]
    assert len(set(addresses)) == 5
    assert addresses == [deposit_address(settings.AEROLITH_TRON_XPUB, i) for i in range(5)]
    assert addresses[0] == "TUEZSdKsoDHQMeZwihtdoBiN46zxhGWYdH"
    for i, address in enumerate(addresses):
        private = account.Change(Bip44Changes.CHAIN_EXT).AddressIndex(i).PrivateKey().Raw().ToBytes()
        assert PrivateKey(private).public_key.to_base58check_address() == address
    with pytest.raises(ValueError):
        deposit_address(settings.AEROLITH_TRON_XPUB, 2**31)


def test_each_quote_gets_its_own_index_and_address(alice):
    first, second = _quote(alice, currency="trx"), _quote(alice, currency="usdt")
    assert second.derivation_index > first.derivation_index >= 0
    assert first.address != second.address and first.network == second.network == "tron"
    assert first.address == deposit_address(first_xpub(), first.derivation_index)
    assert (second.token, second.decimals, second.rate, int(second.amount_base_units)) == (
        USDT_MAINNET, 6, 1, 15 * USDT)
    # $15 at the test fallback of $0.25 per TRX: 60 TRX
    assert (first.rate_source, int(first.amount_base_units)) == ("fallback", 60 * TRX)
    assert first.url == f"tron:{first.address}?amount=60" and first.reference is None


def first_xpub():
    from django.conf import settings
    return settings.AEROLITH_TRON_XPUB


def test_addresses_compare_in_hex_and_base58():
    address = deposit_address(first_xpub(), 3)
    hex_address = to_hex_address(address)
    assert hex_address.startswith("41") and normalise(hex_address) == address
    assert normalise("0x" + hex_address[2:]) == address and normalise(hex_address[2:]) == address
    assert same_address(hex_address, address) and not same_address(address, deposit_address(first_xpub(), 4))
    assert normalise("T-not-an-address") is None and normalise("") is None


# --- exact payments -----------------------------------------------------------------------------

@pytest.mark.parametrize("currency", ["trx", "usdt"])
def test_exact_payment_is_processing_then_settles_when_solidified(alice, tron, currency):
    quote = _quote(alice, 1500, currency)
    txid = _pay(tron, quote)
    quote = _scan(quote)
    assert quote.status == "processing" and int(quote.received_base_units) == int(quote.amount_base_units)
    assert Invoice.objects.get(pk=quote.invoice_id).status == "open"
    tron.ledger.solidify()
    quote = _scan(quote)
    assert quote.status == "settled" and not (quote.paid_over or quote.paid_partial or quote.paid_late)
    invoice = Invoice.objects.get(pk=quote.invoice_id)
    assert (invoice.status, invoice.amount_paid_cents) == ("paid", 1500)
    assert (quote.payment.method, quote.payment.gateway_reference) == (currency, txid)
    transfer = ChainTransfer.objects.get(quote=quote)
    assert (transfer.txid, transfer.finality, transfer.network) == (txid, "finalized", "tron")
    assert transfer.sender == tron.payer.public_key.to_base58check_address()
    assert transfer.explorer_url == f"https://tronscan.org/#/transaction/{txid}"
    assert _scan(quote).status == "settled" and ChainTransfer.objects.filter(quote=quote).count() == 1


def test_the_beat_pass_dispatches_tron_quotes(alice, tron):
    quote = _quote(alice, 1500, "usdt")
    _pay(tron, quote)
    tron.ledger.solidify()
    assert quotes_scan() == {"refreshed": 1, "failed": 0}
    quote.refresh_from_db()
    assert quote.status == "settled"


# --- under, over, late ----------------------------------------------------------------------------

def test_under_payment_expires_and_goes_to_the_balance(alice, tron):
    tenant_clock_attach(tenant=alice, actor="test")
    quote = _quote(alice, 1500, "usdt")
    _pay(tron, quote, 4_999_999)
    tron.ledger.solidify()
    tenant_clock_advance(tenant=alice, actor="test", seconds=16 * 60)
    quote.refresh_from_db()
    assert (quote.status, quote.paid_partial, quote.paid_late) == ("expired", True, False)
    assert quote.credited_cents == 499 and _credits(alice) == [499]


def test_over_payment_settles_and_credits_the_excess(alice, tron):
    quote = _quote(alice, 1500, "trx")
    _pay(tron, quote, 66 * TRX + 7)  # 6 TRX ($1.50) too much and 7 SUN of dust
    tron.ledger.solidify()
    quote = _scan(quote)
    assert (quote.status, quote.paid_over) == ("settled", True)
    assert quote.credited_cents == 150 and _credits(alice) == [150]


def test_split_payments_crossing_the_amount_settle(alice, tron):
    quote = _quote(alice, 1500, "usdt")
    _pay(tron, quote, 10 * USDT)
    assert _scan(quote).paid_partial
    _pay(tron, quote, 5 * USDT)
    tron.ledger.solidify()
    quote = _scan(quote)
    assert quote.status == "settled" and ChainTransfer.objects.filter(quote=quote).count() == 2


def test_a_payment_after_expiry_is_late_and_credited(alice, tron):
    tenant_clock_attach(tenant=alice, actor="test")
    quote = _quote(alice, 1500, "usdt")
    tenant_clock_advance(tenant=alice, actor="test", seconds=15 * 60)
    quote.refresh_from_db()
    assert quote.status == "expired"
    _pay(tron, quote)
    tron.ledger.solidify()
    quote = _scan(quote)
    assert (quote.status, quote.paid_late, quote.credited_cents) == ("expired", True, 1500)
    assert Invoice.objects.get(pk=quote.invoice_id).status == "open"


# --- what must not count ----------------------------------------------------------------------------

def test_a_fake_token_called_usdt_does_not_count(alice, tron):
    quote = _quote(alice, 1500, "usdt")
    fake = PrivateKey.random().public_key.to_base58check_address()
    _pay(tron, quote, contract=fake, symbol="USDT")
    tron.ignore_contract_filter = True  # even when the listing lets it through
    tron.ledger.solidify()
    quote = _scan(quote)
    assert quote.status == "new" and int(quote.received_base_units) == 0


def test_an_approval_event_does_not_count(alice, tron):
    quote = _quote(alice, 1500, "usdt")
    _pay(tron, quote, event="Approval")
    tron.ledger.solidify()
    assert _scan(quote).status == "new" and not ChainTransfer.objects.filter(quote=quote).exists()


@pytest.mark.parametrize("currency", ["trx", "usdt"])
def test_a_failed_transaction_is_listed_but_skipped(alice, tron, currency):
    quote = _quote(alice, 1500, currency)
    _pay(tron, quote, ret="REVERT")
    tron.ledger.solidify()
    assert _scan(quote).status == "new" and not ChainTransfer.objects.filter(quote=quote).exists()


def test_the_same_transaction_seen_twice_counts_once(alice, tron):
    quote = _quote(alice, 1500, "trx")
    _pay(tron, quote)
    _scan(quote)
    _scan(quote)
    tron.ledger.solidify()
    _scan(quote)
    quote = _scan(quote)
    assert quote.status == "settled" and not quote.paid_over
    assert ChainTransfer.objects.filter(quote=quote).count() == 1


def test_hex_or_base58_in_the_listing_both_match(alice, tron):
    quote = _quote(alice, 1500, "trx")
    _pay(tron, quote)
    tron.base58_in_raw_data = True
    tron.ledger.solidify()
    assert _scan(quote).status == "settled"


def test_values_above_2_53_are_exact(alice, tron):
    quote = _quote(alice, 1500, "usdt")
    big = 2**53 + 1
    _pay(tron, quote, big)
    tron.ledger.solidify()
    quote = _scan(quote)
    assert int(quote.received_base_units) == big and quote.paid_over
    assert ChainTransfer.objects.get(quote=quote).amount_base_units == big


# --- the API's rough edges ---------------------------------------------------------------------------

@pytest.mark.parametrize("currency", ["trx", "usdt"])
def test_pagination_walks_past_200_rows(alice, tron, currency):
    quote = _quote(alice, 1500, currency)
    other = PrivateKey.random().public_key.to_base58check_address()
    _pay(tron, quote, 15 * USDT if currency == "usdt" else 60 * TRX)  # the oldest row: on page 2
    for _ in range(200):
        if currency == "trx":
            tron.ledger.pay_trx(tron.payer, quote.address, 1)
        else:
            tron.ledger.pay_trc20(tron.payer, USDT_MAINNET, quote.address, 1)
    tron.ledger.pay_trx(tron.payer, other, 1)
    tron.ledger.solidify()
    found = tron_chain().transfers(address=quote.address,
                                   contract=USDT_MAINNET if currency == "usdt" else None)
    assert len(found) == 201
    assert any("fingerprint=" in path for path in tron.requests)


def test_429_and_timeouts_are_retried(alice, tron, settings):
    settings.AEROLITH_TRONGRID_API_KEY = "test-key"
    quote = _quote(alice, 1500, "usdt")
    _pay(tron, quote)
    tron.ledger.solidify()
    tron.faults = ["429", "timeout", "500"]
    assert _scan(quote).status == "settled"
    assert tron.faults == [] and set(tron.api_keys) == {"test-key"}


def test_a_chain_that_keeps_failing_changes_nothing(alice, tron, settings):
    settings.AEROLITH_TRONGRID_RETRIES = 1
    quote = _quote(alice, 1500, "trx")
    _pay(tron, quote)
    tron.faults = ["429"] * 5
    with pytest.raises(ChainUnavailable) as raised:
        quote_refresh(quote_id=quote.pk)
    assert "HTTP 429" in raised.value.detail and "2 attempts" in raised.value.detail
    quote.refresh_from_db()
    assert quote.status == "new" and "HTTP 429" in quote.last_error


def _api_pay(client, number, method):
    return client.post(f"/api/v1/invoices/{number}/pay", {"method": method}, format="json")


def test_pay_endpoint_answers_tron_quotes(alice):
    client = client_as(alice)
    invoice = open_invoice(alice, 1500)
    response = _api_pay(client, invoice.number, "usdt")
    assert response.status_code in (200, 201), response.content
    body = response.json()
    assert body["network"] == "tron" and body["amount"] == "15" and body["address"].startswith("T")
    assert body["token_mint"] == USDT_MAINNET and body["reference"] is None


def test_pay_endpoint_without_an_xpub_answers_503_and_changes_nothing(alice, settings):
    client = client_as(alice)
    invoice = open_invoice(alice, 1500)
    before = billing_state(alice)
    for xpub in ("", "xpub-not-a-key"):
        settings.AEROLITH_TRON_XPUB = xpub
        for method in ("trx", "usdt"):
            problem = assert_problem(_api_pay(client, invoice.number, method), 503, "tron_not_set_up")
            assert "not set up" in problem["detail"]
    settings.AEROLITH_TRON_XPUB = first_xpub_default()
    settings.AEROLITH_USDT_CONTRACT = "not-a-contract"
    assert_problem(_api_pay(client, invoice.number, "usdt"), 503, "tron_not_set_up")
    settings.AEROLITH_TRX_FALLBACK_USD = ""
    assert_problem(_api_pay(client, invoice.number, "trx"), 503, "rate_unavailable")
    assert billing_state(alice) == before and not CryptoQuote.objects.filter(tenant=alice).exists()


def first_xpub_default():
    from aerolith.settings.base import TRON_TEST_XPUB
    return TRON_TEST_XPUB


def test_portal_shows_the_deposit_address_qr_and_status(alice, tron):
    from ..conftest import portal_user
    invoice = open_invoice(alice, 1500)
    client = portal_user(alice)
    assert b'value="usdt"' in client.get(f"/invoices/{invoice.number}").content
    response = client.post(f"/invoices/{invoice.number}/pay/crypto", {"currency": "usdt"})
    assert response.status_code == 302
    quote = CryptoQuote.objects.get(tenant=alice, invoice=invoice)
    page = client.get(response["Location"]).content.decode()
    assert quote.address in page and "<svg" in page and "15 USDT" in page and "crypto-countdown" in page
    _pay(tron, quote)
    tron.ledger.solidify()
    _scan(quote)
    assert "Paid. Invoice" in client.get(f"/billing/crypto/{quote.pk}/status").content.decode()


def test_topic0_is_keccak_of_the_transfer_signature():
    from billing.payments.tron import TRANSFER_TOPIC as PRODUCT_TOPIC
    assert PRODUCT_TOPIC == TRANSFER_TOPIC
