"""Erasure (SPEC §8): after cancellation, on the owner's request (API or portal) or a
staff action, a worker drops the tenant's customer databases on the real shared cluster,
its dedicated clusters and its schema, and removes or anonymises the people, while
invoices and payments stay (and still render). Refused before cancellation; nobody else
can ask. The session tenants are never erased: each test signs up its own."""
import secrets

import pytest
from django.db import connection, transaction
from django.db.utils import DatabaseError
from django_tenants.utils import schema_exists, tenant_context

from aerolith import clock
from billing.decisions import LineDraft
from billing.models import Invoice, Payment, PaymentMethod
from billing.pdf import invoice_pdf
from billing.services.collection import payment_method_attach, payment_record_manual
from billing.services.invoices import invoice_draft, invoice_finalize
from billing.services.subscriptions import subscription_cancel
from metering.models import UsageAggregate, UsageEvent
from metering.services.ingest import usage_ingest
from provisioning.models import Cluster, Health, Operation
from provisioning.services.databases import database_create
from tenants.models import (
    AuditEvent,
    DataExport,
    Domain,
    Membership,
    ScheduledJob,
    Tenant,
    TenantStatus,
    User,
)
from tenants.services.erasure import erasure_request, pseudonym, tenant_erase
from tests.conftest import (
    PASSWORD,
    add_member,
    api_client,
    assert_problem,
    jwt_for,
    make_key,
    owner_principal,
    portal_user,
    staff_client,
)
from tests.provisioning.db_support import as_admin, dedicated_cluster, role_exists, use_plan

pytestmark = pytest.mark.django_db


def _fresh(plan: str = "professional") -> Tenant:
    from tenants.services.signup import tenant_signup

    slug = f"gone{secrets.token_hex(3)}"
    result = tenant_signup(organization=f"Gone {slug} GmbH", slug=slug, email=f"owner@{slug}.test",
                           password=PASSWORD, plan=plan, region="eu-central",
                           full_name="Olga Owner")
    connection.set_schema_to_public()
    return result.tenant


def _cancel(tenant: Tenant) -> Tenant:
    subscription_cancel(tenant=tenant, at_period_end=False, actor="test")
    tenant.refresh_from_db()
    assert tenant.status == TenantStatus.CANCELLED
    return tenant


def _database_exists(cluster, name: str) -> bool:
    with as_admin(cluster) as conn:
        return conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone() is not None


def _schema_on_server(cluster, db_name: str, schema: str) -> bool:
    with as_admin(cluster, db_name) as conn:
        return conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", [schema]).fetchone() is not None


@pytest.fixture
def doomed(shared_cluster, alice):
    """A fresh tenant with a database of each placement on the real shared server (one
    through a dedicated Cluster row pointing at it), members (one also in alice), an API
    key, usage, a paid invoice, a card, an export, then cancelled."""
    tenant = _fresh("professional")
    own_db, _ = database_create(tenant=tenant, actor="test", name="own")
    use_plan(tenant, "starter")
    schema_db, _ = database_create(tenant=tenant, actor="test", name="inshared")
    use_plan(tenant, "enterprise")
    cluster = dedicated_cluster(tenant, shared_cluster, name="ded")
    dedicated_db, _ = database_create(tenant=tenant, actor="test", name="ondedicated",
                                      cluster_id=cluster.pk)
    use_plan(tenant, "professional")
    add_member(tenant, f"dev@{tenant.slug}.test", "developer")
    add_member(alice, "both@shared.test", "viewer")
    add_member(tenant, "both@shared.test", "admin")
    make_key(tenant, ["read"], name="doomed key")
    with tenant_context(tenant):
        usage_ingest(tenant=tenant, events=[{"id": "u1", "meter": "api_calls", "quantity": 3,
                                             "properties": {"user": "person@example.test"}}])
    connection.set_schema_to_public()
    payment_method_attach(tenant=tenant, gateway_id="pm_card_visa", actor=owner_principal(tenant))
    subscription = tenant.subscription
    invoice = invoice_draft(tenant=tenant, subscription=subscription, reason="manual",
                            period_start=subscription.current_period_start,
                            period_end=subscription.current_period_end,
                            lines=[LineDraft("adjustment", "Migration service", 9900)])
    invoice = invoice_finalize(invoice=invoice, actor="test", collect=False)
    payment_record_manual(invoice=invoice, amount_cents=9900, reference="WIRE-1",
                          received_on=clock.now(tenant).date(), actor="test")
    DataExport.objects.create(tenant=tenant, requested_by_label="test", token=secrets.token_hex(8),
                              expires_at=clock.wall_now())
    _cancel(tenant)
    return {"tenant": tenant, "databases": [own_db, schema_db, dedicated_db], "cluster": cluster,
            "invoice": invoice, "shared": shared_cluster}


def test_erasure_drops_databases_schema_and_people_and_keeps_invoices(
        doomed, alice, django_capture_on_commit_callbacks):
    tenant, shared = doomed["tenant"], doomed["shared"]
    own_db, schema_db, dedicated_db = doomed["databases"]
    for database in doomed["databases"]:
        assert role_exists(shared, database.role_name)
    assert _database_exists(shared, own_db.db_name) and _database_exists(shared, dedicated_db.db_name)
    assert _schema_on_server(shared, schema_db.db_name, schema_db.schema_name)
    owner_id = User.objects.get(email=f"owner@{tenant.slug}.test").pk
    dev_id = User.objects.get(email=f"dev@{tenant.slug}.test").pk
    alice_members_before = sorted(Membership.objects.filter(tenant=alice).values_list("id", "role"))

    client = api_client(tenant.slug, jwt_for(tenant.slug, f"owner@{tenant.slug}.test"))
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post("/api/v1/erasure", {"confirm": tenant.slug}, format="json")
    assert response.status_code == 202, response.content
    assert response.json()["status"] == "scheduled"

    tenant.refresh_from_db()
    assert tenant.erased_at is not None and tenant.status == TenantStatus.CANCELLED
    # Customer databases are gone from the real server, roles included.
    for database in doomed["databases"]:
        assert not role_exists(shared, database.role_name), database.placement
    assert not _database_exists(shared, own_db.db_name)
    assert not _database_exists(shared, dedicated_db.db_name)
    assert not _schema_on_server(shared, schema_db.db_name, schema_db.schema_name)
    # The dedicated cluster was deleted through its own operation.
    cluster = Cluster.objects.get(pk=doomed["cluster"].pk)
    assert cluster.health in (Health.DELETING, Health.DELETED)
    assert Operation.objects.filter(cluster=cluster, kind="delete").exists()
    # The schema, the domain and the memberships are gone; the address answers nothing.
    assert not schema_exists(tenant.schema_name)
    assert not Domain.objects.filter(tenant=tenant).exists()
    assert not Membership.objects.filter(tenant=tenant).exists()
    assert_problem(api_client(tenant.slug).get("/api/v1/tenant"), 404, "unknown_host")
    # People in no other organisation are anonymised; the one also in alice is not.
    for user_id in (owner_id, dev_id):
        user = User.objects.get(pk=user_id)
        assert user.email == pseudonym(user_id) and user.full_name == ""
        assert not user.is_active and not user.has_usable_password()
    both = User.objects.get(email="both@shared.test")
    assert both.is_active and Membership.objects.filter(user=both, tenant=alice).exists()
    assert sorted(Membership.objects.filter(tenant=alice).values_list("id", "role")) == alice_members_before
    # Cards, raw usage and exports go; aggregates, invoices and payments stay.
    assert not PaymentMethod.objects.filter(tenant=tenant).exists()
    assert not UsageEvent.objects.filter(tenant_id=tenant.pk).exists()
    assert UsageAggregate.objects.filter(tenant_id=tenant.pk).exists()
    assert not DataExport.objects.filter(tenant=tenant).exists()
    assert not ScheduledJob.objects.filter(tenant=tenant, status="pending").exists()
    invoice = Invoice.objects.get(pk=doomed["invoice"].pk)
    assert invoice.status == "paid" and invoice.total_cents == 9900
    assert Payment.objects.filter(invoice=invoice, reference="WIRE-1").exists()
    pdf = invoice_pdf(invoice, compress=False)
    assert pdf.startswith(b"%PDF") and tenant.name.encode() in pdf
    assert f"{tenant.slug}.aerolith.localhost".encode() in pdf
    # The audit trail stays, with the erased people's addresses replaced.
    rows = AuditEvent.objects.filter(tenant=tenant)
    text = " ".join(f"{r.actor_label} {r.before} {r.after}" for r in rows)
    assert f"owner@{tenant.slug}.test" not in text and f"dev@{tenant.slug}.test" not in text
    assert rows.filter(action="tenant.erasure_requested",
                       actor_label=f"user:{pseudonym(owner_id)}").exists()
    erased = rows.get(action="tenant.erased")
    assert erased.after["databases_dropped"] == 3 and erased.after["users_anonymised"] == 2
    assert schema_exists(alice.schema_name)


def test_erasure_is_refused_before_cancellation_and_changes_nothing(shared_cluster):
    tenant = _fresh("starter")
    client = api_client(tenant.slug, jwt_for(tenant.slug, f"owner@{tenant.slug}.test"))
    body = assert_problem(client.post("/api/v1/erasure", {"confirm": tenant.slug}, format="json"),
                          409, "not_cancelled")
    assert "cancel" in body["detail"]
    tenant.refresh_from_db()
    assert tenant.erasure_requested_at is None and tenant.erased_at is None
    assert schema_exists(tenant.schema_name)
    assert client.get("/api/v1/erasure").json()["status"] == "none"
    assert tenant_erase(tenant_id=tenant.pk) is None  # nothing was asked
    assert schema_exists(tenant.schema_name)


@pytest.mark.parametrize("body", [{}, {"confirm": ""}, {"confirm": "alice"}, {"confirm": 42},
                                  {"confirm": None}, {"confirm": "x" * 500}])
def test_the_confirmation_must_be_the_slug(body):
    tenant = _cancel(_fresh("starter"))
    client = api_client(tenant.slug, jwt_for(tenant.slug, f"owner@{tenant.slug}.test"))
    response = client.post("/api/v1/erasure", body, format="json")
    assert_problem(response, 400)
    assert any(e["field"] == "confirm" for e in response.json()["errors"])
    tenant.refresh_from_db()
    assert tenant.erasure_requested_at is None and schema_exists(tenant.schema_name)


@pytest.mark.parametrize("role", ["admin", "developer", "billing", "viewer"])
def test_only_owners_may_ask_for_erasure(role):
    tenant = _cancel(_fresh("starter"))
    email = f"{role}@{tenant.slug}.test"
    add_member(tenant, email, role)
    client = api_client(tenant.slug, jwt_for(tenant.slug, email))
    assert_problem(client.post("/api/v1/erasure", {"confirm": tenant.slug}, format="json"), 403)
    assert_problem(client.get("/api/v1/erasure"), 403)
    weak = api_client(tenant.slug, make_key(tenant, ["read", "members:write", "billing:write"]))
    assert_problem(weak.post("/api/v1/erasure", {"confirm": tenant.slug}, format="json"), 403,
                   "insufficient_scope")
    tenant.refresh_from_db()
    assert tenant.erasure_requested_at is None


def test_an_owner_scoped_key_may_ask_and_asking_twice_changes_nothing():
    tenant = _cancel(_fresh("starter"))
    client = api_client(tenant.slug, make_key(tenant, ["organization:owner"]))
    first = client.post("/api/v1/erasure", {"confirm": tenant.slug.upper()}, format="json")
    assert first.status_code == 202 and first.json()["status"] == "scheduled"
    second = client.post("/api/v1/erasure", {"confirm": tenant.slug}, format="json")
    assert second.status_code == 202
    assert AuditEvent.objects.filter(tenant=tenant, action="tenant.erasure_requested").count() == 1
    assert client.get("/api/v1/erasure").json()["status"] == "scheduled"


def test_other_organisations_cannot_ask_or_see(alice, bob, charlie):
    tenant = _cancel(_fresh("starter"))
    for credential in (jwt_for("bob", "owner@bob.test"), make_key(bob, ["organization:owner"])):
        foreign = api_client(tenant.slug, credential)
        expected = 401 if credential.startswith("ak_") else 404
        assert_problem(foreign.post("/api/v1/erasure", {"confirm": tenant.slug}, format="json"),
                       expected)
        assert_problem(foreign.get("/api/v1/erasure"), expected)
    charlie_view = api_client("charlie", jwt_for("charlie", "owner@charlie.test"))
    assert charlie_view.get("/api/v1/erasure").json()["status"] == "none"
    assert_problem(charlie_view.post("/api/v1/erasure", {"confirm": tenant.slug}, format="json"), 400)
    tenant.refresh_from_db()
    assert tenant.erasure_requested_at is None
    for session_tenant in (alice, bob, charlie):
        session_tenant.refresh_from_db()
        assert session_tenant.erasure_requested_at is None and session_tenant.erased_at is None


def test_a_tenant_back_from_cancellation_is_not_erased():
    tenant = _cancel(_fresh("starter"))
    erasure_request(tenant=tenant, actor="test", confirm=tenant.slug)  # the worker waits
    Tenant.objects.filter(pk=tenant.pk).update(status=TenantStatus.ACTIVE)
    assert tenant_erase(tenant_id=tenant.pk) is None
    tenant.refresh_from_db()
    assert tenant.erasure_requested_at is None and tenant.erased_at is None
    assert schema_exists(tenant.schema_name)
    assert AuditEvent.objects.filter(tenant=tenant, action="tenant.erasure_withdrawn").exists()


def test_erasing_twice_is_harmless(shared_cluster):
    tenant = _cancel(_fresh("starter"))
    erasure_request(tenant=tenant, actor="test", confirm=tenant.slug)
    assert tenant_erase(tenant_id=tenant.pk).users_anonymised == 1
    assert tenant_erase(tenant_id=tenant.pk) is None
    assert AuditEvent.objects.filter(tenant=tenant, action="tenant.erased").count() == 1
    assert_problem(api_client(tenant.slug).post("/api/v1/erasure", {"confirm": tenant.slug},
                                                format="json"), 404)


def test_the_audit_trail_stays_append_only_outside_redaction(alice):
    event = AuditEvent.objects.filter(tenant=alice).first()
    for statement in ("UPDATE tenants_auditevent SET actor_label = 'x' WHERE id = %s",
                      "DELETE FROM tenants_auditevent WHERE id = %s"):
        with pytest.raises(DatabaseError), transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(statement, [event.pk])
    # Even in a redaction, what happened and when cannot change, and nothing is deleted.
    for statement in ("UPDATE tenants_auditevent SET action = 'forged' WHERE id = %s",
                      "UPDATE tenants_auditevent SET occurred_at = now() WHERE id = %s",
                      "DELETE FROM tenants_auditevent WHERE id = %s"):
        with pytest.raises(DatabaseError), transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("SET LOCAL aerolith.audit_redaction = 'on'")
            cursor.execute(statement, [event.pk])
    assert AuditEvent.objects.get(pk=event.pk).action == event.action


# --- portal and staff console ---------------------------------------------------------------

def test_the_owner_erases_a_cancelled_organisation_in_the_portal(
        shared_cluster, django_capture_on_commit_callbacks):
    tenant = _fresh("starter")
    client = portal_user(tenant)
    page = client.get("/organization")
    assert b"after the subscription is cancelled" in page.content
    assert b"Erase everything" not in page.content
    refused = client.post("/organization/erasure", {"confirm": tenant.slug})
    assert refused.status_code == 400 and b"cancel it first" in refused.content
    _cancel(tenant)
    assert b"Erase everything" in client.get("/organization").content
    wrong = client.post("/organization/erasure", {"confirm": "nope"})
    assert wrong.status_code == 400 and tenant.slug.encode() in wrong.content
    tenant.refresh_from_db()
    assert tenant.erasure_requested_at is None
    with django_capture_on_commit_callbacks(execute=True):
        done = client.post("/organization/erasure", {"confirm": tenant.slug})
    assert done.status_code == 302
    tenant.refresh_from_db()
    assert tenant.erased_at is not None and not schema_exists(tenant.schema_name)


def test_a_developer_cannot_erase_in_the_portal():
    from tests.conftest import portal_member

    tenant = _cancel(_fresh("starter"))
    developer = portal_member(tenant, "developer")
    assert developer.post("/organization/erasure", {"confirm": tenant.slug}).status_code == 403
    tenant.refresh_from_db()
    assert tenant.erasure_requested_at is None


def test_staff_erase_a_cancelled_tenant_from_the_console_and_not_an_active_one(
        shared_cluster, alice, django_capture_on_commit_callbacks):
    cancelled, active = _cancel(_fresh("starter")), _fresh("starter")
    console = staff_client()
    with django_capture_on_commit_callbacks(execute=True):
        response = console.post("/admin/tenants/tenant/", {
            "action": "erase_data", "_selected_action": [cancelled.pk, active.pk]}, follow=True)
    text = response.content.decode()
    assert "scheduled the erasure of 1 tenant(s)" in text and "cancel it first" in text
    cancelled.refresh_from_db()
    active.refresh_from_db()
    assert cancelled.erased_at is not None and active.erasure_requested_at is None
    assert AuditEvent.objects.filter(tenant=cancelled, action="tenant.erasure_requested",
                                     actor_label="staff:ops@aerolith.test").exists()
    page = console.get(f"/admin/tenants/tenant/{cancelled.pk}/change/")
    assert page.status_code == 200 and b"Erased with the tenant" in page.content
    alice.refresh_from_db()
    assert alice.erased_at is None and schema_exists(alice.schema_name)
