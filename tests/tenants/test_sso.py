"""Single sign-on with OpenID Connect (SPEC §8), driven end to end: Django's test client on
the tenant's domain, a real OIDC provider fake over HTTP (tests/fakes/oidc_provider.py)
signing real RS256 ID tokens, and httpx standing in for the browser at the provider's
/authorize. Refusals render one friendly page and change nothing."""
from urllib.parse import parse_qsl, urlsplit

import httpx
import pytest
from django.db import connection
from django.test import Client
from django_tenants.utils import tenant_context

from aerolith import crypto
from billing.models import Plan, Subscription
from tenants.models import AuditEvent, Membership, SsoConfig, User
from tenants.portal.sso import AUTH_METHOD_SESSION_KEY, FLOW_SESSION_KEY
from tenants.services.sso import sso_config_save
from tests.conftest import host_of, owner_principal, portal_member, portal_user

from ..fakes.oidc_provider import OidcProvider, new_key


@pytest.fixture
def provider():
    server = OidcProvider().start()
    yield server
    server.stop()


def make_enterprise(tenant):
    Subscription.objects.filter(tenant=tenant).update(plan=Plan.objects.get(code="enterprise"))


def configure(tenant, provider, **overrides):
    values = dict(issuer=provider.url, client_id=provider.client_id,
                  client_secret=provider.client_secret, default_role="developer", enabled=True,
                  allowed_domains=[])
    values.update(overrides)
    with tenant_context(tenant):
        config = sso_config_save(principal=owner_principal(tenant), **values)
    connection.set_schema_to_public()
    return config


@pytest.fixture
def alice_sso(alice, provider):
    make_enterprise(alice)
    return configure(alice, provider)


def browser(tenant) -> Client:
    return Client(HTTP_HOST=host_of(tenant.slug))


def start(client: Client, **params):
    response = client.get("/sso/login", params)
    assert response.status_code == 302, response.content
    return response["Location"]


def at_provider(location: str) -> str:
    """What a browser does at the provider: follow to /authorize, get sent back."""
    answer = httpx.get(location, follow_redirects=False, timeout=5)
    assert answer.status_code == 302, answer.text
    return answer.headers["location"]


def back_to(client: Client, callback_url: str, tenant):
    url = urlsplit(callback_url)
    assert url.netloc == f"{host_of(tenant.slug)}:8000" and url.path == "/sso/callback"
    return client.get(url.path, dict(parse_qsl(url.query)))


def round_trip(client: Client, tenant, **params):
    return back_to(client, at_provider(start(client, **params)), tenant)


def signed_in_as(client: Client) -> str | None:
    page = client.get("/")
    if page.status_code != 200:
        return None
    return page.wsgi_request.user.email


def refused(response, text: str, status: int = 400):
    assert response.status_code == status, response.content
    html = response.content.decode()
    assert "Single sign-on did not complete" in html and text in html, html
    return html


def counts():
    return User.objects.count(), Membership.objects.count()


# --- signing in ---------------------------------------------------------------------------

@pytest.mark.django_db
def test_new_email_gets_an_account_without_password_and_the_default_role(alice, alice_sso,
                                                                          provider):
    client = browser(alice)
    response = round_trip(client, alice)
    assert response.status_code == 302 and response["Location"] == "/"
    user = User.objects.get(email="ada@example.com")
    assert not user.has_usable_password() and user.full_name == "Ada Lovelace"
    membership = Membership.objects.get(tenant=alice, user=user)
    assert membership.role == "developer" and membership.accepted_at is not None
    assert signed_in_as(client) == "ada@example.com"
    assert client.session[AUTH_METHOD_SESSION_KEY] == "sso"
    assert FLOW_SESSION_KEY not in client.session
    actions = set(AuditEvent.objects.filter(tenant=alice).values_list("action", flat=True))
    assert {"sso.user_created", "sso.member_provisioned", "sso.signed_in"} <= actions
    # PKCE and client_secret_post reached the provider.
    request = provider.token_requests[-1]
    assert request["form"]["code_verifier"] and request["form"]["client_id"] == provider.client_id


@pytest.mark.django_db
def test_existing_member_signs_in_with_their_role_unchanged(alice, alice_sso, provider):
    provider.user.update(email="Owner@Alice.test", sub="owner-1")
    users, memberships = counts()
    client = browser(alice)
    round_trip(client, alice)
    assert signed_in_as(client) == "owner@alice.test"
    assert Membership.objects.get(tenant=alice, user__email="owner@alice.test").role == "owner"
    assert counts() == (users, memberships)
    assert AuditEvent.objects.filter(tenant=alice, action="sso.signed_in",
                                     actor__email="owner@alice.test").exists()


@pytest.mark.django_db
def test_an_existing_account_elsewhere_is_not_opened_by_this_provider(alice, bob, alice_sso,
                                                                       provider):
    """Users are global: alice's provider cannot vouch for bob's owner, who is no member
    of alice and whose domain alice does not claim."""
    provider.user.update(email="owner@bob.test")
    client = browser(alice)
    before = counts()
    refused(round_trip(client, alice), "exists already", status=403)
    assert signed_in_as(client) is None and counts() == before
    assert not Membership.objects.filter(tenant=alice, user__email="owner@bob.test").exists()


@pytest.mark.django_db
def test_a_user_of_another_organisation_in_a_claimed_domain_joins_with_the_default_role(
        alice, bob, provider):
    make_enterprise(alice)
    configure(alice, provider, allowed_domains=["bob.test", "example.com"])
    provider.user.update(email="owner@bob.test")
    client = browser(alice)
    round_trip(client, alice)
    assert signed_in_as(client) == "owner@bob.test"
    assert Membership.objects.get(tenant=alice, user__email="owner@bob.test").role == "developer"
    assert Membership.objects.get(tenant=bob, user__email="owner@bob.test").role == "owner"
    assert User.objects.get(email="owner@bob.test").has_usable_password()


@pytest.mark.django_db
def test_a_session_opened_through_sso_cannot_change_two_factor_settings(alice, alice_sso):
    from tenants.otp_devices import TotpDevice

    client = browser(alice)
    round_trip(client, alice)
    user = User.objects.get(email="ada@example.com")
    for url in ("/security/two-factor", "/security/recovery-codes",
                "/security/two-factor/disable"):
        response = client.post(url, {"code": "123456", "password": "x"})
        assert response.status_code == 302, (url, response.status_code)
    page = client.get("/security")
    assert "identity provider" in page.content.decode()
    assert not TotpDevice.objects.filter(user=user).exists()


@pytest.mark.django_db
def test_a_pending_invitation_is_accepted_with_its_invited_role(alice, alice_sso, provider):
    from tenants.services.members import member_invite

    member_invite(principal=owner_principal(alice), email="ada@example.com", role="billing")
    client = browser(alice)
    round_trip(client, alice)
    membership = Membership.objects.get(tenant=alice, user__email="ada@example.com")
    assert membership.role == "billing" and membership.accepted_at and not membership.invite_token_hash
    assert signed_in_as(client) == "ada@example.com"


@pytest.mark.django_db
def test_client_secret_basic_is_used_when_the_provider_only_takes_it(alice, provider):
    provider.auth_methods = ["client_secret_basic"]
    make_enterprise(alice)
    configure(alice, provider)
    client = browser(alice)
    round_trip(client, alice)
    assert signed_in_as(client) == "ada@example.com"
    assert provider.token_requests[-1]["basic"] is True
    assert "client_id" not in provider.token_requests[-1]["form"]


@pytest.mark.django_db
def test_login_page_offers_sso_only_when_enabled(alice, bob, alice_sso, provider):
    page = browser(alice).get("/login?next=/usage")
    assert 'id="sso-sign-in"' in page.content.decode() and "next=%2Fusage" in page.content.decode()
    assert 'id="sso-sign-in"' not in browser(bob).get("/login").content.decode()
    configure(alice, provider, enabled=False, client_secret="")
    assert 'id="sso-sign-in"' not in browser(alice).get("/login").content.decode()


@pytest.mark.django_db
def test_next_is_kept_through_the_round_trip_but_never_leaves_the_domain(alice, alice_sso):
    assert round_trip(browser(alice), alice, next="/usage")["Location"] == "/usage"
    assert round_trip(browser(alice), alice, next="https://evil.test/")["Location"] == "/"


# --- refusals: nothing changes, nobody is signed in ----------------------------------------

@pytest.mark.django_db
def test_disabled_configuration_refuses_to_start_and_to_finish(alice, alice_sso, provider):
    client = browser(alice)
    location = start(client)  # started while enabled
    configure(alice, provider, enabled=False, client_secret="")
    before = counts()
    refused(back_to(client, at_provider(location), alice), "not enabled", status=403)
    refused(browser(alice).get("/sso/login"), "not enabled", status=403)
    assert counts() == before and signed_in_as(client) is None


@pytest.mark.django_db
def test_a_plan_without_sso_is_refused_with_a_clear_message(alice, provider):
    owner = portal_user(alice)
    page = owner.get("/security/sso")
    assert page.status_code == 402
    assert "Enterprise and Custom plans" in page.content.decode()
    form = {"issuer": provider.url, "client_id": provider.client_id,
            "client_secret": provider.client_secret, "default_role": "viewer", "enabled": "on"}
    assert owner.post("/security/sso", form).status_code == 402
    with tenant_context(alice):
        assert not SsoConfig.objects.exists()
    # A configuration made under Enterprise stops working after a downgrade.
    make_enterprise(alice)
    configure(alice, provider)
    Subscription.objects.filter(tenant=alice).update(plan=Plan.objects.get(code="starter"))
    refused(browser(alice).get("/sso/login"), "not enabled", status=403)
    assert 'id="sso-sign-in"' not in browser(alice).get("/login").content.decode()


@pytest.mark.django_db
def test_a_custom_contract_plan_includes_sso(alice, provider):
    custom = Plan.objects.get(code="custom")
    Subscription.objects.filter(tenant=alice).update(plan=custom)
    configure(alice, provider)
    client = browser(alice)
    round_trip(client, alice)
    assert signed_in_as(client) == "ada@example.com"


@pytest.mark.django_db
@pytest.mark.parametrize("knob, text", [
    ("forged", "signature is not valid"),
    ("audience", "issued for another application"),
    ("expired", "has expired"),
    ("nonce", "does not belong to this sign-in attempt"),
    ("no_nonce", "does not belong to this sign-in attempt"),
    ("issuer", "comes from another issuer"),
])
def test_a_bad_id_token_is_refused(alice, alice_sso, provider, knob, text):
    import time

    now = int(time.time())
    if knob == "forged":
        provider.sign_with = new_key()  # same kid, another key
    else:
        provider.claim_overrides = {
            "audience": {"aud": "someone-else"},
            "expired": {"exp": now - 600, "iat": now - 900},
            "nonce": {"nonce": "not-the-nonce-we-sent"},
            "no_nonce": {"nonce": None},
            "issuer": {"iss": "https://idp.evil.test"},
        }[knob]
    before = counts()
    client = browser(alice)
    refused(round_trip(client, alice), text)
    assert counts() == before and signed_in_as(client) is None
    assert not AuditEvent.objects.filter(tenant=alice, action__startswith="sso.sign").exists()


@pytest.mark.django_db
def test_state_mismatch_and_a_callback_without_a_flow_are_refused(alice, alice_sso):
    client = browser(alice)
    callback = at_provider(start(client))
    query = dict(parse_qsl(urlsplit(callback).query))
    refused(client.get("/sso/callback", {**query, "state": "forged-state"}), "does not match")
    # The flow was spent by the refused attempt: the genuine answer no longer works either.
    refused(client.get("/sso/callback", query), "not started from this browser")
    refused(browser(alice).get("/sso/callback", query), "not started from this browser")
    assert signed_in_as(client) is None and not User.objects.filter(email="ada@example.com").exists()


@pytest.mark.django_db
def test_a_callback_replayed_after_success_is_refused(alice, alice_sso):
    client = browser(alice)
    callback = at_provider(start(client))
    assert back_to(client, callback, alice).status_code == 302
    refused(back_to(client, callback, alice), "not started from this browser")


@pytest.mark.django_db
def test_unverified_email_is_refused_with_a_clear_page(alice, alice_sso, provider):
    provider.user["email_verified"] = False
    before = counts()
    client = browser(alice)
    refused(round_trip(client, alice), "has not verified ada@example.com", status=403)
    assert counts() == before and signed_in_as(client) is None


@pytest.mark.django_db
def test_missing_email_is_refused(alice, alice_sso, provider):
    provider.claim_overrides = {"email": None}
    refused(round_trip(browser(alice), alice), "did not share a valid email", status=403)


@pytest.mark.django_db
def test_provider_error_is_shown_and_nothing_changes(alice, alice_sso, provider):
    provider.error = "access_denied"
    before = counts()
    client = browser(alice)
    refused(round_trip(client, alice), "access_denied")
    assert counts() == before and signed_in_as(client) is None


@pytest.mark.django_db
def test_a_wrong_client_secret_is_refused_by_the_provider(alice, alice_sso, provider):
    provider.client_secret = "rotated-at-the-provider"
    refused(round_trip(browser(alice), alice), "refused the sign-in (invalid_client)")


@pytest.mark.django_db
def test_unreachable_provider_at_sign_in_is_a_friendly_page(alice, alice_sso, provider):
    client = browser(alice)
    location = start(client)
    callback = at_provider(location)
    provider.stop()
    refused(back_to(client, callback, alice), "Could not reach")


@pytest.mark.django_db
def test_allowed_domains_limit_who_may_sign_in(alice, provider):
    make_enterprise(alice)
    configure(alice, provider, allowed_domains=["alice.test", "@Example.org"])
    refused(round_trip(browser(alice), alice), "example.com may not sign in", status=403)
    provider.user["email"] = "grace@example.org"
    client = browser(alice)
    round_trip(client, alice)
    assert signed_in_as(client) == "grace@example.org"


@pytest.mark.django_db
def test_staff_accounts_never_sign_in_through_a_tenant_provider(alice, alice_sso, provider):
    User.objects.create_user("staff@aerolith.test", "x-long-password-1", is_staff=True)
    provider.user["email"] = "staff@aerolith.test"
    client = browser(alice)
    refused(round_trip(client, alice), "Staff accounts", status=403)
    assert not Membership.objects.filter(tenant=alice, user__email="staff@aerolith.test").exists()


@pytest.mark.django_db
def test_sso_pages_do_not_exist_on_the_public_domain():
    client = Client(HTTP_HOST="aerolith.localhost")
    assert client.get("/sso/login").status_code == 404
    assert client.get("/sso/callback").status_code == 404
    assert client.get("/security/sso").status_code == 404


# --- settings -----------------------------------------------------------------------------

def _form(provider, **overrides):
    data = {"issuer": provider.url, "client_id": provider.client_id,
            "client_secret": provider.client_secret, "default_role": "viewer", "enabled": "on",
            "allowed_domains": "example.com, example.org"}
    data.update(overrides)
    return {k: v for k, v in data.items() if v is not None}


@pytest.mark.django_db
def test_owner_configures_sso_and_the_secret_is_write_only(alice, provider):
    make_enterprise(alice)
    owner = portal_user(alice)
    page = owner.get("/security/sso")
    assert page.status_code == 200 and "/sso/callback" in page.content.decode()
    response = owner.post("/security/sso", _form(provider))
    assert response.status_code == 302 and response["Location"] == "/security/sso"
    page = owner.get("/security/sso").content.decode()
    assert provider.url in page and provider.client_secret not in page
    assert "leave empty to keep" in page
    with tenant_context(alice):
        config = SsoConfig.objects.get()
        assert config.allowed_domains == ["example.com", "example.org"]
        assert config.discovery["token_endpoint"] == f"{provider.url}/token"
    # An empty secret keeps the stored one; the change is audited without the secret.
    assert owner.post("/security/sso", _form(provider, client_secret="",
                                              default_role="billing")).status_code == 302
    with tenant_context(alice):
        config = SsoConfig.objects.get()
        assert config.default_role == "billing"
        assert crypto.decrypt(config.client_secret_sealed,
                              context=f"sso:{alice.pk}").decode() == provider.client_secret
    events = AuditEvent.objects.filter(tenant=alice, action__in=["sso.configured", "sso.updated"])
    assert [e.action for e in events.order_by("id")] == ["sso.configured", "sso.updated"]
    assert all(provider.client_secret not in str(e.after) for e in events)


@pytest.mark.django_db
def test_the_client_secret_is_encrypted_at_rest(alice, alice_sso, provider):
    with connection.cursor() as cursor:
        cursor.execute(f'SELECT client_secret_sealed FROM "{alice.schema_name}".tenants_ssoconfig')
        (raw,) = cursor.fetchone()
    assert provider.client_secret not in raw and raw.startswith("ab1:")
    # Sealed for this tenant's SSO only: another context does not open it.
    with pytest.raises(crypto.SecretDecryptionFailed):
        crypto.decrypt(raw, context="sso:0")


@pytest.mark.django_db
def test_unreachable_or_invalid_issuer_is_a_form_error_and_saves_nothing(alice, provider):
    make_enterprise(alice)
    owner = portal_user(alice)
    cases = [
        ("http://127.0.0.1:9", "Could not reach"),
        ("http://localhost:9", "Could not reach"),
        ("http://idp.example.com", "must use https://"),
        ("ftp://127.0.0.1", "https:// URL"),
        ("http://127.0.0.1:99999", "not a valid URL"),
        (f"{provider.url}/jwks", "HTTP 404"),
    ]
    for issuer, text in cases:
        page = owner.post("/security/sso", _form(provider, issuer=issuer))
        assert page.status_code == 400, (issuer, page.content)
        assert text in page.content.decode(), (issuer, page.content.decode())
    provider.discovery_overrides = {"issuer": "https://someone-else.test"}
    page = owner.post("/security/sso", _form(provider))
    assert page.status_code == 400 and "names the issuer" in page.content.decode()
    provider.discovery_overrides = {"id_token_signing_alg_values_supported": ["HS256"]}
    page = owner.post("/security/sso", _form(provider))
    assert page.status_code == 400 and "RS256" in page.content.decode()
    with tenant_context(alice):
        assert not SsoConfig.objects.exists()
    assert not AuditEvent.objects.filter(tenant=alice, action__startswith="sso.").exists()


@pytest.mark.django_db
@pytest.mark.parametrize("overrides, field_text", [
    ({"issuer": ""}, "This field is required"),
    ({"client_id": ""}, "This field is required"),
    ({"client_secret": ""}, "Enter the client secret"),
    ({"default_role": "owner"}, "Select a valid choice"),
    ({"default_role": "emperor"}, "Select a valid choice"),
    ({"allowed_domains": "example.com, not a domain!"}, "is not a domain name"),
    ({"allowed_domains": ",".join(f"d{i}.example.com" for i in range(51))}, "at most 50"),
    ({"issuer": "https://" + "a" * 300}, "at most 300"),
    ({"client_id": "bad\x00id"}, "Null characters are not allowed"),
    ({"client_id": "tab\tid"}, "printable"),
])
def test_bad_settings_input_is_refused_and_saves_nothing(alice, provider, overrides, field_text):
    make_enterprise(alice)
    page = portal_user(alice).post("/security/sso", _form(provider, **overrides))
    assert page.status_code == 400
    assert field_text in page.content.decode(), page.content.decode()
    assert provider.client_secret not in page.content.decode()  # never echoed back
    with tenant_context(alice):
        assert not SsoConfig.objects.exists()


@pytest.mark.django_db
def test_only_owners_and_admins_manage_sso(alice, provider):
    make_enterprise(alice)
    admin = portal_member(alice, "admin")
    assert admin.get("/security/sso").status_code == 200
    assert admin.post("/security/sso", _form(provider)).status_code == 302
    for role in ("developer", "billing", "viewer"):
        client = portal_member(alice, role)
        assert client.get("/security/sso").status_code == 403
        assert client.post("/security/sso", _form(provider, default_role="admin")).status_code == 403
    with tenant_context(alice):
        assert SsoConfig.objects.get().default_role == "viewer"
    assert browser(alice).get("/security/sso").status_code == 302  # anonymous: to login


# --- isolation ----------------------------------------------------------------------------

@pytest.mark.django_db
def test_alices_sso_is_invisible_and_unusable_elsewhere(alice, bob, charlie, alice_sso, provider):
    make_enterprise(bob)
    # Bob's domain has no SSO: no button, no start, and alice's flow cannot finish there.
    assert 'id="sso-sign-in"' not in browser(bob).get("/login").content.decode()
    refused(browser(bob).get("/sso/login"), "not enabled", status=403)
    alice_client = browser(alice)
    query = dict(parse_qsl(urlsplit(at_provider(start(alice_client))).query))
    bob_client = browser(bob)
    refused(bob_client.get("/sso/callback", query), "not started from this browser")
    assert signed_in_as(bob_client) is None
    # Bob's owner sees an empty settings page, and alice's provider nowhere.
    page = portal_user(bob).get("/security/sso").content.decode()
    assert provider.url not in page and provider.client_id not in page
    with tenant_context(bob):
        assert not SsoConfig.objects.exists()
    # Charlie (free) sees nothing but the plan message; outsiders get 404 on alice's page.
    charlie_page = portal_user(charlie).get("/security/sso")
    assert charlie_page.status_code == 402 and provider.url not in charlie_page.content.decode()
    outsider = Client(HTTP_HOST=host_of(alice.slug))
    outsider.force_login(User.objects.get(email="owner@charlie.test"))
    assert outsider.get("/security/sso").status_code == 404
    # Signing in on alice's domain makes no one a member of bob or charlie.
    round_trip(alice_client, alice)
    assert not Membership.objects.filter(user__email="ada@example.com",
                                         tenant__in=[bob, charlie]).exists()



@pytest.mark.django_db
def test_a_new_key_in_front_reseals_the_secret_and_sign_in_still_works(alice, alice_sso,
                                                                        provider, settings):
    import base64
    import os

    from tenants.services.sso import sso_secret_rotate

    old = base64.b64encode(crypto.testmode_key()).decode()
    settings.AEROLITH_SECRET_KEYS = f"{base64.b64encode(os.urandom(32)).decode()},{old}"
    with tenant_context(alice):
        assert sso_secret_rotate(alice) is True
        assert sso_secret_rotate(alice) is False
        sealed = SsoConfig.objects.get().client_secret_sealed
    assert not crypto.needs_rotation(sealed)
    client = browser(alice)
    round_trip(client, alice)
    assert signed_in_as(client) == "ada@example.com"


@pytest.mark.parametrize("url, text", [
    ("http://127.0.0.1:8080", "must use https://"),
    ("http://localhost", "must use https://"),
    ("https://127.0.0.1", "private address"),
    ("https://10.1.2.3/realms/acme", "private address"),
    ("https://169.254.169.254", "private address"),
    ("https://[::1]:8443", "private address"),
    ("https://", "https:// URL"),
])
def test_outside_test_mode_the_server_fetches_only_public_https_addresses(settings, url, text):
    from tenants import oidc

    settings.AEROLITH_TEST_MODE = False
    with pytest.raises(oidc.OidcError) as refused_url:
        oidc.check_url(url, what="issuer")
    assert text in refused_url.value.detail


@pytest.mark.django_db
@pytest.mark.parametrize("knob, text", [
    ({"jwks_override": {"keys": "not-a-list"}}, "could not be read"),
    ({"jwks_override": ["a", "list"]}, "did not answer a JSON object"),
    ({"jwks_override": {"keys": []}}, "could not be read"),
    ({"kid": "rotated-away"}, "does not publish"),
    ({"claim_overrides": {"sub": None}}, "is not valid"),
])
def test_hostile_provider_answers_at_sign_in_are_refused(alice, alice_sso, provider, knob, text):
    for name, value in knob.items():
        setattr(provider, name, value)
    client = browser(alice)
    refused(round_trip(client, alice), text)
    assert signed_in_as(client) is None


@pytest.mark.django_db
@pytest.mark.parametrize("overrides, text", [
    ({"issuer": 42}, "names the issuer"),
    ({"id_token_signing_alg_values_supported": "RS256"}, "is not a list"),
    ({"token_endpoint_auth_methods_supported": ["private_key_jwt"]}, "neither client_secret_post"),
    ({"jwks_uri": None}, "has no jwks_uri"),
    ({"token_endpoint": "http://10.0.0.7/token"}, "must use https://"),
    ({"authorization_endpoint": "https://169.254.169.254/authorize"}, "private address"),
])
def test_hostile_discovery_documents_are_refused_on_save(alice, provider, overrides, text):
    make_enterprise(alice)
    provider.discovery_overrides = overrides
    page = portal_user(alice).post("/security/sso", _form(provider))
    assert page.status_code == 400 and text in page.content.decode(), page.content.decode()
