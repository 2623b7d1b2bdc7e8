"""The Stripe fake, driven by the official `stripe` library: the shapes and behaviours the product
relies on (test cards, declines as 402 CardError, idempotency, signed events, webhook delivery,
hosted Checkout and 3-D Secure pages, refunds, disputes). No database; every server on port 0."""
import json
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import stripe

from tests.fakes.stripe_fake import CARDS, StripeFake

SECRET = "whsec_test_fake"
SUCCEEDING = ["pm_card_visa", "pm_card_visa_debit", "pm_card_mastercard", "pm_card_amex"]
DECLINES = [  # (test card, error code, decline code)
    ("pm_card_chargeDeclined", "card_declined", "generic_decline"),
    ("pm_card_chargeDeclinedInsufficientFunds", "card_declined", "insufficient_funds"),
    ("pm_card_chargeDeclinedFraudulent", "card_declined", "fraudulent"),
    ("pm_card_chargeDeclinedStolenCard", "card_declined", "stolen_card"),
    ("pm_card_chargeDeclinedLostCard", "card_declined", "lost_card"),
    ("pm_card_chargeDeclinedExpiredCard", "expired_card", "expired_card"),
]


@pytest.fixture
def fake():
    with StripeFake(webhook_secret=SECRET) as running:
        yield running


@pytest.fixture
def client(fake):
    return stripe.StripeClient("sk_test_fake", base_addresses={"api": fake.url}, max_network_retries=0)


def _charge(client, card="pm_card_visa", amount=2900, **extra):
    params = {"amount": amount, "currency": "usd", "payment_method": card, "off_session": True,
              "confirm": True, "metadata": {"invoice": "AER-2025-000001"}, **extra}
    options = {"idempotency_key": extra.pop("key")} if "key" in extra else {}
    params.pop("key", None)
    return client.v1.payment_intents.create(params=params, options=options)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def _browser(url: str, form: dict | None = None) -> tuple[int, str, str]:
    """GET (or POST a form to) a hosted page without following redirects: (status, body, Location)."""
    data = urllib.parse.urlencode(form).encode() if form is not None else None
    opener = urllib.request.build_opener(_NoRedirect)
    try:
        with opener.open(urllib.request.Request(url, data=data), timeout=5) as response:
            return response.status, response.read().decode(), response.headers.get("Location") or ""
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode(), error.headers.get("Location") or ""


# --- customers and payment methods --------------------------------------------------------------
def test_customer_is_created_retrieved_and_updated(client):
    customer = client.v1.customers.create(params={"email": "owner@alice.test", "name": "Alice Ltd",
                                                  "metadata": {"tenant": "alice", "x": "1"}})
    assert customer.id.startswith("cus_") and customer.object == "customer"
    assert customer.livemode is False and isinstance(customer.created, int)
    updated = client.v1.customers.update(customer.id, params={"metadata": {"x": "", "plan": "pro"}})
    assert updated.metadata.to_dict() == {"tenant": "alice", "plan": "pro"}
    assert client.v1.customers.retrieve(customer.id).email == "owner@alice.test"


def test_unknown_objects_answer_404_resource_missing(client):
    with pytest.raises(stripe.InvalidRequestError) as caught:
        client.v1.customers.retrieve("cus_nope")
    assert caught.value.http_status == 404 and caught.value.code == "resource_missing"
    assert caught.value.param == "id" and "No such customer: 'cus_nope'" in caught.value.user_message
    with pytest.raises(stripe.InvalidRequestError) as caught:
        client.v1.payment_methods.retrieve("pm_card_bogus")
    assert caught.value.http_status == 404 and caught.value.code == "resource_missing"


@pytest.mark.parametrize("card", sorted(CARDS))
def test_every_test_card_can_be_retrieved(client, card):
    pm = client.v1.payment_methods.retrieve(card)
    assert pm.id == card and pm.object == "payment_method" and pm.type == "card"
    assert (pm.card.brand, pm.card.last4) == (CARDS[card].brand, CARDS[card].last4)
    assert pm.card.exp_month == 12 and pm.card.exp_year == 2034 and pm.customer is None


def test_attaching_a_test_card_clones_it_to_the_customer_and_detach_frees_it(client):
    customer = client.v1.customers.create()
    pm = client.v1.payment_methods.attach("pm_card_mastercard", params={"customer": customer.id})
    assert pm.id.startswith("pm_") and pm.id != "pm_card_mastercard"
    assert pm.customer == customer.id and pm.card.last4 == "4444"
    listed = client.v1.customers.payment_methods.list(customer.id)
    assert [item.id for item in listed.data] == [pm.id]
    other = client.v1.customers.create()
    with pytest.raises(stripe.InvalidRequestError) as caught:
        client.v1.payment_methods.attach(pm.id, params={"customer": other.id})
    assert caught.value.http_status == 400
    assert client.v1.payment_methods.detach(pm.id).customer is None
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.payment_methods.detach(pm.id)


def test_unknown_parameters_and_missing_keys_are_refused(client, fake):
    with pytest.raises(stripe.InvalidRequestError) as caught:
        client.v1.customers.create(params={"emial": "x@y.z"})
    assert caught.value.code == "parameter_unknown" and caught.value.param == "emial"
    with pytest.raises(stripe.AuthenticationError):
        stripe.StripeClient("sk_live_nope", base_addresses={"api": fake.url}).v1.customers.create()


# --- off-session payments -----------------------------------------------------------------------
@pytest.mark.parametrize("card", SUCCEEDING)
def test_succeeding_cards_charge_off_session(client, fake, card):
    customer = client.v1.customers.create()
    pm = client.v1.payment_methods.attach(card, params={"customer": customer.id})
    pi = _charge(client, pm.id, customer=customer.id)
    assert pi.id.startswith("pi_") and pi.object == "payment_intent" and pi.status == "succeeded"
    assert pi.amount == pi.amount_received == 2900 and pi.currency == "usd"
    assert pi.customer == customer.id and pi.payment_method == pm.id
    assert pi.metadata["invoice"] == "AER-2025-000001" and pi.latest_charge.startswith("ch_")
    charge = client.v1.charges.retrieve(pi.latest_charge)
    assert charge.status == "succeeded" and charge.paid and charge.payment_intent == pi.id
    assert charge.payment_method_details.card.last4 == CARDS[card].last4
    [event] = fake.events
    assert event["type"] == "payment_intent.succeeded" and event["data"]["object"]["id"] == pi.id
    assert event["object"] == "event" and event["id"].startswith("evt_") and event["livemode"] is False
    assert event["api_version"].startswith("2025-")


@pytest.mark.parametrize(("card", "code", "decline_code"), DECLINES)
def test_declines_raise_card_error_with_the_payment_intent(client, fake, card, code, decline_code):
    with pytest.raises(stripe.CardError) as caught:
        _charge(client, card)
    error = caught.value
    assert error.http_status == 402 and error.code == code
    assert error.error.type == "card_error" and error.error.decline_code == decline_code
    assert error.error.charge.startswith("ch_") and error.error.message
    pi = error.error.payment_intent
    assert pi.status == "requires_payment_method" and pi.payment_method is None
    assert pi.last_payment_error.decline_code == decline_code and pi.last_payment_error.code == code
    assert pi.last_payment_error.payment_method.id == card
    hard = decline_code in ("fraudulent", "stolen_card", "lost_card", "expired_card")
    assert (error.error.to_dict().get("advice_code") == "do_not_try_again") is hard
    assert client.v1.payment_intents.retrieve(pi.id).status == "requires_payment_method"
    assert client.v1.charges.retrieve(error.error.charge).status == "failed"
    [event] = fake.events
    assert event["type"] == "payment_intent.payment_failed" and event["data"]["object"]["id"] == pi.id
    assert event["data"]["object"]["last_payment_error"]["decline_code"] == decline_code


def test_amounts_below_the_minimum_are_refused(client):
    with pytest.raises(stripe.InvalidRequestError) as caught:
        _charge(client, amount=10)
    assert caught.value.code == "amount_too_small" and caught.value.param == "amount"


def test_module_level_configuration_works_too(fake, monkeypatch):
    monkeypatch.setattr(stripe, "api_key", "sk_test_module")
    monkeypatch.setattr(stripe, "api_base", fake.url)
    pi = stripe.PaymentIntent.create(amount=1000, currency="usd", payment_method="pm_card_amex",
                                     off_session=True, confirm=True, expand=["latest_charge"])
    assert pi.status == "succeeded" and pi.latest_charge.object == "charge"
    with pytest.raises(stripe.CardError) as caught:
        stripe.PaymentIntent.create(amount=1000, currency="usd", confirm=True, off_session=True,
                                    payment_method="pm_card_chargeDeclinedInsufficientFunds")
    assert caught.value.error.decline_code == "insufficient_funds"


# --- idempotency ---------------------------------------------------------------------------------
def test_the_same_idempotency_key_replays_the_first_response(client, fake):
    first = _charge(client, key="invoice-1-attempt-1")
    again = _charge(client, key="invoice-1-attempt-1")
    assert again.id == first.id and again.last_response.headers["Idempotent-Replayed"] == "true"
    assert len(fake.events) == 1
    with pytest.raises(stripe.IdempotencyError) as caught:
        _charge(client, amount=3000, key="invoice-1-attempt-1")
    assert caught.value.http_status == 400


def test_a_decline_is_replayed_too(client, fake):
    with pytest.raises(stripe.CardError) as first:
        _charge(client, "pm_card_chargeDeclined", key="k-decline")
    with pytest.raises(stripe.CardError) as again:
        _charge(client, "pm_card_chargeDeclined", key="k-decline")
    assert again.value.error.payment_intent.id == first.value.error.payment_intent.id
    assert [e["type"] for e in fake.events] == ["payment_intent.payment_failed"]


def test_validation_errors_are_not_saved_under_the_key(client):
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.customers.create(params={"bogus": "1"}, options={"idempotency_key": "k-validate"})
    # Stripe saves no result for a request rejected by validation; a different body may follow.
    assert client.v1.customers.create(options={"idempotency_key": "k-validate"}).id.startswith("cus_")


# --- events and webhooks -------------------------------------------------------------------------
def test_outbox_events_verify_with_construct_event(client, fake):
    _charge(client)
    payload, header = fake.outbox[0]
    assert header.startswith("t=") and ",v1=" in header
    event = stripe.Webhook.construct_event(payload, header, SECRET)
    assert event.type == "payment_intent.succeeded" and event.data.object.object == "payment_intent"
    with pytest.raises(stripe.SignatureVerificationError):
        stripe.Webhook.construct_event(payload.replace(b"2900", b"2901"), header, SECRET)
    with pytest.raises(stripe.SignatureVerificationError):
        stripe.Webhook.construct_event(payload, header, "whsec_other")
    stale = fake.sign(payload, timestamp=int(time.time()) - 3600)
    with pytest.raises(stripe.SignatureVerificationError):
        stripe.Webhook.construct_event(payload, stale, SECRET, tolerance=300)


def test_event_created_is_strictly_increasing(client, fake):
    for _ in range(4):
        _charge(client)
    created = [event["created"] for event in fake.events]
    assert created == sorted(created) and len(set(created)) == len(created)


class _Receiver(BaseHTTPRequestHandler):
    received: list

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.received.append((body, self.headers["Stripe-Signature"], self.headers["Content-Type"]))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


def test_events_are_posted_to_the_webhook_url_in_order():
    received: list = []
    receiver = ThreadingHTTPServer(("127.0.0.1", 0), type("R", (_Receiver,), {"received": received}))
    threading.Thread(target=receiver.serve_forever, args=(0.05,), daemon=True).start()
    url = f"http://127.0.0.1:{receiver.server_address[1]}/webhooks/stripe/"
    try:
        with StripeFake(webhook_url=url, webhook_secret=SECRET) as fake:
            client = stripe.StripeClient("sk_test_x", base_addresses={"api": fake.url})
            _charge(client)
            with pytest.raises(stripe.CardError):
                _charge(client, "pm_card_chargeDeclined")
            assert fake.wait_for_webhooks(timeout=5)
            assert [d["status"] for d in fake.deliveries] == [200, 200]
    finally:
        receiver.shutdown()
        receiver.server_close()
    types = [stripe.Webhook.construct_event(body, header, SECRET).type for body, header, _ in received]
    assert types == ["payment_intent.succeeded", "payment_intent.payment_failed"]
    assert received[0][2].startswith("application/json")


def test_an_unreachable_webhook_url_is_recorded_not_raised():
    with StripeFake(webhook_url="http://127.0.0.1:9/nowhere") as fake:
        client = stripe.StripeClient("sk_test_x", base_addresses={"api": fake.url})
        _charge(client)
        assert fake.wait_for_webhooks(timeout=5)
        assert fake.deliveries[0]["status"] is None and fake.deliveries[0]["error"]
        assert len(fake.outbox) == 1


# --- setup intents and Checkout ------------------------------------------------------------------
def test_setup_intent_confirm_attaches_the_card(client, fake):
    customer = client.v1.customers.create()
    seti = client.v1.setup_intents.create(params={"customer": customer.id, "usage": "off_session"})
    assert seti.id.startswith("seti_") and seti.status == "requires_payment_method"
    seti = client.v1.setup_intents.confirm(seti.id, params={"payment_method": "pm_card_visa"})
    assert seti.status == "succeeded" and seti.payment_method.startswith("pm_")
    assert client.v1.payment_methods.retrieve(seti.payment_method).customer == customer.id
    assert [e["type"] for e in fake.events] == ["setup_intent.succeeded"]


def test_checkout_setup_session_page_saves_the_chosen_card(client, fake):
    customer = client.v1.customers.create(params={"email": "owner@alice.test"})
    session = client.v1.checkout.sessions.create(params={
        "mode": "setup", "customer": customer.id, "currency": "usd",
        "success_url": "https://alice.example/billing?session={CHECKOUT_SESSION_ID}",
        "cancel_url": "https://alice.example/billing"})
    assert session.id.startswith("cs_test_") and session.object == "checkout.session"
    assert session.status == "open" and session.url == f"{fake.url}/checkout/{session.id}"
    status, page, _ = _browser(session.url)
    assert status == 200 and "pm_card_mastercard" in page and "4444" in page
    status, _, location = _browser(session.url, {"payment_method": "pm_card_mastercard"})
    assert status == 303 and location == f"https://alice.example/billing?session={session.id}"
    done = client.v1.checkout.sessions.retrieve(session.id, params={"expand": ["setup_intent"]})
    assert done.status == "complete" and done.url is None
    assert done.setup_intent.status == "succeeded"
    pm = client.v1.payment_methods.retrieve(done.setup_intent.payment_method)
    assert pm.customer == customer.id and pm.card.brand == "mastercard"
    assert [e["type"] for e in fake.events] == ["setup_intent.succeeded", "checkout.session.completed"]
    completed = fake.events_of("checkout.session.completed")[0]["data"]["object"]
    assert completed["setup_intent"] == done.setup_intent.id and completed["customer"] == customer.id
    assert _browser(session.url)[0] == 410  # finished sessions no longer take cards


def test_checkout_cancel_returns_to_the_cancel_url(client, fake):
    session = client.v1.checkout.sessions.create(params={
        "mode": "setup", "currency": "usd", "success_url": "https://a.example/ok",
        "cancel_url": "https://a.example/back"})
    assert _browser(session.url, {"action": "cancel"})[1:] == ("", "https://a.example/back")
    assert client.v1.checkout.sessions.retrieve(session.id).status == "open" and fake.events == []


def test_checkout_can_be_completed_in_process(client, fake):
    customer = client.v1.customers.create()
    with pytest.raises(stripe.InvalidRequestError) as caught:  # dynamic payment methods need a currency
        client.v1.checkout.sessions.create(params={"mode": "setup", "success_url": "https://a.example/"})
    assert caught.value.param == "currency"
    session = client.v1.checkout.sessions.create(params={
        "mode": "setup", "customer": customer.id, "payment_method_types": ["card"],
        "success_url": "https://a.example/{CHECKOUT_SESSION_ID}"})
    assert fake.checkout_complete(session.id, "pm_card_amex") == f"https://a.example/{session.id}"
    assert fake.get(session.id)["status"] == "complete"


# --- 3-D Secure ----------------------------------------------------------------------------------
def test_authentication_required_off_session_then_3ds_on_session(client, fake):
    customer = client.v1.customers.create()
    pm = client.v1.payment_methods.attach("pm_card_authenticationRequired", params={"customer": customer.id})
    with pytest.raises(stripe.CardError) as caught:
        _charge(client, pm.id, customer=customer.id)
    assert caught.value.code == "authentication_required"
    assert caught.value.error.decline_code == "authentication_required"
    pi = caught.value.error.payment_intent
    assert pi.status == "requires_payment_method"
    confirmed = client.v1.payment_intents.confirm(pi.id, params={
        "payment_method": pm.id, "return_url": "https://alice.example/invoices/AER-1/confirm?x=1"})
    assert confirmed.status == "requires_action" and confirmed.next_action.type == "redirect_to_url"
    url = confirmed.next_action.redirect_to_url.url
    assert url == f"{fake.url}/3ds/{pi.id}"
    status, page, _ = _browser(url)
    assert status == 200 and "Complete" in page and "Fail" in page
    status, _, location = _browser(url, {"action": "complete"})
    assert status == 303 and location.startswith("https://alice.example/invoices/AER-1/confirm?x=1&")
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(location).query)
    assert query["payment_intent"] == [pi.id] and query["redirect_status"] == ["succeeded"]
    assert client.v1.payment_intents.retrieve(pi.id).status == "succeeded"
    assert [e["type"] for e in fake.events] == ["payment_intent.payment_failed", "payment_intent.succeeded"]


def test_failing_3ds_leaves_the_payment_unpaid(client, fake):
    pi = client.v1.payment_intents.create(params={
        "amount": 5000, "currency": "usd", "payment_method": "pm_card_authenticationRequired",
        "confirm": True, "return_url": "https://a.example/back"})
    assert pi.status == "requires_action"
    status, _, location = _browser(pi.next_action.redirect_to_url.url, {"action": "fail"})
    assert status == 303 and "redirect_status=failed" in location
    pi = client.v1.payment_intents.retrieve(pi.id)
    assert pi.status == "requires_payment_method"
    assert pi.last_payment_error.code == "payment_intent_authentication_failure"
    assert [e["type"] for e in fake.events] == ["payment_intent.payment_failed"]
    assert fake.three_d_secure.__doc__  # the in-process control exists for product tests


# --- refunds and disputes ------------------------------------------------------------------------
def test_partial_and_full_refunds_and_over_refunds(client, fake):
    pi = _charge(client)
    refund = client.v1.refunds.create(params={"payment_intent": pi.id, "amount": 1000},
                                      options={"idempotency_key": "refund-1"})
    assert refund.id.startswith("re_") and refund.object == "refund" and refund.status == "succeeded"
    assert refund.amount == 1000 and refund.charge == pi.latest_charge and refund.payment_intent == pi.id
    with pytest.raises(stripe.InvalidRequestError) as caught:
        client.v1.refunds.create(params={"payment_intent": pi.id, "amount": 2000})
    assert caught.value.http_status == 400 and caught.value.param == "amount"
    assert "($20.00) is greater than unrefunded amount on charge ($19.00)" in caught.value.user_message
    rest = client.v1.refunds.create(params={"payment_intent": pi.id})
    assert rest.amount == 1900
    with pytest.raises(stripe.InvalidRequestError) as caught:
        client.v1.refunds.create(params={"payment_intent": pi.id})
    assert caught.value.code == "charge_already_refunded"
    charges = [e["data"]["object"] for e in fake.events_of("charge.refunded")]
    assert [(c["amount_refunded"], c["refunded"]) for c in charges] == [(1000, False), (2900, True)]
    assert charges[0]["id"] == pi.latest_charge and charges[0]["payment_intent"] == pi.id
    listed = client.v1.refunds.list(params={"payment_intent": pi.id})
    assert sorted(r.amount for r in listed.data) == [1000, 1900]


def test_dispute_card_succeeds_then_is_disputed_and_closed(client, fake):
    pi = _charge(client, "pm_card_createDispute")
    assert pi.status == "succeeded"
    assert [e["type"] for e in fake.events] == ["payment_intent.succeeded", "charge.dispute.created"]
    dispute = fake.events[1]["data"]["object"]
    assert dispute["id"].startswith("dp_") and dispute["object"] == "dispute"
    assert (dispute["status"], dispute["reason"]) == ("needs_response", "fraudulent")
    assert dispute["charge"] == pi.latest_charge and dispute["amount"] == 2900
    assert client.v1.charges.retrieve(pi.latest_charge).disputed is True
    request = urllib.request.Request(f"{fake.url}/_fake/disputes/{dispute['id']}/close",
                                     data=json.dumps({"status": "lost"}).encode(), method="POST")
    with urllib.request.urlopen(request, timeout=5) as response:
        assert json.loads(response.read())["status"] == "lost"
    closed = fake.events_of("charge.dispute.closed")[0]["data"]["object"]
    assert closed["id"] == dispute["id"] and closed["status"] == "lost"
    assert client.v1.disputes.retrieve(dispute["id"]).status == "lost"


# --- the command line ----------------------------------------------------------------------------
def test_cli_serves_until_terminated():
    root = Path(__file__).resolve().parents[2]
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.fakes.stripe_fake", "--port", "0", "--webhook-secret", SECRET],
        cwd=root, stdout=subprocess.PIPE, text=True)
    try:
        line = process.stdout.readline()
        url = line.split(" listening on ")[1].split()[0]
        client = stripe.StripeClient("sk_test_cli", base_addresses={"api": url}, max_network_retries=0)
        assert client.v1.payment_methods.retrieve("pm_card_visa").card.last4 == "4242"
    finally:
        process.terminate()
        assert process.wait(timeout=5) == 0


# --- odds and ends -------------------------------------------------------------------------------
def test_a_succeeded_payment_cannot_be_confirmed_again(client):
    pi = _charge(client)
    with pytest.raises(stripe.InvalidRequestError) as caught:
        client.v1.payment_intents.confirm(pi.id, params={"payment_method": "pm_card_visa"})
    assert caught.value.code == "payment_intent_unexpected_state"
    assert caught.value.error.payment_intent.status == "succeeded"


def test_stripe_form_encoding_is_decoded():
    from tests.fakes.stripe_fake.forms import parse_form

    assert parse_form("metadata[invoice]=AER-1&metadata[0]=x&expand[0]=a&expand[1]=b.c&types[]=card"
                      "&invoice_settings[default_payment_method]=pm_1&amount=100") == {
        "metadata": {"invoice": "AER-1", "0": "x"}, "expand": ["a", "b.c"], "types": ["card"],
        "invoice_settings": {"default_payment_method": "pm_1"}, "amount": "100"}


def test_reset_forgets_everything(client, fake):
    pi = _charge(client, key="k-reset")
    fake.reset()
    assert fake.outbox == [] and fake.events == []
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.payment_intents.retrieve(pi.id)
    assert _charge(client, key="k-reset").id != pi.id


def test_a_missing_object_named_in_a_parameter_is_a_400(client):
    with pytest.raises(stripe.InvalidRequestError) as caught:
        _charge(client, "pm_gone")
    assert caught.value.http_status == 400 and caught.value.code == "resource_missing"
    assert caught.value.param == "payment_method" and "No such PaymentMethod: 'pm_gone'" in str(caught.value)
    with pytest.raises(stripe.InvalidRequestError) as caught:
        client.v1.payment_methods.attach("pm_card_visa", params={"customer": "cus_gone"})
    assert (caught.value.http_status, caught.value.param) == (400, "customer")


def test_expand_follows_dotted_paths(client):
    pi = _charge(client, "pm_card_visa")
    charge = client.v1.charges.retrieve(pi.latest_charge, params={"expand": ["payment_intent.latest_charge"]})
    assert charge.payment_intent.id == pi.id and charge.payment_intent.latest_charge.id == charge.id
