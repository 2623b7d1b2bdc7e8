"""Data export (SPEC §8): an owner asks, a worker builds a zip of the organisation's data,
it downloads once and expires; non-owners, keys without the owner scope and other
organisations get nothing."""
import csv
import io
import json
import zipfile
from datetime import timedelta

import pytest
from django_tenants.utils import tenant_context

from aerolith import clock
from billing.decisions import LineDraft
from billing.services.collection import payment_method_attach, payment_record_manual
from billing.services.invoices import invoice_draft, invoice_finalize
from metering.services.ingest import usage_ingest
from tenants.models import AuditEvent, DataExport
from tenants.services.exports import export_path, exports_expire
from tests.conftest import (
    add_member,
    api_client,
    assert_problem,
    jwt_for,
    make_key,
    owner_principal,
    portal_user,
)

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def exports_dir(settings, tmp_path):
    settings.AEROLITH_EXPORTS_DIR = str(tmp_path / "exports")
    return tmp_path / "exports"


def _owner(slug: str):
    return api_client(slug, jwt_for(slug, f"owner@{slug}.test"))


def _request(client, capture):
    """Ask for an export and let the worker build it (the task is queued on commit)."""
    with capture(execute=True):
        response = client.post("/api/v1/exports")
    assert response.status_code == 202, response.content
    assert response.json()["status"] == "pending"
    return client.get(f"/api/v1/exports/{response.json()['id']}").json()


def _members(data: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        assert archive.testzip() is None
        return {name: archive.read(name) for name in archive.namelist()}


def _download(client, export_id, capture):
    with capture(execute=True):
        response = client.get(f"/api/v1/exports/{export_id}/download")
    return response


@pytest.fixture
def alice_world(alice, shared_cluster):
    """Alice with a developer, an API key, a customer database, usage, an invoice paid
    by bank transfer and a card on file."""
    from provisioning.services.databases import database_create

    add_member(alice, "dev@alice.test", "developer")
    secret = make_key(alice, ["read"], name="ci key")
    database, uri = database_create(tenant=alice, actor="test", name="shop")
    payment_method_attach(tenant=alice, gateway_id="pm_card_visa", actor=owner_principal(alice))
    with tenant_context(alice):
        usage_ingest(tenant=alice, events=[
            {"id": "e1", "meter": "api_calls", "quantity": 5},
            {"id": "e2", "meter": "api_calls", "quantity": 7}])
    subscription = alice.subscription
    invoice = invoice_draft(tenant=alice, subscription=subscription, reason="manual",
                            period_start=subscription.current_period_start,
                            period_end=subscription.current_period_end,
                            lines=[LineDraft("adjustment", "Consulting day", 4200)])
    invoice = invoice_finalize(invoice=invoice, actor="test", collect=False)
    payment_record_manual(invoice=invoice, amount_cents=4200, reference="BANK-REF-77",
                          received_on=clock.now(alice).date(), actor="test")
    password = uri.split("@")[0].rsplit(":", 1)[1]
    return {"secret": secret, "database": database, "password": password, "invoice": invoice}


def test_the_owner_gets_a_zip_of_the_organisations_data_once(
        alice, alice_world, exports_dir, django_capture_on_commit_callbacks):
    client = _owner("alice")
    created = _request(client, django_capture_on_commit_callbacks)
    assert created["status"] == "ready", created
    detail = client.get(f"/api/v1/exports/{created['id']}").json()
    assert detail["status"] == "ready" and detail["size_bytes"] > 0 and len(detail["sha256"]) == 64
    assert detail["download_url"].endswith(f"/api/v1/exports/{created['id']}/download")
    assert [e["id"] for e in client.get("/api/v1/exports").json()["results"]] == [created["id"]]

    response = _download(client, created["id"], django_capture_on_commit_callbacks)
    assert response.status_code == 200
    assert response["Content-Type"] == "application/zip"
    assert "alice-export-" in response["Content-Disposition"]
    files = _members(b"".join(response.streaming_content))

    organisation = json.loads(files["organisation.json"])
    assert organisation["tenant"]["slug"] == "alice" and organisation["domain"] == "alice.aerolith.localhost"
    assert organisation["subscription"]["plan"]["code"] == "starter"
    members = list(csv.DictReader(io.StringIO(files["members.csv"].decode())))
    assert {(m["email"], m["role"]) for m in members} >= {("owner@alice.test", "owner"),
                                                          ("dev@alice.test", "developer")}
    assert all(m["joined_at"] for m in members)
    assert json.loads(files["members.json"])[0]["email"] == "owner@alice.test"
    keys = json.loads(files["api_keys.json"])
    assert keys[0]["name"] == "ci key" and keys[0]["prefix"] in alice_world["secret"]
    databases = json.loads(files["databases.json"])
    assert [(d["name"], d["placement"]) for d in databases] == [("shop", "shared_schema")]
    assert json.loads(files["clusters.json"]) == []
    usage = list(csv.DictReader(io.StringIO(files["usage.csv"].decode())))
    calls = [row for row in usage if row["meter"] == "api_calls"]
    assert calls and sum(int(row["events"]) for row in calls) >= 2
    invoices = json.loads(files["invoices.json"])
    number = alice_world["invoice"].number
    assert [i["number"] for i in invoices] == [number]
    assert invoices[0]["status"] == "paid" and invoices[0]["lines"][0]["amount_cents"] == 4200
    assert files[f"invoices/{number}.pdf"].startswith(b"%PDF")
    payments = json.loads(files["payments.json"])
    assert payments[0]["method"] == "bank_transfer" and payments[0]["reference"] == "BANK-REF-77"
    actions = {e["action"] for e in json.loads(files["audit_log.json"])}
    assert {"tenant.signed_up", "database.create", "export.requested"} <= actions
    manifest = json.loads(files["manifest.json"])
    assert set(manifest["files"]) == set(files) - {"manifest.json"}

    # Secrets never travel: not the API key, not the database password, not sealed tokens.
    everything = b"\n".join(files.values())
    for secret in (alice_world["secret"], alice_world["secret"].split(".")[-1],
                   alice_world["password"], alice_world["database"].password_sealed):
        assert secret.encode() not in everything
    assert b"secret_hash" not in everything and b"password" not in everything

    # Once: the file is gone and a second download is 410 Gone.
    assert not export_path(DataExport.objects.get(pk=created["id"])).exists()
    again = _download(client, created["id"], django_capture_on_commit_callbacks)
    assert_problem(again, 410, "export_downloaded")
    assert client.get(f"/api/v1/exports/{created['id']}").json()["status"] == "downloaded"
    trail = list(AuditEvent.objects.filter(tenant=alice, target_type="tenants.dataexport")
                 .order_by("id").values_list("action", "actor_label"))
    assert trail == [("export.requested", "user:owner@alice.test"), ("export.built", "system"),
                     ("export.downloaded", "user:owner@alice.test")]


def test_an_export_not_downloaded_expires_and_its_file_is_removed(
        alice, django_capture_on_commit_callbacks):
    client = _owner("alice")
    created = _request(client, django_capture_on_commit_callbacks)
    export = DataExport.objects.get(pk=created["id"])
    assert export_path(export).exists()
    assert exports_expire(now=export.expires_at - timedelta(seconds=1)) == 0
    assert exports_expire(now=export.expires_at + timedelta(seconds=1)) == 1
    assert not export_path(export).exists()
    assert_problem(_download(client, export.pk, django_capture_on_commit_callbacks), 410,
                   "export_expired")
    assert AuditEvent.objects.filter(tenant=alice, action="export.expired").exists()
    assert exports_expire(now=export.expires_at + timedelta(days=1)) == 0  # once


def test_a_second_request_while_one_is_being_built_is_a_409(alice):
    client = _owner("alice")
    first = client.post("/api/v1/exports")  # no worker ran: still pending
    assert first.status_code == 202 and first.json()["status"] == "pending"
    assert_problem(client.post("/api/v1/exports"), 409, "export_in_progress")
    assert_problem(client.get(f"/api/v1/exports/{first.json()['id']}/download"), 409,
                   "export_not_ready")
    assert DataExport.objects.filter(tenant=alice).count() == 1


@pytest.mark.parametrize("role", ["admin", "developer", "billing", "viewer"])
def test_only_owners_may_export(alice, role, django_capture_on_commit_callbacks):
    email = f"{role}@alice.test"
    add_member(alice, email, role)
    client = api_client("alice", jwt_for("alice", email))
    assert_problem(client.post("/api/v1/exports"), 403, "role_not_allowed")
    assert_problem(client.get("/api/v1/exports"), 403, "role_not_allowed")
    created = _request(_owner("alice"), django_capture_on_commit_callbacks)
    assert_problem(client.get(f"/api/v1/exports/{created['id']}/download"), 403)
    assert DataExport.objects.get(pk=created["id"]).status == "ready"


def test_an_api_key_needs_the_owner_scope(alice, django_capture_on_commit_callbacks):
    everything_else = ["read", "databases:write", "api_keys:write", "billing:write",
                       "members:write"]
    weak = api_client("alice", make_key(alice, everything_else))
    assert_problem(weak.post("/api/v1/exports"), 403, "insufficient_scope")
    strong = api_client("alice", make_key(alice, ["organization:owner"]))
    created = _request(strong, django_capture_on_commit_callbacks)
    response = _download(strong, created["id"], django_capture_on_commit_callbacks)
    assert response.status_code == 200
    assert "organisation.json" in _members(b"".join(response.streaming_content))


def test_other_organisations_get_nothing(alice, bob, charlie, django_capture_on_commit_callbacks):
    created = _request(_owner("alice"), django_capture_on_commit_callbacks)
    export_id = created["id"]
    bob_key = make_key(bob, ["organization:owner", "read"])
    for credential in (jwt_for("bob", "owner@bob.test"), bob_key):
        on_alice = api_client("alice", credential)
        expected = 404 if credential != bob_key else 401
        for path in ("/api/v1/exports", f"/api/v1/exports/{export_id}",
                     f"/api/v1/exports/{export_id}/download"):
            assert_problem(on_alice.get(path), expected)
        assert_problem(on_alice.post("/api/v1/exports"), expected)
        on_bob = api_client("bob", credential)
        for path in (f"/api/v1/exports/{export_id}", f"/api/v1/exports/{export_id}/download"):
            assert_problem(on_bob.get(path), 404)
        assert on_bob.get("/api/v1/exports").json()["results"] == []
    assert _owner("charlie").get("/api/v1/exports").json()["results"] == []
    assert DataExport.objects.get(pk=export_id).status == "ready"
    assert not DataExport.objects.filter(tenant__in=[bob, charlie]).exists()


@pytest.mark.parametrize("path", ["/api/v1/exports/abc", "/api/v1/exports/-1",
                                  "/api/v1/exports/99999999999999999999",
                                  "/api/v1/exports/0/download", "/api/v1/exports/%00/download"])
def test_bad_ids_are_404_problems(alice, path):
    assert_problem(_owner("alice").get(path), 404)


@pytest.mark.parametrize("query, field", [("limit=0", "limit"), ("limit=x", "limit"),
                                          ("cursor=bogus", "cursor")])
def test_bad_paging_is_a_400_problem(alice, query, field):
    body = assert_problem(_owner("alice").get(f"/api/v1/exports?{query}"), 400)
    assert [e["field"] for e in body["errors"]] == [field]


def test_an_export_works_while_suspended_or_cancelled(alice, django_capture_on_commit_callbacks):
    from billing.services.subscriptions import subscription_cancel

    subscription_cancel(tenant=alice, at_period_end=False, actor="test")
    created = _request(_owner("alice"), django_capture_on_commit_callbacks)
    assert created["status"] == "ready"


# --- portal ---------------------------------------------------------------------------------

def test_the_owner_requests_and_downloads_an_export_in_the_portal(
        alice, django_capture_on_commit_callbacks):
    client = portal_user(alice)
    page = client.get("/organization")
    assert page.status_code == 200 and b"Request an export" in page.content
    assert b'href="/organization"' in client.get("/").content  # in the owner's navigation
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post("/organization/export")
    assert response.status_code == 302
    export = DataExport.objects.get(tenant=alice)
    page = client.get("/organization")
    link = f"/organization/exports/{export.pk}/download"
    assert link.encode() in page.content
    with django_capture_on_commit_callbacks(execute=True):
        download = client.get(link)
    assert download.status_code == 200
    assert "organisation.json" in _members(b"".join(download.streaming_content))
    again = client.get(link, follow=True)
    assert b"downloaded already" in again.content
    assert link.encode() not in client.get("/organization").content


def test_the_organisation_page_is_for_owners_of_this_organisation_only(alice, bob):
    from tests.conftest import portal_member

    developer = portal_member(alice, "developer")
    assert developer.get("/organization").status_code == 403
    assert developer.post("/organization/export").status_code == 403
    assert b'href="/organization"' not in developer.get("/").content
    outsider = portal_user(bob)
    outsider.defaults["HTTP_HOST"] = "alice.aerolith.localhost"
    assert outsider.get("/organization").status_code == 404
    assert outsider.post("/organization/export").status_code == 404
    assert not DataExport.objects.exists()
