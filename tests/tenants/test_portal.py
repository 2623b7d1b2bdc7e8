"""Portal pages (SPEC §11): pricing, signup and login on the public domain; the signed,
one-time hand-over to the tenant's domain; the tenant's login, logout and dashboard.

Each host gets its own test client, as a browser keeps one cookie jar per host."""
from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
from django.test import Client

from billing.models import Subscription
from tenants.models import Domain, Membership, Tenant, User
from tenants.services.clocks import tenant_clock_attach
from tests.conftest import PASSWORD, PUBLIC_HOST, add_member, host_of

SIGNUP = {"organization": "Zeta Labs", "slug": "zeta", "email": "Founder@Zeta.test",
          "password": PASSWORD, "plan": "starter", "region": "eu-central"}


def browser(slug: str | None = None) -> Client:
    return Client(HTTP_HOST=host_of(slug) if slug else PUBLIC_HOST)


def _counts():
    return (Tenant.objects.count(), Domain.objects.count(), User.objects.count(),
            Membership.objects.count(), Subscription.objects.count())


def _handoff(response, slug: str) -> str:
    """The token of a redirect to `slug`'s login/continue, checking the address on the way."""
    assert response.status_code == 302, response.content
    url = urlsplit(response["Location"])
    assert (url.scheme, url.netloc) == ("http", f"{host_of(slug)}:8000")
    assert url.path == "/login/continue"
    return parse_qs(url.query)["token"][0]


def _continue(slug: str, token: str, client: Client | None = None):
    client = client or browser(slug)
    return client, client.get("/login/continue", {"token": token})


def _public_login(email: str, password: str = PASSWORD):
    return browser().post("/login", {"email": email, "password": password})


def _signed_in(client: Client, email: str) -> bool:
    page = client.get("/")
    return page.status_code == 200 and email in page.content.decode()


# --- public pages -------------------------------------------------------------------------

@pytest.mark.django_db
def test_home_page_lists_the_public_plans_with_prices():
    page = browser().get("/")
    assert page.status_code == 200
    html = page.content.decode()
    for name, price in (("Free", "$0.00"), ("Starter", "$29.00"), ("Professional", "$99.00"),
                        ("Enterprise", "$499.00")):
        assert f"<h2>{name}</h2>" in html and price in html
    assert "Custom" not in html
    assert 'href="signup?plan=starter"' in html


@pytest.mark.django_db
def test_signup_page_shows_the_form():
    page = browser().get("/signup", {"plan": "professional"})
    assert page.status_code == 200
    html = page.content.decode()
    for field in ("organization", "slug", "email", "password", "plan", "region"):
        assert f'name="{field}"' in html
    assert '<option value="professional" selected>' in html
    assert '<option value="custom"' not in html


@pytest.mark.django_db
def test_signup_creates_the_organisation_and_signs_the_owner_in_on_its_domain():
    response = browser().post("/signup", SIGNUP)
    token = _handoff(response, "zeta")
    tenant = Tenant.objects.get(slug="zeta")
    assert tenant.status == "trialing" and tenant.subscription.plan.code == "starter"

    client, landed = _continue("zeta", token)
    assert landed.status_code == 302 and landed["Location"] == "/"
    dashboard = client.get("/")
    assert dashboard.status_code == 200
    html = dashboard.content.decode()
    assert "Zeta Labs" in html and "founder@zeta.test" in html
    assert "Your trial of <strong>Starter</strong> ends in 14 days" in html


@pytest.mark.django_db
@pytest.mark.parametrize("change, message", [
    ({"slug": "admin"}, "is reserved. Choose another slug."),
    ({"slug": "alice"}, "is taken"),
    ({"slug": "Bad Slug"}, "A slug is 3 to 30 lowercase letters"),
    ({"password": "short"}, "at least"),
    ({"password": "password123456"}, "too common"),
    ({"email": "owner@alice.test"}, "account with this email exists"),
    ({"plan": "custom"}, "Select a valid choice"),
    ({"organization": ""}, "This field is required"),
])
def test_signup_form_errors_are_shown_and_nothing_is_created(change, message):
    before = _counts()
    page = browser().post("/signup", {**SIGNUP, **change})
    assert page.status_code == 400
    html = page.content.decode()
    assert 'class="errorlist"' in html and message in html, html
    assert 'value="founder@zeta.test"' in html.lower() or "email" in change  # typed is kept
    assert PASSWORD not in html  # but never the password
    assert _counts() == before


@pytest.mark.django_db
def test_signup_form_reports_several_errors_at_once():
    page = browser().post("/signup", {**SIGNUP, "slug": "www", "password": "1"})
    assert page.status_code == 400
    assert page.content.decode().count('class="errorlist"') >= 2


@pytest.mark.django_db
def test_public_login_sends_a_member_of_one_organisation_to_it(alice):
    token = _handoff(_public_login("Owner@Alice.test"), "alice")
    client, landed = _continue("alice", token)
    assert landed["Location"] == "/"
    assert _signed_in(client, "owner@alice.test")


@pytest.mark.django_db
@pytest.mark.parametrize("email, password, message", [
    ("owner@alice.test", "wrong-password-123", "Email or password is wrong."),
    ("nobody@alice.test", PASSWORD, "Email or password is wrong."),
    ("", "", "This field is required."),
])
def test_public_login_with_wrong_credentials_says_so(email, password, message):
    page = _public_login(email, password)
    assert page.status_code == 400
    html = page.content.decode()
    assert message in html
    assert "login/continue" not in html


@pytest.mark.django_db
def test_public_login_lets_a_member_of_several_organisations_choose(alice, bob):
    add_member(bob, "owner@alice.test", "viewer")
    page = _public_login("owner@alice.test")
    assert page.status_code == 200
    html = page.content.decode()
    assert "Choose an organisation" in html
    assert f"http://{host_of('alice')}:8000/login/continue?token=" in html
    assert f"http://{host_of('bob')}:8000/login/continue?token=" in html


@pytest.mark.django_db
def test_public_login_without_any_organisation_explains_what_to_do(alice):
    add_member(alice, "leaver@alice.test", "viewer")
    Membership.objects.filter(user__email="leaver@alice.test").delete()
    page = _public_login("leaver@alice.test")
    assert page.status_code == 400
    assert "belongs to no organisation yet" in page.content.decode()


@pytest.mark.django_db
def test_public_login_sends_staff_without_organisations_to_the_console():
    User.objects.create_user("ops@aerolith.test", PASSWORD, is_staff=True)
    response = _public_login("ops@aerolith.test")
    assert response.status_code == 302 and response["Location"] == "/admin/"


# --- the hand-over ------------------------------------------------------------------------

@pytest.mark.django_db
def test_handoff_token_works_once(alice):
    token = _handoff(_public_login("owner@alice.test"), "alice")
    first, landed = _continue("alice", token)
    assert landed["Location"] == "/" and _signed_in(first, "owner@alice.test")

    second, refused = _continue("alice", token)
    assert refused.status_code == 302 and refused["Location"] == "/login"
    login_page = second.get("/login")
    assert "That sign-in link expired or was used" in login_page.content.decode()
    assert second.get("/").status_code == 302  # not signed in


@pytest.mark.django_db
def test_handoff_token_is_bound_to_its_organisation(alice, bob):
    token = _handoff(_public_login("owner@alice.test"), "alice")
    on_bob, refused = _continue("bob", token)
    assert refused["Location"] == "/login"
    assert on_bob.get("/").status_code == 302
    # Refused elsewhere, it still works where it belongs.
    on_alice, landed = _continue("alice", token)
    assert landed["Location"] == "/" and _signed_in(on_alice, "owner@alice.test")


@pytest.mark.django_db
@pytest.mark.parametrize("token", ["", "garbage", "eyJ1IjoxLCJ0IjoxfQ:forged:signature"])
def test_handoff_refuses_missing_or_forged_tokens(alice, token):
    client, refused = _continue("alice", token)
    assert refused.status_code == 302 and refused["Location"] == "/login"
    assert client.get("/").status_code == 302


@pytest.mark.django_db
def test_handoff_token_of_a_deactivated_user_is_refused(alice):
    token = _handoff(_public_login("owner@alice.test"), "alice")
    User.objects.filter(email="owner@alice.test").update(is_active=False)
    client, refused = _continue("alice", token)
    assert refused["Location"] == "/login"
    assert client.get("/").status_code == 302


# --- the tenant's own pages ---------------------------------------------------------------

@pytest.mark.django_db
def test_tenant_login_page_signs_a_member_in(alice):
    client = browser("alice")
    page = client.get("/login")
    assert page.status_code == 200 and "Sign in to Alice Ltd" in page.content.decode()
    response = client.post("/login", {"username": "owner@alice.test", "password": PASSWORD})
    assert response.status_code == 302 and response["Location"] == "/"
    assert _signed_in(client, "owner@alice.test")


@pytest.mark.django_db
def test_tenant_login_follows_a_local_next_but_not_an_outside_one(alice):
    client = browser("alice")
    response = client.post("/login", {"username": "owner@alice.test", "password": PASSWORD,
                                      "next": "/?tab=usage"})
    assert response["Location"] == "/?tab=usage"
    client = browser("alice")
    response = client.post("/login", {"username": "owner@alice.test", "password": PASSWORD,
                                      "next": "https://evil.example/"})
    assert response.status_code == 302 and response["Location"] == "/"


@pytest.mark.django_db
def test_tenant_login_refuses_a_non_member_clearly(alice, bob):
    client = browser("alice")
    page = client.post("/login", {"username": "owner@bob.test", "password": PASSWORD})
    assert page.status_code == 400
    assert "not a member of this organisation" in page.content.decode()
    assert client.get("/").status_code == 302


@pytest.mark.django_db
def test_tenant_login_refuses_a_pending_invitee(alice):
    from tenants.services.members import member_invite
    from tests.conftest import owner_principal

    member_invite(principal=owner_principal(alice), email="owner@bob.test", role="viewer")
    page = browser("alice").post("/login", {"username": "owner@bob.test", "password": PASSWORD})
    assert page.status_code == 400
    assert "not a member of this organisation" in page.content.decode()


@pytest.mark.django_db
def test_tenant_login_with_a_wrong_password_is_refused(alice):
    page = browser("alice").post("/login", {"username": "owner@alice.test",
                                            "password": "nope-nope-1"})
    assert page.status_code == 400
    assert "enter a correct email and password" in page.content.decode().lower()


@pytest.mark.django_db
def test_dashboard_needs_a_signed_in_member(alice):
    response = browser("alice").get("/")
    assert response.status_code == 302 and response["Location"] == "/login?next=/"


@pytest.mark.django_db
def test_a_session_of_one_organisation_opens_nothing_on_another(alice, bob):
    client = browser("alice")
    client.post("/login", {"username": "owner@alice.test", "password": PASSWORD})
    client.defaults["HTTP_HOST"] = host_of("bob")  # the same cookie sent to bob's host
    assert client.get("/").status_code == 404


@pytest.mark.django_db
def test_dashboard_shows_role_plan_and_status(alice):
    add_member(alice, "viewer@alice.test", "viewer")
    client = browser("alice")
    client.post("/login", {"username": "viewer@alice.test", "password": PASSWORD})
    html = client.get("/").content.decode()
    assert "Your role: viewer" in html and "Starter" in html and "Trialing" in html


@pytest.mark.django_db
@pytest.mark.parametrize("elapsed, banner", [
    (timedelta(days=10), "ends in 4 days"),
    (timedelta(days=13, hours=12), "ends in 1 day "),
    (timedelta(days=15), "ends in 0 days"),
])
def test_trial_banner_counts_down_by_the_organisations_clock(alice, elapsed, banner):
    trial_start = alice.subscription.current_period_start
    tenant_clock_attach(tenant=alice, actor="system", at=trial_start + elapsed)
    client = browser("alice")
    client.post("/login", {"username": "owner@alice.test", "password": PASSWORD})
    assert banner in client.get("/").content.decode()


@pytest.mark.django_db
def test_logout_only_accepts_post(alice):
    client = browser("alice")
    client.post("/login", {"username": "owner@alice.test", "password": PASSWORD})
    assert client.get("/logout").status_code == 405
    assert _signed_in(client, "owner@alice.test")
    response = client.post("/logout")
    assert response.status_code == 302 and response["Location"] == "/login"
    assert client.get("/").status_code == 302


@pytest.mark.django_db
def test_portal_pages_of_an_unknown_organisation_are_a_clear_404():
    page = browser("nosuchorg").get("/")
    assert page.status_code == 404
    assert "nosuchorg" in page.content.decode()
