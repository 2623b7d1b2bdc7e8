"""Refunds and disputes of card payments (SPEC §6), against the local Stripe fake: staff
refund a card payment in full or in part from its admin page, through the gateway; the
payment's refunded amount and the invoice's amount_refunded_cents show it at once and the
charge.refunded webhook adds nothing more — or adds a refund made at Stripe directly.
Disputes are recorded from their webhooks, keep their newest state, and staff see them."""
import copy
import json

import pytest

from billing.models import Dispute, Payment, Refund
from billing.services.cards import payment_refund
from tenants.models import AuditEvent

from ..conftest import portal_user
from .lifecycle import card_attach
from .stripe_support import (
    deliver,
    deliver_outbox,
    event_of,
    open_invoice,
    resigned,
    stripe_fake_running,
)
from .test_admin import console_for, staff_user

_stripe = pytest.fixture(name="stripe_fake")(stripe_fake_running)


def _card_payment(tenant, card="pm_card_visa", cents=5000) -> Payment:
    card_attach(tenant, card)
    invoice = open_invoice(tenant, cents)
    portal_user(tenant).post(f"/invoices/{invoice.number}/pay")
    payment = Payment.objects.get(invoice=invoice)
    assert payment.status == "succeeded"
    return payment


def _refund_page(console, payment, amount: str, reason="Customer asked"):
    return console.post(f"/admin/billing/payment/{payment.pk}/refund/", {"amount": amount, "reason": reason})


@pytest.fixture
def console(db):
    return console_for(staff_user())


@pytest.mark.django_db
def test_a_full_refund_from_the_admin_reaches_the_card_payment_and_invoice(alice, stripe_fake, console):
    payment = _card_payment(alice)
    page = console.get(f"/admin/billing/payment/{payment.pk}/change/")
    assert page.status_code == 200 and "Refund to the card" in page.content.decode()
    page = console.get(f"/admin/billing/payment/{payment.pk}/refund/")
    assert page.status_code == 200 and "50.00" in page.content.decode()

    start = len(stripe_fake.outbox)
    response = _refund_page(console, payment, "50.00")
    assert response.status_code == 302
    (refund,) = Refund.objects.filter(payment=payment)
    assert (refund.amount_cents, refund.status, refund.reason) == (5000, "succeeded", "Customer asked")
    assert refund.gateway_reference.startswith("re_") and refund.created_by.email == "ops@aerolith.test"
    fake_refund = stripe_fake.get(refund.gateway_reference)
    assert (fake_refund["amount"], fake_refund["payment_intent"]) == (5000, payment.gateway_reference)
    payment.refresh_from_db()
    payment.invoice.refresh_from_db()
    assert payment.refunded_cents == 5000 and payment.invoice.amount_refunded_cents == 5000
    assert "payment.refunded" in AuditEvent.objects.filter(tenant=alice).values_list("action", flat=True)

    (answer,) = deliver_outbox(stripe_fake, start)
    assert (answer["type"], answer["status"]) == ("charge.refunded", "processed")
    payment.refresh_from_db()
    payment.invoice.refresh_from_db()
    assert payment.refunded_cents == 5000 and payment.invoice.amount_refunded_cents == 5000
    assert Refund.objects.filter(payment=payment).count() == 1
    # nothing is left: the page says so and refuses
    response = console.get(f"/admin/billing/payment/{payment.pk}/refund/", follow=True)
    assert "nothing is left to refund" in response.content.decode()


@pytest.mark.django_db
def test_partial_refunds_add_up_and_more_than_paid_is_refused(bob, stripe_fake, console):
    payment = _card_payment(bob)
    assert _refund_page(console, payment, "10.00").status_code == 302
    assert _refund_page(console, payment, "5.50").status_code == 302
    payment.refresh_from_db()
    assert payment.refunded_cents == 1550 and payment.invoice.amount_refunded_cents == 1550
    charge = stripe_fake.get(stripe_fake.get(payment.gateway_reference)["latest_charge"])
    assert charge["amount_refunded"] == 1550

    for amount, text in (("34.51", "Refund between 0.01 and 34.50"), ("0", "non-zero"), ("-1", "positive"),
                         ("abc", "amount in dollars"), ("1.234", "at most two decimals")):
        response = _refund_page(console, payment, amount)
        assert response.status_code == 200, amount
        assert text in response.content.decode(), (amount, response.content.decode()[-3000:])
    assert _refund_page(console, payment, "", reason="").status_code == 200
    assert Refund.objects.filter(payment=payment).count() == 2
    assert stripe_fake.get(charge["id"])["amount_refunded"] == 1550

    # the webhooks arrive, in any order: the total only grows to what Stripe says
    answers = deliver_outbox(stripe_fake, types=("charge.refunded",))
    assert [a["status"] for a in answers] == ["processed", "processed"]
    payment.refresh_from_db()
    assert payment.refunded_cents == 1550 and payment.invoice.amount_refunded_cents == 1550


@pytest.mark.django_db
def test_a_refund_made_at_stripe_is_recorded_from_the_webhook_and_older_ones_change_nothing(
        alice, stripe_fake):
    import stripe

    payment = _card_payment(alice)
    client = stripe.StripeClient("sk_test_dashboard", base_addresses={"api": stripe_fake.url})
    client.v1.refunds.create(params={"payment_intent": payment.gateway_reference, "amount": 1200})
    client.v1.refunds.create(params={"payment_intent": payment.gateway_reference, "amount": 800})
    first = event_of(stripe_fake, "charge.refunded", index=0)
    second = event_of(stripe_fake, "charge.refunded", index=1)
    assert deliver(*second).json()["status"] == "processed"  # the newer arrives first
    payment.refresh_from_db()
    assert payment.refunded_cents == 2000 and payment.invoice.amount_refunded_cents == 2000
    (refund,) = Refund.objects.filter(payment=payment)
    assert (refund.amount_cents, refund.reason) == (2000, "Refunded at the card processor")
    assert deliver(*first).json()["status"] == "processed"
    payment.refresh_from_db()
    assert payment.refunded_cents == 2000 and Refund.objects.filter(payment=payment).count() == 1


@pytest.mark.django_db
def test_refunds_are_refused_for_what_is_not_a_succeeded_card_charge(alice, stripe_fake, console):
    card_attach(alice, "pm_card_chargeDeclined")
    invoice = open_invoice(alice)
    portal_user(alice).post(f"/invoices/{invoice.number}/pay")
    failed = Payment.objects.get(invoice=invoice)
    assert failed.status == "failed"
    response = console.get(f"/admin/billing/payment/{failed.pk}/refund/", follow=True)
    assert "only succeeded card payments" in response.content.decode()
    with pytest.raises(Exception) as raised:
        payment_refund(payment_id=failed.pk, amount_cents=100, reason="", actor="test")
    assert raised.value.code == "not_refundable"
    with pytest.raises(Exception) as raised:
        payment_refund(payment_id=10**12, amount_cents=100, reason="", actor="test")
    assert raised.value.code == "payment_not_found"
    # the action asks for exactly one payment
    portal_user(alice).post(f"/invoices/{invoice.number}/pay")  # a second attempt, declined too
    both = list(Payment.objects.filter(invoice=invoice).values_list("pk", flat=True))
    assert len(both) == 2
    response = console.post("/admin/billing/payment/",
                            {"action": "refund_to_card", "_selected_action": both}, follow=True)
    assert "Select exactly one payment" in response.content.decode()
    response = console.post("/admin/billing/payment/", {"action": "refund_to_card",
                                                        "_selected_action": [failed.pk]})
    assert response.status_code == 302 and response["Location"].endswith(f"/payment/{failed.pk}/refund/")
    assert not Refund.objects.exists()


@pytest.mark.django_db
def test_a_refund_the_processor_refuses_changes_nothing(bob, stripe_fake, console):
    payment = _card_payment(bob)
    import stripe

    client = stripe.StripeClient("sk_test_dashboard", base_addresses={"api": stripe_fake.url})
    client.v1.refunds.create(params={"payment_intent": payment.gateway_reference})  # all of it, at Stripe
    response = _refund_page(console, payment, "10.00")  # we do not know yet: Stripe refuses
    assert response.status_code == 302
    page = console.get(response["Location"]).content.decode()
    assert "has already been refunded" in page
    payment.refresh_from_db()
    assert payment.refunded_cents == 0 and not Refund.objects.filter(payment=payment).exists()


@pytest.mark.django_db
def test_a_dispute_is_recorded_and_its_close_too_and_staff_see_it(alice, stripe_fake, console):
    payment = _card_payment(alice, card="pm_card_createDispute")
    answers = deliver_outbox(stripe_fake, types=("charge.dispute.created",))
    assert answers[0]["status"] == "processed"
    (dispute,) = Dispute.objects.filter(payment=payment)
    assert (dispute.status, dispute.reason, dispute.amount_cents) == ("needs_response", "fraudulent", 5000)
    assert dispute.gateway_reference.startswith("dp_")
    actions = list(AuditEvent.objects.filter(tenant=alice).values_list("action", flat=True))
    assert "payment.disputed" in actions

    page = console.get("/admin/billing/dispute/").content.decode()
    assert dispute.gateway_reference in page and "needs_response" in page
    page = console.get(f"/admin/billing/payment/{payment.pk}/change/").content.decode()
    assert dispute.gateway_reference in page

    stripe_fake.dispute_close(dispute.gateway_reference, "lost")
    closed = event_of(stripe_fake, "charge.dispute.closed")
    assert deliver(*closed).json()["status"] == "processed"
    dispute.refresh_from_db()
    assert dispute.status == "lost"
    # the creation event again, and an older forged update: the closed state stays
    created = event_of(stripe_fake, "charge.dispute.created")
    assert deliver(created[0], stripe_fake.sign(created[0])).json()["duplicate"] is True
    older = copy.deepcopy(json.loads(created[0]))
    older.update(id="evt_dispute_update_late", type="charge.dispute.updated")
    older["data"]["object"]["status"] = "under_review"
    assert deliver(*resigned(stripe_fake, older)).json()["status"] == "processed"
    dispute.refresh_from_db()
    assert dispute.status == "lost"


@pytest.mark.django_db
def test_the_stripe_pages_of_the_console_render(alice, stripe_fake, console):
    payment = _card_payment(alice, card="pm_card_createDispute")
    payment_refund(payment_id=payment.pk, amount_cents=700, reason="goodwill", actor="test")
    deliver_outbox(stripe_fake)
    for url in ("/admin/billing/stripeevent/", "/admin/billing/refund/", "/admin/billing/dispute/",
                "/admin/billing/payment/", f"/admin/billing/payment/{payment.pk}/change/",
                "/admin/billing/stripeevent/?status__exact=processed"):
        response = console.get(url)
        assert response.status_code == 200, url
    for model in ("stripeevent", "refund", "dispute"):
        assert console.get(f"/admin/billing/{model}/add/").status_code == 403
