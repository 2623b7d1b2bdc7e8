"""Erasure of a cancelled tenant's data on request (SPEC §8).

An owner (API or portal, confirming with the slug) or staff (admin action) asks; a
worker erases. Only a cancelled tenant can be erased: erasure is the end of the
relationship, not a way out of an open subscription.

What goes:
- the customer databases on their clusters (provisioning's database_delete each, which
  drops the database or schema and its role on the server) and the dedicated clusters
  (cluster_delete, which stops the nodes and removes their data);
- the tenant schema with everything tenant-private in it (API keys, database rows, SSO
  and webhook configuration, whatever lives there);
- its domain, so the address answers "no organisation here";
- memberships; people who belong to no other organisation are anonymised in place (e-mail
  `erased-<id>@erased.invalid`, no name, no usable password, inactive) rather than
  deleted, because payments and refunds recorded by them keep their foreign keys;
- their e-mail addresses in the audit trail (rows of this tenant or acted by them),
  replaced by the same pseudonym; the rows themselves stay (see below);
- cards on file (billing), raw usage events and distinct values (metering), exports.

What stays, and why:
- the tenant row as a tombstone (name, slug, region, status cancelled, `erased_at`):
  invoices and payments point at it and the invoice PDFs print its name and address;
- the subscription, invoices, lines, payments, refunds, crypto quotes and the balance
  ledger: accounting and tax law require their retention, and they describe the
  organisation's purchases, not a person;
- usage aggregates (numbers per meter and day) behind the invoices' overage lines;
- the audit trail rows, anonymised: the record that things happened (including this
  erasure) is the platform's accountability. The trail is append-only; the database lets
  this service alone rewrite the people in it (migration 0005).
"""
import logging
from dataclasses import dataclass

from django.db import connection, transaction

from aerolith import clock
from aerolith.errors import Conflict, ValidationFailed

from ..models import Domain, Membership, ScheduledJob, Tenant, TenantStatus, User
from .audit import audit_record

logger = logging.getLogger(__name__)
ERASED_DOMAIN = "erased.invalid"


def pseudonym(user_id: int) -> str:
    return f"erased-{user_id}@{ERASED_DOMAIN}"


def erasure_request(*, tenant: Tenant, actor, confirm) -> Tenant:
    """Schedule the erasure of a cancelled tenant; a worker does it after commit.

    `confirm` must be the tenant's slug (the API and the portal ask the owner to type
    it). Raises ValidationFailed `confirmation_mismatch`, Conflict `not_cancelled` while
    the subscription is not cancelled, Conflict `already_erased`. Asking again before the
    worker is done changes nothing and returns the tenant."""
    if not isinstance(confirm, str) or confirm.strip().lower() != tenant.slug:
        raise ValidationFailed({"confirm": [(
            "confirmation_mismatch", f"Type the organisation's slug ({tenant.slug}) to confirm "
                                     "that everything is to be erased.")]})
    with transaction.atomic():
        locked = Tenant.objects.select_for_update().get(pk=tenant.pk)
        if locked.erased_at is not None:
            raise Conflict("This organisation's data was erased already.", code="already_erased")
        if locked.status != TenantStatus.CANCELLED:
            raise Conflict(
                f"This organisation is {locked.get_status_display().lower()}. Data can be erased "
                "only after the subscription is cancelled: cancel it first (POST "
                "/api/v1/subscription/cancel with at_period_end false, or Billing → Cancel), "
                "and export your data before (POST /api/v1/exports) if you want to keep it.",
                code="not_cancelled")
        if locked.erasure_requested_at is not None:
            return locked
        locked.erasure_requested_at = clock.now(locked)
        locked.save(update_fields=["erasure_requested_at"])
        audit_record(action="tenant.erasure_requested", tenant=locked, actor=actor, target=locked)
        transaction.on_commit(lambda: _enqueue(locked.pk))
    tenant.erasure_requested_at = locked.erasure_requested_at
    return locked


def _enqueue(tenant_id: int) -> None:
    from ..tasks import tenant_erase_run

    tenant_erase_run.delay(tenant_id)


@dataclass
class ErasureResult:
    databases_dropped: int
    clusters_deleting: int
    memberships_removed: int
    users_anonymised: int
    audit_rows_redacted: int
    other: dict


def tenant_erase(*, tenant_id: int) -> ErasureResult | None:
    """Carry out a requested erasure; safe to run again after any failure (each step
    finds what is left). Returns None when there is nothing to do: no request, already
    erased, or the tenant is no longer cancelled (the request is then withdrawn).

    Raises ClusterUnavailable when a database server cannot be reached and
    OperationInFlight when a dedicated cluster is busy; the task retries later."""
    tenant = Tenant.objects.filter(pk=tenant_id).first()
    if tenant is None or tenant.erased_at is not None or tenant.erasure_requested_at is None:
        return None
    if tenant.status != TenantStatus.CANCELLED:
        with transaction.atomic():
            Tenant.objects.filter(pk=tenant.pk).update(erasure_requested_at=None)
            audit_record(action="tenant.erasure_withdrawn", tenant=tenant, actor="system",
                         target=tenant, after={"status": tenant.status})
        return None
    dropped = _drop_databases(tenant)
    deleting = _delete_clusters(tenant)
    return _erase_schema_and_people(tenant, dropped, deleting)


def _drop_databases(tenant: Tenant) -> int:
    """Each database in its own transaction: one that is dropped stays dropped even if
    the next server is unreachable."""
    from django_tenants.utils import tenant_context

    from provisioning.models import Database
    from provisioning.services.databases import database_delete

    with tenant_context(tenant):
        databases = list(Database.objects.order_by("pk"))
    for database in databases:
        database_delete(tenant=tenant, actor="system:erasure", database=database)
    connection.set_schema_to_public()
    return len(databases)


def _delete_clusters(tenant: Tenant) -> int:
    from provisioning.models import Cluster, Health
    from provisioning.services.clusters import cluster_delete

    clusters = Cluster.objects.filter(tenant=tenant, shared=False, deleted_at__isnull=True)
    started = 0
    for cluster in clusters.order_by("pk"):
        if cluster.health not in (Health.DELETING, Health.DELETED):
            cluster_delete(cluster=cluster, actor="system:erasure",
                           idempotency_key=f"erasure:{tenant.pk}:cluster:{cluster.pk}")
        started += 1
    return started


def _erase_schema_and_people(tenant: Tenant, dropped: int, deleting: int) -> ErasureResult | None:
    from billing.services.erasure import billing_personal_data_erase
    from metering.services.erasure import usage_personal_data_erase

    from .exports import exports_discard

    connection.set_schema_to_public()
    with transaction.atomic():
        locked = Tenant.objects.select_for_update().get(pk=tenant.pk)
        if locked.erased_at is not None:
            return None
        with connection.cursor() as cursor:
            cursor.execute(f"DROP SCHEMA IF EXISTS {connection.ops.quote_name(locked.schema_name)} "
                           "CASCADE")
        Domain.objects.filter(tenant=locked).delete()
        member_ids = list(Membership.objects.filter(tenant=locked).values_list("user_id", flat=True))
        removed, _ = Membership.objects.filter(tenant=locked).delete()
        # People still in another organisation keep their account; staff keep theirs.
        lonely = list(User.objects.filter(pk__in=member_ids, is_staff=False)
                      .exclude(memberships__isnull=False).order_by("pk"))
        renamed = {}
        for user in lonely:
            renamed[user.email] = pseudonym(user.pk)
            user.email, user.full_name, user.is_active = pseudonym(user.pk), "", False
            user.set_unusable_password()
            user.save(update_fields=["email", "full_name", "is_active", "password"])
        redacted = _redact_audit(locked, renamed, [u.pk for u in lonely])
        other = {
            "exports_discarded": exports_discard(locked),
            "jobs_cancelled": ScheduledJob.objects.filter(
                tenant=locked, status=ScheduledJob.Status.PENDING,
            ).update(status=ScheduledJob.Status.CANCELLED),
            **billing_personal_data_erase(tenant=locked),
            **usage_personal_data_erase(tenant=locked),
        }
        locked.erased_at = clock.now(locked)
        locked.save(update_fields=["erased_at"])
        result = ErasureResult(databases_dropped=dropped, clusters_deleting=deleting,
                               memberships_removed=removed, users_anonymised=len(lonely),
                               audit_rows_redacted=redacted, other=other)
        audit_record(action="tenant.erased", tenant=locked, actor="system", target=locked,
                     after={"databases_dropped": dropped, "clusters_deleting": deleting,
                            "memberships_removed": removed, "users_anonymised": len(lonely),
                            "audit_rows_redacted": redacted, **other})
    tenant.erased_at = locked.erased_at
    logger.info("Erased tenant %s: %s", tenant.pk, result)
    return result


def _redact_audit(tenant: Tenant, renamed: dict[str, str], user_ids: list[int]) -> int:
    """Replace erased people's e-mail addresses in the audit trail (actor label, before,
    after) of this tenant's rows and of the rows they acted in. The trigger of migration
    0005 allows exactly this, and only while aerolith.audit_redaction is on in this
    transaction."""
    if not renamed:
        return 0
    touched = set()
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL aerolith.audit_redaction = 'on'")
        for email, replacement in renamed.items():
            cursor.execute(
                "UPDATE tenants_auditevent SET "
                "actor_label = replace(actor_label, %s, %s), "
                "before = replace(before::text, %s, %s)::jsonb, "
                "after = replace(after::text, %s, %s)::jsonb "
                "WHERE (tenant_id = %s OR actor_id = ANY(%s)) AND ("
                "strpos(actor_label, %s) > 0 OR strpos(coalesce(before::text, ''), %s) > 0 "
                "OR strpos(coalesce(after::text, ''), %s) > 0) RETURNING id",
                [email, replacement, email, replacement, email, replacement, tenant.pk, user_ids,
                 email, email, email])
            touched.update(row[0] for row in cursor.fetchall())
        cursor.execute("SET LOCAL aerolith.audit_redaction = 'off'")
    return len(touched)
