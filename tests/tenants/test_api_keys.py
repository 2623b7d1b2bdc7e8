"""API keys (SPEC §8): shown once, stored hashed, prefix visible, scoped, revocable, with a
last-used time; bad keys and bad ids are clear refusals, never a 500."""
import hashlib

import pytest
from django_tenants.utils import tenant_context

from tenants.models import ApiKey, AuditEvent
from tenants.permissions import ALL_SCOPES
from tests.conftest import add_member, api_client, assert_problem, jwt_for, make_key


@pytest.fixture
def owner(alice):
    return api_client("alice", jwt_for("alice", "owner@alice.test"))


def _create(client, name="ci", scopes=("read",)):
    return client.post("/api/v1/api-keys", {"name": name, "scopes": list(scopes)}, format="json")


def _row(tenant, key_id) -> ApiKey:
    with tenant_context(tenant):
        return ApiKey.objects.get(pk=key_id)


def _key_count(tenant) -> int:
    with tenant_context(tenant):
        return ApiKey.objects.count()


@pytest.mark.django_db
def test_created_key_shows_its_secret_once_with_a_visible_prefix(owner):
    response = _create(owner, "deploy", ["read", "databases:write"])
    assert response.status_code == 201, response.content
    created = response.json()
    secret = created["secret"]
    assert secret.startswith(f"ak_{created['prefix']}.")
    assert created["scopes"] == ["databases:write", "read"] and created["active"] is True
    assert created["name"] == "deploy" and created["last_used_at"] is None

    listed = owner.get("/api/v1/api-keys").json()["results"]
    assert [k["prefix"] for k in listed] == [created["prefix"]]
    retrieved = owner.get(f"/api/v1/api-keys/{created['id']}").json()
    for body in (listed[0], retrieved):
        assert "secret" not in body and "secret_hash" not in body
        assert body["prefix"] == created["prefix"]
    secret_part = secret.split(".", 1)[1]
    for response in (owner.get("/api/v1/api-keys"), owner.get(f"/api/v1/api-keys/{created['id']}"),
                     owner.get("/api/v1/audit-events")):
        assert secret_part not in response.content.decode()


@pytest.mark.django_db
def test_key_is_stored_as_the_sha256_of_its_secret_and_nothing_else(alice, owner):
    created = _create(owner).json()
    prefix, secret_part = created["secret"].removeprefix("ak_").split(".", 1)
    key = _row(alice, created["id"])
    assert key.prefix == prefix
    assert key.secret_hash == hashlib.sha256(secret_part.encode()).hexdigest()
    row_text = repr([getattr(key, f.attname) for f in ApiKey._meta.concrete_fields])
    assert secret_part not in row_text and created["secret"] not in row_text


@pytest.mark.django_db
def test_a_new_key_works_at_once_and_records_its_last_use(alice, owner):
    created = _create(owner).json()
    assert _row(alice, created["id"]).last_used_at is None
    response = api_client("alice", created["secret"]).get("/api/v1/tenant")
    assert response.status_code == 200 and response.json()["slug"] == "alice"
    last_used = _row(alice, created["id"]).last_used_at
    assert last_used is not None
    assert owner.get(f"/api/v1/api-keys/{created['id']}").json()["last_used_at"] is not None


@pytest.mark.django_db
def test_revoked_key_is_refused(alice, owner):
    created = _create(owner).json()
    key_client = api_client("alice", created["secret"])
    assert key_client.get("/api/v1/tenant").status_code == 200
    assert owner.delete(f"/api/v1/api-keys/{created['id']}").status_code == 204
    body = assert_problem(key_client.get("/api/v1/tenant"), 401, "authentication_failed")
    assert "revoked" in body["detail"]
    listed = owner.get(f"/api/v1/api-keys/{created['id']}").json()
    assert listed["active"] is False and listed["revoked_at"] is not None
    assert AuditEvent.objects.filter(tenant=alice, action="api_key.revoked",
                                     target_id=str(created["id"])).exists()


@pytest.mark.django_db
def test_revoking_twice_is_harmless(alice, owner):
    created = _create(owner).json()
    assert owner.delete(f"/api/v1/api-keys/{created['id']}").status_code == 204
    revoked_at = _row(alice, created["id"]).revoked_at
    assert owner.delete(f"/api/v1/api-keys/{created['id']}").status_code == 204
    assert _row(alice, created["id"]).revoked_at == revoked_at
    assert AuditEvent.objects.filter(tenant=alice, action="api_key.revoked").count() == 1


@pytest.mark.django_db
def test_a_read_key_cannot_create_keys(alice):
    before = _key_count(alice)
    reader = api_client("alice", make_key(alice, ["read"]))
    body = assert_problem(_create(reader), 403, "insufficient_scope")
    assert "api_keys:write" in body["detail"]
    assert _key_count(alice) == before + 1  # only the reader itself


@pytest.mark.django_db
def test_a_key_with_api_keys_write_creates_keys_within_its_own_scopes(alice):
    writer = api_client("alice", make_key(alice, ["read", "api_keys:write"]))
    response = _create(writer, "child", ["read"])
    assert response.status_code == 201, response.content
    assert api_client("alice", response.json()["secret"]).get("/api/v1/members").status_code == 200
    body = assert_problem(_create(writer, "wider", ["read", "billing:write"]), 400,
                          "validation_error")
    assert {"field": "scopes", "code": "scope_not_allowed"} in [
        {"field": e["field"], "code": e["code"]} for e in body["errors"]]


@pytest.mark.django_db
def test_a_key_without_read_scope_cannot_read(alice):
    key = api_client("alice", make_key(alice, ["usage:write"]))
    assert_problem(key.get("/api/v1/tenant"), 403, "insufficient_scope")


@pytest.mark.django_db
def test_a_developer_cannot_grant_scopes_beyond_their_role(alice):
    add_member(alice, "dev@alice.test", "developer")
    developer = api_client("alice", jwt_for("alice", "dev@alice.test"))
    before = _key_count(alice)
    for scope in ("members:write", "billing:write", "organization:owner", "test_clock:write"):
        body = assert_problem(_create(developer, "too much", ["read", scope]), 400,
                              "validation_error")
        assert body["errors"][0]["field"] == "scopes"
        assert body["errors"][0]["code"] == "scope_not_allowed"
        assert scope in body["errors"][0]["detail"]
    assert _key_count(alice) == before
    response = _create(developer, "fine", ["read", "databases:write", "usage:write",
                                           "api_keys:write"])
    assert response.status_code == 201, response.content


@pytest.mark.django_db
def test_the_owner_can_grant_every_scope(owner):
    response = _create(owner, "all", list(ALL_SCOPES))
    assert response.status_code == 201 and set(response.json()["scopes"]) == set(ALL_SCOPES)


@pytest.mark.django_db
@pytest.mark.parametrize("data, field", [
    ({"name": "x", "scopes": ["read", "launch_missiles"]}, "scopes"),
    ({"name": "x", "scopes": ["launch_missiles"]}, "scopes"),
    ({"name": "x", "scopes": []}, "scopes"),
    ({"name": "x", "scopes": "read"}, "scopes"),
    ({"name": "x", "scopes": [["read"]]}, "scopes"),
    ({"name": "x"}, "scopes"),
    ({"name": "", "scopes": ["read"]}, "name"),
    ({"name": "   ", "scopes": ["read"]}, "name"),
    ({"name": "x" * 101, "scopes": ["read"]}, "name"),
    ({"scopes": ["read"]}, "name"),
    ({"name": None, "scopes": ["read"]}, "name"),
])
def test_bad_key_requests_are_field_errors_and_create_nothing(alice, owner, data, field):
    before = _key_count(alice)
    body = assert_problem(owner.post("/api/v1/api-keys", data, format="json"), 400,
                          "validation_error")
    fields = [e["field"] for e in body["errors"]]
    assert any(f == field or f.startswith(f"{field}[") for f in fields), body
    assert _key_count(alice) == before


@pytest.mark.django_db
def test_unknown_scope_names_the_bad_entry(owner):
    body = assert_problem(_create(owner, "x", ["read", "launch_missiles"]), 400)
    assert [e["field"] for e in body["errors"]] == ["scopes[1]"]
    assert "launch_missiles" in body["errors"][0]["detail"]
    body = assert_problem(_create(owner, "x", ["launch_missiles"]), 400)
    assert [e["field"] for e in body["errors"]] == ["scopes[0]"]


@pytest.mark.django_db
@pytest.mark.parametrize("token", [
    "ak_",
    "ak_short.secret",
    "ak_0123456789ab",
    "ak_0123456789ab.",
    "ak_0123456789abcdef.secret",
    "ak_0123456789ab.not-the-secret",
    "ak_' OR 1=1 --.x",
])
def test_malformed_or_unknown_keys_are_refused(alice, token):
    before = AuditEvent.objects.count()
    body = assert_problem(api_client("alice", token).get("/api/v1/tenant"), 401,
                          "authentication_failed")
    assert "alice" not in str(body).lower()
    assert AuditEvent.objects.count() == before


@pytest.mark.django_db
def test_a_right_prefix_with_a_wrong_secret_is_refused(alice):
    secret = make_key(alice, ["read"])
    prefix = secret.split(".")[0]
    assert_problem(api_client("alice", prefix + ".wrong-secret").get("/api/v1/tenant"), 401)
    assert api_client("alice", secret).get("/api/v1/tenant").status_code == 200


@pytest.mark.django_db
@pytest.mark.parametrize("header", ["ak_x", "Basic abc", "Bearer", "Bearer    ", "Token ak_x"])
def test_a_malformed_authorization_header_is_a_401(header):
    client = api_client("alice")
    client.credentials(HTTP_AUTHORIZATION=header)
    assert_problem(client.get("/api/v1/tenant"), 401)


@pytest.mark.django_db
def test_no_credentials_is_a_401():
    response = api_client("alice").get("/api/v1/api-keys")
    assert_problem(response, 401, "not_authenticated")
    assert response["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.django_db
@pytest.mark.parametrize("method", ["get", "delete"])
def test_bad_key_ids_are_404_not_500(owner, method):
    for key_id in ("abc", "0", "-1", "1.5", "999999999999999999999", "9223372036854775807",
                   "%20"):
        response = getattr(owner, method)(f"/api/v1/api-keys/{key_id}")
        assert response.status_code == 404, (key_id, response.content)
        assert_problem(response, 404)


@pytest.mark.django_db
def test_creating_a_key_is_audited_without_its_secret(alice, owner):
    created = _create(owner, "audited").json()
    event = AuditEvent.objects.get(tenant=alice, action="api_key.created",
                                   target_id=str(created["id"]))
    assert event.actor_label == "user:owner@alice.test"
    assert event.after["prefix"] == created["prefix"] and event.after["scopes"] == ["read"]
    assert created["secret"].split(".")[1] not in str(event.after)


@pytest.mark.django_db
def test_viewers_see_keys_but_not_secrets(alice, owner):
    _create(owner, "visible")
    add_member(alice, "viewer@alice.test", "viewer")
    viewer = api_client("alice", jwt_for("alice", "viewer@alice.test"))
    rows = viewer.get("/api/v1/api-keys").json()["results"]
    assert [r["name"] for r in rows] == ["visible"] and "secret" not in rows[0]
