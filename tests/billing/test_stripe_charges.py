"""Invoices paid by card through the Stripe gateway and the local Stripe fake (SPEC §6):
off-session PaymentIntents whose idempotency key is the invoice attempt's (a repeated
attempt never charges twice), Stripe's test cards feeding dunning (soft declines retried,
hard ones not), and 3-D Secure: a charge that requires action is recorded as such, the
customer confirms it on the bank's page from the portal, and the webhook (or the return)
pays the invoice and restores service."""
import json
import socket

import pytest
from django.core import mail
from django.db import transaction

from billing.models import Invoice, Payment
from billing.services.collection import invoice_collect
from tenants.models import ScheduledJob

from ..conftest import api_client, assert_problem, jwt_for, portal_user
from .lifecycle import (
    DAY,
    active_since,
    advance,
    at,
    audit_actions,
    card_attach,
    invoices,
    subscription_of,
)
from .stripe_support import (
    browser_post,
    customer_of,
    deliver,
    deliver_outbox,
    event_of,
    local_path,
    open_invoice,
    stripe_fake_running,
)

CONVERTED = at(2027, 3, 1)
DUE = at(2027, 4, 1)

_stripe = pytest.fixture(name="stripe_fake")(stripe_fake_running)


def _intents(fake, invoice: Invoice) -> list[dict]:
    """The PaymentIntents the fake made for `invoice`, from its events, by id."""
    seen = {}
    for event in fake.events:
        thing = event["data"]["object"]
        ours = thing.get("object") == "payment_intent"
        if ours and thing["metadata"].get("invoice_id") == str(invoice.pk):
            seen[thing["id"]] = thing
    return list(seen.values())


def _attempts(invoice) -> list[tuple]:
    return list(Payment.objects.filter(invoice=invoice).order_by("id")
                .values_list("attempt", "status", "decline_code", "hard_decline"))


def _failing_renewal(tenant, card: str) -> Invoice:
    active_since(tenant, "starter", CONVERTED, card="pm_card_mastercard")
    card_attach(tenant, card)
    advance(tenant, to=DUE)
    (invoice,) = invoices(tenant, reason="renewal")
    return invoice


@pytest.mark.django_db
def test_trial_conversion_and_renewal_are_charged_off_session_with_a_key_per_attempt(alice, stripe_fake):
    active_since(alice, "starter", CONVERTED)
    advance(alice, to=DUE)
    first, renewal = invoices(alice)
    assert (first.reason, renewal.reason) == ("trial_conversion", "renewal")
    for invoice in (first, renewal):
        invoice.refresh_from_db()
        assert invoice.status == "paid"
        (payment,) = Payment.objects.filter(invoice=invoice)
        assert payment.idempotency_key == f"invoice-{invoice.pk}-attempt-0"
        (intent,) = _intents(stripe_fake, invoice)
        assert payment.gateway_reference == intent["id"] and intent["status"] == "succeeded"
        assert intent["amount"] == 2900 and intent["currency"] == "usd"
        assert intent["customer"] == customer_of(alice)
        assert intent["metadata"] == {"tenant": "alice", "idempotency_key": payment.idempotency_key,
                                      "invoice_id": str(invoice.pk), "invoice_number": invoice.number,
                                      "attempt": "0"}
        assert intent["payment_method"] == payment.payment_method.gateway_id
    assert subscription_of(alice).status == "active"

    # the succeeded webhooks arrive: nothing is received twice
    before = [(i.amount_paid_cents, i.status) for i in invoices(alice)]
    answers = deliver_outbox(stripe_fake, types=("payment_intent.succeeded",))
    assert [a["status"] for a in answers] == ["processed", "processed"]
    assert [(i.amount_paid_cents, i.status) for i in invoices(alice)] == before
    assert Payment.objects.filter(tenant=alice).count() == 2


@pytest.mark.django_db
def test_a_repeated_attempt_returns_the_first_payment_intent_and_charges_once(alice, stripe_fake):
    _failing_renewal(alice, "pm_card_visa")  # paid at once, attempt 0
    (invoice,) = invoices(alice, reason="renewal")
    (payment,) = Payment.objects.filter(invoice=invoice)
    # the job runs again (a redelivered task): the payment on record answers
    assert invoice_collect(invoice_id=invoice.pk, attempt=0) is None  # paid: nothing to do
    assert len(_intents(stripe_fake, invoice)) == 1

    # an attempt whose transaction is lost after Stripe charged is repeated with the same key:
    # Stripe answers with the first PaymentIntent, nothing is charged again
    other = open_invoice(alice)
    with pytest.raises(RuntimeError), transaction.atomic():
        lost = invoice_collect(invoice_id=other.pk, attempt=0)
        assert lost.status == "succeeded"
        raise RuntimeError("the worker died before commit")
    assert not Payment.objects.filter(invoice=other).exists()
    again = invoice_collect(invoice_id=other.pk, attempt=0)
    assert again.status == "succeeded" and again.gateway_reference == lost.gateway_reference
    assert len(_intents(stripe_fake, other)) == 1
    charges = [e for e in stripe_fake.events_of("payment_intent.succeeded")
               if e["data"]["object"]["metadata"]["invoice_id"] == str(other.pk)]
    assert len(charges) == 1
    other.refresh_from_db()
    assert (other.status, other.amount_paid_cents) == ("paid", 2900)


@pytest.mark.django_db
def test_paying_from_the_api_charges_through_stripe(bob, stripe_fake):
    card_attach(bob, "pm_card_visa")
    invoice = open_invoice(bob)
    client = api_client("bob", jwt_for("bob", "owner@bob.test"))
    response = client.post(f"/api/v1/invoices/{invoice.number}/pay", {"method": "card"}, format="json")
    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["status"], body["invoice"]["status"], body["action_url"]) == ("succeeded", "paid", "")
    payment = Payment.objects.get(pk=body["payment_id"])
    assert payment.idempotency_key == f"invoice-{invoice.pk}-pay-1"
    (intent,) = _intents(stripe_fake, invoice)
    assert intent["id"] == payment.gateway_reference and intent["status"] == "succeeded"


@pytest.mark.django_db
def test_a_soft_decline_is_retried_by_dunning_through_stripe(alice, stripe_fake):
    invoice = _failing_renewal(alice, "pm_card_chargeDeclinedInsufficientFunds")
    assert _attempts(invoice) == [(0, "failed", "insufficient_funds", False)]
    payment = Payment.objects.get(invoice=invoice)
    assert payment.failure_message == "Your card has insufficient funds."
    assert subscription_of(alice).status == "past_due"
    retries = ScheduledJob.objects.filter(tenant=alice, kind="billing.invoice_charge", status="pending")
    assert retries.count() == 4
    (intent,) = _intents(stripe_fake, invoice)
    assert intent["status"] == "requires_payment_method"
    assert intent["last_payment_error"]["decline_code"] == "insufficient_funds"

    advance(alice, to=DUE + DAY)  # retry 1, same card, declined again: a new PaymentIntent
    assert _attempts(invoice)[-1] == (1, "failed", "insufficient_funds", False)
    keys = sorted(i["metadata"]["idempotency_key"] for i in _intents(stripe_fake, invoice))
    assert keys == [f"invoice-{invoice.pk}-attempt-0", f"invoice-{invoice.pk}-attempt-1"]

    card_attach(alice, "pm_card_visa")  # a working card before retry 2
    advance(alice, to=DUE + 3 * DAY)
    assert _attempts(invoice)[-1] == (2, "succeeded", "", False)
    invoice.refresh_from_db()
    assert invoice.status == "paid" and subscription_of(alice).status == "active"

    # the payment_failed and succeeded webhooks change nothing more
    deliver_outbox(stripe_fake, types=("payment_intent.payment_failed", "payment_intent.succeeded"))
    assert [s for _a, s, _c, _h in _attempts(invoice)] == ["failed", "failed", "succeeded"]
    invoice.refresh_from_db()
    assert invoice.amount_paid_cents == 2900


@pytest.mark.django_db
@pytest.mark.parametrize("card, code", [("pm_card_chargeDeclinedFraudulent", "fraudulent"),
                                        ("pm_card_chargeDeclinedStolenCard", "stolen_card"),
                                        ("pm_card_chargeDeclinedExpiredCard", "expired_card")])
def test_a_hard_decline_is_not_retried(alice, stripe_fake, card, code):
    invoice = _failing_renewal(alice, card)
    assert _attempts(invoice) == [(0, "failed", code, True)]
    advance(alice, to=DUE + 3 * DAY)
    assert _attempts(invoice) == [(0, "failed", code, True)]  # the retries were skipped
    assert audit_actions(alice).count("invoice.retry_skipped") == 2
    assert len(_intents(stripe_fake, invoice)) == 1
    assert subscription_of(alice).status == "past_due"


@pytest.mark.django_db
def test_3ds_requires_action_then_confirmation_page_then_webhook_pays_and_restores(
        alice, stripe_fake, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        invoice = _failing_renewal(alice, "pm_card_authenticationRequired")
    (payment,) = Payment.objects.filter(invoice=invoice)
    confirm_url = f"http://alice.aerolith.localhost:8000/invoices/{invoice.number}/confirm"
    assert (payment.status, payment.decline_code, payment.action_url) == (
        "requires_action", "authentication_required", confirm_url)
    assert subscription_of(alice).status == "past_due"
    assert confirm_url in mail.outbox[-1].body  # the notice says where to confirm
    advance(alice, to=DUE + 7 * DAY)  # nobody confirms: the retries need action too; suspended
    assert subscription_of(alice).status == "suspended"
    assert {s for _a, s, _c, _h in _attempts(invoice)} == {"requires_action"}

    client = portal_user(alice)
    page = client.get(f"/invoices/{invoice.number}")
    assert "Confirm the payment" in page.content.decode()
    page = client.get(f"/invoices/{invoice.number}/confirm")
    assert page.status_code == 200 and "$29.00" in page.content.decode()
    response = client.post(f"/invoices/{invoice.number}/confirm")
    assert response.status_code == 302
    newest = Payment.objects.filter(invoice=invoice).order_by("-id").first()
    assert response["Location"] == f"{stripe_fake.url}/3ds/{newest.gateway_reference}"

    start = len(stripe_fake.outbox)
    status, back = browser_post(response["Location"], {"action": "complete"})
    assert status == 303
    assert back.startswith(f"http://alice.aerolith.localhost:8000/invoices/{invoice.number}/confirm/return?")
    (answer,) = deliver_outbox(stripe_fake, start, types=("payment_intent.succeeded",))
    assert answer["status"] == "processed"
    newest.refresh_from_db()
    invoice.refresh_from_db()
    assert newest.status == "succeeded" and newest.action_url == ""
    assert (invoice.status, invoice.amount_paid_cents) == ("paid", 2900)
    assert subscription_of(alice).status == "active"

    # back on the portal: the return page finds it paid
    response = client.get(local_path(back), follow=True)
    assert "is paid" in response.content.decode()
    assert Payment.objects.filter(invoice=invoice, status="succeeded").count() == 1


@pytest.mark.django_db
def test_3ds_completed_by_the_return_page_before_any_webhook(bob, stripe_fake):
    card_attach(bob, "pm_card_authenticationRequired")
    invoice = open_invoice(bob)
    client = portal_user(bob)
    response = client.post(f"/invoices/{invoice.number}/pay")
    assert response.status_code == 302 and response["Location"] == f"/invoices/{invoice.number}/confirm"
    response = client.post(f"/invoices/{invoice.number}/confirm")
    status, back = browser_post(response["Location"], {"action": "complete"})
    response = client.get(local_path(back))
    assert response.status_code == 302 and response["Location"] == f"/invoices/{invoice.number}"
    invoice.refresh_from_db()
    assert invoice.status == "paid"
    # then the webhooks arrive, older than what the return page read: nothing changes
    answers = deliver_outbox(stripe_fake)
    assert {a["status"] for a in answers} == {"processed"}
    invoice.refresh_from_db()
    assert (invoice.status, invoice.amount_paid_cents) == ("paid", 2900)
    assert list(Payment.objects.filter(invoice=invoice).values_list("status", flat=True)) == ["succeeded"]


@pytest.mark.django_db
def test_3ds_failed_at_the_bank_leaves_the_invoice_due(bob, stripe_fake):
    card_attach(bob, "pm_card_authenticationRequired")
    invoice = open_invoice(bob)
    client = portal_user(bob)
    client.post(f"/invoices/{invoice.number}/pay")
    response = client.post(f"/invoices/{invoice.number}/confirm")
    start = len(stripe_fake.outbox)
    status, back = browser_post(response["Location"], {"action": "fail"})
    (answer,) = deliver_outbox(stripe_fake, start)
    assert answer["type"] == "payment_intent.payment_failed" and answer["status"] == "processed"
    payment = Payment.objects.get(invoice=invoice)
    assert (payment.status, payment.decline_code) == ("failed", "payment_intent_authentication_failure")
    invoice.refresh_from_db()
    assert invoice.status == "open" and invoice.amount_due_cents == 2900
    response = client.get(local_path(back), follow=True)
    assert "Pay again" in response.content.decode()
    # nothing is waiting any more: the confirm page says so and refuses
    response = client.post(f"/invoices/{invoice.number}/confirm")
    assert response.status_code == 400 and "No payment of invoice" in response.content.decode()


@pytest.mark.django_db
def test_the_api_tells_where_to_confirm_a_payment_that_requires_action(bob, stripe_fake):
    card_attach(bob, "pm_card_authenticationRequired")
    invoice = open_invoice(bob)
    client = api_client("bob", jwt_for("bob", "owner@bob.test"))
    response = client.post(f"/api/v1/invoices/{invoice.number}/pay", {"method": "card"}, format="json")
    assert response.status_code == 200, response.content
    body = response.json()
    url = f"http://bob.aerolith.localhost:8000/invoices/{invoice.number}/confirm"
    assert (body["status"], body["action_url"]) == ("requires_action", url)
    assert url in body["message"]
    rows = client.get("/api/v1/payments").json()["results"]
    assert rows[0]["status"] == "requires_action" and rows[0]["action_url"] == url


@pytest.mark.django_db
def test_confirming_is_refused_when_there_is_nothing_to_confirm(bob, stripe_fake):
    card_attach(bob, "pm_card_visa")
    invoice = open_invoice(bob)
    client = portal_user(bob)
    response = client.post(f"/invoices/{invoice.number}/confirm")
    assert response.status_code == 400 and "No payment of invoice" in response.content.decode()
    client.post(f"/invoices/{invoice.number}/pay")
    response = client.post(f"/invoices/{invoice.number}/confirm")
    assert response.status_code == 400 and "owes nothing" in response.content.decode()
    assert client.get("/invoices/AER-1999-000001/confirm").status_code == 404
    response = client.get(f"/invoices/{invoice.number}/confirm/return", follow=True)
    assert response.status_code == 200  # nothing pending: back to the invoice, nothing changed
    invoice.refresh_from_db()
    assert invoice.status == "paid"


@pytest.mark.django_db
def test_a_succeeded_webhook_records_a_charge_whose_own_record_was_lost(bob, stripe_fake):
    card_attach(bob, "pm_card_visa")
    invoice = open_invoice(bob)
    with pytest.raises(RuntimeError), transaction.atomic():
        invoice_collect(invoice_id=invoice.pk, attempt=0)
        raise RuntimeError("lost")
    payload, signature = event_of(stripe_fake, "payment_intent.succeeded")
    assert deliver(payload, signature).json()["status"] == "processed"
    (payment,) = Payment.objects.filter(invoice=invoice)
    intent = json.loads(payload)["data"]["object"]
    assert (payment.status, payment.gateway_reference, payment.amount_cents) == (
        "succeeded", intent["id"], 2900)
    assert payment.idempotency_key == f"invoice-{invoice.pk}-attempt-0"
    invoice.refresh_from_db()
    assert invoice.status == "paid"
    # the job runs again: the key finds the recorded payment, nothing is charged
    assert invoice_collect(invoice_id=invoice.pk, attempt=0) is None
    assert len(_intents(stripe_fake, invoice)) == 1


@pytest.mark.django_db
def test_when_stripe_cannot_be_reached_nothing_is_recorded_and_the_answer_says_try_again(
        bob, stripe_fake, settings):
    card_attach(bob, "pm_card_visa")
    invoice = open_invoice(bob)
    with socket.socket() as closed:  # a port nobody listens on
        closed.bind(("127.0.0.1", 0))
        settings.STRIPE_API_BASE = f"http://127.0.0.1:{closed.getsockname()[1]}"
    client = api_client("bob", jwt_for("bob", "owner@bob.test"))
    response = client.post(f"/api/v1/invoices/{invoice.number}/pay", {"method": "card"}, format="json")
    body = assert_problem(response, 503, "payment_gateway_unavailable")
    assert "Try again" in body["detail"]
    assert not Payment.objects.filter(invoice=invoice).exists()
    invoice.refresh_from_db()
    assert (invoice.status, invoice.attempt_count) == ("open", 0)
    assert_problem(client.post("/api/v1/payment-methods/setup", format="json"), 503,
                   "payment_gateway_unavailable")
    response = portal_user(bob).post("/billing/cards/checkout")
    assert response.status_code == 400 and "could not be reached" in response.content.decode()
    # a scheduled charge fails as a job and is tried again later, with the same key
    with pytest.raises(Exception) as raised:
        invoice_collect(invoice_id=invoice.pk, attempt=0)
    assert raised.value.code == "payment_gateway_unavailable"
