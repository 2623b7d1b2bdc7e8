"""Sending (SPEC §6): refunds of over-payments on chain, on LiteSVM through the product's
RPC client — built, signed, persisted, then broadcast; retries send the same bytes; a
refund is made once; keys sealed at rest and never in the database or logs in clear."""
import base64
import io
import logging
import os

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from solders.keypair import Keypair
from solders.pubkey import Pubkey

from aerolith.errors import Conflict
from billing.models import BalanceTransaction, OutgoingTransaction, SigningKey, Subscription
from billing.payments.solana_send import SolanaSender
from billing.services.sending import (
    SigningKeyUnavailable,
    outgoing_confirm_pass,
    outgoing_send,
    overpayment_refund,
)
from billing.services.wallet import signing_key_import
from tests.fakes.solana_rpc import b58encode

from .api_support import open_invoice
from .crypto_support import SOL, USDC, chain_fixture, quote_for_invoice  # noqa: F401 - fixture

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _secret_keys(settings):
    settings.AEROLITH_SECRET_KEYS = base64.b64encode(os.urandom(32)).decode()


def _balance(tenant) -> int:
    return Subscription.objects.get(tenant=tenant).balance_cents


def _overpaid(tenant, chain, currency, extra):
    invoice = open_invoice(tenant, 1500)
    quote = quote_for_invoice(tenant, invoice, currency)
    chain.pay(quote, int(quote.amount_base_units) + extra)
    chain.finalize()
    quote = chain.scan(quote)
    assert (quote.status, quote.paid_over) == ("settled", True)
    return quote


def _import_merchant(chain) -> SigningKey:
    return signing_key_import(network="solana", secret_text=str(chain.merchant), actor="test")


def test_sol_refund_of_an_over_payment_reaches_the_payer_and_takes_the_credit_back(alice, chain):
    _import_merchant(chain)
    quote = _overpaid(alice, chain, "sol", SOL // 100)  # 0.01 SOL ($1.50) too much
    assert _balance(alice) == 150
    payer_before = chain.ledger.svm.get_balance(chain.payer.pubkey())
    merchant_before = chain.ledger.svm.get_balance(chain.merchant.pubkey())

    outgoing = overpayment_refund(quote=quote, actor="staff@test")
    assert outgoing.status == "broadcast" and outgoing.attempts == 1 and outgoing.fee_estimate == 5000
    assert (outgoing.to_address, int(outgoing.amount_base_units)) == (str(chain.payer.pubkey()), SOL // 100)
    assert chain.ledger.svm.get_balance(chain.payer.pubkey()) - payer_before == SOL // 100
    assert merchant_before - chain.ledger.svm.get_balance(chain.merchant.pubkey()) == SOL // 100 + 5000
    assert _balance(alice) == 0 and outgoing.balance_debit_cents == 150
    assert BalanceTransaction.objects.filter(tenant=alice, kind="crypto_refund").get().amount_cents == -150

    assert outgoing_confirm_pass() == {"confirmed": 0, "failed": 0, "pending": 1}  # confirmed, not final
    chain.finalize()
    assert outgoing_confirm_pass()["confirmed"] == 1
    outgoing.refresh_from_db()
    assert outgoing.status == "confirmed" and outgoing.confirmed_at is not None


def test_usdc_refund_goes_from_the_merchant_token_account_to_the_payers(alice, chain):
    _import_merchant(chain)
    quote = _overpaid(alice, chain, "usdc", 2 * USDC + 7)
    payer_before = chain.ledger.token_balance(chain.payer.pubkey(), chain.usdc)
    merchant_before = chain.ledger.token_balance(chain.merchant.pubkey(), chain.usdc)
    outgoing = overpayment_refund(quote=quote, actor="staff@test")
    assert outgoing.status == "broadcast" and outgoing.token == str(chain.usdc)
    assert chain.ledger.token_balance(chain.payer.pubkey(), chain.usdc) - payer_before == 2 * USDC + 7
    assert merchant_before - chain.ledger.token_balance(chain.merchant.pubkey(), chain.usdc) == 2 * USDC + 7
    assert _balance(alice) == 0 and outgoing.balance_debit_cents == 200


def test_a_retry_broadcasts_the_identical_bytes_and_moves_money_once(alice, chain):
    _import_merchant(chain)
    quote = _overpaid(alice, chain, "sol", SOL // 100)
    payer_before = chain.ledger.svm.get_balance(chain.payer.pubkey())

    class NodeDownAtBroadcast(SolanaSender):
        def broadcast(self, signed_bytes):
            chain.ledger.fail_next("500", 10)  # signed and persisted, then the node fails
            try:
                return super().broadcast(signed_bytes)
            finally:
                chain.ledger.faults.clear()

    flaky = NodeDownAtBroadcast(endpoint=chain.server.url, timeout=0.5, retries=3, backoff=0.01)
    outgoing = overpayment_refund(quote=quote, actor="staff@test", sender=flaky)
    assert outgoing.status == "signed" and outgoing.attempts == 1 and "HTTP 500" in outgoing.last_error
    signed, signature = bytes(outgoing.signed_bytes), outgoing.txid

    outgoing = outgoing_send(outgoing_id=outgoing.pk)
    assert outgoing.status == "broadcast" and outgoing.txid == signature and bytes(outgoing.signed_bytes) == signed
    outgoing = outgoing_send(outgoing_id=outgoing.pk)  # once more: the node already has it
    assert outgoing.status == "broadcast" and outgoing.attempts == 3 and outgoing.last_error == ""
    assert chain.ledger.sent_raw == [signed, signed]
    transfers = [r for r in chain.ledger.records if r.signature == signature]
    assert len(transfers) == 1 and transfers[0].err is None
    assert chain.ledger.svm.get_balance(chain.payer.pubkey()) - payer_before == SOL // 100


def test_a_refund_is_made_once(alice, chain):
    _import_merchant(chain)
    quote = _overpaid(alice, chain, "sol", SOL // 100)
    overpayment_refund(quote=quote, actor="staff@test")
    with pytest.raises(Conflict) as refused:
        overpayment_refund(quote=quote, actor="staff@test")
    assert refused.value.code == "refund_exists"
    assert OutgoingTransaction.objects.filter(quote=quote).count() == 1 and _balance(alice) == 0


def test_refund_refused_when_not_over_paid_or_credit_already_used(alice, chain):
    _import_merchant(chain)
    exact = _overpaid(alice, chain, "usdc", 1)  # one unit over: worth no whole cent
    exact.paid_over = False
    exact.save(update_fields=["paid_over"])
    with pytest.raises(Conflict, match="not a settled over-payment"):
        overpayment_refund(quote=exact, actor="staff@test")
    quote = _overpaid(alice, chain, "sol", SOL // 100)
    sub = Subscription.objects.get(tenant=alice)
    sub.balance_cents = 0  # the credit was used on another invoice
    sub.save(update_fields=["balance_cents"])
    with pytest.raises(Conflict) as refused:
        overpayment_refund(quote=quote, actor="staff@test")
    assert refused.value.code == "balance_too_low" and not OutgoingTransaction.objects.exists()


def test_a_wrong_secret_box_key_fails_loudly_and_nothing_is_sent(alice, chain, settings):
    _import_merchant(chain)
    quote = _overpaid(alice, chain, "sol", SOL // 100)
    settings.AEROLITH_SECRET_KEYS = base64.b64encode(os.urandom(32)).decode()
    sent = len(chain.ledger.records)
    with pytest.raises(SigningKeyUnavailable, match="not in AEROLITH_SECRET_KEYS"):
        overpayment_refund(quote=quote, actor="staff@test")
    assert len(chain.ledger.records) == sent and not OutgoingTransaction.objects.exists()
    assert _balance(alice) == 150


def test_no_secret_in_the_database_or_the_logs_in_clear(alice, chain, caplog, capsys):
    caplog.set_level(logging.DEBUG)
    secret_b58 = str(chain.merchant)
    raw = bytes(chain.merchant)
    key = _import_merchant(chain)
    quote = _overpaid(alice, chain, "sol", SOL // 100)
    overpayment_refund(quote=quote, actor="staff@test")
    with connection.cursor() as cursor:
        for table in (SigningKey._meta.db_table, OutgoingTransaction._meta.db_table, "tenants_auditevent"):
            cursor.execute(f"SELECT * FROM {table}")  # noqa: S608 - fixed table names
            dump = repr(cursor.fetchall()).encode()
            for needle in (secret_b58.encode(), raw[:32].hex().encode(), base64.b64encode(raw[:32]),
                           raw[:32]):
                assert needle not in dump, table
    assert key.secret_sealed.startswith("ab1:") and secret_b58 not in key.secret_sealed
    out = capsys.readouterr()
    for text in (caplog.text, out.out, out.err):
        assert secret_b58 not in text and raw[:32].hex() not in text


def test_wallet_commands_import_generate_show_and_bad_input(chain, settings):
    secret_b58 = str(chain.merchant)
    out = io.StringIO()
    call_command("wallet", "import-key", "--network", "solana", "--label", "merchant",
                 stdin=io.StringIO(secret_b58 + "\n"), stdout=out)
    assert str(chain.merchant.pubkey()) in out.getvalue() and secret_b58 not in out.getvalue()

    out = io.StringIO()
    call_command("wallet", "generate-key", "--network", "solana", stdout=out)
    generated = out.getvalue().strip()
    assert Pubkey.from_string(generated) and SigningKey.objects.filter(address=generated).exists()

    out = io.StringIO()
    call_command("wallet", "show", stdout=out)
    shown = out.getvalue()
    assert str(chain.merchant.pubkey()) in shown and generated in shown and secret_b58 not in shown
    assert "ab1:" not in shown

    count = SigningKey.objects.count()
    with pytest.raises(CommandError, match="already stored"):
        call_command("wallet", "import-key", "--network", "solana", stdin=io.StringIO(secret_b58))
    with pytest.raises(CommandError, match="not a Solana secret key") as bad:
        call_command("wallet", "import-key", "--network", "solana", stdin=io.StringIO("notakey0OIl"))
    assert "notakey0OIl" not in str(bad.value)
    tampered = b58encode(bytes(Keypair())[:32] + bytes(chain.merchant.pubkey()))  # halves that do not match
    with pytest.raises(CommandError, match="not a Solana secret key"):
        call_command("wallet", "import-key", "--network", "solana", stdin=io.StringIO(tampered))
    with pytest.raises(CommandError, match="No secret key"):
        call_command("wallet", "import-key", "--network", "solana", stdin=io.StringIO(""))
    with pytest.raises(CommandError, match="for solana only"):
        call_command("wallet", "generate-key", "--network", "tron")
    assert SigningKey.objects.count() == count


def test_wallet_import_xpub_checks_and_prints_the_env_line(settings):
    out = io.StringIO()
    call_command("wallet", "import-xpub", "--network", "tron", settings.TRON_TEST_XPUB, stdout=out)
    assert f"AEROLITH_TRON_XPUB={settings.TRON_TEST_XPUB}" in out.getvalue() and " T" in out.getvalue()
    with pytest.raises(CommandError, match="not a BIP32 extended public key"):
        call_command("wallet", "import-xpub", "--network", "tron", "xpub-nonsense")
    with pytest.raises(CommandError, match="PRIVATE"):
        call_command("wallet", "import-xpub", "--network", "tron", "xprv9s21ZrQH143K3QTDL4LXw2F7HEK3wJUD2nW2")
    with pytest.raises(CommandError, match="--network tron"):
        call_command("wallet", "import-xpub", "--network", "solana", settings.TRON_TEST_XPUB)


def test_a_refund_that_fails_on_chain_restores_the_credit_and_can_be_made_again(alice, chain):
    _import_merchant(chain)
    quote = _overpaid(alice, chain, "sol", SOL // 100)
    outgoing = overpayment_refund(quote=quote, actor="staff@test")
    record = chain.ledger.by_signature[outgoing.txid]
    record.err = {"InstructionError": [0, {"Custom": 1}]}  # as if it had landed and failed
    assert outgoing_confirm_pass()["failed"] == 1
    outgoing.refresh_from_db()
    assert outgoing.status == "failed" and "Failed on chain" in outgoing.last_error
    assert _balance(alice) == 150  # the credit is back
    again = overpayment_refund(quote=quote, actor="staff@test")
    assert again.pk != outgoing.pk and again.status == "broadcast" and _balance(alice) == 0


def test_console_shows_addresses_only_and_its_actions_refund_and_broadcast_again(alice, chain):
    from .test_admin import console_for, reverse, staff_user

    key = _import_merchant(chain)
    quote = _overpaid(alice, chain, "sol", SOL // 100)
    console = console_for(staff_user())
    page = console.get(reverse("admin:billing_signingkey_changelist")).content.decode()
    assert key.address in page and "ab1:" not in page and str(chain.merchant) not in page
    detail = console.get(reverse("admin:billing_signingkey_change", [key.pk])).content.decode()
    assert key.address in detail and key.secret_sealed not in detail and "ab1:" not in detail

    response = console.post(reverse("admin:billing_cryptoquote_changelist"),
                            {"action": "refund_excess_on_chain", "_selected_action": [quote.pk]}, follow=True)
    assert "taken back from the balance" in response.content.decode()
    outgoing = OutgoingTransaction.objects.get(quote=quote)
    assert outgoing.status == "broadcast"
    listing = console.get(reverse("admin:billing_outgoingtransaction_changelist")).content.decode()
    assert f"https://explorer.solana.com/tx/{outgoing.txid}" in listing
    console.get(reverse("admin:billing_outgoingtransaction_change", [outgoing.pk])).content.decode()
    response = console.post(reverse("admin:billing_outgoingtransaction_changelist"),
                            {"action": "broadcast_again", "_selected_action": [outgoing.pk]}, follow=True)
    assert "after 2 attempt(s)" in response.content.decode()
    outgoing.refresh_from_db()
    assert outgoing.attempts == 2 and len([r for r in chain.ledger.records if r.signature == outgoing.txid]) == 1


class _DroppingSender(SolanaSender):
    """A node that accepts the transaction and then drops it: nothing ever lands."""

    def broadcast(self, signed_bytes):
        from solders.transaction import VersionedTransaction

        return str(VersionedTransaction.from_bytes(bytes(signed_bytes)).signatures[0])


def _dropping(chain) -> SolanaSender:
    return _DroppingSender(endpoint=chain.server.url, timeout=0.5, retries=3, backoff=0.01)


def test_a_refund_whose_blockhash_expires_unlanded_is_failed_with_the_credit_back_and_made_again(alice, chain):
    _import_merchant(chain)
    quote = _overpaid(alice, chain, "sol", SOL // 100)
    payer_before = chain.ledger.svm.get_balance(chain.payer.pubkey())
    dropping = _dropping(chain)
    outgoing = overpayment_refund(quote=quote, actor="staff@test", sender=dropping)
    assert outgoing.status == "broadcast" and _balance(alice) == 0
    last_valid = outgoing.last_valid_block_height
    assert last_valid == chain.ledger.slot + 150  # what getLatestBlockhash answered when signing

    chain.ledger.advance_blocks(last_valid - chain.ledger.slot + 1)  # finalize() makes slot - 1 final
    chain.finalize()  # the finalized height is exactly the last valid one
    assert chain.ledger.rpc("getBlockHeight", [{"commitment": "finalized"}]) == last_valid
    assert outgoing_confirm_pass(sender=dropping) == {"confirmed": 0, "failed": 0, "pending": 1}
    outgoing.refresh_from_db()
    assert outgoing.status == "broadcast" and _balance(alice) == 0  # still valid: it may yet land

    chain.ledger.advance_blocks(2)
    assert outgoing_confirm_pass(sender=dropping)["pending"] == 1  # past it, but not finalized yet
    chain.finalize()
    assert outgoing_confirm_pass(sender=dropping) == {"confirmed": 0, "failed": 1, "pending": 0}
    outgoing.refresh_from_db()
    assert outgoing.status == "failed" and "Expired unlanded" in outgoing.last_error
    assert _balance(alice) == 150  # the debit is returned, as for a failure on chain
    restored = BalanceTransaction.objects.filter(tenant=alice, kind="crypto_credit").order_by("-id").first()
    assert restored.amount_cents == 150 and "expired without landing" in restored.description
    assert outgoing.txid not in chain.ledger.by_signature
    assert chain.ledger.svm.get_balance(chain.payer.pubkey()) == payer_before  # nothing moved

    again = overpayment_refund(quote=quote, actor="staff@test")
    assert again.pk != outgoing.pk and again.status == "broadcast" and _balance(alice) == 0
    chain.finalize()
    assert outgoing_confirm_pass()["confirmed"] == 1
    assert chain.ledger.svm.get_balance(chain.payer.pubkey()) - payer_before == SOL // 100


def test_a_refund_not_yet_seen_stays_pending_while_its_blockhash_is_valid(alice, chain):
    _import_merchant(chain)
    quote = _overpaid(alice, chain, "sol", SOL // 100)
    dropping = _dropping(chain)
    outgoing = overpayment_refund(quote=quote, actor="staff@test", sender=dropping)
    chain.ledger.advance_blocks(100)
    chain.finalize()
    for _ in range(2):
        assert outgoing_confirm_pass(sender=dropping) == {"confirmed": 0, "failed": 0, "pending": 1}
    outgoing.refresh_from_db()
    assert outgoing.status == "broadcast" and outgoing.last_error == "" and _balance(alice) == 0


def test_a_landed_refund_is_never_failed_even_past_its_last_valid_height(alice, chain):
    _import_merchant(chain)
    quote = _overpaid(alice, chain, "sol", SOL // 100)
    outgoing = overpayment_refund(quote=quote, actor="staff@test")  # lands, confirmed (not final)

    class HeightFarAhead(SolanaSender):
        def block_height(self):
            return outgoing.last_valid_block_height + 1000

    ahead = HeightFarAhead(endpoint=chain.server.url, timeout=0.5, retries=3, backoff=0.01)
    assert outgoing_confirm_pass(sender=ahead) == {"confirmed": 0, "failed": 0, "pending": 1}
    chain.ledger.advance_blocks(200)
    chain.finalize()
    assert outgoing_confirm_pass() == {"confirmed": 1, "failed": 0, "pending": 0}
    outgoing.refresh_from_db()
    assert outgoing.status == "confirmed" and _balance(alice) == 0


def test_a_refund_signed_before_the_height_was_recorded_is_never_expired(alice, chain):
    _import_merchant(chain)
    quote = _overpaid(alice, chain, "sol", SOL // 100)
    dropping = _dropping(chain)
    outgoing = overpayment_refund(quote=quote, actor="staff@test", sender=dropping)
    OutgoingTransaction.objects.filter(pk=outgoing.pk).update(last_valid_block_height=None)
    chain.ledger.advance_blocks(500)
    chain.finalize()
    assert outgoing_confirm_pass(sender=dropping) == {"confirmed": 0, "failed": 0, "pending": 1}
    assert chain.ledger.calls["getBlockHeight"] == 0 and _balance(alice) == 0
