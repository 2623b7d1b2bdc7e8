"""The team (SPEC §2, §10): invitations by email, role changes and removals through the API,
and accepting an invitation in the portal."""
import re
import threading

import psycopg
import pytest
from django.core import mail
from django.core.mail.backends.base import BaseEmailBackend
from django.db import connection
from django.test import Client

from tenants.models import AuditEvent, Membership, User
from tests.conftest import PASSWORD, add_member, api_client, assert_problem, host_of, jwt_for

NEW_PASSWORD = "another-long-password-77"


@pytest.fixture
def owner(alice):
    return api_client("alice", jwt_for("alice", "owner@alice.test"))


@pytest.fixture
def invite(owner, django_capture_on_commit_callbacks):
    """Invite through the API, run the on-commit email, return (response, token or None)."""
    def send(email, role="developer"):
        with django_capture_on_commit_callbacks(execute=True):
            response = owner.post("/api/v1/members", {"email": email, "role": role}, format="json")
        token = None
        if response.status_code == 201:
            match = re.search(r"/invitations/(\S+)", mail.outbox[-1].body)
            token = match.group(1)
        return response, token
    return send


def _state(tenant):
    return (Membership.objects.filter(tenant=tenant).count(), User.objects.count(),
            AuditEvent.objects.filter(tenant=tenant).count(), len(mail.outbox))


def _portal(slug="alice"):
    return Client(HTTP_HOST=host_of(slug))


def _signed_in_as(client) -> str | None:
    user_id = client.session.get("_auth_user_id")
    return User.objects.get(pk=user_id).email if user_id else None


# --- inviting -------------------------------------------------------------------------------

@pytest.mark.django_db
def test_invite_creates_a_pending_membership_and_emails_a_link(alice, invite):
    response, token = invite("New.Dev@Example.test", "developer")
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["email"] == "new.dev@example.test" and body["role"] == "developer"
    assert body["status"] == "invited" and body["accepted_at"] is None
    membership = Membership.objects.get(pk=body["id"])
    assert membership.tenant == alice and membership.is_pending
    assert membership.invited_by.email == "owner@alice.test"
    assert not membership.user.has_usable_password()
    assert membership.invite_token_hash and token not in membership.invite_token_hash

    message = mail.outbox[-1]
    assert message.to == ["new.dev@example.test"]
    assert "Alice Ltd" in message.subject
    assert f"http://alice.aerolith.localhost:8000/invitations/{token}" in message.body
    assert "developer" in message.body
    event = AuditEvent.objects.get(tenant=alice, action="member.invited",
                                   target_id=str(membership.pk))
    assert event.after == {"email": "new.dev@example.test", "role": "developer"}


@pytest.mark.django_db
def test_invitation_email_is_sent_only_after_commit(owner, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = owner.post("/api/v1/members", {"email": "later@alice.test", "role": "viewer"},
                              format="json")
    assert response.status_code == 201
    assert mail.outbox == [] and len(callbacks) == 1


class BrokenMailServer(BaseEmailBackend):
    def send_messages(self, messages):
        raise ConnectionRefusedError("mail server down")


@pytest.mark.django_db
def test_a_mail_outage_does_not_break_a_committed_invitation(alice, owner, settings, caplog,
                                                              django_capture_on_commit_callbacks):
    settings.EMAIL_BACKEND = f"{__name__}.BrokenMailServer"
    with django_capture_on_commit_callbacks(execute=True):
        response = owner.post("/api/v1/members", {"email": "new@alice.test", "role": "viewer"},
                              format="json")
    assert response.status_code == 201, response.content
    assert Membership.objects.filter(tenant=alice, user__email="new@alice.test").exists()
    assert "mail server down" in caplog.text


@pytest.mark.django_db
def test_two_invitations_of_the_same_person_at_once_end_in_one_conflict(alice, owner):
    """Another request invites bob's owner to alice and commits while ours is inserting:
    ours must answer already_member, not fail on the unique constraint."""
    params = connection.get_connection_params()
    params.pop("cursor_factory", None)
    params.pop("context", None)
    user_id = User.objects.get(email="owner@bob.test").pk
    other = psycopg.connect(**params)
    try:
        other.execute("INSERT INTO public.tenants_membership (user_id, tenant_id, role, "
                      "invite_token_hash, created_at) VALUES (%s, %s, 'viewer', '', now())",
                      [user_id, alice.pk])
        commit_soon = threading.Timer(0.3, other.commit)
        commit_soon.start()
        response = owner.post("/api/v1/members", {"email": "owner@bob.test", "role": "admin"},
                              format="json")
        commit_soon.join()
        assert_problem(response, 409, "already_member")
    finally:
        other.rollback()
        other.execute("DELETE FROM public.tenants_membership WHERE user_id = %s AND tenant_id = %s",
                      [user_id, alice.pk])
        other.commit()
        other.close()


@pytest.mark.django_db
def test_invited_member_is_listed_as_invited(owner, invite):
    invite("pending@alice.test", "billing")
    rows = {r["email"]: r for r in owner.get("/api/v1/members").json()["results"]}
    assert rows["pending@alice.test"]["status"] == "invited"
    assert rows["owner@alice.test"]["status"] == "active"


@pytest.mark.django_db
@pytest.mark.parametrize("email", ["owner@alice.test", "OWNER@alice.test", "pending@alice.test"])
def test_inviting_an_existing_member_or_invitee_is_a_conflict(alice, invite, email):
    invite("pending@alice.test")
    before = _state(alice)
    response, _ = invite(email, "admin")
    body = assert_problem(response, 409, "already_member")
    assert email.lower() in body["detail"]
    assert _state(alice) == before


@pytest.mark.django_db
def test_inviting_a_user_of_another_organisation_keeps_their_account(alice, invite):
    response, token = invite("owner@bob.test", "viewer")
    assert response.status_code == 201
    user = User.objects.get(email="owner@bob.test")
    assert user.check_password(PASSWORD)
    assert jwt_for("bob", "owner@bob.test")  # still works on bob


@pytest.mark.django_db
@pytest.mark.parametrize("data, field", [
    ({"email": "not-an-email", "role": "viewer"}, "email"),
    ({"email": "", "role": "viewer"}, "email"),
    ({"email": "a@b", "role": "viewer"}, "email"),
    ({"email": "x" * 250 + "@a.test", "role": "viewer"}, "email"),
    ({"email": None, "role": "viewer"}, "email"),
    ({"role": "viewer"}, "email"),
    ({"email": "ok@alice.test", "role": "emperor"}, "role"),
    ({"email": "ok@alice.test", "role": ""}, "role"),
    ({"email": "ok@alice.test", "role": ["admin"]}, "role"),
    ({"email": "ok@alice.test"}, "role"),
])
def test_bad_invitations_are_field_errors_and_create_nothing(alice, owner,
                                                            django_capture_on_commit_callbacks,
                                                            data, field):
    before = _state(alice)
    with django_capture_on_commit_callbacks(execute=True):
        response = owner.post("/api/v1/members", data, format="json")
    body = assert_problem(response, 400, "validation_error")
    assert field in [e["field"] for e in body["errors"]], body
    assert _state(alice) == before
    assert not User.objects.filter(email="ok@alice.test").exists()


# --- changing roles and removing ---------------------------------------------------------------

@pytest.mark.django_db
def test_changing_a_role_is_audited_with_before_and_after(alice, owner):
    member = add_member(alice, "dev@alice.test", "developer")
    response = owner.patch(f"/api/v1/members/{member.pk}", {"role": "admin"}, format="json")
    assert response.status_code == 200 and response.json()["role"] == "admin"
    member.refresh_from_db()
    assert member.role == "admin"
    event = AuditEvent.objects.get(tenant=alice, action="member.role_changed")
    assert event.before == {"role": "developer"} and event.after == {"role": "admin"}
    assert event.target_id == str(member.pk) and event.actor_label == "user:owner@alice.test"
    assert owner.get(f"/api/v1/members/{member.pk}").json()["role"] == "admin"


@pytest.mark.django_db
def test_setting_the_same_role_changes_nothing(alice, owner):
    member = add_member(alice, "dev@alice.test", "developer")
    response = owner.patch(f"/api/v1/members/{member.pk}", {"role": "developer"}, format="json")
    assert response.status_code == 200
    assert not AuditEvent.objects.filter(tenant=alice, action="member.role_changed").exists()


@pytest.mark.django_db
@pytest.mark.parametrize("data", [{"role": "emperor"}, {}, {"role": None}])
def test_bad_role_changes_are_field_errors(alice, owner, data):
    member = add_member(alice, "dev@alice.test", "developer")
    body = assert_problem(owner.patch(f"/api/v1/members/{member.pk}", data, format="json"), 400)
    assert [e["field"] for e in body["errors"]] == ["role"]
    member.refresh_from_db()
    assert member.role == "developer"


@pytest.mark.django_db
def test_removing_a_member_ends_their_access(alice, owner):
    member = add_member(alice, "dev@alice.test", "developer")
    their_token = jwt_for("alice", "dev@alice.test")
    assert api_client("alice", their_token).get("/api/v1/tenant").status_code == 200
    assert owner.delete(f"/api/v1/members/{member.pk}").status_code == 204
    assert not Membership.objects.filter(pk=member.pk).exists()
    assert User.objects.filter(email="dev@alice.test").exists()  # the person stays
    assert_problem(api_client("alice", their_token).get("/api/v1/tenant"), 404)
    assert_problem(owner.get(f"/api/v1/members/{member.pk}"), 404)
    event = AuditEvent.objects.get(tenant=alice, action="member.removed")
    assert event.before == {"email": "dev@alice.test", "role": "developer"}


@pytest.mark.django_db
def test_a_removed_member_can_be_invited_again(alice, owner, invite):
    member = add_member(alice, "dev@alice.test", "developer")
    owner.delete(f"/api/v1/members/{member.pk}")
    response, token = invite("dev@alice.test", "viewer")
    assert response.status_code == 201 and response.json()["status"] == "invited"


@pytest.mark.django_db
def test_withdrawing_an_invitation_kills_its_link(alice, owner, invite):
    response, token = invite("new@alice.test")
    assert owner.delete(f"/api/v1/members/{response.json()['id']}").status_code == 204
    assert _portal().get(f"/invitations/{token}").status_code == 404


@pytest.mark.django_db
@pytest.mark.parametrize("method, data", [("get", None), ("patch", {"role": "viewer"}),
                                          ("delete", None)])
def test_bad_member_ids_are_404_not_500(owner, method, data):
    for member_id in ("abc", "0", "-5", "1e3", "999999999999999999999", "9223372036854775807"):
        response = getattr(owner, method)(f"/api/v1/members/{member_id}", data, format="json")
        assert response.status_code == 404, (member_id, response.content)
        assert_problem(response, 404)


# --- accepting in the portal ---------------------------------------------------------------------

@pytest.mark.django_db
def test_a_new_user_accepts_by_choosing_a_password(alice, invite):
    _, token = invite("new@alice.test", "developer")
    client = _portal()
    page = client.get(f"/invitations/{token}")
    assert page.status_code == 200
    assert b"Choose a password" in page.content and b"new@alice.test" in page.content
    assert _signed_in_as(client) is None  # opening the link signs nobody in

    response = client.post(f"/invitations/{token}", {"password": NEW_PASSWORD})
    assert response.status_code == 302 and response["Location"] == "/"
    assert _signed_in_as(client) == "new@alice.test"
    membership = Membership.objects.get(tenant=alice, user__email="new@alice.test")
    assert not membership.is_pending and membership.invite_token_hash == ""
    assert membership.user.check_password(NEW_PASSWORD)
    assert client.get("/").status_code == 200
    assert jwt_for("alice", "new@alice.test", NEW_PASSWORD)
    assert AuditEvent.objects.filter(tenant=alice, action="member.joined",
                                     target_id=str(membership.pk)).exists()


@pytest.mark.django_db
@pytest.mark.parametrize("password", ["", "short", "password123456", "new@alice.test",
                                      "1234567890123"])
def test_a_new_user_must_choose_a_good_password(alice, invite, password):
    _, token = invite("new@alice.test", "developer")
    client = _portal()
    response = client.post(f"/invitations/{token}", {"password": password})
    assert response.status_code == 400
    assert b"errorlist" in response.content
    assert _signed_in_as(client) is None
    membership = Membership.objects.get(tenant=alice, user__email="new@alice.test")
    assert membership.is_pending and not membership.user.has_usable_password()


@pytest.mark.django_db
@pytest.mark.parametrize("password", ["", "wrong-password-123"])
def test_an_existing_user_must_type_their_password(alice, invite, password):
    _, token = invite("owner@bob.test", "viewer")
    client = _portal()
    page = client.get(f"/invitations/{token}")
    assert page.status_code == 200 and b"Your account's password" in page.content
    response = client.post(f"/invitations/{token}", {"password": password})
    assert response.status_code == 400
    assert b"owner@bob.test" in response.content  # says which password it wants
    assert _signed_in_as(client) is None
    assert client.get("/").status_code == 302  # not signed in on alice
    membership = Membership.objects.get(tenant=alice, user__email="owner@bob.test")
    assert membership.is_pending
    assert User.objects.get(email="owner@bob.test").check_password(PASSWORD)


@pytest.mark.django_db
def test_an_existing_user_accepts_with_their_own_password(alice, invite):
    _, token = invite("owner@bob.test", "viewer")
    client = _portal()
    response = client.post(f"/invitations/{token}", {"password": PASSWORD})
    assert response.status_code == 302
    assert _signed_in_as(client) == "owner@bob.test"
    assert not Membership.objects.get(tenant=alice, user__email="owner@bob.test").is_pending
    assert User.objects.get(email="owner@bob.test").check_password(PASSWORD)


@pytest.mark.django_db
def test_a_used_invitation_link_is_a_404(invite):
    _, token = invite("new@alice.test")
    _portal().post(f"/invitations/{token}", {"password": NEW_PASSWORD})
    for method in ("get", "post"):
        response = getattr(_portal(), method)(f"/invitations/{token}", {"password": NEW_PASSWORD})
        assert response.status_code == 404
        assert response["Content-Type"].startswith("text/html")


@pytest.mark.django_db
@pytest.mark.parametrize("token", ["nope", "x" * 43, "%00", "a" * 5000])
def test_an_invalid_invitation_link_is_a_404(invite, token):
    invite("new@alice.test")
    client = _portal()
    assert client.get(f"/invitations/{token}").status_code == 404
    assert client.post(f"/invitations/{token}", {"password": NEW_PASSWORD}).status_code == 404
    assert _signed_in_as(client) is None


@pytest.mark.django_db
def test_an_invitation_works_only_on_its_own_organisation(invite):
    _, token = invite("new@alice.test")
    assert _portal("bob").get(f"/invitations/{token}").status_code == 404
    response = _portal("bob").post(f"/invitations/{token}", {"password": NEW_PASSWORD})
    assert response.status_code == 404
    assert Client(HTTP_HOST="aerolith.localhost").get(f"/invitations/{token}").status_code == 404
    assert _portal().get(f"/invitations/{token}").status_code == 200
