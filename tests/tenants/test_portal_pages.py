"""The portal's API keys, team and audit log pages (SPEC §10, §11): the same services and
rules as the API, by role; the key's secret shown once; bad input on every form refused
with a clear message and nothing changed; nothing of alice's on bob's or charlie's domain,
and another organisation's ids are 404."""
import pytest
from django.core import mail
from django.db import connection
from django_tenants.utils import tenant_context

from tenants.models import ApiKey, AuditEvent, Membership, Role, Tenant
from tenants.services.audit import audit_record
from tests.conftest import (
    add_member,
    api_client,
    make_key,
    owner_principal,
    portal_member,
    portal_user,
)

pytestmark = pytest.mark.django_db


def html(response) -> str:
    return response.content.decode()


def keys(tenant) -> list[tuple]:
    with tenant_context(tenant):
        found = list(ApiKey.objects.order_by("pk").values_list("pk", "name", "scopes", "revoked_at"))
    connection.set_schema_to_public()
    return found


def team_state(tenant) -> list[tuple]:
    return list(Membership.objects.filter(tenant=tenant).order_by("pk")
                .values_list("pk", "user__email", "role", "accepted_at"))


def membership_of(tenant, email) -> Membership:
    return Membership.objects.get(tenant=tenant, user__email=email)


def secret_in(response) -> str:
    return html(response).split('id="api-key-secret">')[1].split("<")[0]


# --- API keys ------------------------------------------------------------------------------

def test_an_owner_creates_a_key_and_sees_its_secret_only_once(alice):
    client = portal_user(alice)
    page = client.get("/api-keys")
    assert page.status_code == 200 and 'action="/api-keys/new"' in html(page)
    assert 'href="/api-keys" aria-current="page"' in html(page)

    response = client.post("/api-keys/new", {"name": "ci-pipeline", "scopes": ["read", "usage:write"]})
    assert response.status_code == 201, html(response)
    assert "no-store" in response["Cache-Control"]
    secret = secret_in(response)
    assert secret.startswith("ak_") and 'id="copy-secret"' in html(response)
    [(pk, name, scopes, revoked)] = keys(alice)
    assert (name, scopes, revoked) == ("ci-pipeline", ["read", "usage:write"], None)

    listing = html(client.get("/api-keys"))
    assert "ci-pipeline" in listing and secret not in listing and "read, usage:write" in listing
    assert secret.split(".")[0] + "…" in listing and "never" in listing  # prefix; never used
    assert secret not in html(client.get(f"/api-keys/{pk}/revoke"))
    # The key works on the API.
    assert api_client("alice", secret).get("/api/v1/tenant").status_code == 200
    listing = html(client.get("/api-keys"))
    assert "never" not in listing.split('id="api-keys"')[1].split("</table>")[0]


def test_the_scope_checkboxes_offer_only_what_the_role_may_grant(alice):
    developer = portal_member(alice, Role.DEVELOPER)
    page = html(developer.get("/api-keys"))
    for scope in ("read", "databases:write", "api_keys:write", "usage:write"):
        assert f'value="{scope}"' in page
    for scope in ("billing:write", "members:write", "organization:owner"):
        assert f'value="{scope}"' not in page
    before = keys(alice)
    refused = developer.post("/api-keys/new", {"name": "sneaky", "scopes": ["read", "billing:write"]})
    assert refused.status_code == 400 and "is not one of the available choices" in html(refused)
    assert keys(alice) == before


@pytest.mark.parametrize("data, message", [
    ({"name": "", "scopes": ["read"]}, "This field is required."),
    ({"name": "   ", "scopes": ["read"]}, "This field is required."),
    ({"name": "k", "scopes": []}, "Give the key at least one scope"),
    ({"name": "k", "scopes": ["root"]}, "Select a valid choice"),
    ({"name": "x" * 101, "scopes": ["read"]}, "at most 100 characters"),
])
def test_bad_key_forms_change_nothing(alice, data, message):
    client = portal_user(alice)
    before = keys(alice)
    response = client.post("/api-keys/new", data)
    assert response.status_code == 400 and message in html(response)
    assert 'id="api-key-secret"' not in html(response)
    assert keys(alice) == before


def test_revoking_asks_for_confirmation_then_the_key_stops_working(alice):
    secret = make_key(alice, ["read"], name="old-ci")
    [(pk, *_)] = keys(alice)
    client = portal_user(alice)
    confirm = client.get(f"/api-keys/{pk}/revoke")
    assert confirm.status_code == 200 and "Revoke this API key?" in html(confirm)
    assert keys(alice)[0][3] is None  # looking changes nothing
    done = client.post(f"/api-keys/{pk}/revoke")
    assert done.status_code == 302 and done["Location"] == "/api-keys"
    assert keys(alice)[0][3] is not None
    assert api_client("alice", secret).get("/api/v1/tenant").status_code == 401
    assert "Revoked" in html(client.get("/api-keys"))
    assert AuditEvent.objects.filter(tenant=alice, action="api_key.revoked").exists()


@pytest.mark.parametrize("role", [Role.VIEWER, Role.BILLING])
def test_members_who_cannot_manage_keys_see_the_list_only(alice, role):
    make_key(alice, ["read"], name="visible-key")
    [(pk, *_)] = keys(alice)
    client = portal_member(alice, role)
    page = html(client.get("/api-keys"))
    assert "visible-key" in page and 'action="/api-keys/new"' not in page and "Revoke…" not in page
    before = keys(alice)
    refused = client.post("/api-keys/new", {"name": "x", "scopes": ["read"]})
    assert refused.status_code == 403 and "cannot manage API keys" in html(refused)
    assert client.post(f"/api-keys/{pk}/revoke").status_code == 403
    assert keys(alice) == before


def test_a_suspended_organisation_cannot_create_keys(alice):
    Tenant.objects.filter(pk=alice.pk).update(status="suspended")
    before = keys(alice)
    response = portal_user(alice).post("/api-keys/new", {"name": "k", "scopes": ["read"]})
    assert response.status_code == 400 and "suspended" in html(response)
    assert keys(alice) == before


def test_other_organisations_see_nothing_of_alices_keys(alice, bob, charlie):
    make_key(alice, ["read"], name="alice-secret-key")
    [(pk, *_)] = keys(alice)
    for tenant in (bob, charlie):
        client = portal_user(tenant)
        assert "alice-secret-key" not in html(client.get("/api-keys"))
        assert client.get(f"/api-keys/{pk}/revoke").status_code == 404
        assert client.post(f"/api-keys/{pk}/revoke").status_code == 404
    # bob's owner on alice's domain is not a member: 404, never alice's keys.
    intruder = portal_user(alice, "owner@bob.test")
    assert intruder.get("/api-keys").status_code == 404
    assert keys(alice)[0][3] is None
    assert portal_user(alice).get("/api-keys/99999999999999999999/revoke").status_code == 404


def test_pages_need_sign_in(alice):
    from django.test import Client

    from tests.conftest import host_of
    anonymous = Client(HTTP_HOST=host_of("alice"))
    for path in ("/api-keys", "/team", "/audit"):
        response = anonymous.get(path)
        assert response.status_code == 302 and "/login" in response["Location"]


def test_forms_need_csrf(alice):
    from django.test import Client

    from tenants.models import User
    from tests.conftest import host_of
    client = Client(HTTP_HOST=host_of("alice"), enforce_csrf_checks=True)
    client.force_login(User.objects.get(email="owner@alice.test"))
    before = keys(alice), team_state(alice)
    assert client.post("/api-keys/new", {"name": "k", "scopes": ["read"]}).status_code == 403
    assert client.post("/team/invite", {"email": "x@y.test", "role": "viewer"}).status_code == 403
    assert (keys(alice), team_state(alice)) == before


# --- team -----------------------------------------------------------------------------------

def test_the_team_page_lists_members_and_pending_invitations(alice, django_capture_on_commit_callbacks):
    add_member(alice, "dev@alice.test", Role.DEVELOPER)
    client = portal_user(alice)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post("/team/invite", {"email": "New.Person@Example.test", "role": "billing"})
    assert response.status_code == 302 and response["Location"] == "/team"
    assert mail.outbox and "new.person@example.test" in mail.outbox[-1].to
    page = html(client.get("/team"))
    members_table = page.split('id="members"')[1].split("</table>")[0]
    pending_table = page.split('id="invitations"')[1].split("</table>")[0]
    assert "owner@alice.test" in members_table and "dev@alice.test" in members_table
    assert "new.person@example.test" in pending_table and "Billing" in pending_table
    assert 'aria-current="page"' in page.split('href="/team"')[1][:30]


def test_an_admin_changes_roles_and_removes_members_but_never_touches_owners(alice):
    add_member(alice, "dev@alice.test", Role.DEVELOPER)
    admin = portal_member(alice, Role.ADMIN)
    dev = membership_of(alice, "dev@alice.test")
    owner = membership_of(alice, "owner@alice.test")
    page = html(admin.get("/team"))
    assert '<option value="owner"' not in page  # admins cannot offer the owner role
    assert f'action="/team/{owner.pk}/role"' not in page

    assert admin.post(f"/team/{dev.pk}/role", {"role": "viewer"}).status_code == 302
    assert membership_of(alice, "dev@alice.test").role == "viewer"

    before = team_state(alice)
    refused = admin.post(f"/team/{dev.pk}/role", {"role": "owner"})
    assert refused.status_code == 403 and "Only an owner" in html(refused)
    refused = admin.post(f"/team/{owner.pk}/role", {"role": "viewer"})
    assert refused.status_code == 403 and "Only an owner" in html(refused)
    refused = admin.post(f"/team/{owner.pk}/remove")
    assert refused.status_code == 403 and "Only an owner" in html(refused)
    refused = admin.post("/team/invite", {"email": "boss@example.test", "role": "owner"})
    assert refused.status_code == 400 and "Select a valid choice" in html(refused)
    assert team_state(alice) == before

    confirm = admin.get(f"/team/{dev.pk}/remove")
    assert confirm.status_code == 200 and "Remove this member?" in html(confirm)
    assert admin.post(f"/team/{dev.pk}/remove").status_code == 302
    assert not Membership.objects.filter(pk=dev.pk).exists()


def test_the_last_owner_stays(alice):
    owner = membership_of(alice, "owner@alice.test")
    client = portal_user(alice)
    before = team_state(alice)
    refused = client.post(f"/team/{owner.pk}/role", {"role": "admin"})
    assert refused.status_code == 409 and "An organisation needs an owner" in html(refused)
    refused = client.post(f"/team/{owner.pk}/remove")
    assert refused.status_code == 409 and "An organisation needs an owner" in html(refused)
    assert team_state(alice) == before
    # An owner can make another owner, who can then step the first down.
    add_member(alice, "second@alice.test", Role.ADMIN)
    second = membership_of(alice, "second@alice.test")
    assert client.post(f"/team/{second.pk}/role", {"role": "owner"}).status_code == 302
    assert client.post(f"/team/{owner.pk}/role", {"role": "admin"}).status_code == 302
    assert membership_of(alice, "owner@alice.test").role == "admin"


@pytest.mark.parametrize("data, message, status", [
    ({"email": "", "role": "viewer"}, "This field is required.", 400),
    ({"email": "not-an-email", "role": "viewer"}, "email", 400),
    ({"email": "x@example.test", "role": "emperor"}, "Select a valid choice", 400),
    ({"email": "owner@alice.test", "role": "viewer"}, "already a member", 409),
])
def test_bad_invitations_change_nothing(alice, data, message, status):
    client = portal_user(alice)
    before = team_state(alice), len(mail.outbox)
    response = client.post("/team/invite", data)
    assert response.status_code == status and message in html(response)
    assert 'class="errorlist"' in html(response)
    assert (team_state(alice), len(mail.outbox)) == before


def test_bad_role_changes_change_nothing(alice):
    add_member(alice, "dev@alice.test", Role.DEVELOPER)
    dev = membership_of(alice, "dev@alice.test")
    client = portal_user(alice)
    before = team_state(alice)
    for data in ({"role": "emperor"}, {}):
        response = client.post(f"/team/{dev.pk}/role", data)
        assert response.status_code == 400 and "Choose a role among" in html(response)
    assert client.post("/team/99999999999999999999/role", {"role": "viewer"}).status_code == 404
    assert team_state(alice) == before


@pytest.mark.parametrize("role", [Role.DEVELOPER, Role.BILLING, Role.VIEWER])
def test_members_who_cannot_manage_members_see_the_team_only(alice, role):
    add_member(alice, "dev@alice.test", Role.DEVELOPER)
    dev = membership_of(alice, "dev@alice.test")
    client = portal_member(alice, role)
    page = html(client.get("/team"))
    assert "owner@alice.test" in page and 'action="/team/invite"' not in page and "Remove…" not in page
    before = team_state(alice)
    assert client.post("/team/invite", {"email": "x@example.test", "role": "viewer"}).status_code == 403
    assert client.post(f"/team/{dev.pk}/role", {"role": "viewer"}).status_code == 403
    assert client.post(f"/team/{dev.pk}/remove").status_code == 403
    assert team_state(alice) == before


def test_other_organisations_see_nothing_of_alices_team(alice, bob, charlie):
    add_member(alice, "dev@alice.test", Role.DEVELOPER)
    dev = membership_of(alice, "dev@alice.test")
    before = team_state(alice)
    for tenant in (bob, charlie):
        client = portal_user(tenant)
        page = html(client.get("/team"))
        assert "dev@alice.test" not in page and "owner@alice.test" not in page
        assert client.post(f"/team/{dev.pk}/role", {"role": "viewer"}).status_code == 404
        assert client.get(f"/team/{dev.pk}/remove").status_code == 404
        assert client.post(f"/team/{dev.pk}/remove").status_code == 404
    assert team_state(alice) == before


# --- audit log ------------------------------------------------------------------------------

def test_owners_read_the_audit_log_newest_first_filtered_and_paginated(alice):
    principal = owner_principal(alice)
    for index in range(60):
        audit_record(action="test.bulk", tenant=alice, actor=principal, after={"n": index})
    audit_record(action="member.example", tenant=alice, actor=principal, after={"n": "last"})
    client = portal_user(alice)
    first = html(client.get("/audit"))
    rows = first.split('id="audit"')[1].split("</table>")[0]
    assert rows.index("member.example") < rows.index("test.bulk")  # newest first
    assert rows.count("<tr>") == 1 + 50  # header + one page
    assert "Page 1 of" in first and "page=2" in first
    filtered = html(client.get("/audit", {"action": "member."}))
    body = filtered.split('id="audit"')[1].split("</table>")[0]
    assert "member.example" in body and "test.bulk" not in body
    second = html(client.get("/audit", {"action": "test.", "page": 2}))
    assert "Page 2 of 2" in second and second.split('id="audit"')[1].count("test.bulk") == 10


@pytest.mark.parametrize("prefix", ["DROP TABLE", "x" * 81, "<script>"])
def test_a_bad_audit_filter_is_a_clear_error(alice, prefix):
    response = portal_user(alice).get("/audit", {"action": prefix})
    assert response.status_code == 400
    assert "Use lower-case letters" in html(response) or "at most 80" in html(response)
    assert "<script>" not in html(response).split("<main")[1]


@pytest.mark.parametrize("role", [Role.ADMIN, Role.DEVELOPER, Role.BILLING, Role.VIEWER])
def test_only_owners_read_the_audit_log(alice, role):
    response = portal_member(alice, role).get("/audit")
    assert response.status_code == 403 and "Not allowed" in html(response)
    assert "Go to the dashboard" in html(response)  # the friendly page, in the layout
    assert 'class="skip-link"' in html(response)


def test_the_audit_log_shows_only_this_organisations_events(alice, bob):
    audit_record(action="member.secret_alice", tenant=alice, actor=owner_principal(alice))
    page = html(portal_user(bob).get("/audit"))
    assert "secret_alice" not in page
