"""Solana Pay end to end (SPEC §6): real transactions on LiteSVM, found by reference through
the product's RPC client, validated and applied to quotes — states, flags, settlement,
balance credits, and the chain's rough edges (failed transactions, wrong mints, retries,
pagination, big numbers)."""
from datetime import timedelta

import pytest
from solders.keypair import Keypair

from aerolith.errors import DomainError
from billing.models import (
    BalanceTransaction,
    ChainTransfer,
    CryptoQuote,
    Invoice,
    Payment,
    Subscription,
)
from billing.payments.solana import ChainUnavailable, solana_chain
from billing.services.collection import payment_method_attach, payment_method_make_default
from billing.services.crypto import cents_for, quote_refresh, quotes_scan, transfer_record
from tenants.models import AuditEvent, ScheduledJob
from tenants.services.clocks import tenant_clock_advance, tenant_clock_attach

from ..conftest import owner_principal
from .api_support import convert, open_invoice, subscription
from .crypto_support import SOL, USDC, chain_fixture, quote_for_invoice  # noqa: F401 - fixture

pytestmark = pytest.mark.django_db


def _balance(tenant) -> int:
    return Subscription.objects.get(tenant=tenant).balance_cents


def _credits(tenant) -> list[int]:
    return list(BalanceTransaction.objects.filter(tenant=tenant, kind="crypto_credit")
                .order_by("id").values_list("amount_cents", flat=True))


# --- exact payments ----------------------------------------------------------------------------

def test_exact_sol_payment_is_processing_when_confirmed_and_settles_when_finalized(alice, chain):
    invoice = open_invoice(alice, 1500)
    quote = quote_for_invoice(alice, invoice, "sol")
    # $15 at the test fallback rate of $150 per SOL: 0.1 SOL
    assert (quote.rate, quote.rate_source, int(quote.amount_base_units)) == (150, "fallback", SOL // 10)
    assert quote.status == "new" and quote.url.startswith(f"solana:{chain.merchant.pubkey()}?amount=0.1&")
    chain.pay(quote)

    quote = chain.scan(quote)
    assert quote.status == "processing" and int(quote.received_base_units) == SOL // 10
    assert Invoice.objects.get(pk=invoice.pk).status == "open"
    assert not Payment.objects.filter(invoice=invoice).exists()

    chain.finalize()
    quote = chain.scan(quote)
    assert quote.status == "settled" and quote.settled_at is not None
    assert not (quote.paid_partial or quote.paid_over or quote.paid_late)
    invoice.refresh_from_db()
    assert (invoice.status, invoice.amount_paid_cents, invoice.amount_due_cents) == ("paid", 1500, 0)
    payment = quote.payment
    assert (payment.method, payment.status, payment.amount_cents) == ("sol", "succeeded", 1500)
    transfer = ChainTransfer.objects.get(quote=quote)
    assert payment.gateway_reference == transfer.txid and transfer.finality == "finalized"
    assert transfer.sender == str(chain.payer.pubkey())
    assert _credits(alice) == []
    actions = set(AuditEvent.objects.filter(tenant=alice, action__startswith="crypto_quote")
                  .values_list("action", flat=True))
    assert actions == {"crypto_quote.created", "crypto_quote.processing", "crypto_quote.settled"}


def test_exact_usdc_payment_settles_the_invoice(alice, chain):
    invoice = open_invoice(alice, 2900)
    quote = quote_for_invoice(alice, invoice, "usdc")
    assert (quote.rate, int(quote.amount_base_units), quote.decimals) == (1, 29 * USDC, 6)
    assert f"spl-token={chain.usdc}" in quote.url
    record = chain.pay(quote)
    chain.finalize()
    quote = chain.scan(quote)
    assert quote.status == "settled" and quote.payment.method == "usdc"
    assert Invoice.objects.get(pk=invoice.pk).status == "paid"
    assert quote.payment.gateway_reference == record.signature


# --- under, over and late ----------------------------------------------------------------------

def test_under_payment_is_partial_and_a_top_up_crossing_the_amount_settles(alice, chain):
    invoice = open_invoice(alice, 1500)
    quote = quote_for_invoice(alice, invoice, "usdc")
    chain.pay(quote, 10 * USDC)
    chain.finalize()
    quote = chain.scan(quote)
    assert (quote.status, quote.paid_partial, quote.received_text) == ("new", True, "10")
    assert Invoice.objects.get(pk=invoice.pk).amount_paid_cents == 0 and _credits(alice) == []

    chain.pay(quote, 5 * USDC)  # the rest, split over a second transaction
    quote = chain.scan(quote)
    assert (quote.status, quote.paid_partial) == ("processing", False)
    chain.finalize()
    quote = chain.scan(quote)
    assert quote.status == "settled" and ChainTransfer.objects.filter(quote=quote).count() == 2
    assert Invoice.objects.get(pk=invoice.pk).status == "paid" and _credits(alice) == []


def test_a_partial_payment_left_at_expiry_goes_to_the_balance(alice, chain):
    tenant_clock_attach(tenant=alice, actor="test")
    invoice = open_invoice(alice, 1500)
    quote = quote_for_invoice(alice, invoice, "usdc")
    chain.pay(quote, 4_999_999)  # 4.999999 USDC: 499 whole cents
    chain.finalize()
    tenant_clock_advance(tenant=alice, actor="test", seconds=16 * 60)  # the expiry job scans first
    quote.refresh_from_db()
    assert (quote.status, quote.paid_partial, quote.paid_late) == ("expired", True, False)
    assert quote.credited_cents == 499 and _credits(alice) == [499]
    assert Invoice.objects.get(pk=invoice.pk).amount_due_cents == 1500


def test_over_payment_settles_and_credits_the_excess(alice, chain):
    invoice = open_invoice(alice, 1500)
    quote = quote_for_invoice(alice, invoice, "sol")
    chain.pay(quote, SOL // 10 + SOL // 100 + 7)  # 0.01 SOL too much ($1.50) and 7 lamports of dust
    chain.finalize()
    quote = chain.scan(quote)
    assert (quote.status, quote.paid_over, quote.paid_partial) == ("settled", True, False)
    assert quote.payment.amount_cents == 1500
    assert quote.credited_cents == 150 and _credits(alice) == [150] and _balance(alice) == 150


def test_a_payment_after_expiry_is_late_and_goes_to_the_balance(alice, chain):
    tenant_clock_attach(tenant=alice, actor="test")
    invoice = open_invoice(alice, 1500)
    quote = quote_for_invoice(alice, invoice, "usdc")
    tenant_clock_advance(tenant=alice, actor="test", seconds=15 * 60)
    quote.refresh_from_db()
    assert quote.status == "expired" and quote.credited_cents == 0
    assert ScheduledJob.objects.get(tenant=alice, kind="billing.crypto_quote_expire").status == "done"

    chain.pay(quote)
    quote = chain.scan(quote)
    assert (quote.status, quote.paid_late) == ("expired", True)
    assert ChainTransfer.objects.get(quote=quote).late and _credits(alice) == []  # not final yet
    chain.finalize()
    quote = chain.scan(quote)
    assert quote.status == "expired" and quote.credited_cents == 1500 and _credits(alice) == [1500]
    invoice.refresh_from_db()
    assert invoice.status == "open" and not Payment.objects.filter(invoice=invoice).exists()


def test_a_payment_sent_in_time_but_seen_at_expiry_is_not_late(alice, chain):
    tenant_clock_attach(tenant=alice, actor="test")
    quote = quote_for_invoice(alice, open_invoice(alice, 1500), "usdc")
    chain.pay(quote)  # nobody scanned before the expiry job
    chain.finalize()
    tenant_clock_advance(tenant=alice, actor="test", seconds=20 * 60)
    quote.refresh_from_db()
    assert (quote.status, quote.paid_late) == ("settled", False)


def test_an_invoice_paid_by_card_meanwhile_sends_the_crypto_to_the_balance(alice, chain):
    invoice = open_invoice(alice, 1500)
    quote = quote_for_invoice(alice, invoice, "usdc")
    payment_method_attach(tenant=alice, gateway_id="pm_card_visa", actor=owner_principal(alice))
    from billing.services.collection import invoice_pay

    assert invoice_pay(tenant=alice, number=invoice.number, method="card", actor="test").status == "succeeded"
    chain.pay(quote)
    chain.finalize()
    quote = chain.scan(quote)
    assert quote.status == "settled" and quote.payment is None and quote.applied_cents == 0
    assert quote.credited_cents == 1500 and _balance(alice) == 1500


def test_a_payment_never_final_makes_the_quote_invalid_and_late_finality_goes_to_the_balance(alice, chain):
    tenant_clock_attach(tenant=alice, actor="test")
    invoice = open_invoice(alice, 1500)
    quote = quote_for_invoice(alice, invoice, "usdc")
    chain.pay(quote)
    assert chain.scan(quote).status == "processing"
    tenant_clock_advance(tenant=alice, actor="test", seconds=16 * 60)  # expiry does not cut a payment short
    quote.refresh_from_db()
    assert quote.status == "processing"
    tenant_clock_advance(tenant=alice, actor="test", seconds=60 * 60)
    quotes_scan()
    quote.refresh_from_db()
    assert quote.status == "invalid" and quote.credited_cents == 0
    chain.finalize()
    quote = chain.scan(quote)
    assert quote.status == "invalid" and quote.credited_cents == 1500 and _balance(alice) == 1500
    assert Invoice.objects.get(pk=invoice.pk).status == "open"


# --- what must not count -----------------------------------------------------------------------

def test_a_token_of_another_mint_does_not_count(alice, chain):
    quote = quote_for_invoice(alice, open_invoice(alice, 1500), "usdc")
    fake = chain.ledger.create_mint(chain.payer, 6)  # "USDC" with the same decimals, wrong mint
    chain.ledger.mint_to(chain.payer, fake, chain.payer.pubkey(), 100 * USDC)
    record = chain.ledger.pay_token(chain.payer, fake, quote.address, 15 * USDC, 6, quote.reference)
    assert record.err is None
    chain.finalize()
    quote = chain.scan(quote)
    assert quote.status == "new" and int(quote.received_base_units) == 0
    assert not ChainTransfer.objects.filter(quote=quote).exists()


def test_sol_sent_to_a_usdc_quote_and_payments_without_reference_do_not_count(alice, chain):
    quote = quote_for_invoice(alice, open_invoice(alice, 1500), "usdc")
    chain.ledger.pay_sol(chain.payer, quote.address, SOL, quote.reference)  # right reference, wrong asset
    chain.pay(quote, reference=None)  # right asset, no reference: cannot be matched
    chain.finalize()
    quote = chain.scan(quote)
    assert quote.status == "new" and not ChainTransfer.objects.filter(quote=quote).exists()


def test_a_failed_transaction_is_listed_but_skipped(alice, chain):
    quote = quote_for_invoice(alice, open_invoice(alice, 1500), "usdc")
    poor = chain.ledger.funded_keypair(SOL)
    chain.ledger.mint_to(chain.payer, chain.usdc, poor.pubkey(), 1 * USDC)
    failed = chain.pay(quote, payer=poor)  # 15 USDC from a wallet holding 1: the token program refuses
    assert failed.err is not None
    chain.finalize()
    signatures = chain.ledger.rpc_getSignaturesForAddress(quote.reference, {"commitment": "confirmed"})
    assert [s["err"] is not None for s in signatures] == [True]
    quote = chain.scan(quote)
    assert quote.status == "new" and chain.ledger.calls["getTransaction"] == 0
    chain.pay(quote)
    chain.finalize()
    assert chain.scan(quote).status == "settled"


# --- once only ---------------------------------------------------------------------------------

def test_the_same_transaction_seen_twice_counts_once(alice, chain):
    invoice = open_invoice(alice, 1500)
    quote = quote_for_invoice(alice, invoice, "usdc")
    chain.pay(quote)
    chain.finalize()
    observed = solana_chain().transfers(reference=quote.reference, recipient=quote.address, mint=quote.token)
    for _ in range(3):
        transfer_record(quote_id=quote.pk, transfer=observed[0])
    quotes_scan()
    quotes_scan()
    quote.refresh_from_db()
    assert quote.status == "settled" and int(quote.received_base_units) == 15 * USDC
    assert ChainTransfer.objects.filter(quote=quote).count() == 1
    assert Payment.objects.filter(invoice=invoice).count() == 1
    assert Invoice.objects.get(pk=invoice.pk).amount_paid_cents == 1500


def test_two_workers_that_both_saw_the_transaction_count_it_once(alice, chain):
    """Worker A reads the chain, worker B reads and applies, then A applies what it read:
    the transfer is stored once (unique network, txid, position) under the quote's lock."""
    invoice = open_invoice(alice, 1500)
    quote = quote_for_invoice(alice, invoice, "usdc")
    chain.pay(quote, 20 * USDC)  # an over-payment, so a double count would also double the credit
    chain.finalize()
    seen_by_a = solana_chain().transfers(reference=quote.reference, recipient=quote.address, mint=quote.token)

    class Stale:
        def transfers(self, **kwargs):
            return seen_by_a

    quote_refresh(quote_id=quote.pk)  # worker B
    quote_refresh(quote_id=quote.pk, chain=Stale())  # worker A, late
    quote.refresh_from_db()
    assert quote.status == "settled" and quote.credited_cents == 500 and _credits(alice) == [500]
    assert Payment.objects.filter(invoice=invoice).count() == 1


def test_a_transaction_carrying_two_quotes_references_pays_only_the_first_to_record_it(alice, chain):
    first = quote_for_invoice(alice, open_invoice(alice, 1500), "usdc")
    second = quote_for_invoice(alice, open_invoice(alice, 1500), "usdc")
    ix_record = chain.pay(first)
    observed = solana_chain().transfers(reference=first.reference, recipient=first.address, mint=first.token)
    chain.finalize()
    chain.scan(first)
    transfer_record(quote_id=second.pk, transfer=observed[0])  # the same txid offered to another quote
    second.refresh_from_db()
    assert second.status == "new" and ChainTransfer.objects.get(txid=ix_record.signature).quote_id == first.pk


# --- the RPC's rough edges ---------------------------------------------------------------------

def test_rpc_429_and_timeouts_are_retried(alice, chain):
    quote = quote_for_invoice(alice, open_invoice(alice, 1500), "usdc")
    chain.pay(quote)
    chain.finalize()
    chain.ledger.fail_next("429", 2)
    chain.ledger.fail_next("timeout", 1, seconds=1.0)  # the client's timeout is 0.5 s
    quote = chain.scan(quote)
    assert quote.status == "settled" and quote.last_error == ""


def test_an_rpc_that_keeps_failing_changes_nothing_and_says_why(alice, chain):
    tenant_clock_attach(tenant=alice, actor="test")
    quote = quote_for_invoice(alice, open_invoice(alice, 1500), "usdc")
    chain.pay(quote)
    chain.finalize()
    chain.ledger.fail_next("500", 50)
    assert quotes_scan() == {"refreshed": 0, "failed": 1}
    quote.refresh_from_db()
    assert quote.status == "new" and "HTTP 500" in quote.last_error and "4 attempts" in quote.last_error
    # Past expiry the quote is still not expired while the chain cannot be read: the
    # payment may be there.
    tenant_clock_advance(tenant=alice, actor="test", seconds=16 * 60)
    quote.refresh_from_db()
    assert quote.status == "new"
    assert ScheduledJob.objects.get(tenant=alice, kind="billing.crypto_quote_expire").last_error
    chain.ledger.faults.clear()
    assert chain.scan(quote).status == "settled"


def test_every_page_of_signatures_is_walked(alice, chain):
    """The payment is the oldest of 1,001 signatures: it is on the second page of 1,000."""
    quote = quote_for_invoice(alice, open_invoice(alice, 1500), "usdc")
    chain.pay(quote)
    chain.ledger.inject_failed(quote.reference, 1000)
    chain.finalize()
    quote = chain.scan(quote)
    assert quote.status == "settled"
    assert chain.ledger.calls["getSignaturesForAddress"] == 2 and chain.ledger.calls["getTransaction"] == 1


def test_exactly_one_full_page_asks_for_the_next_one(alice, chain):
    quote = quote_for_invoice(alice, open_invoice(alice, 1500), "usdc")
    chain.pay(quote)
    chain.ledger.inject_failed(quote.reference, 999)
    chain.finalize()
    assert chain.scan(quote).status == "settled"
    assert chain.ledger.calls["getSignaturesForAddress"] == 2


def test_balances_above_2_53_are_exact(alice, chain):
    invoice = open_invoice(alice, 1500)
    quote = quote_for_invoice(alice, invoice, "sol")
    chain.ledger.set_lamports(chain.merchant.pubkey(), 2**60 + 3)  # a whale merchant: floats would round
    chain.pay(quote, SOL // 10 + 1)
    chain.finalize()
    quote = chain.scan(quote)
    assert int(quote.received_base_units) == SOL // 10 + 1 and quote.status == "settled"

    huge = quote_for_invoice(alice, open_invoice(alice, 1500), "usdc")
    chain.ledger.mint_to(chain.payer, chain.usdc, chain.payer.pubkey(), 2**62)
    excess = 2**53 + 1
    chain.pay(huge, 15 * USDC + excess)
    chain.finalize()
    huge = chain.scan(huge)
    assert int(huge.received_base_units) == 15 * USDC + excess
    assert huge.credited_cents == excess // 10**4 == cents_for(excess, huge.rate, 6)
    assert _balance(alice) == excess // 10**4


# --- settlement ends dunning -------------------------------------------------------------------

def test_paying_the_overdue_invoice_with_usdc_restores_service(alice, chain):
    convert(alice)
    declined = payment_method_attach(tenant=alice, gateway_id="pm_card_chargeDeclined",
                                     actor=owner_principal(alice))
    payment_method_make_default(tenant=alice, method_id=declined.pk, actor=owner_principal(alice))
    period_end = subscription(alice).current_period_end
    tenant_clock_advance(tenant=alice, actor="test", to=period_end + timedelta(days=8, seconds=1))
    assert subscription(alice).status == "suspended"
    renewal = Invoice.objects.get(tenant=alice, reason="renewal")
    assert renewal.status == "open"

    quote = quote_for_invoice(alice, renewal, "usdc")
    chain.pay(quote)
    chain.finalize()
    quote = chain.scan(quote)
    assert quote.status == "settled"
    renewal.refresh_from_db()
    assert renewal.status == "paid"
    sub = subscription(alice)
    assert sub.status == "active" and sub.past_due_since is None and sub.suspended_at is None


def test_a_quote_for_an_invoice_that_owes_nothing_is_refused(alice, chain):
    invoice = open_invoice(alice, 1500)
    quote = quote_for_invoice(alice, invoice, "usdc")
    chain.pay(quote)
    chain.finalize()
    chain.scan(quote)
    with pytest.raises(DomainError) as refused:
        quote_for_invoice(alice, Invoice.objects.get(pk=invoice.pk), "sol")
    assert refused.value.code == "invoice_not_payable"
    assert CryptoQuote.objects.filter(invoice=invoice).count() == 1


def test_the_chain_interface_reports_an_unreachable_rpc(settings):
    settings.AEROLITH_SOLANA_RPC_URL = "http://127.0.0.1:9"
    settings.AEROLITH_SOLANA_RPC_RETRIES = 1
    settings.AEROLITH_SOLANA_RPC_BACKOFF = 0.01
    with pytest.raises(ChainUnavailable) as error:
        solana_chain().transfers(reference=str(Keypair().pubkey()), recipient=str(Keypair().pubkey()), mint=None)
    assert "connection failed" in error.value.detail and "2 attempts" in error.value.detail
