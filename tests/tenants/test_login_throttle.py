"""Failed sign-ins are throttled per account and per IP (django-axes, SPEC §8): after
AXES_FAILURE_LIMIT failures even the right password is refused until the cool-off ends,
with a clear message on the login pages and 429 problem+json with Retry-After from the
token endpoint."""
import time
from datetime import timedelta

import pytest
from django.conf import settings
from django.test import Client, override_settings

from tenants.models import User
from tenants.services import two_factor
from tests.conftest import PASSWORD, PUBLIC_HOST, api_client, assert_problem, host_of

LIMIT = settings.AXES_FAILURE_LIMIT
COOLOFF = int(settings.AXES_COOLOFF_TIME.total_seconds())
LOCKED_TEXT = "Too many failed sign-in attempts"


def tenant_login(email, password, ip="10.0.0.1"):
    return Client(HTTP_HOST=host_of("alice"), REMOTE_ADDR=ip).post(
        "/login", {"username": email, "password": password})


def public_login(email, password, ip="10.0.0.1"):
    return Client(HTTP_HOST=PUBLIC_HOST, REMOTE_ADDR=ip).post(
        "/login", {"email": email, "password": password})


def token(email="owner@alice.test", password=PASSWORD, ip="10.0.0.1", **extra):
    return api_client("alice").post("/api/v1/auth/token",
                                    {"email": email, "password": password, **extra},
                                    format="json", REMOTE_ADDR=ip)


def test_the_limits_are_the_documented_ones():
    assert (LIMIT, COOLOFF) == (5, 15 * 60)


@pytest.mark.django_db
def test_tenant_login_locks_the_account_after_the_limit_even_for_the_right_password(alice):
    for _ in range(LIMIT - 1):
        response = tenant_login("owner@alice.test", "wrong-password")
        assert response.status_code == 400 and LOCKED_TEXT not in response.content.decode()
    locked = tenant_login("Owner@Alice.test ", "wrong-password")  # same account, however typed
    assert locked.status_code == 429 and LOCKED_TEXT in locked.content.decode()
    assert "Wait 15 minutes" in locked.content.decode()
    right = tenant_login("owner@alice.test", PASSWORD, ip="10.0.0.2")  # per account: any IP
    assert right.status_code == 429 and LOCKED_TEXT in right.content.decode()
    # Other accounts from other addresses are not affected.
    assert tenant_login("owner@bob.test", PASSWORD, ip="10.0.0.3").status_code == 400  # not a member
    assert public_login("owner@bob.test", PASSWORD, ip="10.0.0.3").status_code == 302


@pytest.mark.django_db
def test_public_login_locks_an_ip_trying_many_accounts(alice):
    for n in range(LIMIT):
        response = public_login(f"nobody{n}@example.test", "wrong-password", ip="10.9.9.9")
    assert response.status_code == 429 and LOCKED_TEXT in response.content.decode()
    # The right password of a real account is refused from that address…
    refused = public_login("owner@alice.test", PASSWORD, ip="10.9.9.9")
    assert refused.status_code == 429 and LOCKED_TEXT in refused.content.decode()
    # …and accepted from another.
    assert public_login("owner@alice.test", PASSWORD, ip="10.0.0.5").status_code == 302


@pytest.mark.django_db
def test_token_endpoint_answers_429_problem_with_retry_after(alice):
    for _ in range(LIMIT - 1):
        assert_problem(token(password="wrong-password"), 401, "authentication_failed")
    response = token(password="wrong-password")
    body = assert_problem(response, 429, "too_many_login_attempts")
    assert response["Retry-After"] == str(COOLOFF) and body["retry_after"] == COOLOFF
    assert LOCKED_TEXT in body["detail"]
    assert_problem(token(), 429, "too_many_login_attempts")
    assert token(email="owner@alice.test", ip="10.0.0.7").status_code == 429  # the account


@pytest.mark.django_db
def test_wrong_two_factor_codes_count_as_failed_sign_ins(alice):
    from django_otp.oath import totp

    device = two_factor.totp_enrolment(User.objects.get(email="owner@alice.test"))
    two_factor.totp_enrol_confirm(user=device.user, code=f"{totp(device.bin_key):06d}")
    with override_settings(OTP_TOTP_THROTTLE_FACTOR=0):
        for _ in range(LIMIT - 1):
            assert_problem(token(otp="abcdefgz"), 401, "otp_invalid")
        assert_problem(token(otp="abcdefgz"), 429, "too_many_login_attempts")


@pytest.mark.django_db
def test_the_admin_login_page_is_throttled_too():
    User.objects.create_superuser("ops@aerolith.test", PASSWORD)
    client = Client(HTTP_HOST=PUBLIC_HOST, REMOTE_ADDR="10.1.1.1")
    for _ in range(LIMIT - 1):
        assert client.post("/admin/login/", {"username": "ops@aerolith.test",
                                             "password": "wrong"}).status_code == 200
    assert client.post("/admin/login/", {"username": "ops@aerolith.test",
                                         "password": "wrong"}).status_code == 429
    locked = client.post("/admin/login/", {"username": "ops@aerolith.test", "password": PASSWORD})
    assert locked.status_code == 429 and LOCKED_TEXT in locked.content.decode()
    assert locked["Retry-After"] == str(COOLOFF)


@pytest.mark.django_db
@pytest.mark.parametrize("body", [{}, {"email": "owner@alice.test"}, {"password": "x"},
                                  {"email": "x" * 300, "password": "y"}])
def test_malformed_sign_ins_are_refused_without_an_error(alice, body):
    response = api_client("alice").post("/api/v1/auth/token", body, format="json")
    assert_problem(response, 400, "validation_error")
    page = Client(HTTP_HOST=host_of("alice")).post("/login", body)
    assert page.status_code == 400


@pytest.mark.django_db
def test_a_lockout_ends_after_the_cool_off(alice):
    with override_settings(AXES_COOLOFF_TIME=timedelta(seconds=1)):
        for _ in range(LIMIT):
            response = token(password="wrong-password")
        body = assert_problem(response, 429, "too_many_login_attempts")
        assert response["Retry-After"] == "1" and body["retry_after"] == 1
        assert tenant_login("owner@alice.test", PASSWORD).status_code == 429
        time.sleep(1.2)
        assert token().status_code == 200
        assert tenant_login("owner@alice.test", PASSWORD).status_code == 302


@pytest.mark.django_db
def test_staff_see_lockouts_in_the_console(alice):
    from tests.conftest import staff_client

    for _ in range(LIMIT):
        token(password="wrong-password")
    page = staff_client().get("/admin/axes/accessattempt/")
    assert page.status_code == 200 and "owner@alice.test" in page.content.decode()
