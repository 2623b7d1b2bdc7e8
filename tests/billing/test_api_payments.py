"""Paying invoices, the payment list and cards on file through the API (SPEC §10), and a
suspended organisation paying its way back (SPEC §4)."""
from datetime import timedelta

import pytest

from aerolith import clock
from aerolith.errors import NotFound
from billing.models import Invoice, Payment, PaymentMethod, Subscription
from billing.services.collection import payment_method_attach, payment_method_make_default
from billing.services.invoices import invoice_void
from tenants.models import AuditEvent, Tenant
from tenants.services.clocks import tenant_clock_advance

from ..conftest import api_client, assert_problem, make_key, owner_principal
from .api_support import billing_state, client_as, convert, open_invoice, subscription

PMS = "/api/v1/payment-methods"


def _pay(client, number, method="card"):
    return client.post(f"/api/v1/invoices/{number}/pay", {"method": method}, format="json")


def _attach(tenant, card):
    return payment_method_attach(tenant=tenant, gateway_id=card, actor=owner_principal(tenant))


# --- cards on file -----------------------------------------------------------------------------

@pytest.mark.django_db
def test_attach_list_and_remove_cards(alice):
    client = client_as(alice)
    assert client.get(PMS).json()["results"] == []
    visa = client.post(PMS, {"stripe_payment_method": "pm_card_visa"}, format="json")
    assert visa.status_code == 201, visa.content
    visa = visa.json()
    assert (visa["brand"], visa["last4"], visa["is_default"]) == ("visa", "4242", True)
    master = client.post(PMS, {"stripe_payment_method": "pm_card_mastercard", "make_default": False},
                         format="json").json()
    assert master["is_default"] is False
    rows = client.get(PMS).json()["results"]
    assert {(r["id"], r["is_default"]) for r in rows} == {(visa["id"], True), (master["id"], False)}
    assert client.get("/api/v1/subscription").json()["default_payment_method"]["id"] == visa["id"]

    assert client.delete(f"{PMS}/{visa['id']}").status_code == 204
    rows = client.get(PMS).json()["results"]
    assert [(r["id"], r["is_default"]) for r in rows] == [(master["id"], True)]
    assert subscription(alice).default_payment_method_id == master["id"]
    assert_problem(client.delete(f"{PMS}/{visa['id']}"), 404, "payment_method_not_found")


BAD_CARDS = [
    ({"stripe_payment_method": "card_visa"}, "invalid"),
    ({"stripe_payment_method": "pm_card_doesNotExist"}, "unknown_payment_method"),
    ({"stripe_payment_method": "pm_card_visa"}, "already_attached"),
    ({"stripe_payment_method": 4242}, "invalid"),
    ({"stripe_payment_method": ""}, "blank"),
    ({"stripe_payment_method": "pm_" + "x" * 300}, "max_length"),
    ({"stripe_payment_method": "pm_card_mastercard", "make_default": "yes"}, "invalid"),
    ({"stripe_payment_method": None}, "null"),
    ({}, "required"),
    ([], "invalid"),
]


@pytest.mark.django_db
@pytest.mark.parametrize(("body", "code"), BAD_CARDS)
def test_bad_cards_are_refused_and_nothing_changes(alice, body, code):
    _attach(alice, "pm_card_visa")
    client = client_as(alice)
    before = billing_state(alice)
    problem = assert_problem(client.post(PMS, body, format="json"), 400)
    codes = {e["code"] for e in problem.get("errors", [])} | {problem["code"]}
    assert code in codes, problem
    assert any(e["field"] in ("stripe_payment_method", "make_default", None)
               for e in problem.get("errors", [{"field": None}]))
    assert billing_state(alice) == before


@pytest.mark.django_db
def test_malformed_card_requests_are_refused(alice):
    client = client_as(alice)
    before = billing_state(alice)
    assert_problem(client.post(PMS, "{", content_type="application/json"), 400, "malformed_request")
    assert_problem(client.post(PMS, {"stripe_payment_method": "pm_card_visa"}), 415)
    for bad in ("abc", "0", "-1", "99999999999999999999999", "1.5"):
        assert_problem(client.delete(f"{PMS}/{bad}"), 404)
    assert billing_state(alice) == before


@pytest.mark.django_db
def test_cards_of_another_tenant_cannot_be_seen_or_removed(alice, charlie):
    theirs = _attach(alice, "pm_card_visa")
    client = client_as(charlie)
    assert client.get(PMS).json()["results"] == []
    before = billing_state(alice)
    assert_problem(client.delete(f"{PMS}/{theirs.pk}"), 404, "payment_method_not_found")
    assert billing_state(alice) == before


# --- making a card the default ----------------------------------------------------------------

def _make_default(client, card_id, body=None):
    return client.patch(f"{PMS}/{card_id}", {"make_default": True} if body is None else body,
                        format="json")


def _two_cards(tenant):
    """visa (the default, attached first) and mastercard (on file, not the default)."""
    visa = _attach(tenant, "pm_card_visa")
    master = payment_method_attach(tenant=tenant, gateway_id="pm_card_mastercard", make_default=False,
                                   actor=owner_principal(tenant))
    assert subscription(tenant).default_payment_method_id == visa.pk
    return visa, master


@pytest.mark.django_db
def test_a_card_on_file_is_made_the_default_again(alice):
    visa, master = _two_cards(alice)
    client = client_as(alice)
    response = _make_default(client, master.pk)
    assert response.status_code == 200, response.content
    body = response.json()
    assert body == {"id": master.pk, "kind": master.kind, "brand": "mastercard", "last4": "4444",
                    "exp_month": master.exp_month, "exp_year": master.exp_year, "is_default": True,
                    "created_at": body["created_at"]}
    assert subscription(alice).default_payment_method_id == master.pk
    rows = client.get(PMS).json()["results"]
    assert {(r["id"], r["is_default"]) for r in rows} == {(visa.pk, False), (master.pk, True)}
    assert client.get("/api/v1/subscription").json()["default_payment_method"]["id"] == master.pk
    # and back: the card attaching refused as already_attached is the default once more
    assert _make_default(client, visa.pk).json()["is_default"] is True
    assert subscription(alice).default_payment_method_id == visa.pk
    events = AuditEvent.objects.filter(tenant=alice, action="payment_method.made_default")
    assert [e.target_id for e in events.order_by("id")] == [str(master.pk), str(visa.pk)]


@pytest.mark.django_db
def test_making_the_default_card_the_default_changes_nothing(alice):
    visa, _master = _two_cards(alice)
    client = client_as(alice)
    before = billing_state(alice)
    response = _make_default(client, visa.pk)
    assert response.status_code == 200, response.content
    assert response.json()["id"] == visa.pk and response.json()["is_default"] is True
    assert billing_state(alice) == before  # no audit entry either
    assert not AuditEvent.objects.filter(tenant=alice, action="payment_method.made_default").exists()


@pytest.mark.django_db
def test_making_an_unknown_removed_or_foreign_card_the_default_is_not_found(alice, bob, charlie):
    _visa, master = _two_cards(alice)
    bobs = _attach(bob, "pm_card_amex")
    client = client_as(alice)
    assert client.delete(f"{PMS}/{master.pk}").status_code == 204
    before, bob_before = billing_state(alice), billing_state(bob)
    for card_id in (master.pk, bobs.pk, 99999999):
        problem = assert_problem(_make_default(client, card_id), 404, "payment_method_not_found")
        assert problem["detail"] == "No such card on file."
    for bad in ("abc", "0", "-1", "99999999999999999999999", "1.5"):
        assert_problem(_make_default(client, bad), 404)
    # charlie, who has no card at all, finds neither of theirs
    for card_id in (bobs.pk, _visa.pk):
        assert_problem(_make_default(client_as(charlie), card_id), 404, "payment_method_not_found")
    assert billing_state(alice) == before and billing_state(bob) == bob_before


@pytest.mark.django_db
@pytest.mark.parametrize(("body", "code"), [
    ({"make_default": False}, "must_be_true"),
    ({}, "required"),
    ({"make_default": None}, "null"),
    ({"make_default": "true"}, "invalid"),
    ({"make_default": 1}, "invalid"),
    ([], "invalid"),
])
def test_a_bad_make_default_body_is_refused_and_nothing_changes(alice, body, code):
    _visa, master = _two_cards(alice)
    client = client_as(alice)
    before = billing_state(alice)
    problem = assert_problem(_make_default(client, master.pk, body), 400, "validation_error")
    assert code in {e["code"] for e in problem["errors"]}, problem
    if code in ("must_be_true", "required", "null"):
        error = problem["errors"][0]
        assert error["field"] == "make_default"
        assert "make another card the default" in error["detail"], error
    assert billing_state(alice) == before
    assert_problem(client.patch(f"{PMS}/{master.pk}", "{", content_type="application/json"), 400,
                   "malformed_request")
    assert_problem(client.patch(f"{PMS}/{master.pk}", {"make_default": True}), 415)
    assert billing_state(alice) == before


@pytest.mark.django_db
@pytest.mark.parametrize("role", ["viewer", "developer"])
def test_viewers_and_developers_cannot_make_a_card_the_default(alice, role):
    _visa, master = _two_cards(alice)
    member = client_as(alice, role)
    reader = api_client("alice", make_key(alice, ["read"], name="reader"))
    before = billing_state(alice)
    assert_problem(_make_default(member, master.pk), 403, "role_not_allowed")
    assert_problem(_make_default(reader, master.pk), 403, "insufficient_scope")
    assert billing_state(alice) == before


@pytest.mark.django_db
def test_the_billing_role_and_a_billing_key_make_a_card_the_default(alice):
    visa, master = _two_cards(alice)
    assert _make_default(client_as(alice, "billing"), master.pk).status_code == 200
    key = api_client("alice", make_key(alice, ["billing:write"]))
    assert _make_default(key, visa.pk).status_code == 200
    assert subscription(alice).default_payment_method_id == visa.pk


@pytest.mark.django_db
def test_a_suspended_tenant_switches_to_a_working_card_and_pays(alice):
    convert(alice)  # paid with visa
    declined = payment_method_attach(tenant=alice, gateway_id="pm_card_chargeDeclined",
                                     actor=owner_principal(alice))
    visa = PaymentMethod.objects.get(tenant=alice, gateway_id="pm_card_visa")
    Subscription.objects.filter(tenant=alice).update(status="suspended", suspended_at=clock.now(alice),
                                                     past_due_since=clock.now(alice))
    Tenant.objects.filter(pk=alice.pk).update(status="suspended")
    invoice = open_invoice(alice, cents=2000)
    client = client_as(alice)
    assert_problem(client.post("/api/v1/subscription/change", {"plan": "professional"}, format="json"),
                   402, "account_suspended")  # writes are refused ...
    assert_problem(_pay(client, invoice.number), 402, "card_declined")  # ... and the default declines
    response = _make_default(client, visa.pk)  # ... but switching cards works
    assert response.status_code == 200, response.content
    assert response.json()["is_default"] is True
    assert subscription(alice).default_payment_method_id == visa.pk != declined.pk
    paid = _pay(client, invoice.number)
    assert paid.status_code == 200, paid.content
    assert paid.json()["status"] == "succeeded" and paid.json()["account_status"] == "active"
    assert Payment.objects.get(pk=paid.json()["payment_id"]).payment_method_id == visa.pk


@pytest.mark.django_db
def test_making_a_card_the_default_is_audited_once(alice):
    visa, master = _two_cards(alice)
    actor = owner_principal(alice)
    method = payment_method_make_default(tenant=alice, method_id=master.pk, actor=actor)
    assert method.pk == master.pk
    payment_method_make_default(tenant=alice, method_id=master.pk, actor=actor)  # a no-op
    event = AuditEvent.objects.get(tenant=alice, action="payment_method.made_default")
    assert (event.target_type, event.target_id) == ("billing.paymentmethod", str(master.pk))
    assert event.before == {"default_payment_method": visa.pk}
    assert event.after == {"default_payment_method": master.pk, "brand": "mastercard", "last4": "4444"}
    assert event.actor.email == "owner@alice.test"
    with pytest.raises(NotFound) as refused:
        payment_method_make_default(tenant=alice, method_id=master.pk + 1000, actor=actor)
    assert refused.value.code == "payment_method_not_found"


# --- paying ---------------------------------------------------------------------------------

@pytest.mark.django_db
def test_paying_an_open_invoice_by_card(alice):
    convert(alice)
    invoice = open_invoice(alice, cents=1500)
    client = client_as(alice)
    response = _pay(client, invoice.number)
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["status"] == "succeeded" and body["amount_cents"] == 1500 and body["decline_code"] == ""
    assert body["invoice"] == {"number": invoice.number, "status": "paid", "amount_paid_cents": 1500,
                               "amount_due_cents": 0}
    assert body["account_status"] == "active"
    payment = Payment.objects.get(pk=body["payment_id"])
    assert payment.status == "succeeded" and payment.invoice_id == invoice.pk
    rows = client.get("/api/v1/payments").json()["results"]
    assert rows[0]["id"] == payment.pk and rows[0]["invoice"] == invoice.number
    assert rows[0]["card"]["last4"] == "4242" and rows[0]["method"] == "card"
    assert set(rows[0]) == {"id", "invoice", "method", "status", "amount_cents", "currency",
                            "decline_code", "hard_decline", "message", "card", "reference", "action_url",
                            "refunded_cents", "created_at"}
    assert len(rows) == 2  # and the trial conversion's charge


@pytest.mark.django_db
@pytest.mark.parametrize(("card", "decline_code", "hard"), [
    ("pm_card_chargeDeclined", "generic_decline", False),
    ("pm_card_chargeDeclinedInsufficientFunds", "insufficient_funds", False),
    ("pm_card_chargeDeclinedStolenCard", "stolen_card", True),
])
def test_a_declined_card_answers_402_and_the_failure_is_kept(alice, card, decline_code, hard):
    _attach(alice, card)
    invoice = open_invoice(alice, cents=2500)
    client = client_as(alice)
    body = assert_problem(_pay(client, invoice.number), 402, "card_declined")
    assert body["decline_code"] == decline_code and body["hard_decline"] is hard
    assert body["payment_status"] == "failed" and body["amount_cents"] == 2500
    assert body["invoice"]["status"] == "open" and body["invoice"]["amount_due_cents"] == 2500
    assert ("different card" in body["detail"]) is hard
    payment = Payment.objects.get(pk=body["payment_id"])
    assert payment.status == "failed" and payment.decline_code == decline_code
    invoice.refresh_from_db()
    assert invoice.status == "open" and invoice.attempt_count == 1
    assert subscription(alice).status == "past_due"
    rows = client.get("/api/v1/payments").json()["results"]
    assert [(r["status"], r["decline_code"], r["hard_decline"]) for r in rows] == [
        ("failed", decline_code, hard)]


@pytest.mark.django_db
def test_bad_payments_are_refused_and_nothing_changes(alice):
    convert(alice)
    client = client_as(alice)
    paid = Invoice.objects.get(tenant=alice)
    void = invoice_void(invoice=open_invoice(alice), actor="test")
    payable = open_invoice(alice)
    before = billing_state(alice)
    assert_problem(_pay(client, paid.number), 409, "invoice_not_payable")
    assert_problem(_pay(client, void.number), 409, "invoice_not_payable")
    assert_problem(_pay(client, "AER-1999-000001"), 404, "invoice_not_found")
    # sol, usdc, trx and usdt answer quotes: tests/billing/test_crypto_api.py, test_crypto_tron.py
    pay_url = f"/api/v1/invoices/{payable.number}/pay"
    for body in ({"method": "cash"}, {"method": 1}, {"method": None}, {}, ["card"]):
        assert_problem(client.post(pay_url, body, format="json"), 400, "validation_error")
    assert_problem(client.post(pay_url, "{", content_type="application/json"), 400, "malformed_request")
    assert_problem(client.post(pay_url, {"method": "card"}), 415)
    assert billing_state(alice) == before


@pytest.mark.django_db
def test_paying_without_a_card_on_file_says_to_add_one(alice):
    invoice = open_invoice(alice)
    before = billing_state(alice)
    problem = assert_problem(_pay(client_as(alice), invoice.number), 400)
    error = problem["errors"][0]
    assert error["code"] == "no_payment_method" and "/api/v1/payment-methods" in error["detail"], problem
    assert billing_state(alice) == before


@pytest.mark.django_db
def test_a_tenant_cannot_pay_or_see_another_tenants_payments(alice, charlie):
    convert(alice)
    invoice = open_invoice(alice)
    _attach(charlie, "pm_card_visa")
    client = client_as(charlie)
    before = billing_state(alice)
    assert_problem(_pay(client, invoice.number), 404, "invoice_not_found")
    assert client.get("/api/v1/payments").json()["results"] == []
    assert billing_state(alice) == before


# --- roles -------------------------------------------------------------------------------------

@pytest.mark.django_db
@pytest.mark.parametrize("role", ["viewer", "developer"])
def test_viewers_and_developers_cannot_pay_or_manage_cards(alice, role):
    card = _attach(alice, "pm_card_visa")
    invoice = open_invoice(alice)
    client = client_as(alice, role)
    assert client.get(PMS).status_code == 200 and client.get("/api/v1/payments").status_code == 200
    before = billing_state(alice)
    assert_problem(_pay(client, invoice.number), 403, "role_not_allowed")
    assert_problem(client.post(PMS, {"stripe_payment_method": "pm_card_mastercard"}, format="json"),
                   403, "role_not_allowed")
    assert_problem(client.delete(f"{PMS}/{card.pk}"), 403, "role_not_allowed")
    assert billing_state(alice) == before


@pytest.mark.django_db
def test_the_billing_role_and_a_billing_key_pay_and_manage_cards(alice):
    client = client_as(alice, "billing")
    assert client.post(PMS, {"stripe_payment_method": "pm_card_visa"}, format="json").status_code == 201
    assert _pay(client, open_invoice(alice).number).status_code == 200
    key = api_client("alice", make_key(alice, ["billing:write"]))
    assert _pay(key, open_invoice(alice).number).status_code == 200
    reader = api_client("alice", make_key(alice, ["read"], name="reader"))
    assert_problem(_pay(reader, open_invoice(alice).number), 403, "insufficient_scope")


# --- suspended, then paid --------------------------------------------------------------------------

@pytest.mark.django_db
def test_a_suspended_tenant_adds_a_card_pays_and_is_active_at_once(alice):
    convert(alice)  # active and paid with a good card
    client = client_as(alice)
    swapped = client.post(PMS, {"stripe_payment_method": "pm_card_chargeDeclined"}, format="json")
    assert swapped.status_code == 201 and swapped.json()["is_default"] is True
    renewal_at = subscription(alice).current_period_end
    tenant_clock_advance(tenant=alice, actor="test", to=renewal_at + timedelta(days=8, seconds=1))
    sub = subscription(alice)
    assert sub.status == "suspended" and Tenant.objects.get(pk=alice.pk).status == "suspended"
    body = client.get("/api/v1/subscription").json()
    assert body["status"] == "suspended" and body["suspended_at"] and body["past_due_since"]

    # writes are refused with 402 ...
    assert_problem(client.post("/api/v1/usage/events", [{"id": "s-1", "meter": "compute_hours",
                                                         "quantity": 1}], format="json"),
                   402, "account_suspended")
    assert_problem(client.post("/api/v1/subscription/change", {"plan": "professional"}, format="json"),
                   402, "account_suspended")
    # ... but reading, adding a card and paying work
    overdue = [row for row in client.get("/api/v1/invoices").json()["results"] if row["status"] == "open"]
    assert [row["reason"] for row in overdue] == ["renewal"]
    declined = assert_problem(_pay(client, overdue[0]["number"]), 402, "card_declined")
    assert declined["account_status"] == "suspended"
    added = client.post(PMS, {"stripe_payment_method": "pm_card_mastercard"}, format="json")
    assert added.status_code == 201, added.content
    paid = _pay(client, overdue[0]["number"])
    assert paid.status_code == 200, paid.content
    assert paid.json()["status"] == "succeeded" and paid.json()["account_status"] == "active"
    assert paid.json()["invoice"]["status"] == "paid"

    sub = subscription(alice)
    assert sub.status == "active" and sub.suspended_at is None and sub.past_due_since is None
    assert Tenant.objects.get(pk=alice.pk).status == "active"
    assert client.post("/api/v1/usage/events", [{"id": "s-2", "meter": "compute_hours", "quantity": 1}],
                       format="json").status_code == 202
    assert PaymentMethod.objects.filter(tenant=alice, detached_at__isnull=True).count() == 3
