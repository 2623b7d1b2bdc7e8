"""Billing's enforcement hook (billing.enforcement) carried out on real databases.

Each Database row keeps the reasons in force (`restrictions`: suspended, cancelled,
over_plan_limit) — the desired state — and `state`, what was last applied on the server:
- any reason but `cancelled` → read-only at the PostgreSQL level (pg_admin.read_only_apply:
  the role's objects go to a NOLOGIN holder; SELECT only);
- `cancelled` → the role is NOLOGIN and its sessions are ended: connections are refused;
- no reason → full service.
Billing calls the hook from transaction.on_commit, so a server that cannot be reached must
not raise into billing: the reasons are saved first, the failure is logged, and the Celery
task `databases_enforce` applies the saved reasons again later (idempotently).
"""
import logging

from django.db import transaction
from django_tenants.utils import tenant_context

from tenants.models import Tenant

from .models import Cluster, Database, DatabaseState
from .services import pg_admin

logger = logging.getLogger(__name__)

SUSPENDED = "suspended"
CANCELLED = "cancelled"
OVER_PLAN_LIMIT = "over_plan_limit"


def desired_state(restrictions) -> str:
    if CANCELLED in restrictions:
        return DatabaseState.LOCKED
    return DatabaseState.READ_ONLY if restrictions else DatabaseState.READY


def over_limit(ids_oldest_first: list[int], max_databases: int | None) -> set[int]:
    """The databases beyond the plan's count: the newest ones."""
    if max_databases is None:
        return set()
    return set(ids_oldest_first[max_databases:])


def _restrictions_update(tenant: Tenant, *, add=(), remove=(), plan=None) -> None:
    """Save the new reasons of every database of `tenant`; with `plan`, recompute
    over_plan_limit against its max_databases."""
    with tenant_context(tenant), transaction.atomic():
        databases = list(Database.objects.select_for_update().order_by("created_at", "id"))
        beyond = over_limit([d.pk for d in databases], plan.max_databases) if plan else None
        for database in databases:
            reasons = (set(database.restrictions) | set(add)) - set(remove)
            if beyond is not None:
                reasons.discard(OVER_PLAN_LIMIT)
                if database.pk in beyond:
                    reasons.add(OVER_PLAN_LIMIT)
            if reasons != set(database.restrictions):
                database.restrictions = sorted(reasons)
                database.save(update_fields=["restrictions"])


def _apply(database: Database) -> None:
    cluster = Cluster.objects.get(pk=database.cluster_id)
    reasons = set(database.restrictions)
    login = CANCELLED not in reasons
    if not login:
        pg_admin.login_set(cluster, database, False)
    if reasons - {CANCELLED}:
        pg_admin.read_only_apply(cluster, database)
    else:
        pg_admin.read_only_lift(cluster, database)
    if login:
        pg_admin.login_set(cluster, database, True)


def databases_reconcile(tenant_id: int) -> list[str]:
    """Apply the saved reasons of every database of the tenant on its server and record
    the state reached; returns the names of databases that failed (logged)."""
    tenant = Tenant.objects.get(pk=tenant_id)
    failed = []
    with tenant_context(tenant):
        for database in Database.objects.order_by("created_at", "id"):
            try:
                _apply(database)
            except Exception:  # noqa: BLE001 - one unreachable server must not stop the rest
                logger.exception("Enforcement on database %s of tenant %s failed",
                                 database.role_name, tenant_id)
                failed.append(database.name)
                continue
            state = desired_state(database.restrictions)
            if database.state != state:
                Database.objects.filter(pk=database.pk).update(state=state)
    return failed


def _enforce(tenant: Tenant) -> None:
    try:
        failed = databases_reconcile(tenant.pk)
    except Exception:  # noqa: BLE001 - never raise into billing
        logger.exception("Enforcement for tenant %s failed", tenant.pk)
        failed = ["*"]
    if failed:
        _retry_later(tenant)


def _retry_later(tenant: Tenant) -> None:
    from .tasks import databases_enforce

    try:
        databases_enforce.apply_async((tenant.pk,), countdown=60)
    except Exception:  # noqa: BLE001 - the next event or a staff action reconciles again
        logger.exception("Could not schedule enforcement retry for tenant %s", tenant.pk)


class DatabaseEnforcement:
    """The hook registered with billing.enforcement in ProvisioningConfig.ready()."""

    def databases_in_use(self, tenant) -> int:
        with tenant_context(tenant):
            return Database.objects.count()

    def _change(self, tenant, **change) -> None:
        try:
            _restrictions_update(tenant, **change)
        except Exception:  # noqa: BLE001 - never raise into billing
            logger.exception("Saving database restrictions of tenant %s failed", tenant.pk)
            return
        _enforce(tenant)

    def suspended(self, tenant) -> None:
        self._change(tenant, add={SUSPENDED})

    def cancelled(self, tenant) -> None:
        self._change(tenant, add={CANCELLED})

    def reactivated(self, tenant) -> None:
        from billing.selectors import subscription_of

        subscription = subscription_of(tenant)
        self._change(tenant, remove={SUSPENDED, CANCELLED},
                     plan=subscription.plan if subscription else None)

    def plan_applied(self, tenant, plan) -> None:
        self._change(tenant, plan=plan)


hook = DatabaseEnforcement()
