"""What customer databases need on a PostgreSQL server, run as the platform's superuser.

Every identifier here is one we generated (`t<tenant id>_<random hex>`), quoted with
psycopg.sql all the same; user text never reaches these statements. Functions are
idempotent so that a reconcile can run them again after a partial failure.

Isolation (SPEC §7): PUBLIC has no privileges on any customer database, on the shared
database, or on its `public` schema; each role can connect only to its own database (the
shared one for schema placement) and owns only its own schema or database.

Read-only (enforcement): a flag such as `default_transaction_read_only` can be switched off
by the user with SET, so it is only a courtesy here. What holds is ownership: the role's
objects are handed to a NOLOGIN *holder* role (`<role>_h`), and the role keeps CONNECT,
USAGE on its schemas and SELECT on its tables, nothing more. SECURITY DEFINER routines
would run as the holder (the new owner), so their EXECUTE is revoked while read-only.
"""
import logging
from contextlib import contextmanager

import psycopg
from django.conf import settings
from psycopg import sql

from ..errors import ClusterUnavailable
from ..models import Cluster, Database, Placement
from ..selectors import cluster_dsn

logger = logging.getLogger(__name__)

SYSTEM_SCHEMAS = "('pg_catalog', 'information_schema', 'pg_toast')"


def holder_of(role: str) -> str:
    return f"{role}_h"


@contextmanager
def admin_connection(cluster: Cluster, dbname: str = "postgres"):
    """An autocommit superuser connection to the cluster's primary."""
    try:
        conn = psycopg.connect(cluster_dsn(cluster, dbname, application_name="aerolith-admin"),
                               autocommit=True)
    except psycopg.OperationalError as exc:
        raise ClusterUnavailable(
            f"The database server of cluster {cluster.name} cannot be reached right now; try "
            "again in a minute.") from exc
    try:
        yield conn
    finally:
        conn.close()


def _terminate(conn, role: str) -> None:
    conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                 "WHERE usename = %s AND pid <> pg_backend_pid()", [role])


def _role_exists(conn, role: str) -> bool:
    return conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [role]).fetchone() is not None


def shared_database_ensure(cluster: Cluster) -> str:
    """The shared database of schema placement, with nothing granted to PUBLIC."""
    name = settings.AEROLITH_SHARED_DATABASE
    with admin_connection(cluster) as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone() is None:
            try:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
            except psycopg.errors.DuplicateDatabase:
                pass  # created by a concurrent request
        # Also close the maintenance databases: a tenant role must reach no database but
        # its own (the superuser is not bound by these).
        for db in (name, "postgres", "template1"):
            conn.execute(sql.SQL("REVOKE ALL ON DATABASE {} FROM PUBLIC").format(sql.Identifier(db)))
    with admin_connection(cluster, name) as conn:
        conn.execute("REVOKE ALL ON SCHEMA public FROM PUBLIC")
    return name


def database_provision(cluster: Cluster, database: Database, password: str) -> None:
    """Create the role and its schema or database; on failure, drop what this call made
    (and only that: a name clash must not drop someone else's object)."""
    made: set[str] = set()
    try:
        _provision(cluster, database, password, made)
    except Exception:
        try:
            database_drop(cluster, database, parts=made)
        except Exception:  # noqa: BLE001 - the original error is the one to report
            # Reconcile drops what is left later; say so instead of hiding it.
            logger.warning("cleanup after a failed database create left parts behind",
                           extra={"database": database.db_name}, exc_info=True)
        raise


def _provision(cluster: Cluster, database: Database, password: str, made: set) -> None:
    role = sql.Identifier(database.role_name)
    if database.placement == Placement.SHARED_SCHEMA:
        shared = shared_database_ensure(cluster)
        with admin_connection(cluster, shared) as conn:
            conn.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(role, sql.Literal(password)))
            made.add("role")
            conn.execute(sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(sql.Identifier(shared), role))
            conn.execute(sql.SQL("CREATE SCHEMA {} AUTHORIZATION {}").format(
                sql.Identifier(database.schema_name), role))
            made.add("schema")
            conn.execute(sql.SQL("ALTER ROLE {} IN DATABASE {} SET search_path = {}").format(
                role, sql.Identifier(shared), sql.Identifier(database.schema_name)))
        return
    with admin_connection(cluster) as conn:
        for db in ("postgres", "template1"):
            conn.execute(sql.SQL("REVOKE ALL ON DATABASE {} FROM PUBLIC").format(sql.Identifier(db)))
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(role, sql.Literal(password)))
        made.add("role")
        conn.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(database.db_name), role))
        made.add("database")
        conn.execute(sql.SQL("REVOKE ALL ON DATABASE {} FROM PUBLIC").format(
            sql.Identifier(database.db_name)))


ALL_PARTS = frozenset({"database", "schema", "role"})


def database_drop(cluster: Cluster, database: Database, parts=ALL_PARTS) -> None:
    """Drop the schema or database, the role and its holder, ending their sessions first;
    missing pieces are fine (safe to repeat)."""
    roles = [database.role_name, holder_of(database.role_name)]
    shared = database.placement == Placement.SHARED_SCHEMA
    with admin_connection(cluster) as conn:
        for role in roles:
            _terminate(conn, role)
        if "database" in parts and not shared:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                sql.Identifier(database.db_name)))
    if shared and parts & {"schema", "role"}:
        with admin_connection(cluster, database.db_name) as conn:
            if "schema" in parts:
                conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(
                    sql.Identifier(database.schema_name)))
            for role in roles:
                if "role" in parts and _role_exists(conn, role):
                    # Objects elsewhere in the shared database, and the CONNECT grant.
                    conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
    if "role" in parts:
        with admin_connection(cluster) as conn:
            for role in roles:
                conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))


def _secdef_routines(conn, owner: str) -> list[str]:
    return [row[0] for row in conn.execute(
        "SELECT p.oid::regprocedure::text FROM pg_proc p JOIN pg_roles r ON r.oid = p.proowner "
        "WHERE r.rolname = %s AND p.prosecdef", [owner])]


def read_only_apply(cluster: Cluster, database: Database) -> None:
    """Hand the role's objects to its holder; the role may connect and read, nothing else."""
    role, holder = database.role_name, holder_of(database.role_name)
    with admin_connection(cluster, database.db_name) as conn:
        if not _role_exists(conn, holder):
            try:
                conn.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(holder)))
            except psycopg.errors.DuplicateObject:
                pass
        conn.execute(sql.SQL("REASSIGN OWNED BY {} TO {}").format(
            sql.Identifier(role), sql.Identifier(holder)))
        for routine in _secdef_routines(conn, holder):
            conn.execute(sql.SQL("REVOKE EXECUTE ON ROUTINE {} FROM PUBLIC, {}").format(
                sql.SQL(routine), sql.Identifier(role)))
        if database.placement == Placement.SHARED_SCHEMA:
            # Only the schemas that were the role's: the database holds other tenants' too.
            schemas = [row[0] for row in conn.execute(
                "SELECT nspname FROM pg_namespace n JOIN pg_roles r ON r.oid = n.nspowner "
                "WHERE r.rolname = %s", [holder])]
        else:
            # Its own database: the database itself was reassigned too, so CONNECT again.
            conn.execute(sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(
                sql.Identifier(database.db_name), sql.Identifier(role)))
            schemas = [row[0] for row in conn.execute(
                f"SELECT nspname FROM pg_namespace WHERE nspname NOT IN {SYSTEM_SCHEMAS} "  # nosec B608 - SYSTEM_SCHEMAS is a constant
                "AND nspname NOT LIKE 'pg\\_temp\\_%' AND nspname NOT LIKE 'pg\\_toast\\_temp\\_%'")]
        for schema in schemas:
            conn.execute(sql.SQL("GRANT USAGE ON SCHEMA {0} TO {1}; "
                                 "GRANT SELECT ON ALL TABLES IN SCHEMA {0} TO {1}").format(
                sql.Identifier(schema), sql.Identifier(role)))
        conn.execute(sql.SQL("ALTER ROLE {} SET default_transaction_read_only = on").format(
            sql.Identifier(role)))
        _terminate(conn, role)


def read_only_lift(cluster: Cluster, database: Database) -> None:
    """Give the role its objects back (a no-op when it has them)."""
    role, holder = database.role_name, holder_of(database.role_name)
    with admin_connection(cluster, database.db_name) as conn:
        if _role_exists(conn, holder):
            routines = _secdef_routines(conn, holder)
            conn.execute(sql.SQL("REASSIGN OWNED BY {} TO {}").format(
                sql.Identifier(holder), sql.Identifier(role)))
            for routine in routines:  # back to PostgreSQL's default for routines
                conn.execute(sql.SQL("GRANT EXECUTE ON ROUTINE {} TO PUBLIC").format(sql.SQL(routine)))
        conn.execute(sql.SQL("ALTER ROLE {} RESET default_transaction_read_only").format(
            sql.Identifier(role)))


def login_set(cluster: Cluster, database: Database, allowed: bool) -> None:
    """LOGIN or NOLOGIN; refusing also ends the role's open sessions."""
    with admin_connection(cluster) as conn:
        conn.execute(sql.SQL("ALTER ROLE {} {}").format(
            sql.Identifier(database.role_name), sql.SQL("LOGIN" if allowed else "NOLOGIN")))
        if not allowed:
            _terminate(conn, database.role_name)


def storage_bytes(cluster: Cluster, databases: list[Database]) -> int:
    """pg_database_size of own databases plus the relations of shared-database schemas."""
    own = [d.db_name for d in databases if d.placement != Placement.SHARED_SCHEMA]
    schemas: dict[str, list[str]] = {}
    for d in databases:
        if d.placement == Placement.SHARED_SCHEMA:
            schemas.setdefault(d.db_name, []).append(d.schema_name)
    total = 0
    if own:
        with admin_connection(cluster) as conn:
            total += int(conn.execute(
                "SELECT coalesce(sum(pg_database_size(datname)), 0) FROM pg_database "
                "WHERE datname = ANY(%s)", [own]).fetchone()[0])
    for dbname, names in schemas.items():
        with admin_connection(cluster, dbname) as conn:
            total += int(conn.execute(
                "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM pg_class c "
                "JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname = ANY(%s) AND c.relkind IN ('r', 'm')", [names]).fetchone()[0])
    return total
