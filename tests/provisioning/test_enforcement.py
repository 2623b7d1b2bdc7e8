"""Billing's enforcement on real databases (SPEC §4, §7): suspension makes every database
read-only at the PostgreSQL level (not a flag the user can SET away), cancellation refuses
connections, reactivation restores both except beyond the plan's limit; a server that
cannot be reached never breaks billing and is retried."""
import psycopg
import pytest
from django_tenants.utils import tenant_context

from billing import enforcement as billing_enforcement
from provisioning import tasks
from provisioning.enforcement import (
    CANCELLED,
    OVER_PLAN_LIMIT,
    SUSPENDED,
    desired_state,
    hook,
    over_limit,
)
from provisioning.models import Database, DatabaseState, Node
from provisioning.services.databases import database_delete
from provisioning.services.pg_admin import holder_of
from tests.provisioning.db_support import (
    as_role,
    create,
    reload,
    role_exists,
    sqlstate_of,
    use_plan,
)

pytestmark = pytest.mark.django_db
WRITE_REFUSED = ("25006", "42501")


def _seed(uri):
    with as_role(uri) as conn:
        conn.execute("CREATE TABLE t (id int); INSERT INTO t VALUES (1)")
        conn.execute("CREATE FUNCTION sneaky() RETURNS void SECURITY DEFINER LANGUAGE sql "
                     "AS 'INSERT INTO t VALUES (99)'")


def _assert_read_only(uri):
    with as_role(uri) as conn:
        assert conn.execute("SELECT count(*) FROM t").fetchone()[0] >= 1
        assert sqlstate_of(conn, "INSERT INTO t VALUES (2)") in WRITE_REFUSED
        # The read-only default can be switched off by the user; ownership still holds.
        conn.execute("SET default_transaction_read_only = off")
        for statement in ("INSERT INTO t VALUES (2)", "UPDATE t SET id = 3",
                          "DELETE FROM t", "TRUNCATE t", "CREATE TABLE u (id int)",
                          "DROP TABLE t", "ALTER TABLE t ADD COLUMN x int",
                          "CREATE SCHEMA elsewhere", "CREATE TEMP TABLE tmp (id int)",
                          "SELECT sneaky()"):
            assert sqlstate_of(conn, statement) == "42501", statement
        conn.execute("ALTER ROLE CURRENT_USER SET default_transaction_read_only = off")
    with as_role(uri) as conn:
        assert sqlstate_of(conn, "INSERT INTO t VALUES (2)") == "42501"


def _assert_writable(uri):
    with as_role(uri) as conn:
        conn.execute("INSERT INTO t VALUES (5); UPDATE t SET id = 6 WHERE id = 5")
        conn.execute("CREATE TABLE w (id int); DROP TABLE w")
        conn.execute("SELECT sneaky()")
        assert conn.execute("SHOW default_transaction_read_only").fetchone() == ("off",)


def _assert_refused(uri):
    with pytest.raises(psycopg.OperationalError) as caught:
        psycopg.connect(uri, connect_timeout=5)
    assert "not permitted to log in" in str(caught.value)


def test_the_hook_is_registered_with_billing_and_counts_databases(alice, shared_cluster):
    assert hook in billing_enforcement._hooks
    before = billing_enforcement.databases_in_use(alice)
    create(alice, "one")
    assert billing_enforcement.databases_in_use(alice) == before + 1


@pytest.mark.parametrize("tenant_name", ["alice", "bob"])  # shared schema, own database
def test_suspension_makes_databases_read_only_and_reactivation_restores_them(
        request, tenant_name, shared_cluster):
    tenant = request.getfixturevalue(tenant_name)
    database, uri = create(tenant, "live")
    _seed(uri)
    session = psycopg.connect(uri, autocommit=True)

    hook.suspended(tenant)
    database = reload(tenant, database)
    assert database.state == DatabaseState.READ_ONLY and database.restrictions == [SUSPENDED]
    with pytest.raises(psycopg.OperationalError):  # sessions opened before are ended
        session.execute("INSERT INTO t VALUES (7)")
    _assert_read_only(uri)

    hook.reactivated(tenant)
    database = reload(tenant, database)
    assert database.state == DatabaseState.READY and database.restrictions == []
    _assert_writable(uri)


def test_cancellation_refuses_connections_and_reactivation_lets_them_in(alice, shared_cluster):
    database, uri = create(alice, "kept")
    _seed(uri)
    session = psycopg.connect(uri, autocommit=True)
    hook.suspended(alice)
    hook.cancelled(alice)
    database = reload(alice, database)
    assert database.state == DatabaseState.LOCKED
    assert sorted(database.restrictions) == [CANCELLED, SUSPENDED]
    _assert_refused(uri)
    with pytest.raises(psycopg.OperationalError):
        session.execute("SELECT 1")

    hook.reactivated(alice)
    assert reload(alice, database).state == DatabaseState.READY
    _assert_writable(uri)
    with as_role(uri) as conn:  # the data was kept
        assert conn.execute("SELECT count(*) FROM t WHERE id = 1").fetchone() == (1,)


def test_falling_back_to_free_makes_the_newer_database_read_only(alice, shared_cluster):
    older, older_uri = create(alice, "older")
    newer, newer_uri = create(alice, "newer")
    _seed(older_uri)
    _seed(newer_uri)
    free = use_plan(alice, "free")

    hook.plan_applied(alice, free)
    assert reload(alice, older).state == DatabaseState.READY
    newer = reload(alice, newer)
    assert newer.state == DatabaseState.READ_ONLY and newer.restrictions == [OVER_PLAN_LIMIT]
    _assert_writable(older_uri)
    _assert_read_only(newer_uri)

    # Suspended and reactivated while still on Free: the newer one stays read-only.
    hook.suspended(alice)
    assert reload(alice, older).state == DatabaseState.READ_ONLY
    hook.reactivated(alice)
    assert reload(alice, older).state == DatabaseState.READY
    assert reload(alice, newer).restrictions == [OVER_PLAN_LIMIT]
    _assert_read_only(newer_uri)

    starter = use_plan(alice, "starter")
    hook.plan_applied(alice, starter)
    assert reload(alice, newer).state == DatabaseState.READY
    _assert_writable(newer_uri)


def test_an_unreachable_server_never_breaks_billing_and_is_retried(alice, shared_cluster,
                                                                   monkeypatch, caplog):
    database, uri = create(alice, "far")
    primary = Node.objects.get(cluster=shared_cluster, role="primary")
    real_port = primary.port
    Node.objects.filter(pk=primary.pk).update(port=9)  # nothing listens there
    scheduled = []
    monkeypatch.setattr(tasks.databases_enforce, "apply_async",
                        lambda args, countdown: scheduled.append((args, countdown)))

    hook.suspended(alice)  # must not raise
    database = reload(alice, database)
    assert database.restrictions == [SUSPENDED]  # what is wanted is saved…
    assert database.state == DatabaseState.READY  # …and what was applied is not faked
    assert scheduled == [((alice.pk,), 60)]
    assert "Enforcement on database" in caplog.text

    Node.objects.filter(pk=primary.pk).update(port=real_port)
    assert tasks.databases_enforce.apply(args=(alice.pk,)).get() == []
    assert reload(alice, database).state == DatabaseState.READ_ONLY
    with as_role(uri) as conn:
        assert sqlstate_of(conn, "CREATE TABLE x (id int)") in WRITE_REFUSED


def test_reconcile_is_idempotent(alice, shared_cluster):
    database, uri = create(alice, "again")
    _seed(uri)
    hook.suspended(alice)
    for _ in range(2):
        assert tasks.databases_enforce.apply(args=(alice.pk,)).get() == []
    _assert_read_only(uri)
    hook.reactivated(alice)
    hook.reactivated(alice)
    _assert_writable(uri)


def test_decisions_are_pure():
    assert desired_state([]) == DatabaseState.READY
    assert desired_state([OVER_PLAN_LIMIT]) == DatabaseState.READ_ONLY
    assert desired_state([SUSPENDED, CANCELLED]) == DatabaseState.LOCKED
    assert over_limit([1, 2, 3], 1) == {2, 3}
    assert over_limit([1, 2, 3], None) == set()
    assert over_limit([1, 2], 3) == set()


def test_charlie_is_untouched_by_alices_enforcement(alice, charlie, shared_cluster):
    mine, mine_uri = create(charlie, "mine")
    _seed(mine_uri)
    create(alice, "hers")
    hook.suspended(alice)
    hook.cancelled(alice)
    with tenant_context(charlie):
        assert Database.objects.get(pk=mine.pk).state == DatabaseState.READY
    _assert_writable(mine_uri)


@pytest.mark.parametrize("tenant_name", ["alice", "bob"])
def test_a_read_only_database_can_still_be_deleted_with_its_holder_role(
        request, tenant_name, shared_cluster):
    tenant = request.getfixturevalue(tenant_name)
    database, uri = create(tenant, "doomed")
    _seed(uri)
    hook.suspended(tenant)
    assert role_exists(shared_cluster, holder_of(database.role_name))
    database_delete(tenant=tenant, actor="system", database=reload(tenant, database))
    assert not role_exists(shared_cluster, database.role_name)
    assert not role_exists(shared_cluster, holder_of(database.role_name))
