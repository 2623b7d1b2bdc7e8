"""Cards through Stripe (SPEC §6), against the local Stripe fake: a Stripe customer per
tenant, adding a card on Stripe Checkout in setup mode (API and portal) with the return
page and the webhooks each able to attach it once, and pm_… ids attached to the tenant's
customer only. Bad input is refused with a clear answer."""
import pytest

from billing.models import PaymentMethod, StripeCustomer, StripeEvent, Subscription
from billing.services.cards import card_setup_start
from tenants.models import Tenant

from ..conftest import api_client, assert_problem, jwt_for, portal_user
from .stripe_support import (
    browser_get,
    browser_post,
    card_on_file,
    customer_of,
    deliver_outbox,
    local_path,
    stripe_fake_running,
)

_stripe = pytest.fixture(name="stripe_fake")(stripe_fake_running)


def _setup(slug: str) -> dict:
    response = api_client(slug, jwt_for(slug, f"owner@{slug}.test")).post(
        "/api/v1/payment-methods/setup", format="json")
    assert response.status_code == 201, response.content
    return response.json()


@pytest.mark.django_db
def test_a_card_added_on_checkout_is_attached_by_the_return_page_and_the_webhooks_change_nothing(
        alice, stripe_fake):
    session = _setup("alice")
    assert session["session_id"].startswith("cs_test_")
    assert session["url"] == f"{stripe_fake.url}/checkout/{session['session_id']}"
    cs = stripe_fake.get(session["session_id"])
    assert (cs["mode"], cs["customer"]) == ("setup", customer_of(alice))
    assert cs["success_url"] == ("http://alice.aerolith.localhost:8000/billing/cards/added"
                                 "?session_id={CHECKOUT_SESSION_ID}")

    # the customer picks a card on Stripe's page, which sends them back to the portal
    status, page = browser_get(session["url"])
    assert status == 200 and "pm_card_mastercard" in page
    status, back = browser_post(session["url"], {"payment_method": "pm_card_mastercard"})
    assert status == 303 and back.endswith(f"/billing/cards/added?session_id={session['session_id']}")
    response = portal_user(alice).get(local_path(back))
    assert response.status_code == 302 and response["Location"] == "/billing"

    card = card_on_file(alice)
    assert (card.brand, card.last4, card.exp_month, card.exp_year) == ("mastercard", "4444", 12, 2034)
    assert card.gateway_id.startswith("pm_") and card.gateway_id != "pm_card_mastercard"
    assert stripe_fake.get(card.gateway_id)["customer"] == customer_of(alice)
    assert Subscription.objects.get(tenant=alice).default_payment_method_id == card.pk

    answers = deliver_outbox(stripe_fake)
    assert [a["type"] for a in answers] == ["setup_intent.succeeded", "checkout.session.completed"]
    assert {a["status"] for a in answers} == {"processed"}
    assert PaymentMethod.objects.filter(tenant=alice).count() == 1
    assert all("already on file" in e.last_error for e in StripeEvent.objects.all())


@pytest.mark.django_db
def test_the_webhook_may_attach_the_card_before_the_customer_is_back(bob, stripe_fake):
    session = _setup("bob")
    back = stripe_fake.checkout_complete(session["session_id"], "pm_card_visa")
    answers = deliver_outbox(stripe_fake)
    assert [a["status"] for a in answers] == ["processed", "processed"]
    card = card_on_file(bob)
    assert (card.brand, card.last4) == ("visa", "4242")
    assert Subscription.objects.get(tenant=bob).default_payment_method_id == card.pk

    client = portal_user(bob)
    response = client.get(local_path(back), follow=True)
    assert response.status_code == 200
    assert "Added visa ···· 4242" in response.content.decode()
    assert PaymentMethod.objects.filter(tenant=bob).count() == 1
    # a redelivery finds the events handled
    again = deliver_outbox(stripe_fake)
    assert [a["duplicate"] for a in again] == [True, True]


@pytest.mark.django_db
def test_the_portal_button_sends_the_customer_to_checkout(alice, stripe_fake):
    client = portal_user(alice)
    page = client.get("/billing").content.decode()
    assert 'action="/billing/cards/checkout"' in page and "Add a card" in page
    response = client.post("/billing/cards/checkout")
    assert response.status_code == 302
    assert response["Location"].startswith(f"{stripe_fake.url}/checkout/cs_test_")


@pytest.mark.django_db
def test_one_stripe_customer_per_tenant(alice, bob, stripe_fake):
    first, second = _setup("alice"), _setup("alice")
    _setup("bob")
    assert StripeCustomer.objects.filter(tenant=alice).count() == 1
    customers = {stripe_fake.get(s["session_id"])["customer"] for s in (first, second)}
    assert customers == {customer_of(alice)}
    assert customer_of(alice) != customer_of(bob)
    customer = stripe_fake.get(customer_of(alice))
    assert customer["metadata"] == {"tenant": "alice", "tenant_id": str(alice.pk)}


@pytest.mark.django_db
def test_another_tenants_session_or_an_unfinished_one_attaches_nothing(alice, bob, stripe_fake):
    alices = _setup("alice")
    stripe_fake.checkout_complete(alices["session_id"], "pm_card_visa")
    response = portal_user(bob).get(f"/billing/cards/added?session_id={alices['session_id']}")
    assert response.status_code == 400
    assert "No card setup session" in response.content.decode()
    assert not PaymentMethod.objects.filter(tenant=bob).exists()

    bobs = _setup("bob")  # opened, never completed
    response = portal_user(bob).get(f"/billing/cards/added?session_id={bobs['session_id']}")
    assert response.status_code == 400
    assert "Checkout page was not completed" in response.content.decode()
    for junk in ("", "nonsense", "cs_test_" + "x" * 300, "cs_test_doesnotexist"):
        response = portal_user(bob).get("/billing/cards/added", {"session_id": junk})
        assert response.status_code == 400, junk
    assert not PaymentMethod.objects.filter(tenant=bob).exists()


@pytest.mark.django_db
def test_setup_is_refused_without_a_subscription(charlie, stripe_fake):
    token = jwt_for("charlie", "owner@charlie.test")
    Subscription.objects.filter(tenant=charlie).delete()
    response = api_client("charlie", token).post("/api/v1/payment-methods/setup", format="json")
    assert_problem(response, 409, "no_subscription")
    with pytest.raises(Exception) as raised:
        card_setup_start(tenant=Tenant.objects.get(schema_name="public"))
    assert getattr(raised.value, "code", "") == "no_subscription"
    assert not stripe_fake.events


@pytest.mark.django_db
def test_setup_needs_billing_rights(alice, stripe_fake):
    from ..conftest import add_member

    add_member(alice, "dev@alice.test", "developer")
    response = api_client("alice", jwt_for("alice", "dev@alice.test")).post(
        "/api/v1/payment-methods/setup", format="json")
    assert_problem(response, 403)


@pytest.mark.django_db
def test_pm_ids_are_attached_to_the_tenants_customer_and_others_cards_are_refused(alice, bob, stripe_fake):
    alice_client = api_client("alice", jwt_for("alice", "owner@alice.test"))
    response = alice_client.post("/api/v1/payment-methods", {"stripe_payment_method": "pm_card_amex"},
                                 format="json")
    assert response.status_code == 201, response.content
    assert (response.json()["brand"], response.json()["last4"]) == ("amex", "8431")
    card = card_on_file(alice)
    assert stripe_fake.get(card.gateway_id)["customer"] == customer_of(alice)

    # bob cannot take alice's saved card by its id, nor name one that does not exist
    bob_client = api_client("bob", jwt_for("bob", "owner@bob.test"))
    for gateway_id in (card.gateway_id, "pm_doesnotexist"):
        response = bob_client.post("/api/v1/payment-methods", {"stripe_payment_method": gateway_id},
                                   format="json")
        assert_problem(response, 400)
        assert response.json()["errors"][0]["field"] == "stripe_payment_method"
    assert not PaymentMethod.objects.filter(tenant=bob).exists()
    # an id already attached to alice's customer is hers: attaching it again says so
    response = alice_client.post("/api/v1/payment-methods", {"stripe_payment_method": card.gateway_id},
                                 format="json")
    assert_problem(response, 400)
    assert response.json()["errors"][0]["code"] == "already_attached"


@pytest.mark.django_db
def test_a_customer_stripe_no_longer_knows_is_made_again(alice, stripe_fake):
    """The test-mode fake forgets everything when it restarts; so would Stripe a deleted
    customer. Adding a card then makes a new customer instead of failing."""
    _setup("alice")
    old = customer_of(alice)
    stripe_fake.reset()
    session = _setup("alice")
    assert customer_of(alice) != old
    assert stripe_fake.get(session["session_id"])["customer"] == customer_of(alice)


@pytest.mark.django_db
def test_a_late_webhook_does_not_bring_back_a_card_the_customer_removed(alice, stripe_fake):
    session = _setup("alice")
    back = stripe_fake.checkout_complete(session["session_id"], "pm_card_visa")
    client = portal_user(alice)
    client.get(local_path(back))
    card = card_on_file(alice)
    response = client.post("/billing/cards/remove", {"method": card.pk})
    assert response.status_code == 302
    answers = deliver_outbox(stripe_fake)
    assert [a["status"] for a in answers] == ["processed", "processed"]
    assert not PaymentMethod.objects.filter(tenant=alice, detached_at__isnull=True).exists()
    assert all("removed by the customer" in e.last_error for e in StripeEvent.objects.all())
