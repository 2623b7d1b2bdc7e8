"""/webhooks/stripe/ (SPEC §6): the signature is checked with the endpoint's secret and a
300 s tolerance; events are stored by id and processed once (a redelivery changes
nothing); an older event never overwrites newer state; a failing handler leaves the event
failed with its error, for a redelivery or staff to retry. Bad requests get a clear
problem+json answer, never a server error, and nothing is stored."""
import copy
import json
import time

import pytest
from django.test import Client

from billing.models import Invoice, Payment, StripeEvent
from billing.services import cards
from tenants.models import AuditEvent

from ..conftest import PUBLIC_HOST, assert_problem, host_of, portal_user
from .lifecycle import card_attach, subscription_of
from .stripe_support import (
    WEBHOOK_PATH,
    deliver,
    deliver_outbox,
    event_of,
    open_invoice,
    resigned,
    stripe_fake_running,
)
from .test_admin import console_for, staff_user

_stripe = pytest.fixture(name="stripe_fake")(stripe_fake_running)


def _paid_by_card(tenant, card="pm_card_visa") -> Invoice:
    card_attach(tenant, card)
    invoice = open_invoice(tenant)
    portal_user(tenant).post(f"/invoices/{invoice.number}/pay")
    invoice.refresh_from_db()
    return invoice


def _three_d_secure_waiting(tenant, fake) -> tuple[Invoice, Payment]:
    """An invoice whose charge requires action; the customer completes it at the bank, but
    no webhook has arrived yet."""
    card_attach(tenant, "pm_card_authenticationRequired")
    invoice = open_invoice(tenant)
    client = portal_user(tenant)
    client.post(f"/invoices/{invoice.number}/pay")
    client.post(f"/invoices/{invoice.number}/confirm")
    payment = Payment.objects.get(invoice=invoice)
    fake.three_d_secure(payment.gateway_reference, "complete")
    return invoice, payment


# --- refused deliveries ----------------------------------------------------------------------------

@pytest.mark.django_db
def test_a_bad_signature_is_refused_and_nothing_is_stored(alice, stripe_fake):
    _paid_by_card(alice)
    payload, signature = event_of(stripe_fake, "payment_intent.succeeded")
    timestamp = signature.split(",")[0]
    for header in (None, "", "garbage", f"{timestamp},v1=" + "0" * 64, "t=notanumber,v1=abc",
                   resigned(stripe_fake, json.loads(payload))[1].replace("v1=", "v0=")):
        body = assert_problem(deliver(payload, header), 400, "invalid_signature")
        assert "signing secret" in body["detail"]
    tampered = payload.replace(b'"amount": 2900', b'"amount": 1')
    assert tampered != payload
    assert_problem(deliver(tampered, signature), 400, "invalid_signature")
    # signed with another secret
    other = signature.split("v1=")[0] + "v1=" + "ab" * 32
    assert_problem(deliver(payload, other), 400, "invalid_signature")
    assert not StripeEvent.objects.exists()


@pytest.mark.django_db
def test_a_stale_timestamp_is_refused_as_a_replay(alice, stripe_fake):
    _paid_by_card(alice)
    payload, _ = event_of(stripe_fake, "payment_intent.succeeded")
    stale = stripe_fake.sign(payload, int(time.time()) - 301)
    body = assert_problem(deliver(payload, stale), 400, "stale_timestamp")
    assert "300 s" in body["detail"]
    assert not StripeEvent.objects.exists()
    recent = stripe_fake.sign(payload, int(time.time()) - 290)
    assert deliver(payload, recent).status_code == 200
    assert StripeEvent.objects.count() == 1


@pytest.mark.django_db
def test_a_body_that_is_not_an_event_is_refused(stripe_fake):
    for payload in (b"{not json", b"[1, 2]", b"\xff\xfe", b"", b'"text"', b"null",
                    json.dumps({"id": "evt_1", "type": "x"}).encode(),
                    json.dumps({"id": "evt_1", "object": "event", "type": "x", "created": "soon",
                                "data": {"object": {}}}).encode(),
                    json.dumps({"id": 5, "object": "event", "type": "x", "created": 1,
                                "data": {"object": {}}}).encode(),
                    json.dumps({"id": "evt_1", "object": "event", "type": "x", "created": 1,
                                "data": {"object": []}}).encode(),
                    json.dumps({"id": "evt_1", "object": "event", "type": "x", "created": 2**70,
                                "data": {"object": {}}}).encode(),
                    json.dumps({"id": "evt_1", "object": "event", "type": "x", "created": 1,
                                "data": {"object": {"nul": "\u0000"}}}).encode(),
                    json.dumps({"id": "e" * 300, "object": "event", "type": "x", "created": 1,
                                "data": {"object": {}}}).encode()):
        response = deliver(payload, stripe_fake.sign(payload))
        assert response.status_code == 400, (payload, response.content)
        assert_problem(response, 400)
        assert response.json()["code"] in ("malformed_event", "invalid_signature"), payload
    assert not StripeEvent.objects.exists()


@pytest.mark.django_db
def test_only_posts_on_the_public_domain_and_nothing_without_a_secret(alice, stripe_fake, settings):
    response = Client(HTTP_HOST=PUBLIC_HOST).get(WEBHOOK_PATH)
    assert_problem(response, 405, "method_not_allowed")
    response = Client(HTTP_HOST=host_of("alice")).post(WEBHOOK_PATH, data=b"{}",
                                                       content_type="application/json")
    assert_problem(response, 404)
    payload = json.dumps({"id": "evt_big", "object": "event", "type": "ping", "created": 1,
                          "data": {"object": {"pad": "x" * (1024 * 1024)}}}).encode()
    assert_problem(deliver(payload, stripe_fake.sign(payload)), 413, "payload_too_large")
    settings.STRIPE_WEBHOOK_SECRET = ""
    payload = json.dumps({"id": "evt_1", "object": "event", "type": "ping", "created": 1,
                          "data": {"object": {}}}).encode()
    assert_problem(deliver(payload, stripe_fake.sign(payload)), 503, "webhooks_not_configured")
    assert not StripeEvent.objects.exists()


@pytest.mark.django_db
def test_an_unknown_event_type_is_stored_and_ignored(stripe_fake):
    event = {"id": "evt_unknown_1", "object": "event", "type": "invoice.upcoming",
             "created": int(time.time()), "livemode": False,
             "data": {"object": {"id": "in_1", "object": "invoice"}}}
    response = deliver(*resigned(stripe_fake, event))
    assert response.status_code == 200
    assert response.json() == {"received": True, "id": "evt_unknown_1", "type": "invoice.upcoming",
                               "status": "ignored", "duplicate": False}
    row = StripeEvent.objects.get(event_id="evt_unknown_1")
    assert (row.status, row.attempts, row.last_error) == ("ignored", 1, "No handler for invoice.upcoming.")


@pytest.mark.django_db
def test_events_about_objects_that_are_not_ours_are_ignored(stripe_fake):
    intent = {"id": "pi_notours", "object": "payment_intent", "status": "succeeded", "amount": 500,
              "metadata": {}, "created": 1}
    event = {"id": "evt_other", "object": "event", "type": "payment_intent.succeeded",
             "created": int(time.time()), "data": {"object": intent}}
    assert deliver(*resigned(stripe_fake, event)).json()["status"] == "ignored"
    for kind, thing in (("setup_intent.succeeded", {"id": "seti_x", "customer": "cus_nobody",
                                                    "status": "succeeded", "payment_method": "pm_x"}),
                        ("charge.refunded", {"id": "ch_x", "payment_intent": "pi_nobody",
                                             "amount_refunded": 5}),
                        ("charge.dispute.created", {"id": "dp_x", "payment_intent": "pi_nobody",
                                                    "status": "needs_response"})):
        event = {"id": f"evt_{kind}", "object": "event", "type": kind, "created": int(time.time()),
                 "data": {"object": thing}}
        assert deliver(*resigned(stripe_fake, event)).json()["status"] == "ignored", kind


# --- once, in any order -------------------------------------------------------------------------------

@pytest.mark.django_db
def test_a_redelivered_event_is_processed_once(alice, stripe_fake):
    invoice, payment = _three_d_secure_waiting(alice, stripe_fake)
    payload, signature = event_of(stripe_fake, "payment_intent.succeeded")
    first = deliver(payload, signature).json()
    audits = AuditEvent.objects.filter(tenant=alice).count()
    again = [deliver(payload, stripe_fake.sign(payload)).json() for _ in range(3)]
    assert (first["status"], first["duplicate"]) == ("processed", False)
    assert all((a["status"], a["duplicate"]) == ("processed", True) for a in again)
    row = StripeEvent.objects.get(event_id=json.loads(payload)["id"])
    assert row.attempts == 1
    assert AuditEvent.objects.filter(tenant=alice).count() == audits
    invoice.refresh_from_db()
    assert (invoice.status, invoice.amount_paid_cents) == ("paid", 2900)


@pytest.mark.django_db
def test_an_older_payment_failed_after_succeeded_does_not_undo_the_payment(alice, stripe_fake):
    invoice, payment = _three_d_secure_waiting(alice, stripe_fake)
    failed = event_of(stripe_fake, "payment_intent.payment_failed")  # the off-session attempt, older
    succeeded = event_of(stripe_fake, "payment_intent.succeeded")
    assert json.loads(failed[0])["created"] < json.loads(succeeded[0])["created"]
    assert deliver(*succeeded).json()["status"] == "processed"
    assert deliver(*failed).json()["status"] == "processed"
    payment.refresh_from_db()
    invoice.refresh_from_db()
    assert payment.status == "succeeded" and invoice.status == "paid"
    assert subscription_of(alice).status in ("active", "trialing")

    # even a decline of the same charge, newer in time, cannot undo a succeeded payment
    event = copy.deepcopy(json.loads(failed[0]))
    event.update(id="evt_forged_later", created=json.loads(succeeded[0])["created"] + 60)
    event["data"]["object"]["last_payment_error"] = {"code": "card_declined", "decline_code": "fraudulent",
                                                     "message": "Your card was declined."}
    assert deliver(*resigned(stripe_fake, event)).json()["status"] == "processed"
    payment.refresh_from_db()
    assert payment.status == "succeeded"


@pytest.mark.django_db
def test_an_older_event_never_overwrites_newer_state(bob, stripe_fake):
    """A charge waiting for the customer: a newer 'still requires action' state was applied;
    an older decline of it arrives late and changes nothing."""
    card_attach(bob, "pm_card_authenticationRequired")
    invoice = open_invoice(bob)
    portal_user(bob).post(f"/invoices/{invoice.number}/pay")
    payment = Payment.objects.get(invoice=invoice)
    original = json.loads(event_of(stripe_fake, "payment_intent.payment_failed")[0])
    newer = copy.deepcopy(original)
    newer.update(id="evt_newer", created=original["created"] + 100)
    older = copy.deepcopy(original)
    older.update(id="evt_older", created=original["created"] + 10)
    older["data"]["object"]["last_payment_error"] = {
        "code": "card_declined", "decline_code": "generic_decline", "message": "Your card was declined."}
    assert deliver(*resigned(stripe_fake, newer)).json()["status"] == "processed"
    payment.refresh_from_db()
    assert (payment.status, payment.gateway_updated) == ("requires_action", original["created"] + 100)
    assert deliver(*resigned(stripe_fake, older)).json()["status"] == "processed"
    payment.refresh_from_db()
    assert payment.status == "requires_action"
    assert "older" in StripeEvent.objects.get(event_id="evt_older").last_error
    # applied in time order instead, the decline would have counted
    older.update(id="evt_newest", created=original["created"] + 200)
    deliver(*resigned(stripe_fake, older))
    payment.refresh_from_db()
    assert (payment.status, payment.decline_code) == ("failed", "generic_decline")


# --- failures are kept and retried ---------------------------------------------------------------------

@pytest.mark.django_db
def test_a_failed_event_is_kept_with_its_error_and_retried_from_the_admin(alice, stripe_fake, monkeypatch):
    invoice, payment = _three_d_secure_waiting(alice, stripe_fake)
    payload, signature = event_of(stripe_fake, "payment_intent.succeeded")
    real = cards.charge_state_apply

    def broken(**kwargs):
        raise RuntimeError("database hiccup")

    monkeypatch.setattr(cards, "charge_state_apply", broken)
    body = assert_problem(deliver(payload, signature), 503, "webhook_processing_failed")
    assert "kept" in body["detail"]
    row = StripeEvent.objects.get(event_id=json.loads(payload)["id"])
    assert (row.status, row.attempts, row.last_error) == ("failed", 1, "RuntimeError: database hiccup")
    invoice.refresh_from_db()
    assert invoice.status == "open"  # the handler's work was rolled back

    console = console_for(staff_user())
    changelist = "/admin/billing/stripeevent/"
    page = console.get(changelist)
    assert page.status_code == 200 and "database hiccup" in page.content.decode()
    assert console.get(f"{changelist}{row.pk}/change/").status_code == 200
    # retried while still broken: failed again, said so
    response = console.post(changelist, {"action": "retry", "_selected_action": [row.pk]}, follow=True)
    assert "Failed again" in response.content.decode()
    row.refresh_from_db()
    assert (row.status, row.attempts) == ("failed", 2)

    monkeypatch.setattr(cards, "charge_state_apply", real)
    response = console.post(changelist, {"action": "retry", "_selected_action": [row.pk]}, follow=True)
    assert "processed" in response.content.decode()
    row.refresh_from_db()
    assert (row.status, row.attempts) == ("processed", 3)
    invoice.refresh_from_db()
    assert invoice.status == "paid"
    # a processed event is not retried
    response = console.post(changelist, {"action": "retry", "_selected_action": [row.pk]}, follow=True)
    assert "only failed events are retried" in response.content.decode()
    assert deliver(payload, stripe_fake.sign(payload)).json()["duplicate"] is True


@pytest.mark.django_db
def test_stripe_redelivering_a_failed_event_runs_it_again(alice, stripe_fake, monkeypatch):
    invoice, payment = _three_d_secure_waiting(alice, stripe_fake)
    payload, signature = event_of(stripe_fake, "payment_intent.succeeded")
    real = cards.charge_state_apply
    monkeypatch.setattr(cards, "charge_state_apply", lambda **kw: 1 / 0)
    assert deliver(payload, signature).status_code == 503
    monkeypatch.setattr(cards, "charge_state_apply", real)
    answer = deliver(payload, stripe_fake.sign(payload)).json()
    assert (answer["status"], answer["duplicate"]) == ("processed", True)
    invoice.refresh_from_db()
    assert invoice.status == "paid"
    assert StripeEvent.objects.get(event_id=answer["id"]).attempts == 2


@pytest.mark.django_db
def test_all_the_fakes_events_of_a_card_life_are_accepted(bob, stripe_fake):
    """Every event of a Checkout setup, a payment, a refund and a dispute: none fails."""
    from billing.services.cards import card_setup_start, payment_refund

    session = card_setup_start(tenant=bob)
    stripe_fake.checkout_complete(session.id, "pm_card_createDispute")
    deliver_outbox(stripe_fake)
    invoice = open_invoice(bob)
    portal_user(bob).post(f"/invoices/{invoice.number}/pay")
    payment = Payment.objects.get(invoice=invoice)
    payment_refund(payment_id=payment.pk, amount_cents=500, reason="goodwill", actor="test")
    (created,) = stripe_fake.events_of("charge.dispute.created")
    stripe_fake.dispute_close(created["data"]["object"]["id"], "won")
    answers = deliver_outbox(stripe_fake)
    assert {a["type"] for a in answers} >= {"payment_intent.succeeded", "charge.refunded",
                                            "charge.dispute.created", "charge.dispute.closed",
                                            "setup_intent.succeeded", "checkout.session.completed"}
    assert {a["status"] for a in answers} <= {"processed", "ignored"}
    assert not StripeEvent.objects.filter(status="failed").exists()
