"""The role matrix of SPEC §2, as tenants.permissions.ROLE_ACTIONS implements it, checked as
a table and through the real API with a JWT per role."""
import pytest
from django.test import Client
from django_tenants.utils import tenant_context

from tenants.models import ApiKey, Membership, Role, User
from tenants.permissions import ACTION_SCOPES, ROLE_ACTIONS, Action, role_can, scopes_for_role
from tests.conftest import add_member, api_client, assert_problem, host_of, jwt_for, make_key

ROLES = ["owner", "admin", "developer", "billing", "viewer"]

# SPEC §2, row by row: (action, roles allowed). The two actions the SPEC does not list are
# the implementation's reading of it: sending usage goes with running databases, and the
# test clock with changing the plan's timeline (owners and admins).
SPEC_MATRIX = [
    (Action.VIEW, {"owner", "admin", "developer", "billing", "viewer"}),
    (Action.MANAGE_DATABASES, {"owner", "admin", "developer"}),
    (Action.MANAGE_API_KEYS, {"owner", "admin", "developer"}),
    (Action.MANAGE_BILLING, {"owner", "admin", "billing"}),
    (Action.MANAGE_MEMBERS, {"owner", "admin"}),
    (Action.OWN, {"owner"}),
    (Action.WRITE_USAGE, {"owner", "admin", "developer"}),
    (Action.MANAGE_TEST_CLOCK, {"owner", "admin"}),
]


# --- the table -------------------------------------------------------------------------------

@pytest.mark.parametrize("action, allowed", SPEC_MATRIX, ids=[a.value for a, _ in SPEC_MATRIX])
@pytest.mark.parametrize("role", ROLES)
def test_role_actions_match_the_spec_matrix(role, action, allowed):
    assert role_can(role, action) is (role in allowed)
    assert (action in ROLE_ACTIONS[role]) is (role in allowed)


def test_the_matrix_covers_every_action_and_role():
    assert {a for a, _ in SPEC_MATRIX} == set(Action)
    assert set(ROLE_ACTIONS) == set(Role.values) == set(ROLES)


def test_an_unknown_role_can_do_nothing():
    assert not any(role_can("superhero", action) for action in Action)
    assert scopes_for_role("superhero") == []


@pytest.mark.parametrize("role", ROLES)
def test_a_role_may_grant_exactly_the_scopes_of_its_actions(role):
    assert set(scopes_for_role(role)) == {ACTION_SCOPES[a] for a in ROLE_ACTIONS[role]}


def test_every_action_has_its_own_scope():
    assert set(ACTION_SCOPES) == set(Action)
    assert len(set(ACTION_SCOPES.values())) == len(Action)


# --- through the API -----------------------------------------------------------------------

@pytest.fixture
def as_role(alice):
    """A client of alice's domain holding the JWT of a member with the given role."""
    def make(role: str):
        email = "owner@alice.test" if role == "owner" else f"{role}@alice.test"
        if role != "owner":
            add_member(alice, email, role)
        return api_client("alice", jwt_for("alice", email))
    return make


@pytest.fixture
def target(alice):
    """A plain member for others to change or remove."""
    return add_member(alice, "target@alice.test", "viewer")



@pytest.mark.django_db
@pytest.mark.parametrize("role", ROLES)
def test_every_role_can_view(role, as_role):
    client = as_role(role)
    for path in ("/api/v1/tenant", "/api/v1/subscription", "/api/v1/members",
                 "/api/v1/api-keys"):
        response = client.get(path)
        assert response.status_code == 200, (path, response.content)


@pytest.mark.django_db
@pytest.mark.parametrize("role", ROLES)
def test_only_owners_read_the_audit_trail(role, as_role):
    response = as_role(role).get("/api/v1/audit-events")
    if role == "owner":
        assert response.status_code == 200 and response.json()["results"]
    else:
        body = assert_problem(response, 403, "role_not_allowed")
        assert role in body["detail"]


@pytest.mark.django_db
@pytest.mark.parametrize("role", ROLES)
def test_owners_admins_and_developers_create_api_keys(role, alice, as_role):
    response = as_role(role).post("/api/v1/api-keys", {"name": "ci", "scopes": ["read"]},
                                  format="json")
    with tenant_context(alice):
        created = ApiKey.objects.filter(name="ci").exists()
    if role in ("owner", "admin", "developer"):
        assert response.status_code == 201, response.content
        assert created
    else:
        assert_problem(response, 403, "role_not_allowed")
        assert not created


@pytest.mark.django_db
@pytest.mark.parametrize("role", ROLES)
def test_owners_admins_and_developers_revoke_api_keys(role, alice, as_role):
    client = as_role(role)
    make_key(alice, ["read"], name="doomed")
    with tenant_context(alice):
        key_id = ApiKey.objects.get(name="doomed").pk
    response = client.delete(f"/api/v1/api-keys/{key_id}")
    with tenant_context(alice):
        revoked = ApiKey.objects.get(pk=key_id).revoked_at is not None
    if role in ("owner", "admin", "developer"):
        assert response.status_code == 204, response.content
        assert revoked
    else:
        assert_problem(response, 403, "role_not_allowed")
        assert not revoked


@pytest.mark.django_db
@pytest.mark.parametrize("role", ROLES)
def test_only_owners_and_admins_invite_members(role, alice, as_role):
    response = as_role(role).post("/api/v1/members", {"email": "new@alice.test", "role": "viewer"},
                                  format="json")
    invited = Membership.objects.filter(tenant=alice, user__email="new@alice.test").exists()
    if role in ("owner", "admin"):
        assert response.status_code == 201, response.content
        assert invited
    else:
        assert_problem(response, 403, "role_not_allowed")
        assert not invited
        assert not User.objects.filter(email="new@alice.test").exists()


@pytest.mark.django_db
@pytest.mark.parametrize("role", ROLES)
def test_only_owners_and_admins_change_roles(role, as_role, target):
    response = as_role(role).patch(f"/api/v1/members/{target.pk}", {"role": "developer"},
                                   format="json")
    target.refresh_from_db()
    if role in ("owner", "admin"):
        assert response.status_code == 200, response.content
        assert target.role == "developer"
    else:
        assert_problem(response, 403, "role_not_allowed")
        assert target.role == "viewer"


@pytest.mark.django_db
@pytest.mark.parametrize("role", ROLES)
def test_only_owners_and_admins_remove_members(role, as_role, target):
    response = as_role(role).delete(f"/api/v1/members/{target.pk}")
    exists = Membership.objects.filter(pk=target.pk).exists()
    if role in ("owner", "admin"):
        assert response.status_code == 204, response.content
        assert not exists
    else:
        assert_problem(response, 403, "role_not_allowed")
        assert exists


@pytest.mark.django_db
@pytest.mark.parametrize("role", ROLES)
def test_only_owners_and_admins_advance_the_test_clock(role, alice, as_role):
    from tenants.models import TestClock

    response = as_role(role).post("/api/v1/test-clock/advance", {"seconds": 60}, format="json")
    if role in ("owner", "admin"):
        assert response.status_code == 200, response.content
        assert TestClock.objects.filter(tenant=alice).exists()
    else:
        assert_problem(response, 403, "role_not_allowed")
        assert not TestClock.objects.filter(tenant=alice).exists()


# --- owners are special ------------------------------------------------------------------------

def _owner_membership(tenant):
    return Membership.objects.get(tenant=tenant, user__email=f"owner@{tenant.slug}.test")


@pytest.mark.django_db
def test_admin_cannot_invite_an_owner(alice, as_role):
    response = as_role("admin").post("/api/v1/members",
                                     {"email": "boss@alice.test", "role": "owner"}, format="json")
    assert_problem(response, 403, "owner_required")
    assert not Membership.objects.filter(tenant=alice, user__email="boss@alice.test").exists()


@pytest.mark.django_db
def test_admin_cannot_make_someone_owner(as_role, target):
    response = as_role("admin").patch(f"/api/v1/members/{target.pk}", {"role": "owner"},
                                      format="json")
    assert_problem(response, 403, "owner_required")
    target.refresh_from_db()
    assert target.role == "viewer"


@pytest.mark.django_db
def test_admin_cannot_make_themselves_owner(alice, as_role):
    client = as_role("admin")
    me = Membership.objects.get(tenant=alice, user__email="admin@alice.test")
    assert_problem(client.patch(f"/api/v1/members/{me.pk}", {"role": "owner"}, format="json"),
                   403, "owner_required")
    me.refresh_from_db()
    assert me.role == "admin"


@pytest.mark.django_db
def test_admin_cannot_demote_the_owner(alice, as_role):
    owner = _owner_membership(alice)
    response = as_role("admin").patch(f"/api/v1/members/{owner.pk}", {"role": "viewer"},
                                      format="json")
    assert_problem(response, 403, "owner_required")
    owner.refresh_from_db()
    assert owner.role == "owner"


@pytest.mark.django_db
def test_admin_cannot_remove_the_owner(alice, as_role):
    owner = _owner_membership(alice)
    assert_problem(as_role("admin").delete(f"/api/v1/members/{owner.pk}"), 403, "owner_required")
    assert Membership.objects.filter(pk=owner.pk).exists()


@pytest.mark.django_db
def test_admin_can_change_another_admin(alice, as_role):
    client = as_role("admin")
    other = add_member(alice, "admin2@alice.test", "admin")
    response = client.patch(f"/api/v1/members/{other.pk}", {"role": "billing"}, format="json")
    assert response.status_code == 200 and response.json()["role"] == "billing"


@pytest.mark.django_db
def test_owner_can_make_another_owner_and_then_step_down(alice, as_role, target):
    client = as_role("owner")
    response = client.patch(f"/api/v1/members/{target.pk}", {"role": "owner"}, format="json")
    assert response.status_code == 200 and response.json()["role"] == "owner"
    me = _owner_membership(alice)
    response = client.patch(f"/api/v1/members/{me.pk}", {"role": "admin"}, format="json")
    assert response.status_code == 200, response.content
    me.refresh_from_db()
    assert me.role == "admin"
    # the same token now acts with the new role at once
    assert_problem(client.get("/api/v1/audit-events"), 403, "role_not_allowed")


@pytest.mark.django_db
def test_the_last_owner_cannot_be_demoted(alice, as_role):
    me = _owner_membership(alice)
    response = as_role("owner").patch(f"/api/v1/members/{me.pk}", {"role": "admin"}, format="json")
    assert_problem(response, 409, "last_owner")
    me.refresh_from_db()
    assert me.role == "owner"


@pytest.mark.django_db
def test_the_last_owner_cannot_be_removed(alice, as_role):
    me = _owner_membership(alice)
    assert_problem(as_role("owner").delete(f"/api/v1/members/{me.pk}"), 409, "last_owner")
    assert Membership.objects.filter(pk=me.pk).exists()


@pytest.mark.django_db
def test_a_pending_owner_invitation_does_not_count_as_a_second_owner(alice, as_role):
    client = as_role("owner")
    response = client.post("/api/v1/members", {"email": "heir@alice.test", "role": "owner"},
                           format="json")
    assert response.status_code == 201, response.content
    me = _owner_membership(alice)
    assert_problem(client.patch(f"/api/v1/members/{me.pk}", {"role": "admin"}, format="json"),
                   409, "last_owner")


@pytest.mark.django_db
def test_an_owner_can_withdraw_a_pending_owner_invitation(alice, as_role):
    client = as_role("owner")
    invited = client.post("/api/v1/members", {"email": "heir@alice.test", "role": "owner"},
                          format="json").json()
    response = client.patch(f"/api/v1/members/{invited['id']}", {"role": "admin"}, format="json")
    assert response.status_code == 200 and response.json()["role"] == "admin"
    client.patch(f"/api/v1/members/{invited['id']}", {"role": "owner"}, format="json")
    response = client.delete(f"/api/v1/members/{invited['id']}")
    assert response.status_code == 204, response.content
    assert not Membership.objects.filter(pk=invited["id"]).exists()


@pytest.mark.django_db
def test_an_owner_stepping_down_holds_the_organisation_until_done(alice):
    """Two owners stepping down at once must not both succeed (no owner left): the check
    holds a lock on the organisation that a concurrent owner change has to wait for."""
    import psycopg
    from django.db import connection, transaction

    from tenants.permissions import member_principal
    from tenants.services.members import member_change_role

    second = add_member(alice, "owner2@alice.test", "owner")
    first = member_principal(alice, User.objects.get(email="owner@alice.test"))
    with transaction.atomic():
        member_change_role(principal=first, membership_id=second.pk,
                           role="admin")
        params = connection.get_connection_params()
        params.pop("cursor_factory", None)
        params.pop("context", None)
        with psycopg.connect(**params, autocommit=True) as other:
            with pytest.raises(psycopg.errors.LockNotAvailable):
                other.execute("SELECT id FROM public.tenants_tenant WHERE id = %s "
                              "FOR UPDATE NOWAIT", [alice.pk])


@pytest.mark.django_db
def test_a_pending_member_gets_no_token(alice):
    from tenants.services.members import member_invite
    from tests.conftest import owner_principal

    member_invite(principal=owner_principal(alice), email="later@alice.test", role="admin")
    response = api_client("alice").post(
        "/api/v1/auth/token", {"email": "later@alice.test", "password": "anything-at-all"},
        format="json")
    assert_problem(response, 401)


# --- API keys act by scope, not by their creator's role ------------------------------------------

@pytest.mark.django_db
def test_a_key_with_members_write_invites_and_a_read_key_does_not(alice):
    writer = api_client("alice", make_key(alice, ["read", "members:write"]))
    reader = api_client("alice", make_key(alice, ["read"]))
    assert_problem(reader.post("/api/v1/members", {"email": "k@alice.test", "role": "viewer"},
                               format="json"), 403, "insufficient_scope")
    response = writer.post("/api/v1/members", {"email": "k@alice.test", "role": "viewer"},
                           format="json")
    assert response.status_code == 201, response.content


@pytest.mark.django_db
def test_only_an_owner_scoped_key_reads_the_audit_trail(alice):
    everything_but_owner = [s for s in ACTION_SCOPES.values() if s != "organization:owner"]
    assert_problem(api_client("alice", make_key(alice, everything_but_owner)).get(
        "/api/v1/audit-events"), 403, "insufficient_scope")
    owner_key = make_key(alice, ["read", "organization:owner"])
    assert api_client("alice", owner_key).get("/api/v1/audit-events").status_code == 200


@pytest.mark.django_db
def test_a_members_write_key_cannot_touch_the_owner(alice):
    key = api_client("alice", make_key(alice, ["read", "members:write"]))
    owner = _owner_membership(alice)
    assert_problem(key.patch(f"/api/v1/members/{owner.pk}", {"role": "viewer"}, format="json"),
                   403, "owner_required")
    assert_problem(key.delete(f"/api/v1/members/{owner.pk}"), 403, "owner_required")


# --- the portal --------------------------------------------------------------------------------

@pytest.mark.django_db
@pytest.mark.parametrize("role", ROLES)
def test_every_role_sees_the_dashboard(role, alice):
    email = "owner@alice.test" if role == "owner" else f"{role}@alice.test"
    if role != "owner":
        add_member(alice, email, role)
    client = Client(HTTP_HOST=host_of("alice"))
    client.force_login(User.objects.get(email=email))
    response = client.get("/")
    assert response.status_code == 200
    assert f"Your role: {role}".encode() in response.content


@pytest.mark.django_db
def test_a_pending_member_does_not_see_the_dashboard(alice):
    from tenants.services.members import member_invite
    from tests.conftest import owner_principal

    membership, _ = member_invite(principal=owner_principal(alice), email="later@alice.test",
                                  role="admin")
    client = Client(HTTP_HOST=host_of("alice"))
    client.force_login(membership.user)
    assert client.get("/").status_code == 404
