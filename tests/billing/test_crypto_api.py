"""Paying with SOL and USDC through the API, the portal and the staff console (SPEC §10,
§11), and the bad input each refuses without changing anything."""
import re

import pytest
from django.contrib.auth import get_user_model

from billing.models import CryptoQuote, Invoice
from billing.services.invoices import invoice_void

from ..conftest import (
    api_client,
    assert_problem,
    make_key,
    portal_member,
    portal_user,
    staff_client,
)
from .api_support import billing_state, client_as, open_invoice
from .crypto_support import USDC, chain_fixture, quote_for_invoice  # noqa: F401 - fixture

pytestmark = pytest.mark.django_db
FIELDS = {"payment_id", "currency", "network", "url", "amount_base_units", "decimals", "rate", "expires_at",
          "status", "address", "reference", "amount", "amount_cents", "invoice"}


def _pay(client, number, method):
    return client.post(f"/api/v1/invoices/{number}/pay", {"method": method}, format="json")


def test_pay_with_usdc_answers_a_quote_and_its_status_can_be_polled(alice, chain):
    invoice = open_invoice(alice, 1500)
    client = client_as(alice)
    response = _pay(client, invoice.number, "usdc")
    assert response.status_code == 201, response.content
    body = response.json()
    assert FIELDS <= set(body)
    assert (body["currency"], body["network"], body["amount_base_units"], body["decimals"], body["rate"],
            body["status"], body["amount"], body["invoice"]) == (
        "usdc", "solana", "15000000", 6, "1", "new", "15", invoice.number)
    assert body["url"].startswith(f"solana:{chain.merchant.pubkey()}?amount=15&spl-token=")
    assert f"reference={body['reference']}" in body["url"] and "memo=" + invoice.number in body["url"]

    quote = CryptoQuote.objects.get(pk=body["payment_id"])
    chain.pay(quote)
    chain.finalize()
    chain.scan(quote)
    polled = client.get(f"/api/v1/crypto-quotes/{body['payment_id']}").json()
    assert polled["status"] == "settled" and polled["received_base_units"] == "15000000"
    payments = client.get("/api/v1/payments").json()["results"]
    assert [(p["id"], p["method"], p["status"]) for p in payments] == [(polled["receipt_payment_id"], "usdc",
                                                                         "succeeded")]
    assert client.get(f"/api/v1/invoices/{invoice.number}").json()["status"] == "paid"


def test_pay_with_sol_uses_the_rate_and_a_read_key_cannot_pay(alice):
    invoice = open_invoice(alice, 2900)
    body = _pay(client_as(alice), invoice.number, "sol").json()
    assert (body["rate"], body["amount"], body["amount_base_units"], body["rate_source"]) == (
        "150", "0.193333334", "193333334", "fallback")
    reader = api_client("alice", make_key(alice, ["read"]))
    assert _pay(reader, invoice.number, "sol").status_code == 403


def test_bad_crypto_payments_are_refused_and_nothing_changes(alice, bob, settings):
    client = client_as(alice)
    payable = open_invoice(alice, 1500)
    void = invoice_void(invoice=open_invoice(alice), actor="test")
    bobs = open_invoice(bob, 1500)
    before = billing_state(alice)
    # trx and usdt answer quotes now: their bad input is in tests/billing/test_crypto_tron.py
    assert_problem(_pay(client, payable.number, "doge"), 400, "validation_error")
    assert_problem(_pay(client, void.number, "usdc"), 409, "invoice_not_payable")
    assert_problem(_pay(client, bobs.number, "usdc"), 404, "invoice_not_found")
    assert_problem(_pay(client, "AER-1999-000001", "sol"), 404, "invoice_not_found")
    settings.AEROLITH_SOL_FALLBACK_USD = ""
    assert_problem(_pay(client, payable.number, "sol"), 503, "rate_unavailable")
    settings.AEROLITH_SOLANA_MERCHANT = "not-a-wallet"
    problem = assert_problem(_pay(client, payable.number, "usdc"), 400)
    assert problem["errors"][0]["code"] == "method_unavailable"
    assert billing_state(alice) == before
    assert not CryptoQuote.objects.exists()


def test_crypto_quote_ids_of_others_or_nonsense_are_not_found(alice, bob):
    bobs = quote_for_invoice(bob, open_invoice(bob, 1500))
    client = client_as(alice)
    for raw in (bobs.pk, "abc", 0, -1, 2**70):
        assert_problem(client.get(f"/api/v1/crypto-quotes/{raw}"), 404)
    assert client_as(bob).get(f"/api/v1/crypto-quotes/{bobs.pk}").status_code == 200


# --- portal ------------------------------------------------------------------------------------

def test_portal_pays_an_invoice_with_usdc_through_a_qr_page(alice, chain):
    invoice = open_invoice(alice, 1500)
    client = portal_user(alice)
    page = client.get(f"/invoices/{invoice.number}")
    assert b"Pay with SOL" in page.content and b"Pay with USDC" in page.content
    response = client.post(f"/invoices/{invoice.number}/pay/crypto", {"currency": "usdc"})
    quote = CryptoQuote.objects.get(invoice=invoice)
    assert response.status_code == 302 and response["Location"] == f"/billing/crypto/{quote.pk}"
    page = client.get(response["Location"])
    text = page.content.decode()
    assert page.status_code == 200 and "<svg" in text and "15 USDC" in text
    assert quote.url.replace("&", "&amp;") in text and 'id="crypto-countdown"' in text
    assert re.search(r'data-seconds="(899|900)">(14:59|15:00)<', text)
    status = client.get(f"/billing/crypto/{quote.pk}/status")
    assert status.status_code == 200 and b"Expires in" in status.content

    chain.pay(quote)
    chain.scan(quote)
    assert b"waiting for the network" in client.get(f"/billing/crypto/{quote.pk}/status").content
    chain.finalize()
    chain.scan(quote)
    done = client.get(f"/billing/crypto/{quote.pk}/status").content.decode()
    assert "Paid. Invoice" in done and 'id="crypto-open"' not in done
    assert f"/billing/crypto/{quote.pk}" in client.get(f"/invoices/{invoice.number}").content.decode()


def test_portal_refuses_bad_crypto_requests(alice, bob):
    invoice = open_invoice(alice, 1500)
    client = portal_user(alice)
    for currency in ("", "btc", "doge"):
        response = client.post(f"/invoices/{invoice.number}/pay/crypto", {"currency": currency})
        assert response.status_code == 400 and b"Choose SOL, USDC, TRX or USDT" in response.content
    void = invoice_void(invoice=open_invoice(alice), actor="test")
    refused = client.post(f"/invoices/{void.number}/pay/crypto", {"currency": "usdc"})
    assert refused.status_code == 400 and b"owes nothing" in refused.content
    assert client.post("/invoices/AER-1999-000001/pay/crypto", {"currency": "usdc"}).status_code == 404
    bobs = quote_for_invoice(bob, open_invoice(bob, 1500))
    assert client.get(f"/billing/crypto/{bobs.pk}").status_code == 404
    assert client.get(f"/billing/crypto/{bobs.pk}/status").status_code == 404
    viewer = portal_member(alice, "viewer")
    assert viewer.post(f"/invoices/{invoice.number}/pay/crypto", {"currency": "usdc"}).status_code == 403
    assert not CryptoQuote.objects.filter(tenant=alice).exists()
    assert Invoice.objects.get(pk=invoice.pk).status == "open"


# --- staff console -----------------------------------------------------------------------------

def test_staff_see_quotes_and_transfers_with_explorer_links(alice, chain):
    quote = quote_for_invoice(alice, open_invoice(alice, 1500))
    record = chain.pay(quote, 20 * USDC)
    chain.finalize()
    chain.scan(quote)
    staff = get_user_model().objects.create_superuser(email="root@aerolith.test", password="x-long-password-1")
    client = staff_client(staff)
    listing = client.get("/admin/billing/cryptoquote/")
    assert listing.status_code == 200 and b"Settled" in listing.content
    detail = client.get(f"/admin/billing/cryptoquote/{quote.pk}/change/").content.decode()
    assert f"https://explorer.solana.com/tx/{record.signature}" in detail and "5.00 USD" in detail
    transfers = client.get("/admin/billing/chaintransfer/")
    assert transfers.status_code == 200 and b"explorer.solana.com" in transfers.content
    assert client.get("/admin/billing/cryptorate/").status_code == 200
    response = client.post("/admin/billing/cryptoquote/", {"action": "look_on_chain",
                                                           "_selected_action": [quote.pk]}, follow=True)
    assert b"Settled; received 20 USDC" in response.content
