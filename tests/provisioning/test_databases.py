"""Customer databases (SPEC §7) on a real PostgreSQL server: placement by plan, the URI
shown once, the plan limit, bad input, cleanup after a failure, and isolation between
tenants proven with real connections as each role (password over TCP, scram)."""
from urllib.parse import unquote

import psycopg
import pytest
from django_tenants.utils import tenant_context

from aerolith.errors import Conflict, NotFound, ValidationFailed
from provisioning.errors import DatabaseLimitReached, PlanNotAllowed
from provisioning.models import Database, Placement
from provisioning.services import databases
from provisioning.services.databases import database_delete, database_uri
from tenants.models import Tenant, TenantStatus
from tests.provisioning.db_support import (
    as_admin,
    as_role,
    create,
    dedicated_cluster,
    role_exists,
    sqlstate_of,
    use_plan,
)

pytestmark = pytest.mark.django_db


def test_starter_database_is_a_schema_in_the_shared_database_reachable_with_its_uri(
        alice, shared_cluster):
    database, uri = create(alice, "shop")
    assert database.placement == Placement.SHARED_SCHEMA
    assert database.cluster_id == shared_cluster.pk
    assert database.db_name == "aerolith_shared"
    assert database.schema_name == database.role_name
    assert database.role_name.startswith(f"t{alice.pk}_")
    password = unquote(uri.split(":")[2].split("@")[0])
    assert password not in database.password_sealed
    assert databases.database_password(database) == password
    assert uri.endswith(f"/aerolith_shared?options=-csearch_path%3D{database.schema_name}")
    with as_role(uri) as conn:
        assert conn.execute("SELECT current_user, current_schema()").fetchone() == (
            database.role_name, database.schema_name)
        conn.execute("CREATE TABLE items (id int); INSERT INTO items VALUES (1)")
        assert conn.execute(f"SELECT count(*) FROM {database.schema_name}.items").fetchone() == (1,)


def test_the_uri_without_a_password_has_none(alice, shared_cluster):
    database, uri = create(alice, "quiet")
    password = uri.split("@")[0].rsplit(":", 1)[1]
    assert database_uri(database) == uri.replace(f":{password}@", "@", 1)
    assert database_uri(database).startswith(f"postgresql://{database.role_name}@")


def test_professional_database_is_its_own_database_owned_by_its_role(bob, shared_cluster):
    database, uri = create(bob, "analytics")
    assert database.placement == Placement.SHARED_DATABASE
    assert database.db_name == database.role_name and database.schema_name == ""
    assert "options=" not in uri
    with as_role(uri) as conn:
        assert conn.execute("SELECT current_database(), current_user").fetchone() == (
            database.db_name, database.role_name)
        conn.execute("CREATE TABLE t (id int)")


def test_dedicated_plan_without_a_cluster_is_told_to_create_one_first(alice, shared_cluster):
    use_plan(alice, "enterprise")
    with pytest.raises(Conflict) as caught:
        create(alice, "big")
    assert caught.value.code == "cluster_required"
    assert "create a cluster first" in caught.value.detail


def test_dedicated_database_lives_on_the_tenants_cluster(alice, bob, shared_cluster):
    use_plan(alice, "enterprise")
    mine = dedicated_cluster(alice, shared_cluster)
    dedicated_cluster(bob, shared_cluster, name="bobs")
    database, uri = create(alice, "big", cluster_id=mine.pk)
    assert database.placement == Placement.DEDICATED and database.cluster_id == mine.pk
    with as_role(uri) as conn:
        conn.execute("CREATE TABLE t (id int)")
    # Someone else's cluster is not found; a shared-plan tenant may not name one.
    bobs = bob.clusters.get()
    with pytest.raises(NotFound):
        create(alice, "other", cluster_id=bobs.pk)
    with pytest.raises(ValidationFailed) as caught:
        create(bob, "x", cluster_id=bobs.pk)
    assert "cluster_id" in caught.value.errors


def test_duplicate_name_is_a_conflict(alice, shared_cluster):
    create(alice, "dup")
    with pytest.raises(Conflict) as caught:
        create(alice, "dup")
    assert caught.value.code == "duplicate_name"


@pytest.mark.parametrize("name", ["", "1db", "Shop", "a" * 64, "a b", "drop;table", "é", None, 7,
                                  "-x", "x\x00"])
def test_bad_names_are_refused_with_a_clear_message(alice, name):
    with pytest.raises(ValidationFailed) as caught:
        create(alice, name)
    ((field, code, message),) = [(f, c, m) for f, problems in caught.value.errors.items()
                                 for c, m in problems]
    assert field == "name" and "lowercase letters" in message


def test_free_plan_allows_one_database(charlie, shared_cluster):
    create(charlie, "first")
    with pytest.raises(DatabaseLimitReached) as caught:
        create(charlie, "second")
    error = caught.value
    assert error.code == "database_limit_reached" and error.status == 409
    assert "allows 1 database" in error.detail and "upgrade" in error.detail
    with tenant_context(charlie):
        assert list(Database.objects.values_list("name", flat=True)) == ["first"]


@pytest.mark.parametrize("status", [TenantStatus.SUSPENDED, TenantStatus.CANCELLED])
def test_suspended_or_cancelled_tenants_cannot_create(alice, shared_cluster, status):
    Tenant.objects.filter(pk=alice.pk).update(status=status)
    with pytest.raises(PlanNotAllowed):
        create(alice, "nope")


def test_a_server_refusal_leaves_nothing_behind(alice, shared_cluster, monkeypatch):
    # The generated schema name already exists on the server (made by someone else), so
    # CREATE SCHEMA fails after CREATE ROLE succeeded: the role must go, the clashing
    # schema must stay, and no row remains.
    monkeypatch.setattr(databases.secrets, "token_hex", lambda n: "deadbeef")
    taken = f"t{alice.pk}_deadbeef"
    with as_admin(shared_cluster) as conn:
        conn.execute(f"DROP ROLE IF EXISTS {taken}")
    databases.pg_admin.shared_database_ensure(shared_cluster)
    with as_admin(shared_cluster, "aerolith_shared") as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {taken}; CREATE SCHEMA {taken}")
    try:
        with pytest.raises(Exception) as caught:
            create(alice, "clash")
        assert caught.value.code == "cluster_unavailable"
        assert not role_exists(shared_cluster, taken)
        with as_admin(shared_cluster, "aerolith_shared") as conn:
            assert conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s",
                                [taken]).fetchone() == (1,)
        with tenant_context(alice):
            assert not Database.objects.filter(name="clash").exists()
    finally:
        with as_admin(shared_cluster, "aerolith_shared") as conn:
            conn.execute(f"DROP SCHEMA IF EXISTS {taken}")


@pytest.mark.parametrize("tenant_name", ["alice", "bob"])
def test_delete_drops_the_data_and_the_role_and_ends_sessions(request, tenant_name,
                                                              shared_cluster):
    tenant = request.getfixturevalue(tenant_name)
    database, uri = create(tenant, "gone")
    session = psycopg.connect(uri, autocommit=True)
    database_delete(tenant=tenant, actor="system", database=database)
    with pytest.raises(psycopg.OperationalError):  # its session was ended
        session.execute("SELECT 1")
    session.close()
    assert not role_exists(shared_cluster, database.role_name)
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(uri, connect_timeout=5)
    with as_admin(shared_cluster) as conn:
        assert conn.execute("SELECT 1 FROM pg_database WHERE datname = %s",
                            [database.role_name]).fetchone() is None
    with as_admin(shared_cluster, "aerolith_shared") as conn:
        assert conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s",
                            [database.role_name]).fetchone() is None
    with tenant_context(tenant):
        assert not Database.objects.filter(pk=database.pk).exists()
    with pytest.raises(NotFound):
        database_delete(tenant=tenant, actor="system", database=database)


# Isolation: tenant A's role can never read tenant B's data, in every placement. Charlie,
# who must see nothing, is B in the shared-schema case.

def _seed(uri: str) -> None:
    with as_role(uri) as conn:
        conn.execute("CREATE TABLE secrets (v text); INSERT INTO secrets VALUES ('b-data')")


def _assert_isolated(a_uri: str, b: Database, b_uri: str) -> None:
    with as_role(b_uri) as conn:  # control: B reads its own data
        assert conn.execute("SELECT v FROM secrets").fetchone() == ("b-data",)
    qualified = f"{b.schema_name or 'public'}.secrets"
    with as_role(a_uri) as conn:
        assert sqlstate_of(conn, f"SELECT * FROM {qualified}") in ("42501", "42P01")
        assert sqlstate_of(conn, f"SELECT * FROM {b.db_name}.{qualified}") is not None
        if b.schema_name:  # same database: the schema is closed to A
            assert sqlstate_of(conn, f"CREATE TABLE {b.schema_name}.x (id int)") == "42501"
            assert sqlstate_of(conn, "CREATE TABLE public.x (id int)") == "42501"
    # A's role cannot connect to B's database, nor to the maintenance database.
    for dbname in {b.db_name, "postgres", "template1"} - {_dbname(a_uri)}:
        with pytest.raises(psycopg.OperationalError) as caught:
            psycopg.connect(_with_db(a_uri, dbname), connect_timeout=5)
        assert "permission denied for database" in str(caught.value)
    # B's password does not open the door for A's role either.
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(_swap_password(a_uri, b_uri), connect_timeout=5)


def _dbname(uri: str) -> str:
    return uri.split("/")[3].split("?")[0]


def _with_db(uri: str, dbname: str) -> str:
    head, _, rest = uri.rpartition("/")
    query = rest.partition("?")[2]
    return f"{head}/{dbname}" + (f"?{query}" if query else "")


def _swap_password(a_uri: str, b_uri: str) -> str:
    b_password = b_uri.split("@")[0].rsplit(":", 1)[1]
    a_user = a_uri.split("//")[1].split(":")[0]
    return f"postgresql://{a_user}:{b_password}@{a_uri.split('@', 1)[1]}"


def test_shared_schema_tenants_cannot_read_each_other(alice, charlie, shared_cluster):
    a, a_uri = create(alice, "a-data")
    b, b_uri = create(charlie, "b-data")
    assert a.db_name == b.db_name == "aerolith_shared"
    _seed(a_uri)
    _seed(b_uri)
    _assert_isolated(a_uri, b, b_uri)
    _assert_isolated(b_uri, a, a_uri)


def test_shared_database_tenants_cannot_read_each_other(alice, bob, charlie, shared_cluster):
    use_plan(alice, "professional")
    a, a_uri = create(alice, "a-data")
    b, b_uri = create(bob, "b-data")
    assert a.placement == b.placement == Placement.SHARED_DATABASE
    _seed(b_uri)
    _assert_isolated(a_uri, b, b_uri)
    c, c_uri = create(charlie, "c-data")  # a shared-schema role cannot reach B either
    _assert_isolated(c_uri, b, b_uri)


def test_dedicated_tenants_cannot_read_each_other(alice, bob, shared_cluster):
    use_plan(alice, "enterprise")
    use_plan(bob, "enterprise")
    a, a_uri = create(alice, "a-data", cluster_id=dedicated_cluster(alice, shared_cluster).pk)
    b, b_uri = create(bob, "b-data", cluster_id=dedicated_cluster(bob, shared_cluster).pk)
    assert a.placement == b.placement == Placement.DEDICATED
    _seed(b_uri)
    _assert_isolated(a_uri, b, b_uri)
