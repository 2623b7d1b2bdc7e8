"""The chain fakes' test wallet pages (GET/POST /wallet, tests/fakes/*) and paying a quote
through them end to end as a person trying test mode does: quote via the API, the wallet
page pays it, the beat scan sees it, finality, the invoice is paid. The portal links to the
page in test mode only."""
import html
from urllib.error import HTTPError
from urllib.parse import parse_qs, urlencode, urlsplit
from urllib.request import urlopen

import pytest
from tronpy.keys import PrivateKey

from billing.models import CryptoQuote, Invoice
from billing.tasks import crypto_quotes_scan

from ..conftest import portal_user
from ..fakes.trongrid import TronGridServer
from .api_support import client_as, open_invoice
from .crypto_support import chain_fixture  # noqa: F401 - fixture

pytestmark = pytest.mark.django_db
USDT_MAINNET = "TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6t"


@pytest.fixture(name="tron")
def tron_fixture(settings):
    server = TronGridServer().start()
    settings.AEROLITH_TRONGRID_URL = server.url
    settings.AEROLITH_USDT_CONTRACT = USDT_MAINNET
    settings.AEROLITH_TRONGRID_TIMEOUT = 0.5
    settings.AEROLITH_TRONGRID_RETRIES = 2
    settings.AEROLITH_TRONGRID_BACKOFF = 0.01
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(name="wallet_chain")
def wallet_chain_fixture(chain):
    chain.ledger.wallet_payer = chain.payer
    return chain


def _get(url: str) -> tuple[int, str]:
    try:
        with urlopen(url, timeout=5) as response:
            return response.status, response.read().decode()
    except HTTPError as error:
        return error.code, error.read().decode()


def _post(base: str, **fields) -> tuple[int, str]:
    try:
        with urlopen(f"{base}/wallet", data=urlencode(fields).encode(), timeout=10) as response:
            return response.status, html.unescape(response.read().decode())
    except HTTPError as error:
        return error.code, html.unescape(error.read().decode())


def _quote_via_api(tenant, currency: str, cents: int = 1500) -> tuple[Invoice, CryptoQuote]:
    invoice = open_invoice(tenant, cents)
    response = client_as(tenant).post(f"/api/v1/invoices/{invoice.number}/pay", {"method": currency},
                                      format="json")
    assert response.status_code == 201, response.content
    return invoice, CryptoQuote.objects.get(pk=response.json()["payment_id"])


def _settled(invoice, quote) -> tuple[str, str]:
    quote.refresh_from_db()
    invoice.refresh_from_db()
    return quote.status, invoice.status


# --- the pages ----------------------------------------------------------------------------------

def test_solana_wallet_page_prefills_the_url_and_refuses_bad_input(wallet_chain):
    base = wallet_chain.server.url
    url = f"solana:{wallet_chain.merchant.pubkey()}?amount=0.5"
    status, page = _get(f"{base}/wallet?{urlencode({'url': url})}")
    assert status == 200 and "Solana test wallet" in page and html.escape(url) in page
    assert str(wallet_chain.payer.pubkey()) in page and "Finalize" in page
    bad = {
        "https://example.com": "Paste a solana: URL",
        "solana:not-a-key?amount=1": "recipient is not a Solana address",
        f"solana:{wallet_chain.merchant.pubkey()}": "no amount=",
        f"solana:{wallet_chain.merchant.pubkey()}?amount=abc": "no amount=",
        f"solana:{wallet_chain.merchant.pubkey()}?amount=0.0000000001": "more than 9 decimals",
        f"solana:{wallet_chain.merchant.pubkey()}?amount=1.1234567&spl-token={wallet_chain.usdc}":
            "more than 6 decimals",
        f"solana:{wallet_chain.merchant.pubkey()}?amount=1&spl-token={wallet_chain.merchant.pubkey()}":
            "is not a mint on this chain",
        f"solana:{wallet_chain.merchant.pubkey()}?amount=1&spl-token=xyz": "spl-token is not a Solana address",
    }
    sent = len(wallet_chain.ledger.records)
    for url, reason in bad.items():
        status, page = _post(base, url=url, action="pay")
        assert status == 400 and reason in page, (url, page)
    assert len(wallet_chain.ledger.records) == sent  # the refusals sent nothing
    status, page = _post(base, url=f"solana:{wallet_chain.merchant.pubkey()}?amount=0.25", action="pay")
    assert status == 200 and "(confirmed)" in page and len(wallet_chain.ledger.records) == sent + 1
    status, page = _post(base, action="finalize")
    assert status == 200 and "finalized" in page
    assert wallet_chain.ledger.finalized_slot == wallet_chain.ledger.records[-1].slot
    assert _get(f"{base}/nothing")[0] == 404


def test_solana_wallet_page_without_a_funded_payer_says_so(chain):
    status, page = _post(chain.server.url, url=f"solana:{chain.merchant.pubkey()}?amount=1", action="pay")
    assert status == 503 and "no funded test payer" in page


def test_tron_wallet_page_prefills_and_refuses_bad_input(tron):
    address = PrivateKey.random().public_key.to_base58check_address()
    status, page = _get(f"{tron.url}/wallet?{urlencode({'address': address, 'amount': '12.5', 'currency': 'trx'})}")
    assert status == 200 and "Tron test wallet" in page and address in page and 'value="12.5"' in page
    assert '<option value="trx" selected>' in page and "Solidify" in page
    bad = [({"address": address, "amount": "1", "currency": "btc"}, "Unknown currency 'btc'"),
           ({"address": "T-nope", "amount": "1", "currency": "usdt"}, "not a Tron address"),
           ({"address": address, "amount": "1.1234567", "currency": "usdt"}, "more than 6 decimals"),
           ({"address": address, "amount": "ten", "currency": "trx"}, "not a plain decimal number"),
           ({"address": address, "amount": "0", "currency": "trx"}, "more than zero"),
           ({"address": address, "amount": "", "currency": "trx"}, "not a plain decimal number")]
    for fields, reason in bad:
        status, page = _post(tron.url, action="pay", **fields)
        assert status == 400 and reason in page, (fields, page)
    assert tron.ledger.txs == []
    status, page = _post(tron.url, address=address, amount="1.5", currency="usdt", action="pay")
    assert status == 200 and "(unconfirmed)" in page
    (tx,) = tron.ledger.txs
    assert (tx.to, tx.trc20_row["value"], tx.contract, tx.solid) == (address, "1500000", USDT_MAINNET, False)
    status, page = _post(tron.url, action="solidify")
    assert status == 200 and "solidified" in page and tx.solid


# --- end to end, per network ---------------------------------------------------------------------

@pytest.mark.parametrize("currency", ["sol", "usdc"])
def test_a_solana_quote_is_paid_from_the_wallet_page(alice, wallet_chain, currency):
    invoice, quote = _quote_via_api(alice, currency)
    status, page = _post(wallet_chain.server.url, url=quote.url, action="pay")
    assert status == 200, page
    crypto_quotes_scan()
    assert _settled(invoice, quote) == ("processing", "open")
    assert _post(wallet_chain.server.url, action="finalize")[0] == 200
    crypto_quotes_scan()
    assert _settled(invoice, quote) == ("settled", "paid")
    assert int(quote.received_base_units) == int(quote.amount_base_units)


@pytest.mark.parametrize("currency", ["trx", "usdt"])
def test_a_tron_quote_is_paid_from_the_wallet_page(alice, tron, currency):
    invoice, quote = _quote_via_api(alice, currency)
    status, page = _post(tron.url, address=quote.address, amount=quote.amount_text, currency=currency,
                         action="pay")
    assert status == 200, page
    crypto_quotes_scan()
    assert _settled(invoice, quote) == ("processing", "open")
    assert _post(tron.url, action="solidify")[0] == 200
    crypto_quotes_scan()
    assert _settled(invoice, quote) == ("settled", "paid")
    assert int(quote.received_base_units) == int(quote.amount_base_units)


# --- the portal's link ----------------------------------------------------------------------------

def test_the_quote_page_links_to_the_test_wallet_in_test_mode_only(alice, settings):
    settings.AEROLITH_SOLANA_RPC_URL = "http://127.0.0.1:8899/"
    settings.AEROLITH_TRONGRID_URL = "http://127.0.0.1:8090"
    client = portal_user(alice)
    _, sol = _quote_via_api(alice, "sol")
    _, usdt = _quote_via_api(alice, "usdt")

    def wallet_link(quote):
        page = client.get(f"/billing/crypto/{quote.pk}").content.decode()
        if "Pay with the test wallet" not in page:
            return None
        return html.unescape(page.split('id="test-wallet"', 1)[1].split('href="', 1)[1].split('"', 1)[0])

    link = urlsplit(wallet_link(sol))
    assert (link.scheme, link.netloc, link.path) == ("http", "127.0.0.1:8899", "/wallet")
    assert parse_qs(link.query) == {"url": [sol.url]}
    link = urlsplit(wallet_link(usdt))
    assert (link.netloc, link.path) == ("127.0.0.1:8090", "/wallet")
    assert parse_qs(link.query) == {"address": [usdt.address], "amount": [usdt.amount_text], "currency": ["usdt"]}

    settings.AEROLITH_TEST_MODE = False
    assert wallet_link(sol) is None and wallet_link(usdt) is None
