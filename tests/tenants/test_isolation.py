"""A user or key of one organisation gets nothing of another (SPEC §2), on every tenant API
endpoint, in the portal, and on hosts that belong to nobody. Charlie, who shares nothing
with alice or bob, must never see their rows."""
from dataclasses import dataclass, field
from datetime import UTC, datetime

import pytest
from django.test import Client
from django_tenants.utils import tenant_context

from billing.decisions import LineDraft
from billing.models import CryptoQuote, Invoice, Payment, PaymentMethod, Subscription
from billing.services.collection import payment_method_attach
from billing.services.crypto import quote_create
from billing.services.invoices import invoice_draft, invoice_finalize
from billing.services.subscriptions import subscription_cancel
from metering.models import UsageAggregate
from tenants.models import ApiKey, AuditEvent, Membership, TestClock, User
from tenants.permissions import ALL_SCOPES
from tenants.services.clocks import tenant_clock_attach
from tests.conftest import (
    PASSWORD,
    add_member,
    api_client,
    assert_problem,
    host_of,
    jwt_for,
    make_key,
    owner_principal,
)


@dataclass(frozen=True)
class Endpoint:
    """One tenant API operation. `path` may name `{member_id}`, `{key_id}`,
    `{invoice_number}`, `{payment_method_id}` and `{crypto_quote_id}`; `body` is JSON or a function of the
    caller's credentials (for the token endpoints, whose credentials travel in the body)."""

    method: str
    path: str
    body: object = None
    # What a caller of another organisation gets, by credential kind, when it is not the
    # usual 404 for a JWT and 401 for an API key.
    foreign: dict = field(default_factory=dict)
    # Puts the caller's own tenant in a state where the request can succeed (the control).
    prepare: object = None

    def request(self, client, ids: dict, creds: dict):
        body = self.body(creds) if callable(self.body) else self.body
        return getattr(client, self.method)(self.path.format(**ids), body, format="json")


ENDPOINTS = {
    "tenant": Endpoint("get", "/api/v1/tenant"),
    "subscription": Endpoint("get", "/api/v1/subscription"),
    "subscription-preview-change": Endpoint("post", "/api/v1/subscription/preview-change",
                                            {"plan": "enterprise"}),
    "subscription-change": Endpoint("post", "/api/v1/subscription/change", {"plan": "enterprise"}),
    "subscription-cancel": Endpoint("post", "/api/v1/subscription/cancel", {"at_period_end": True}),
    "subscription-resume": Endpoint("post", "/api/v1/subscription/resume",
                                    prepare=lambda tenant: subscription_cancel(
                                        tenant=tenant, at_period_end=True, actor="test")),
    "invoices-list": Endpoint("get", "/api/v1/invoices"),
    "invoices-retrieve": Endpoint("get", "/api/v1/invoices/{invoice_number}"),
    "invoices-pdf": Endpoint("get", "/api/v1/invoices/{invoice_number}/pdf"),
    "invoices-pay": Endpoint("post", "/api/v1/invoices/{invoice_number}/pay", {"method": "card"}),
    "invoices-pay-crypto": Endpoint("post", "/api/v1/invoices/{invoice_number}/pay", {"method": "usdc"}),
    "crypto-quotes-retrieve": Endpoint("get", "/api/v1/crypto-quotes/{crypto_quote_id}"),
    "payments-list": Endpoint("get", "/api/v1/payments"),
    "payment-methods-list": Endpoint("get", "/api/v1/payment-methods"),
    "payment-methods-attach": Endpoint("post", "/api/v1/payment-methods",
                                       {"stripe_payment_method": "pm_card_mastercard",
                                        "make_default": True}),
    "payment-methods-setup": Endpoint("post", "/api/v1/payment-methods/setup"),
    "payment-methods-make-default": Endpoint("patch", "/api/v1/payment-methods/{payment_method_id}",
                                             {"make_default": True}),
    "payment-methods-delete": Endpoint("delete", "/api/v1/payment-methods/{payment_method_id}"),
    "members-list": Endpoint("get", "/api/v1/members"),
    "members-retrieve": Endpoint("get", "/api/v1/members/{member_id}"),
    "members-invite": Endpoint("post", "/api/v1/members",
                               {"email": "spy@bob.test", "role": "admin"}),
    "members-patch": Endpoint("patch", "/api/v1/members/{member_id}", {"role": "viewer"}),
    "members-delete": Endpoint("delete", "/api/v1/members/{member_id}"),
    "api-keys-list": Endpoint("get", "/api/v1/api-keys"),
    "api-keys-retrieve": Endpoint("get", "/api/v1/api-keys/{key_id}"),
    "api-keys-create": Endpoint("post", "/api/v1/api-keys", {"name": "spy", "scopes": ["read"]}),
    "api-keys-delete": Endpoint("delete", "/api/v1/api-keys/{key_id}"),
    "audit-events": Endpoint("get", "/api/v1/audit-events"),
    "test-clock": Endpoint("get", "/api/v1/test-clock"),
    "test-clock-advance": Endpoint("post", "/api/v1/test-clock/advance", {"seconds": 86400}),
    "usage": Endpoint("get", "/api/v1/usage"),
    "usage-timeseries": Endpoint("get", "/api/v1/usage/timeseries?meter=api_calls"),
    "usage-events": Endpoint("post", "/api/v1/usage/events",
                             [{"id": "spy-1", "meter": "compute_hours", "quantity": 3}]),
    # The token endpoints take credentials in the body: bob's password or refresh token.
    "auth-token": Endpoint("post", "/api/v1/auth/token",
                           lambda c: {"email": c["email"], "password": PASSWORD},
                           foreign={"jwt": 401, "api_key": 401}),
    "auth-token-refresh": Endpoint("post", "/api/v1/auth/token/refresh",
                                   lambda c: {"refresh": c["refresh"]},
                                   foreign={"jwt": 404, "api_key": 404}),
}
ALICE_TIME = datetime(2031, 1, 2, 3, 4, 5, tzinfo=UTC)
ID_ENDPOINTS = [name for name, e in ENDPOINTS.items() if "{" in e.path]


def _tokens(slug: str, email: str) -> dict:
    response = api_client(slug).post("/api/v1/auth/token", {"email": email, "password": PASSWORD},
                                     format="json")
    assert response.status_code == 200, response.content
    return response.json()


def _alice_state(alice) -> tuple:
    with tenant_context(alice):
        keys = sorted(ApiKey.objects.values_list("id", "name", "revoked_at"))
    members = sorted(Membership.objects.filter(tenant=alice).values_list("id", "role"))
    return (keys, members, AuditEvent.objects.filter(tenant=alice).count(),
            list(TestClock.objects.filter(tenant=alice).values_list("frozen_time", flat=True)),
            UsageAggregate.objects.filter(tenant_id=alice.pk).count(),
            list(Subscription.objects.filter(tenant=alice).values_list(
                "plan_id", "pending_plan_id", "status", "cancel_at_period_end",
                "default_payment_method_id", "balance_cents")),
            sorted(Invoice.objects.filter(tenant=alice).values_list(
                "number", "status", "amount_paid_cents", "amount_due_cents", "attempt_count")),
            sorted(PaymentMethod.objects.filter(tenant=alice).values_list("id", "detached_at")),
            Payment.objects.filter(tenant=alice).count(),
            sorted(CryptoQuote.objects.filter(tenant=alice).values_list("id", "status")))


def _open_invoice(tenant, description: str) -> Invoice:
    """An open invoice of one manual line, not charged automatically."""
    invoice = invoice_draft(tenant=tenant, subscription=tenant.subscription, reason="manual",
                            period_start=tenant.subscription.current_period_start,
                            period_end=tenant.subscription.current_period_end,
                            lines=[LineDraft("adjustment", description, 4200)])
    return invoice_finalize(invoice=invoice, actor="test", collect=False)


@pytest.fixture
def world(alice, bob, charlie):
    """Alice and bob each with a member, a key, a test clock, a card, an open invoice and
    some audit trail; charlie with his own key; bob's owner with a JWT pair and an
    all-scope key."""
    tenant_clock_attach(tenant=alice, actor="system", at=ALICE_TIME)
    tenant_clock_attach(tenant=bob, actor="system")
    alice_member = add_member(alice, "dev@alice.test", "developer")
    bob_member = add_member(bob, "dev@bob.test", "developer")
    bob_key = make_key(bob, list(ALL_SCOPES), name="bob everything")
    alice_secret = make_key(alice, ["read"], name="alice-ci-key")
    with tenant_context(alice):
        alice_key = ApiKey.objects.get(name="alice-ci-key")
    with tenant_context(bob):
        bob_key_id = ApiKey.objects.get(name="bob everything").pk
    # Key ids are per schema: make sure alice's id names no key of bob's, so that a 404
    # on bob's domain proves the lookup stayed in bob's schema.
    if alice_key.pk == bob_key_id:
        make_key(alice, ["read"], name="alice-ci-key-2")
        with tenant_context(alice):
            alice_key = ApiKey.objects.get(name="alice-ci-key-2")
    make_key(charlie, ["read"], name="charlie key")
    cards = {t.slug: payment_method_attach(tenant=t, gateway_id="pm_card_visa",
                                           actor=owner_principal(t)) for t in (alice, bob)}
    alice_invoice = _open_invoice(alice, "alice-invoice-line")
    bob_invoice = _open_invoice(bob, "Bob's own line")
    quotes = {t.slug: quote_create(tenant=t, invoice=invoice, currency="usdc", actor="test")
              for t, invoice in ((alice, alice_invoice), (bob, bob_invoice))}
    bob_tokens = _tokens("bob", "owner@bob.test")
    return {
        "alice_ids": {"member_id": alice_member.pk, "key_id": alice_key.pk,
                      "invoice_number": alice_invoice.number, "payment_method_id": cards["alice"].pk,
                      "crypto_quote_id": quotes["alice"].pk},
        "alice_secret": alice_secret,
        "alice_markers": ["owner@alice.test", "dev@alice.test", "Alice Ltd", alice_key.prefix,
                          "alice-ci-key", alice_secret.split(".")[1], "2031-01-02",
                          "alice-invoice-line", quotes["alice"].reference],
        "bob": {"email": "owner@bob.test", "jwt": bob_tokens["access"],
                "refresh": bob_tokens["refresh"], "api_key": bob_key},
        "bob_ids": {"member_id": bob_member.pk, "key_id": bob_key_id,
                    "invoice_number": bob_invoice.number, "payment_method_id": cards["bob"].pk,
                    "crypto_quote_id": quotes["bob"].pk},
    }


def _assert_nothing_of_alice(response, world):
    text = response.content.decode()
    for marker in world["alice_markers"]:
        assert marker not in text, (marker, text)
    assert '"access"' not in text and '"refresh"' not in text, text


# --- bob's credentials on alice's domain ---------------------------------------------------

@pytest.mark.django_db
@pytest.mark.parametrize("name", list(ENDPOINTS))
def test_credentials_of_another_tenant_get_nothing_and_change_nothing(name, alice, world):
    endpoint = ENDPOINTS[name]
    bob = world["bob"]
    before = _alice_state(alice)
    for kind in ("jwt", "api_key"):
        response = endpoint.request(api_client("alice", bob[kind]), world["alice_ids"], bob)
        expected = endpoint.foreign.get(kind, 404 if kind == "jwt" else 401)
        assert response.status_code == expected, (kind, response.content)
        assert_problem(response, expected)
        _assert_nothing_of_alice(response, world)
        assert _alice_state(alice) == before, kind
    assert not User.objects.filter(email="spy@bob.test").exists()


@pytest.mark.django_db
@pytest.mark.parametrize("name", ID_ENDPOINTS)
def test_ids_of_another_tenant_are_not_found_on_ones_own_domain(name, alice, world):
    before = _alice_state(alice)
    for kind in ("jwt", "api_key"):
        response = ENDPOINTS[name].request(api_client("bob", world["bob"][kind]),
                                           world["alice_ids"], world["bob"])
        assert response.status_code == 404, (kind, response.content)
        assert_problem(response, 404)
        _assert_nothing_of_alice(response, world)
        assert _alice_state(alice) == before, kind


@pytest.mark.django_db
@pytest.mark.parametrize("name", [n for n, e in ENDPOINTS.items() if not e.foreign])
def test_credentials_work_on_their_own_domain(name, bob, world):
    """The control for the tests above: the same requests succeed on bob's own domain, so
    a 404 or 401 on alice's is isolation, not a broken endpoint."""
    endpoint = ENDPOINTS[name]
    if endpoint.prepare is not None:
        endpoint.prepare(bob)
    creds = world["bob"]
    response = endpoint.request(api_client("bob", creds["jwt"]), world["bob_ids"], creds)
    assert response.status_code in (200, 201, 202, 204), response.content


@pytest.mark.django_db
def test_a_refresh_token_of_another_tenant_mints_nothing(world):
    response = api_client("alice").post("/api/v1/auth/token/refresh",
                                        {"refresh": world["bob"]["refresh"]}, format="json")
    assert_problem(response, 404)
    assert "access" not in response.json()
    own = api_client("bob").post("/api/v1/auth/token/refresh",
                                 {"refresh": world["bob"]["refresh"]}, format="json")
    assert own.status_code == 200 and own.json()["access"]


@pytest.mark.django_db
def test_a_member_of_both_tenants_needs_a_token_per_tenant(alice, world):
    """A JWT names its tenant: bob's owner, once also a member of alice, still cannot use
    bob's token on alice's domain."""
    add_member(alice, "owner@bob.test", "viewer", password=PASSWORD)
    assert_problem(api_client("alice", world["bob"]["jwt"]).get("/api/v1/members"), 404)
    alice_token = jwt_for("alice", "owner@bob.test")
    assert api_client("alice", alice_token).get("/api/v1/members").status_code == 200
    assert_problem(api_client("bob", alice_token).get("/api/v1/members"), 404)


# --- charlie sees only charlie ---------------------------------------------------------------

def _all_pages(client, path):
    rows, url = [], path
    while url:
        response = client.get(url)
        assert response.status_code == 200, response.content
        body = response.json()
        rows += body["results"]
        url = body.get("next")
    return rows


@pytest.mark.django_db
def test_charlie_lists_only_charlies_members(charlie, world):
    client = api_client("charlie", jwt_for("charlie", "owner@charlie.test"))
    client.post("/api/v1/members", {"email": "new@charlie.test", "role": "viewer"}, format="json")
    emails = {row["email"] for row in _all_pages(client, "/api/v1/members")}
    assert emails == {"owner@charlie.test", "new@charlie.test"}
    ids = {row["id"] for row in _all_pages(client, "/api/v1/members")}
    assert ids == set(Membership.objects.filter(tenant=charlie).values_list("id", flat=True))


@pytest.mark.django_db
def test_charlie_lists_only_charlies_api_keys(charlie, world):
    client = api_client("charlie", jwt_for("charlie", "owner@charlie.test"))
    rows = _all_pages(client, "/api/v1/api-keys")
    with tenant_context(charlie):
        prefixes = set(ApiKey.objects.values_list("prefix", flat=True))
    assert {row["prefix"] for row in rows} == prefixes
    assert {row["name"] for row in rows} == {"charlie key"}
    _assert_nothing_of_alice(client.get("/api/v1/api-keys"), world)


@pytest.mark.django_db
def test_charlie_reads_only_charlies_audit_trail(alice, bob, charlie, world):
    assert AuditEvent.objects.filter(tenant=alice).exists()
    assert AuditEvent.objects.filter(tenant=bob).exists()
    client = api_client("charlie", jwt_for("charlie", "owner@charlie.test"))
    rows = _all_pages(client, "/api/v1/audit-events")
    assert rows
    assert {row["id"] for row in rows} == set(
        AuditEvent.objects.filter(tenant=charlie).values_list("id", flat=True))
    text = str(rows)
    for marker in ("alice", "bob"):
        assert marker not in text, text


@pytest.mark.django_db
def test_charlies_api_key_reads_only_charlie(charlie, world):
    client = api_client("charlie", make_key(charlie, ["read"]))
    assert client.get("/api/v1/tenant").json()["slug"] == "charlie"
    assert {r["email"] for r in _all_pages(client, "/api/v1/members")} == {"owner@charlie.test"}
    assert "alice" not in str(_all_pages(client, "/api/v1/api-keys"))


# --- hosts and the portal --------------------------------------------------------------------

@pytest.mark.django_db
@pytest.mark.parametrize("path", ["/api/v1/tenant", "/api/v1/members/1", "/api/v1/auth/token"])
def test_unknown_host_api_paths_get_problem_json_404(path, world):
    client = api_client(token=world["bob"]["jwt"])
    response = client.get(path, HTTP_HOST="nope.aerolith.localhost")
    body = assert_problem(response, 404, "unknown_host")
    assert "nope.aerolith.localhost" in body["detail"]


@pytest.mark.django_db
@pytest.mark.parametrize("path", ["/", "/login", "/invitations/abc"])
def test_unknown_host_pages_get_an_html_404(path):
    response = Client(HTTP_HOST="nope.aerolith.localhost").get(path)
    assert response.status_code == 404
    assert response["Content-Type"].startswith("text/html")
    assert b"nope.aerolith.localhost" in response.content


@pytest.mark.django_db
def test_tenant_api_is_not_served_on_the_public_domain(world):
    response = api_client(token=world["bob"]["jwt"]).get("/api/v1/members")
    assert_problem(response, 404)
    _assert_nothing_of_alice(response, world)


@pytest.mark.django_db
def test_portal_dashboard_of_another_tenant_is_a_404(alice, bob):
    bob_owner = User.objects.get(email="owner@bob.test")
    client = Client(HTTP_HOST=host_of("alice"))
    client.force_login(bob_owner)
    response = client.get("/")
    assert response.status_code == 404
    # the organisation's name is public (its sign-in page shows it); its contents are not
    assert b"Not found" in response.content
    assert b"Your role" not in response.content and b"Starter" not in response.content
    # the same session on bob's own domain is a working dashboard
    own = Client(HTTP_HOST=host_of("bob"))
    own.force_login(bob_owner)
    response = own.get("/")
    assert response.status_code == 200 and b"Bob Ltd" in response.content


@pytest.mark.django_db
def test_portal_dashboard_asks_strangers_to_sign_in():
    response = Client(HTTP_HOST=host_of("alice")).get("/")
    assert response.status_code == 302 and response["Location"].startswith("/login")
