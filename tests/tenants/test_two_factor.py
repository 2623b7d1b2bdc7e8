"""Two-factor authentication (SPEC §8): required for staff before the admin opens, optional
for customers (enrolment with a QR code, recovery codes shown once, the `otp` field of the
token endpoint), with real TOTP codes computed from the device's key."""
import re
from base64 import b32encode

import pytest
from django.test import Client, override_settings
from django_otp import DEVICE_ID_SESSION_KEY
from django_otp.oath import totp

from tenants.models import AuditEvent, RecoveryCode, RecoveryCodeDevice, TotpDevice, User
from tenants.services import two_factor
from tests.conftest import (
    PASSWORD,
    PUBLIC_HOST,
    add_member,
    api_client,
    assert_problem,
    host_of,
    portal_member,
    portal_user,
)

CODE_RE = re.compile(r"<code>([a-z2-7]{4}-[a-z2-7]{4})</code>")


def code_for(device, steps_ahead: int = 0) -> str:
    """The code the user's app shows now (or `steps_ahead` 30-second steps later: a step
    already used is refused, so a second sign-in in the same test uses the next one)."""
    device.refresh_from_db()
    return f"{totp(device.bin_key, device.step, device.t0, device.digits, device.drift + steps_ahead):06d}"


def enable(user) -> tuple[TotpDevice, list[str]]:
    device = two_factor.totp_enrolment(user)
    return two_factor.totp_enrol_confirm(user=user, code=code_for(device))


def browser(slug: str | None = None) -> Client:
    return Client(HTTP_HOST=host_of(slug) if slug else PUBLIC_HOST)


def staff(email="ops@aerolith.test") -> User:
    return User.objects.create_superuser(email, PASSWORD)


def owner(slug="alice") -> User:
    return User.objects.get(email=f"owner@{slug}.test")


def verified(client) -> bool:
    return DEVICE_ID_SESSION_KEY in client.session


# --- staff ------------------------------------------------------------------------------

@pytest.mark.django_db
@pytest.mark.parametrize("page", ["/admin/", "/admin/tenants/tenant/", "/admin/billing/invoice/"])
def test_staff_without_a_device_are_sent_to_enrol_before_any_admin_page(page):
    client = browser()
    client.force_login(staff())
    response = client.get(page)
    assert response.status_code == 302
    assert response["Location"].startswith("/staff/two-factor/setup?next=")


@pytest.mark.django_db
def test_staff_enrol_with_a_real_code_then_the_admin_opens():
    user = staff()
    client = browser()
    client.post("/admin/login/", {"username": user.email, "password": PASSWORD})
    assert client.get("/admin/")["Location"] == "/staff/two-factor/setup?next=%2Fadmin%2F"
    page = client.get("/staff/two-factor/setup?next=/admin/")
    html = page.content.decode()
    device = TotpDevice.objects.get(user=user, confirmed=False)
    assert page.status_code == 200 and 'src="data:image/svg+xml' in html
    secret = b32encode(device.bin_key).decode()
    assert " ".join(secret[i:i + 4] for i in range(0, len(secret), 4)) in html
    assert client.get("/staff/two-factor/setup").status_code == 200
    assert TotpDevice.objects.filter(user=user).count() == 1  # same secret on reload

    wrong = client.post("/staff/two-factor/setup?next=/admin/", {"code": "000000"})
    assert wrong.status_code == 400 and "does not match" in wrong.content.decode()
    assert client.get("/admin/").status_code == 302

    with override_settings(OTP_TOTP_THROTTLE_FACTOR=0):
        done = client.post("/staff/two-factor/setup?next=/admin/", {"code": code_for(device)})
    codes = CODE_RE.findall(done.content.decode())
    assert done.status_code == 200 and len(codes) == 10 and len(set(codes)) == 10
    assert "shown only this once" in done.content.decode()
    assert client.get("/admin/").status_code == 200
    assert AuditEvent.objects.filter(action="two_factor.enabled", actor=user).exists()
    # Shown once: the codes are never on a page again.
    again = client.get("/staff/two-factor/setup", follow=True)
    assert not CODE_RE.findall(again.content.decode())


@pytest.mark.django_db
def test_staff_with_a_device_must_give_a_code_and_a_wrong_one_is_refused():
    user = staff()
    device, _codes = enable(user)
    client = browser()
    client.force_login(user)
    response = client.get("/admin/tenants/tenant/")
    assert response["Location"] == "/staff/two-factor?next=%2Fadmin%2Ftenants%2Ftenant%2F"
    wrong = client.post(response["Location"], {"code": "123456" if code_for(device) != "123456"
                                                else "654321"})
    assert wrong.status_code == 400 and "wrong, expired or already used" in wrong.content.decode()
    throttled = client.post("/staff/two-factor", {"code": code_for(device, 1)})
    assert throttled.status_code == 400 and "Too many wrong codes: wait" in throttled.content.decode()
    assert client.get("/admin/").status_code == 302

    with override_settings(OTP_TOTP_THROTTLE_FACTOR=0):
        ok = client.post("/staff/two-factor?next=/admin/tenants/tenant/", {"code": code_for(device, 1)})
    assert ok.status_code == 302 and ok["Location"] == "/admin/tenants/tenant/"
    assert client.get("/admin/tenants/tenant/").status_code == 200


@pytest.mark.django_db
def test_staff_recovery_code_opens_the_admin_once():
    user = staff()
    _device, codes = enable(user)
    first = browser()
    first.force_login(user)
    ok = first.post("/staff/two-factor", {"code": two_factor.format_recovery_code(codes[0]).upper()})
    assert ok.status_code == 302 and ok["Location"] == "/admin/"
    assert first.get("/admin/").status_code == 200
    second = browser()
    second.force_login(user)
    refused = second.post("/staff/two-factor", {"code": codes[0]})
    assert refused.status_code == 400 and second.get("/admin/").status_code == 302


@pytest.mark.django_db
def test_staff_sign_in_on_the_public_login_asks_for_the_code():
    user = staff()
    device, _codes = enable(user)
    client = browser()
    response = client.post("/login", {"email": user.email, "password": PASSWORD})
    assert response.status_code == 302 and response["Location"] == "/login/verify"
    assert client.get("/admin/").status_code == 302  # not signed in yet
    ok = client.post("/login/verify", {"code": code_for(device, 1)})
    assert ok.status_code == 302 and ok["Location"] == "/admin/"
    assert client.get("/admin/").status_code == 200


@pytest.mark.django_db
def test_unverified_staff_can_sign_out_and_are_not_asked_on_tenant_domains():
    user = staff()
    client = browser()
    client.force_login(user)
    assert client.post("/admin/logout/").status_code == 200
    on_tenant = browser("alice")
    on_tenant.force_login(user)
    assert on_tenant.get("/admin/").status_code == 404


@pytest.mark.django_db
def test_staff_pages_are_for_signed_in_staff_on_the_public_domain_only(alice):
    assert browser().get("/staff/two-factor")["Location"].startswith("/admin/login/")
    member = browser()
    member.force_login(owner())
    assert member.get("/staff/two-factor").status_code == 404
    assert member.get("/staff/two-factor/setup").status_code == 404
    assert portal_user(alice).get("/staff/two-factor").status_code == 404


@pytest.mark.django_db
@pytest.mark.parametrize("code", ["", "12345", "1234567", "abc", "not a code at all", "x" * 40])
def test_staff_forms_refuse_malformed_codes(code):
    user = staff()
    client = browser()
    client.force_login(user)
    enrol = client.post("/staff/two-factor/setup", {"code": code})
    assert enrol.status_code == 400
    assert not TotpDevice.objects.filter(user=user, confirmed=True).exists()
    enable(user)
    verify = client.post("/staff/two-factor", {"code": code})
    assert verify.status_code == 400 and client.get("/admin/").status_code == 302


# --- customers: signing in ----------------------------------------------------------------

@pytest.mark.django_db
def test_customer_without_two_factor_signs_in_with_the_password_only(alice):
    client = browser("alice")
    response = client.post("/login", {"username": "owner@alice.test", "password": PASSWORD})
    assert response.status_code == 302 and response["Location"] == "/"


@pytest.mark.django_db
def test_tenant_login_asks_for_the_code_after_the_password(alice):
    device, _codes = enable(owner())
    client = browser("alice")
    response = client.post("/login?next=/usage", {"username": "owner@alice.test",
                                                  "password": PASSWORD, "next": "/usage"})
    assert response.status_code == 302 and response["Location"] == "/login/verify"
    assert client.get("/").status_code == 302  # the password alone does not sign in
    wrong = client.post("/login/verify", {"code": "abc"})
    assert wrong.status_code == 400 and "6-digit code" in wrong.content.decode()
    ok = client.post("/login/verify", {"code": code_for(device, 1)})
    assert ok.status_code == 302 and ok["Location"] == "/usage"
    assert client.get("/").status_code == 200 and verified(client)


@pytest.mark.django_db
def test_public_login_asks_for_the_code_then_hands_over_a_verified_session(alice):
    device, _codes = enable(owner())
    client = browser()
    assert client.post("/login", {"email": "owner@alice.test", "password": PASSWORD})["Location"] == "/login/verify"
    ok = client.post("/login/verify", {"code": code_for(device, 1)})
    assert ok.status_code == 302 and "/login/continue?token=" in ok["Location"]
    tenant_client = browser("alice")
    landed = tenant_client.get("/login/continue?" + ok["Location"].split("?", 1)[1])
    assert landed["Location"] == "/" and verified(tenant_client)


@pytest.mark.django_db
def test_verify_page_without_a_pending_sign_in_sends_back_to_the_password(alice):
    response = browser("alice").get("/login/verify")
    assert response.status_code == 302 and response["Location"] == "/login"
    response = browser().post("/login/verify", {"code": "123456"})
    assert response.status_code == 302 and response["Location"] == "/login"


@pytest.mark.django_db
def test_an_invitation_does_not_skip_the_second_factor(alice, bob):
    device, _codes = enable(owner("bob"))
    from tenants.services.members import member_invite
    from tests.conftest import owner_principal

    _membership, token = member_invite(principal=owner_principal(alice), email="owner@bob.test",
                                       role="viewer")
    client = browser("alice")
    response = client.post(f"/invitations/{token}", {"password": PASSWORD})
    assert response.status_code == 302 and response["Location"] == "/login"
    assert client.get("/").status_code == 302


# --- customers: /security -----------------------------------------------------------------

def _enrol_on_page(client, user) -> tuple[TotpDevice, list[str]]:
    page = client.get("/security/two-factor")
    assert page.status_code == 200 and 'src="data:image/svg+xml' in page.content.decode()
    device = TotpDevice.objects.get(user=user, confirmed=False)
    done = client.post("/security/two-factor", {"code": code_for(device)})
    assert done.status_code == 200, done.content
    return device, [c.replace("-", "") for c in CODE_RE.findall(done.content.decode())]


@pytest.mark.django_db
def test_member_enrols_on_the_security_page_and_recovery_codes_work_once(alice):
    client = portal_member(alice, "developer")
    user = User.objects.get(email="developer@alice.test")
    page = client.get("/security").content.decode()
    assert "Off" in page and "Set up an authenticator app" in page and "SSO" not in page
    device, codes = _enrol_on_page(client, user)
    assert len(codes) == 10 and verified(client)
    page = client.get("/security").content.decode()
    assert 'id="recovery-codes-left">10<' in page and "Turn off" in page
    assert AuditEvent.objects.filter(action="two_factor.enabled", tenant=alice, actor=user).exists()

    signin = browser("alice")
    signin.post("/login", {"username": user.email, "password": PASSWORD})
    assert signin.post("/login/verify", {"code": codes[3]})["Location"] == "/"
    again = browser("alice")
    again.post("/login", {"username": user.email, "password": PASSWORD})
    assert again.post("/login/verify", {"code": codes[3]}).status_code == 400
    assert 'id="recovery-codes-left">9<' in client.get("/security").content.decode()


@pytest.mark.django_db
def test_regenerating_recovery_codes_needs_the_password_or_a_code(alice):
    client = portal_user(alice)
    _device, codes = _enrol_on_page(client, owner())
    for bad in ({}, {"password": "wrong-password-123"}, {"code": "000000"}, {"code": "zz"}):
        refused = client.post("/security/recovery-codes", bad)
        assert refused.status_code == 400, bad
    fresh = client.post("/security/recovery-codes", {"password": PASSWORD})
    new_codes = [c.replace("-", "") for c in CODE_RE.findall(fresh.content.decode())]
    assert fresh.status_code == 200 and len(new_codes) == 10 and not set(new_codes) & set(codes)
    sheet = RecoveryCodeDevice.objects.get(user=owner())  # the old sheet is gone
    assert not sheet.codes.filter(digest__in=[sheet.digest(c) for c in codes]).exists()
    assert RecoveryCode.objects.filter(device__user=owner()).count() == 10
    assert two_factor.otp_check(owner(), new_codes[0])
    assert AuditEvent.objects.filter(action="two_factor.recovery_codes_regenerated").exists()


@pytest.mark.django_db
def test_disabling_two_factor_needs_the_password_or_a_code(alice):
    client = portal_user(alice)
    device, _codes = _enrol_on_page(client, owner())
    assert client.post("/security/two-factor/disable", {"password": "nope-nope-nope"}).status_code == 400
    assert two_factor.two_factor_enabled(owner())
    with override_settings(OTP_TOTP_THROTTLE_FACTOR=0):
        done = client.post("/security/two-factor/disable", {"code": code_for(device, 1)})
    assert done.status_code == 302 and not two_factor.two_factor_enabled(owner())
    assert AuditEvent.objects.filter(action="two_factor.disabled", tenant=alice).exists()
    assert client.post("/security/two-factor/disable", {"password": PASSWORD}).status_code == 400
    assert browser("alice").post("/login", {"username": "owner@alice.test",
                                            "password": PASSWORD})["Location"] == "/"


@pytest.mark.django_db
@pytest.mark.parametrize("code", ["", "12345", "1234567", "abcdefgh", "x" * 40])
def test_enrolment_refuses_bad_codes_and_stays_off(alice, code):
    client = portal_user(alice)
    client.get("/security/two-factor")
    response = client.post("/security/two-factor", {"code": code})
    assert response.status_code == 400
    assert not two_factor.two_factor_enabled(owner())


@pytest.mark.django_db
def test_enrol_page_when_already_on_goes_back_to_security(alice):
    client = portal_user(alice)
    enable(owner())
    assert client.get("/security/two-factor")["Location"] == "/security"
    assert client.post("/security/two-factor", {"code": "123456"})["Location"] == "/security"


@pytest.mark.django_db
def test_security_pages_need_a_signed_in_member_of_this_organisation(alice, bob, charlie):
    def on_alice(slug):
        client = browser("alice")
        client.force_login(owner(slug))
        return client

    for path in ["/security", "/security/two-factor"]:
        assert browser("alice").get(path)["Location"].startswith("/login")
        assert on_alice("bob").get(path).status_code == 404
        assert on_alice("charlie").get(path).status_code == 404
    for path in ["/security/recovery-codes", "/security/two-factor/disable"]:
        assert on_alice("charlie").post(path, {"password": PASSWORD}).status_code == 404
    assert not TotpDevice.objects.filter(user__email__in=["owner@bob.test",
                                                          "owner@charlie.test"]).exists()
    assert browser().get("/security").status_code == 404  # not on the public domain


@pytest.mark.django_db
def test_security_page_shows_only_the_signed_in_account(alice, bob, charlie):
    enable(owner("bob"))
    add_member(bob, "owner@charlie.test", "viewer")
    alice_page = portal_user(alice).get("/security").content.decode()
    assert "owner@bob.test" not in alice_page and "Off" in alice_page
    charlie_page = portal_user(charlie).get("/security").content.decode()
    assert "bob" not in charlie_page.lower() and "Off" in charlie_page
    assert "On" in portal_user(bob).get("/security").content.decode()


@pytest.mark.django_db
def test_sso_settings_link_is_for_owners_and_admins_when_the_page_exists(alice):
    from django.urls import NoReverseMatch, reverse

    try:
        reverse("portal:sso-settings", urlconf="aerolith.urls")
    except NoReverseMatch:
        pytest.skip("no SSO settings page in this build")
    assert "/security/sso" in portal_user(alice).get("/security").content.decode()
    assert "/security/sso" in portal_member(alice, "admin").get("/security").content.decode()
    assert "/security/sso" not in portal_member(alice, "viewer").get("/security").content.decode()


@pytest.mark.django_db
def test_security_forms_refuse_other_methods(alice):
    client = portal_user(alice)
    assert client.get("/security/recovery-codes").status_code == 405
    assert client.get("/security/two-factor/disable").status_code == 405


# --- the API ------------------------------------------------------------------------------

def _token(**body):
    return api_client("alice").post("/api/v1/auth/token",
                                    {"email": "owner@alice.test", "password": PASSWORD, **body},
                                    format="json")


@pytest.mark.django_db
def test_token_needs_the_otp_when_the_account_has_two_factor(alice):
    assert _token().status_code == 200
    assert _token(otp="123456").status_code == 200  # ignored without two-factor
    device, codes = enable(owner())
    missing = assert_problem(_token(), 401, "otp_required")
    assert "`otp`" in missing["detail"]
    assert assert_problem(_token(otp=""), 401, "otp_required")
    wrong = "111111" if code_for(device) != "111111" else "222222"
    assert_problem(_token(otp=wrong), 401, "otp_invalid")
    assert_problem(_token(otp="abc"), 401, "otp_invalid")
    assert _token(otp=codes[0]).status_code == 200
    assert_problem(_token(otp=codes[0]), 401, "otp_invalid")  # recovery codes work once
    with override_settings(OTP_TOTP_THROTTLE_FACTOR=0):
        ok = _token(otp=code_for(device, 1))
    assert ok.status_code == 200 and ok.json()["access"]


@pytest.mark.django_db
def test_token_refuses_an_oversized_otp_and_wrong_password_before_the_otp(alice):
    enable(owner())
    body = assert_problem(_token(otp="1" * 33), 400, "validation_error")
    assert body["errors"][0]["field"] == "otp"
    assert_problem(_token(password="wrong-password", otp="123456"), 401, "authentication_failed")


@pytest.mark.django_db
def test_token_otp_of_one_account_does_not_open_another(alice, bob):
    bob_device, bob_codes = enable(owner("bob"))
    enable(owner())
    assert_problem(_token(otp=bob_codes[0]), 401, "otp_invalid")
    assert_problem(_token(otp=code_for(bob_device, 1)), 401, "otp_invalid")
