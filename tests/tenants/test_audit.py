"""The audit trail (SPEC §8): append-only in the database, written by every state-changing
service with who, what, on which tenant and in which request, and readable by owners."""
from datetime import timedelta

import pytest
from django.db import DatabaseError, connection, transaction
from django.utils.dateparse import parse_datetime

from tenants.models import AuditEvent, Membership, Tenant, User
from tenants.services.audit import audit_record
from tests.conftest import (
    PASSWORD,
    add_member,
    api_client,
    assert_problem,
    jwt_for,
    make_key,
    owner_principal,
)

REQ = {"HTTP_X_REQUEST_ID": "test-req-1"}


def _event(tenant, action="test.something") -> AuditEvent:
    return audit_record(action=action, tenant=tenant, actor="system", after={"n": 1})


def _refused(sql: str, params=()) -> str:
    with pytest.raises(DatabaseError) as refused:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(sql, params)
    return str(refused.value)


def _latest(tenant, action) -> AuditEvent:
    return AuditEvent.objects.filter(tenant=tenant, action=action).latest("id")


def _owner_client(slug="alice", **extra):
    client = api_client(slug, jwt_for(slug, f"owner@{slug}.test"))
    client.defaults.update(extra)
    return client


# --- append-only in the database -----------------------------------------------------------

@pytest.mark.django_db
def test_database_refuses_update_of_an_audit_entry(alice):
    event = _event(alice)
    message = _refused("UPDATE tenants_auditevent SET action = 'forged' WHERE id = %s", [event.pk])
    assert "append-only" in message
    event.refresh_from_db()
    assert event.action == "test.something"


@pytest.mark.django_db
def test_database_refuses_delete_of_an_audit_entry(alice):
    event = _event(alice)
    assert "append-only" in _refused("DELETE FROM tenants_auditevent WHERE id = %s", [event.pk])
    assert AuditEvent.objects.filter(pk=event.pk).exists()


@pytest.mark.django_db
def test_database_refuses_updates_and_deletes_through_the_orm(alice):
    event = _event(alice)
    count = AuditEvent.objects.count()
    attempts = [
        lambda: AuditEvent.objects.filter(pk=event.pk).update(action="forged"),
        lambda: AuditEvent.objects.filter(tenant=alice).delete(),
        lambda: AuditEvent.objects.all().delete(),
        lambda: event.delete(),
    ]

    def save_changed():
        event.actor_label = "someone else"
        event.save()

    for attempt in [*attempts, save_changed]:
        with pytest.raises(DatabaseError), transaction.atomic():
            attempt()
    assert AuditEvent.objects.count() == count
    assert AuditEvent.objects.get(pk=event.pk).actor_label == "system"


@pytest.mark.django_db
def test_database_refuses_updates_from_a_tenant_schema_too(alice):
    event = _event(alice)
    with connection.cursor() as cursor:
        schema = connection.ops.quote_name(alice.schema_name)
        cursor.execute(f"SET search_path TO {schema}, public")
    try:
        assert "append-only" in _refused(
            "UPDATE tenants_auditevent SET action = 'forged' WHERE id = %s", [event.pk])
    finally:
        connection.set_schema_to_public()
    event.refresh_from_db()
    assert event.action == "test.something"


@pytest.mark.django_db
def test_inserting_audit_entries_works(alice):
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO tenants_auditevent (occurred_at, tenant_id, actor_label, action, "
            "target_type, target_id, request_id) VALUES (now(), %s, 'sql', 'test.raw', '', '', '') "
            "RETURNING id", [alice.pk])
        raw_id = cursor.fetchone()[0]
    orm = _event(alice, "test.orm")
    assert set(AuditEvent.objects.filter(tenant=alice, action__startswith="test.")
               .values_list("id", flat=True)) == {raw_id, orm.pk}


@pytest.mark.django_db
def test_audit_record_names_actors_and_targets(alice):
    owner = owner_principal(alice)
    by_principal = audit_record(action="test.a", tenant=alice, actor=owner, target=alice)
    by_user = audit_record(action="test.b", tenant=alice, actor=owner.user)
    by_system = audit_record(action="test.c", tenant=None, actor=None)
    assert (by_principal.actor_id, by_principal.actor_label) == (
        owner.user.pk, "user:owner@alice.test")
    assert (by_principal.target_type, by_principal.target_id) == ("tenants.tenant", str(alice.pk))
    assert by_user.actor_label == "user:owner@alice.test"
    assert (by_system.actor_id, by_system.actor_label) == (None, "system")
    assert by_system.tenant_id is None
    assert (by_system.target_type, by_system.target_id) == ("", "")


# --- every state change writes an entry -----------------------------------------------------

@pytest.mark.django_db
def test_signup_through_the_api_is_audited_with_the_request_id():
    response = api_client().post("/api/v1/signup", {
        "organization": "Echo Ltd", "slug": "echo", "email": "founder@echo.test",
        "password": PASSWORD, "plan": "starter", "region": "eu-central"}, format="json", **REQ)
    assert response.status_code == 201, response.content
    tenant = Tenant.objects.get(slug="echo")
    event = _latest(tenant, "tenant.signed_up")
    user = User.objects.get(email="founder@echo.test")
    assert (event.actor_id, event.actor_label) == (user.pk, "user:founder@echo.test")
    assert (event.target_type, event.target_id) == ("tenants.tenant", str(tenant.pk))
    assert event.request_id == "test-req-1"
    assert event.after["plan"] == "starter" and event.after["status"] == "trialing"


@pytest.mark.django_db
def test_api_key_create_and_revoke_are_audited_with_actor_and_request_id(alice):
    client = _owner_client(**REQ)
    created = client.post("/api/v1/api-keys", {"name": "ci", "scopes": ["read"]}, format="json")
    assert created.status_code == 201, created.content
    key_id = created.json()["id"]
    event = _latest(alice, "api_key.created")
    assert event.actor_label == "user:owner@alice.test"
    assert (event.target_type, event.target_id) == ("tenants.apikey", str(key_id))
    assert event.after == {"name": "ci", "prefix": created.json()["prefix"], "scopes": ["read"]}
    assert event.request_id == "test-req-1"
    assert created.json()["secret"] not in str(event.after)

    client.defaults["HTTP_X_REQUEST_ID"] = "test-req-2"
    assert client.delete(f"/api/v1/api-keys/{key_id}").status_code == 204
    revoked = _latest(alice, "api_key.revoked")
    assert (revoked.target_id, revoked.request_id) == (str(key_id), "test-req-2")
    assert (revoked.before, revoked.after) == ({"active": True}, {"active": False})


@pytest.mark.django_db
def test_changes_made_with_an_api_key_name_the_key_as_actor(alice):
    secret = make_key(alice, ["read", "api_keys:write"])
    prefix = secret[3:15]
    client = api_client("alice", secret)
    response = client.post("/api/v1/api-keys", {"name": "child", "scopes": ["read"]},
                           format="json", **REQ)
    assert response.status_code == 201, response.content
    event = _latest(alice, "api_key.created")
    assert (event.actor_id, event.actor_label) == (None, f"api_key:{prefix}")
    assert event.request_id == "test-req-1"


@pytest.mark.django_db
def test_member_invite_role_change_and_removal_are_audited(alice):
    client = _owner_client(**REQ)
    invited = client.post("/api/v1/members", {"email": "new@alice.test", "role": "viewer"},
                          format="json")
    assert invited.status_code == 201, invited.content
    member_id = invited.json()["id"]
    event = _latest(alice, "member.invited")
    assert (event.actor_label, event.target_type, event.target_id, event.request_id) == (
        "user:owner@alice.test", "tenants.membership", str(member_id), "test-req-1")
    assert event.after == {"email": "new@alice.test", "role": "viewer"}

    assert client.patch(f"/api/v1/members/{member_id}", {"role": "developer"},
                        format="json").status_code == 200
    changed = _latest(alice, "member.role_changed")
    assert (changed.before, changed.after) == ({"role": "viewer"}, {"role": "developer"})
    assert (changed.target_id, changed.request_id) == (str(member_id), "test-req-1")

    assert client.delete(f"/api/v1/members/{member_id}").status_code == 204
    removed = _latest(alice, "member.removed")
    assert removed.before == {"email": "new@alice.test", "role": "developer"}
    assert (removed.target_id, removed.actor_label) == (str(member_id), "user:owner@alice.test")
    assert not Membership.objects.filter(pk=member_id).exists()


@pytest.mark.django_db
def test_accepting_an_invitation_is_audited_as_the_new_member(alice):
    membership = add_member(alice, "joiner@alice.test", "billing")
    event = _latest(alice, "member.joined")
    assert (event.actor_id, event.actor_label) == (membership.user.pk, "user:joiner@alice.test")
    assert (event.target_id, event.after) == (str(membership.pk), {"role": "billing"})


@pytest.mark.django_db
def test_test_clock_advance_through_the_api_is_audited(alice):
    client = api_client("alice", make_key(alice, ["test_clock:write"]))
    response = client.post("/api/v1/test-clock/advance", {"seconds": 3600}, format="json", **REQ)
    assert response.status_code == 200, response.content
    attached = _latest(alice, "test_clock.attached")
    advanced = _latest(alice, "test_clock.advanced")
    assert attached.request_id == advanced.request_id == "test-req-1"
    assert advanced.actor_label.startswith("api_key:")
    assert advanced.target_type == "tenants.testclock"
    start = parse_datetime(advanced.before["frozen_time"])
    assert parse_datetime(advanced.after["frozen_time"]) - start == timedelta(seconds=3600)
    assert advanced.after["jobs_run"] == 0


@pytest.mark.django_db
def test_refused_changes_write_no_audit_entry(alice):
    before = AuditEvent.objects.count()
    client = _owner_client()
    assert_problem(client.post("/api/v1/api-keys", {"name": "x", "scopes": ["root"]},
                               format="json"), 400)
    assert_problem(client.post("/api/v1/members", {"email": "nope", "role": "viewer"},
                               format="json"), 400)
    assert_problem(client.post("/api/v1/test-clock/advance", {"seconds": -5}, format="json"), 400)
    assert AuditEvent.objects.count() == before


@pytest.mark.django_db
def test_an_unsafe_request_id_is_replaced_before_it_reaches_the_trail(alice):
    client = _owner_client(HTTP_X_REQUEST_ID="bad id; DROP TABLE")
    response = client.post("/api/v1/api-keys", {"name": "ci", "scopes": ["read"]}, format="json")
    assert response.status_code == 201
    event = _latest(alice, "api_key.created")
    assert event.request_id == response["X-Request-ID"]
    assert len(event.request_id) == 32 and event.request_id.isalnum()


# --- reading the trail -----------------------------------------------------------------------

@pytest.mark.django_db
def test_audit_events_list_only_the_callers_tenant_newest_first(alice, bob, charlie):
    for tenant in (alice, bob, charlie):
        make_key(tenant, ["read"], name=f"{tenant.slug}-key")
    _event(None, "test.platform")
    response = _owner_client().get("/api/v1/audit-events")
    assert response.status_code == 200, response.content
    events = response.json()["results"]
    expected = list(AuditEvent.objects.filter(tenant=alice).order_by("-occurred_at", "-id")
                    .values_list("id", flat=True))
    assert [e["id"] for e in events] == expected
    assert events[0]["action"] == "api_key.created"
    assert {"id", "occurred_at", "actor", "action", "target_type", "target_id", "before",
            "after", "request_id"} == set(events[0])
    foreign = set(AuditEvent.objects.exclude(tenant=alice).values_list("id", flat=True))
    assert foreign and not foreign & {e["id"] for e in events}
    times = [parse_datetime(e["occurred_at"]) for e in events]
    assert times == sorted(times, reverse=True)


@pytest.mark.django_db
def test_audit_events_are_paginated_with_a_cursor(alice):
    for n in range(5):
        _event(alice, f"test.page-{n}")
    client = _owner_client()
    seen, url, pages = [], "/api/v1/audit-events?limit=2", 0
    while url:
        page = client.get(url)
        assert page.status_code == 200, page.content
        body = page.json()
        assert len(body["results"]) <= 2
        seen += [e["id"] for e in body["results"]]
        url, pages = body["next"], pages + 1
    expected = list(AuditEvent.objects.filter(tenant=alice).order_by("-occurred_at", "-id")
                    .values_list("id", flat=True))
    assert seen == expected and pages == -(-len(expected) // 2)


@pytest.mark.django_db
@pytest.mark.parametrize("role", ["admin", "developer", "billing", "viewer"])
def test_only_owners_read_the_audit_trail(alice, role):
    add_member(alice, f"{role}@alice.test", role)
    client = api_client("alice", jwt_for("alice", f"{role}@alice.test"))
    assert_problem(client.get("/api/v1/audit-events"), 403, "role_not_allowed")


@pytest.mark.django_db
def test_audit_trail_is_readable_with_an_owner_scoped_key_but_not_anonymously(alice):
    key = make_key(alice, ["organization:owner"])
    assert api_client("alice", key).get("/api/v1/audit-events").status_code == 200
    assert_problem(api_client("alice").get("/api/v1/audit-events"), 401)
    assert_problem(api_client("alice", make_key(alice, ["read"])).get("/api/v1/audit-events"),
                   403, "insufficient_scope")


@pytest.mark.django_db
def test_another_tenants_owner_cannot_read_this_trail(alice, bob):
    bob_token = jwt_for("bob", "owner@bob.test")
    assert_problem(api_client("alice", bob_token).get("/api/v1/audit-events"), 404)
    bob_key = make_key(bob, ["organization:owner"])
    assert_problem(api_client("alice", bob_key).get("/api/v1/audit-events"), 401)
