"""Helpers for the customer-database tests: real connections as a database's role or as
the cluster's superuser, plan switches inside a test's transaction, and a tenant-owned
dedicated Cluster row pointing at the shared test server."""
import secrets
from contextlib import contextmanager

import psycopg
from django_tenants.utils import tenant_context

from aerolith import crypto
from billing.models import Plan, Subscription
from provisioning.models import Cluster, Database, Health, Node, NodeRole
from provisioning.selectors import admin_password, cluster_dsn, cluster_primary
from provisioning.services.databases import database_create


def use_plan(tenant, code: str) -> Plan:
    """Switch the tenant's subscription to plan `code` (rolled back with the test)."""
    plan = Plan.objects.get(code=code)
    Subscription.objects.filter(tenant=tenant).update(plan=plan)
    return plan


def dedicated_cluster(tenant, shared: Cluster, name: str = "dedicated") -> Cluster:
    """A dedicated Cluster row of `tenant`. It points at the same real server as the shared
    cluster (one local server is enough to prove role isolation; the local driver's own
    tests prove real dedicated clusters)."""
    handle = f"{name}-{secrets.token_hex(4)}"
    primary = cluster_primary(shared)
    cluster = Cluster.objects.create(
        tenant=tenant, name=name, handle=handle, shared=False, region=tenant.region,
        health=Health.HEALTHY, node_count=1, admin_user=shared.admin_user,
        admin_password_sealed=crypto.encrypt(admin_password(shared), context=f"cluster:{handle}"))
    Node.objects.create(cluster=cluster, name=f"{handle}-0", role=NodeRole.PRIMARY,
                        health=Health.HEALTHY, host=primary.host, port=primary.port)
    return cluster


def create(tenant, name: str, **kwargs) -> tuple[Database, str]:
    return database_create(tenant=tenant, actor="system", name=name, **kwargs)


def connect(uri: str, **kwargs) -> psycopg.Connection:
    return psycopg.connect(uri, autocommit=True, connect_timeout=5, **kwargs)


@contextmanager
def as_role(uri: str, **kwargs):
    conn = connect(uri, **kwargs)
    try:
        yield conn
    finally:
        conn.close()


@contextmanager
def as_admin(cluster: Cluster, dbname: str = "postgres"):
    conn = psycopg.connect(cluster_dsn(cluster, dbname), autocommit=True)
    try:
        yield conn
    finally:
        conn.close()


def sqlstate_of(conn, statement: str) -> str | None:
    """Run `statement`; None when it succeeds, else its SQLSTATE."""
    try:
        conn.execute(statement)
    except psycopg.Error as exc:
        return exc.sqlstate
    return None


def reload(tenant, database: Database) -> Database:
    with tenant_context(tenant):
        return Database.objects.get(pk=database.pk)


def role_exists(cluster: Cluster, role: str) -> bool:
    with as_admin(cluster) as conn:
        return conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [role]).fetchone() is not None
