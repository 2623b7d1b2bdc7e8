"""What goes into a tenant's data export (SPEC §8): the organisation, its members, API
keys, customer databases and clusters (metadata only), daily usage, invoices with their
PDFs, payments and the audit trail.

Secrets never go in: API keys are listed by prefix and scopes (only a hash of the secret
is stored anyway), databases and clusters without any password, payment methods by brand
and last four digits. The archive is written straight into a file object, one member at
a time, so a tenant with years of usage does not need it all in memory.
"""
import csv
import io
import json
import zipfile
from collections import defaultdict
from decimal import Decimal

from django.core.serializers.json import DjangoJSONEncoder
from django_tenants.utils import tenant_context

from aerolith import clock

from ..models import ApiKey, Tenant
from ..selectors import audit_events_of, members_of

FORMAT_VERSION = 1


def _json(data) -> bytes:
    return json.dumps(data, cls=DjangoJSONEncoder, indent=2, ensure_ascii=False).encode()


def _csv(header: list[str], rows) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue().encode()


def organisation(tenant: Tenant) -> dict:
    from billing.selectors import subscription_of

    domain = tenant.get_primary_domain()
    subscription = subscription_of(tenant)
    sub = None
    if subscription is not None:
        sub = {
            "plan": {"code": subscription.plan.code, "name": subscription.plan.name,
                     "price_cents": subscription.plan.price_cents,
                     "currency": subscription.plan.currency},
            "status": subscription.status,
            "trial_end": subscription.trial_end,
            "current_period_start": subscription.current_period_start,
            "current_period_end": subscription.current_period_end,
            "cancel_at_period_end": subscription.cancel_at_period_end,
            "pending_plan": subscription.pending_plan.code if subscription.pending_plan else None,
            "balance_cents": subscription.balance_cents,
            "cancelled_at": subscription.cancelled_at,
            "data_kept_until": subscription.data_kept_until,
            "created_at": subscription.created_at,
        }
    return {
        "tenant": {"id": tenant.pk, "name": tenant.name, "slug": tenant.slug,
                   "region": tenant.region, "status": tenant.status,
                   "created_at": tenant.created_at},
        "domain": domain.domain if domain else None,
        "subscription": sub,
    }


def members(tenant: Tenant) -> list[dict]:
    return [{"email": m.user.email, "full_name": m.user.full_name, "role": m.role,
             "status": "invited" if m.is_pending else "active", "invited_at": m.created_at,
             "joined_at": m.accepted_at} for m in members_of(tenant).order_by("created_at", "id")]


def api_keys() -> list[dict]:
    """Run inside the tenant's schema. Metadata only: the secret is not stored at all."""
    return [{"id": k.pk, "name": k.name, "prefix": k.prefix, "scopes": k.scopes,
             "created_at": k.created_at, "last_used_at": k.last_used_at,
             "revoked_at": k.revoked_at} for k in ApiKey.objects.order_by("created_at", "id")]


def databases() -> list[dict]:
    """Run inside the tenant's schema. No password, sealed or not."""
    from provisioning.models import Cluster, Database

    names = dict(Cluster.objects.filter(
        pk__in=Database.objects.values("cluster_id")).values_list("pk", "name"))
    return [{"id": d.pk, "name": d.name, "placement": d.placement, "cluster_id": d.cluster_id,
             "cluster": names.get(d.cluster_id), "database": d.db_name,
             "schema": d.schema_name or None, "role": d.role_name, "state": d.state,
             "restrictions": d.restrictions, "created_at": d.created_at,
             "created_by": d.created_by} for d in Database.objects.order_by("created_at", "id")]


def clusters(tenant: Tenant) -> list[dict]:
    from provisioning.models import Cluster

    rows = Cluster.objects.filter(tenant=tenant).prefetch_related("nodes").order_by("created_at", "id")
    return [{"id": c.pk, "name": c.name, "provider": c.provider, "region": c.region,
             "size": c.size, "node_count": c.node_count, "health": c.health,
             "autoscaling": {"enabled": c.autoscale_enabled, "min_nodes": c.min_nodes,
                             "max_nodes": c.max_nodes, "cpu_target_percent": c.cpu_target_percent,
                             "memory_target_percent": c.memory_target_percent},
             "nodes": [{"name": n.name, "role": n.role, "health": n.health} for n in c.nodes.all()],
             "created_at": c.created_at, "deleted_at": c.deleted_at} for c in rows]


def usage_rows(tenant: Tenant) -> list[list]:
    """Daily aggregates per meter, the writer shards summed (metering keeps one row per
    shard so that ingesting processes never wait on each other)."""
    from metering.models import Meter, UsageAggregate

    meters = {m.pk: m for m in Meter.objects.all()}
    days: dict[tuple, dict] = defaultdict(lambda: {"count": 0, "total": Decimal(0), "max": None,
                                                   "latest_at": None, "latest": None})
    aggregates = UsageAggregate.objects.filter(
        tenant_id=tenant.pk, granularity=UsageAggregate.Granularity.DAY).order_by("bucket", "meter_id")
    for row in aggregates.iterator():
        day = days[(row.bucket, row.meter_id)]
        day["count"] += row.event_count
        day["total"] += row.total
        if row.maximum is not None and (day["max"] is None or row.maximum > day["max"]):
            day["max"] = row.maximum
        if row.latest_at is not None and (day["latest_at"] is None or row.latest_at > day["latest_at"]):
            day["latest_at"], day["latest"] = row.latest_at, row.latest_value
    out = []
    for (bucket, meter_id), day in sorted(days.items(), key=lambda item: (item[0][0], item[0][1])):
        meter = meters.get(meter_id)
        out.append([bucket.date().isoformat(), meter.code if meter else meter_id,
                    meter.unit if meter else "", day["count"], day["total"],
                    "" if day["max"] is None else day["max"],
                    "" if day["latest"] is None else day["latest"]])
    return out


def invoices(tenant: Tenant) -> list:
    from billing.selectors import invoices_of

    return list(invoices_of(tenant).order_by("finalized_at", "id"))


def invoice_payload(invoice) -> dict:
    return {
        "number": invoice.number, "status": invoice.status, "reason": invoice.reason,
        "currency": invoice.currency, "period_start": invoice.period_start,
        "period_end": invoice.period_end, "subtotal_cents": invoice.subtotal_cents,
        "credit_applied_cents": invoice.credit_applied_cents, "total_cents": invoice.total_cents,
        "amount_paid_cents": invoice.amount_paid_cents, "amount_due_cents": invoice.amount_due_cents,
        "amount_refunded_cents": invoice.amount_refunded_cents,
        "finalized_at": invoice.finalized_at, "due_at": invoice.due_at, "paid_at": invoice.paid_at,
        "closed_at": invoice.closed_at, "pdf": f"invoices/{invoice.number}.pdf",
        "lines": [{"kind": line.kind, "description": line.description,
                   "quantity": line.quantity, "unit_amount_cents": line.unit_amount_cents,
                   "amount_cents": line.amount_cents} for line in invoice.lines.all()],
    }


def payments(tenant: Tenant) -> list[dict]:
    from billing.models import Payment

    rows = (Payment.objects.filter(tenant=tenant).select_related("invoice", "payment_method")
            .order_by("created_at", "id"))
    return [{"id": p.pk, "invoice": p.invoice.number, "method": p.method, "status": p.status,
             "amount_cents": p.amount_cents, "currency": p.currency,
             "refunded_cents": p.refunded_cents, "reference": p.reference or None,
             "card": (f"{p.payment_method.brand} ending {p.payment_method.last4}"
                      if p.payment_method and p.payment_method.last4 else None),
             "decline_code": p.decline_code or None, "created_at": p.created_at} for p in rows]


def audit_log(tenant: Tenant) -> list[dict]:
    rows = audit_events_of(tenant).order_by("occurred_at", "id")
    return [{"id": e.pk, "occurred_at": e.occurred_at, "actor": e.actor_label, "action": e.action,
             "target_type": e.target_type, "target_id": e.target_id, "before": e.before,
             "after": e.after, "request_id": e.request_id} for e in rows.iterator()]


def archive_write(tenant: Tenant, fileobj) -> dict:
    """Write the zip of `tenant`'s data into `fileobj`; returns the manifest (also stored
    in the archive as manifest.json) naming every file and how many records it holds."""
    from billing.pdf import invoice_pdf

    files: dict[str, int] = {}
    with zipfile.ZipFile(fileobj, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        def put(name: str, data: bytes, records: int) -> None:
            archive.writestr(name, data)
            files[name] = records

        put("organisation.json", _json(organisation(tenant)), 1)
        people = members(tenant)
        put("members.json", _json(people), len(people))
        put("members.csv", _csv(["email", "full_name", "role", "status", "invited_at", "joined_at"],
                                ([m["email"], m["full_name"], m["role"], m["status"],
                                  m["invited_at"].isoformat(),
                                  m["joined_at"].isoformat() if m["joined_at"] else ""]
                                 for m in people)), len(people))
        with tenant_context(tenant):
            keys, dbs = api_keys(), databases()
        put("api_keys.json", _json(keys), len(keys))
        put("databases.json", _json(dbs), len(dbs))
        machines = clusters(tenant)
        put("clusters.json", _json(machines), len(machines))
        usage = usage_rows(tenant)
        put("usage.csv", _csv(["day", "meter", "unit", "events", "total", "maximum", "latest"],
                              usage), len(usage))
        bills = invoices(tenant)
        put("invoices.json", _json([invoice_payload(i) for i in bills]), len(bills))
        for invoice in bills:
            put(f"invoices/{invoice.number}.pdf", invoice_pdf(invoice), 1)
        paid = payments(tenant)
        put("payments.json", _json(paid), len(paid))
        trail = audit_log(tenant)
        put("audit_log.json", _json(trail), len(trail))
        manifest = {"format_version": FORMAT_VERSION, "tenant": tenant.slug,
                    "generated_at": clock.now(tenant), "files": dict(files)}
        archive.writestr("manifest.json", _json(manifest))
    return manifest
