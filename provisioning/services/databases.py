"""Customer databases (SPEC §7): create, delete, connection URI, SQL over HTTP.

Placement follows the tenant's plan (billing Plan.database_placement):
- shared_schema (Free, Starter): a schema in the shared database of the region's shared
  cluster, owned by the database's own LOGIN role, whose search_path is that schema;
- shared_database (Professional): its own database owned by its own role on the shared
  cluster;
- dedicated (Enterprise, Custom): its own database and role on one of the tenant's
  dedicated clusters.
Role, database and schema names are generated (`t<tenant id>_<8 hex>`); the name the
customer chose is only a label. The password is shown once (in the URI returned by
`database_create`) and stored sealed by aerolith.crypto.
"""
import logging
import re
import secrets
from urllib.parse import quote

import psycopg
from django.conf import settings
from django.db import transaction
from django_tenants.utils import tenant_context

from aerolith import crypto
from aerolith.errors import Conflict, NotFound, ValidationFailed
from billing.selectors import subscription_of
from tenants.models import Tenant, TenantStatus
from tenants.services.audit import audit_record

from ..errors import ClusterUnavailable, DatabaseLimitReached, DatabaseUnavailable, PlanNotAllowed
from ..models import Cluster, Database, DatabaseState, Health, Placement
from ..selectors import cluster_dsn, cluster_primary, shared_cluster_for
from . import pg_admin, sql_runner
from .sql_runner import QueryResult

__all__ = ["QueryResult", "database_create", "database_delete", "database_password",
           "database_query", "database_uri", "sql_limits_for"]

logger = logging.getLogger(__name__)
NAME_RE = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
USABLE = (Health.HEALTHY, Health.DEGRADED, Health.SCALING)


def _plan(tenant: Tenant):
    subscription = subscription_of(tenant)
    if subscription is None:
        raise PlanNotAllowed("Choose a plan before creating databases.", code="no_subscription")
    return subscription.plan


def _refuse_when_inactive(tenant: Tenant) -> None:
    if tenant.status == TenantStatus.SUSPENDED:
        raise PlanNotAllowed("This organisation is suspended; pay the open invoices to create "
                             "databases again.", code="account_suspended")
    if tenant.status == TenantStatus.CANCELLED:
        raise PlanNotAllowed("This organisation's subscription is cancelled; choose a plan to "
                             "create databases again.", code="account_cancelled")


def _cluster_for(tenant: Tenant, placement: str, cluster_id) -> Cluster:
    if placement != Placement.DEDICATED:
        if cluster_id is not None:
            raise ValidationFailed({"cluster_id": [(
                "not_allowed", "Your plan keeps databases on the shared cluster; leave cluster_id "
                               "out (dedicated clusters come with Enterprise).")]})
        return shared_cluster_for(tenant.region)
    clusters = Cluster.objects.filter(tenant=tenant, shared=False, deleted_at__isnull=True)
    if cluster_id is None:
        usable = list(clusters.filter(health__in=USABLE)[:2])
        if not usable:
            raise Conflict("Your plan places databases on a dedicated cluster and you have no "
                           "running one; create a cluster first, then create the database on it.",
                           code="cluster_required", field="cluster_id")
        if len(usable) > 1:
            raise ValidationFailed({"cluster_id": [(
                "required", "You have several clusters; say which one with cluster_id.")]})
        return usable[0]
    if isinstance(cluster_id, bool) or not isinstance(cluster_id, int):
        raise ValidationFailed({"cluster_id": [("invalid", "cluster_id must be a cluster's id.")]})
    cluster = clusters.filter(pk=cluster_id).first()
    if cluster is None:
        raise NotFound(f"You have no cluster {cluster_id}; list your clusters to find its id.",
                       field="cluster_id")
    if cluster.health not in USABLE:
        raise ClusterUnavailable(f"Cluster {cluster.name} is {cluster.health}; wait until it is "
                                 "healthy, then create the database.")
    return cluster


def _validate_name(name) -> str:
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise ValidationFailed({"name": [(
            "invalid", "Use 1–63 lowercase letters, digits, underscores or hyphens, starting "
                       "with a letter.")]})
    return name


@transaction.atomic
def database_create(*, tenant: Tenant, actor, name: str, cluster_id: int | None = None
                    ) -> tuple[Database, str]:
    """Create a database where the tenant's plan places it and return it with its
    connection URI, which holds the password and is never available again.

    Raises ValidationFailed (bad name or cluster_id), Conflict `duplicate_name`,
    DatabaseLimitReached (409 `database_limit_reached`) at the plan's max_databases,
    PlanNotAllowed for a suspended or cancelled tenant, Conflict `cluster_required` for a
    dedicated plan without a cluster, ClusterUnavailable when the server cannot be reached.
    Concurrent creates of one tenant are serialised on its row, so the limit holds. If the
    server refuses, whatever was made there is dropped and no row stays behind.
    """
    name = _validate_name(name)
    with tenant_context(tenant):
        locked = Tenant.objects.select_for_update().get(pk=tenant.pk)
        _refuse_when_inactive(locked)
        plan = _plan(locked)
        if Database.objects.filter(name=name).exists():
            raise Conflict(f"You already have a database named {name}; choose another name.",
                           code="duplicate_name", field="name")
        in_use = Database.objects.count()
        if plan.max_databases is not None and in_use >= plan.max_databases:
            raise DatabaseLimitReached(
                f"Your {plan.name} plan allows {plan.max_databases} database"
                f"{'s' if plan.max_databases != 1 else ''} and you have {in_use}; delete one or "
                "upgrade your plan to create more.", extra={"limit": plan.max_databases})
        placement = plan.database_placement
        cluster = _cluster_for(locked, placement, cluster_id)
        role = f"t{tenant.pk}_{secrets.token_hex(4)}"
        password = secrets.token_urlsafe(24)
        shared = placement == Placement.SHARED_SCHEMA
        database = Database.objects.create(
            name=name, placement=placement, cluster_id=cluster.pk,
            db_name=settings.AEROLITH_SHARED_DATABASE if shared else role,
            schema_name=role if shared else "", role_name=role,
            password_sealed=crypto.encrypt(password, context=f"database:{role}"),
            created_by=_label(actor))
        # Last, so that a refusal rolls the row back; database_provision cleans the server.
        try:
            pg_admin.database_provision(cluster, database, password)
        except psycopg.Error as exc:
            logger.exception("Creating database %s on cluster %s failed", role, cluster.pk)
            raise ClusterUnavailable("The database server could not create the database; try "
                                     "again in a minute. Staff have been told.") from exc
        audit_record(action="database.create", tenant=tenant, actor=actor, target=database,
                     after={"name": name, "placement": placement, "cluster_id": cluster.pk})
        return database, database_uri(database, password)


def _label(actor) -> str:
    return str(getattr(actor, "label", None) or actor or "system")[:200]


@transaction.atomic
def database_delete(*, tenant: Tenant, actor, database: Database) -> None:
    """Drop the database (or schema) and its role, ending open sessions first; then the
    row. Safe to repeat after a partial failure. Raises ClusterUnavailable when the server
    cannot be reached (the row stays, so the delete can be retried)."""
    with tenant_context(tenant):
        locked = Database.objects.select_for_update().filter(pk=database.pk).first()
        if locked is None:
            raise NotFound("That database does not exist or was already deleted.")
        cluster = Cluster.objects.filter(pk=locked.cluster_id).first()
        if cluster is not None and cluster.deleted_at is None:
            try:
                pg_admin.database_drop(cluster, locked)
            except psycopg.Error as exc:
                logger.exception("Dropping database %s failed", locked.role_name)
                raise ClusterUnavailable("The database server could not drop the database; "
                                         "try again in a minute.") from exc
        audit_record(action="database.delete", tenant=tenant, actor=actor, target=locked,
                     before={"name": locked.name, "placement": locked.placement})
        locked.delete()


def database_password(database: Database) -> str:
    return crypto.decrypt(database.password_sealed, context=f"database:{database.role_name}").decode()


def database_uri(database: Database, password: str | None = None) -> str:
    """postgresql://role[:password]@host:port/db, with the search_path option for a schema
    in the shared database. Without `password` the URI has none (what the portal shows
    after creation)."""
    cluster = Cluster.objects.get(pk=database.cluster_id)
    primary = cluster_primary(cluster)
    host = primary.host if primary and primary.host else "127.0.0.1"
    port = primary.port if primary and primary.port else 5432
    userinfo = quote(database.role_name, safe="")
    if password is not None:
        userinfo += ":" + quote(password, safe="")
    uri = f"postgresql://{userinfo}@{host}:{port}/{quote(database.db_name, safe='')}"
    if database.placement == Placement.SHARED_SCHEMA:
        uri += "?options=" + quote(f"-csearch_path={database.schema_name}", safe="")
    return uri


def sql_limits_for(plan) -> dict:
    """{"timeout_ms", "max_rows"} for SQL over HTTP (settings.AEROLITH_SQL_LIMITS)."""
    limits = settings.AEROLITH_SQL_LIMITS
    key = "custom" if plan is not None and plan.is_custom else getattr(plan, "code", "default")
    return limits.get(key, limits["default"])


def database_query(*, tenant: Tenant, database: Database, sql, params=None) -> QueryResult:
    """Run one statement as the database's own role with the plan's statement timeout and
    row cap (settings.AEROLITH_SQL_LIMITS). Writes nothing in our database.

    Raises ValidationFailed for bad input, SqlError (`sql_error`, `multiple_statements`)
    or StatementTimeout (`statement_timeout`) with {"sqlstate"} in `extra`, and
    DatabaseUnavailable when the database refuses connections (cancelled)."""
    params = sql_runner.query_validate(sql, params)
    if database.state == DatabaseState.LOCKED:
        raise DatabaseUnavailable("This database refuses connections because the subscription "
                                  "was cancelled; choose a plan to use it again.")
    limits = sql_limits_for(_plan(tenant))
    cluster = Cluster.objects.filter(pk=database.cluster_id, deleted_at__isnull=True).first()
    if cluster is None:
        raise ClusterUnavailable("The cluster of this database no longer exists.")
    options = f"-c statement_timeout={int(limits['timeout_ms'])}"
    if database.schema_name:
        options += f" -c search_path={database.schema_name}"
    conninfo = cluster_dsn(cluster, database.db_name, user=database.role_name,
                           password=database_password(database), options=options,
                           application_name="aerolith-sql-http")
    return sql_runner.statement_run(conninfo, sql, params, int(limits["max_rows"]))
