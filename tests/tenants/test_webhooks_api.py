"""The webhook API (SPEC §10): GET/POST /api/v1/webhook-endpoints, GET/PATCH/DELETE …/{id},
GET …/{id}/deliveries and POST /api/v1/webhook-deliveries/{id}/redeliver — with rights by
role and scope, bad input refused without change, and nothing of alice's reachable from
bob's or charlie's credentials or domains."""
import pytest
from django.db import connection, transaction
from django.test import override_settings
from django_tenants.utils import tenant_context

from tenants.models import AuditEvent
from tenants.services.events import event_emit
from tenants.services.webhook_delivery import outbox_fan_out
from tenants.webhooks.models import WebhookDelivery, WebhookEndpoint
from tenants.webhooks.tasks import webhooks_dispatch
from tests.conftest import add_member, api_client, assert_problem, jwt_for, make_key
from tests.fakes.webhook_receiver import WebhookReceiver

BASE = "/api/v1/webhook-endpoints"


@pytest.fixture
def receiver():
    server = WebhookReceiver().start()
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def drained_outbox(db):
    while outbox_fan_out():
        pass


def owner(slug):
    return api_client(slug, jwt_for(slug, f"owner@{slug}.test"))


def count_endpoints(tenant) -> int:
    with tenant_context(tenant):
        n = WebhookEndpoint.objects.count()
    connection.set_schema_to_public()
    return n


def delivered_endpoint(tenant, receiver, capture, events=2):
    """An endpoint of `tenant` with `events` delivered events; returns its API body."""
    created = owner(tenant.slug).post(BASE, {"url": receiver.url}, format="json").json()
    for number in range(events):
        with transaction.atomic():
            event_emit(tenant=tenant, type="invoice.paid", payload={"number": f"N-{number}"})
    with capture(execute=True):
        webhooks_dispatch()
    return created


@pytest.mark.django_db
def test_an_owner_registers_lists_changes_and_deletes_an_endpoint(alice):
    client = owner("alice")
    response = client.post(BASE, {"url": "https://hooks.example.com/aerolith",
                                  "description": "ERP", "events": ["invoice.paid"]},
                           format="json")
    assert response.status_code == 201, response.content
    created = response.json()
    assert created["secret"].startswith("whsec_") and created["secret_hint"] == created["secret"][:10]
    assert created["events"] == ["invoice.paid"] and created["enabled"] is True

    listed = client.get(BASE).json()
    assert [e["id"] for e in listed] == [created["id"]] and "secret" not in listed[0]
    assert "secret" not in client.get(f"{BASE}/{created['id']}").json()

    patched = client.patch(f"{BASE}/{created['id']}", {"enabled": False, "events": []},
                           format="json")
    assert patched.status_code == 200, patched.content
    assert patched.json()["enabled"] is False and patched.json()["events"] == []
    assert patched.json()["disabled_reason"].startswith("Disabled by user:owner@alice.test")
    enabled = client.patch(f"{BASE}/{created['id']}", {"enabled": True}, format="json").json()
    assert enabled["enabled"] is True and enabled["disabled_reason"] == ""

    assert client.delete(f"{BASE}/{created['id']}").status_code == 204
    assert_problem(client.get(f"{BASE}/{created['id']}"), 404, "not_found")
    actions = set(AuditEvent.objects.filter(tenant=alice, action__startswith="webhook_endpoint.")
                  .values_list("action", flat=True))
    assert actions == {"webhook_endpoint.created", "webhook_endpoint.updated",
                       "webhook_endpoint.deleted"}


@pytest.mark.django_db
def test_the_delivery_log_is_paginated_and_filtered_and_a_delivery_can_be_redelivered(
        alice, receiver, django_capture_on_commit_callbacks):
    endpoint = delivered_endpoint(alice, receiver, django_capture_on_commit_callbacks, events=3)
    client = owner("alice")
    page = client.get(f"{BASE}/{endpoint['id']}/deliveries?limit=2").json()
    assert len(page["results"]) == 2 and page["next"]
    first = page["results"][0]
    assert first["state"] == "succeeded" and first["attempts"] == 1
    assert first["last_status_code"] == 200 and first["payload"]["number"] == "N-2"
    rest = client.get(page["next"]).json()
    assert len(rest["results"]) == 1 and rest["next"] is None
    assert client.get(f"{BASE}/{endpoint['id']}/deliveries?state=failed").json()["results"] == []

    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(f"/api/v1/webhook-deliveries/{first['id']}/redeliver")
    assert response.status_code == 202, response.content
    assert len(receiver.requests) == 4
    assert receiver.requests[-1].headers["Aerolith-Event-Id"] == first["event_id"]
    again = client.get(f"{BASE}/{endpoint['id']}/deliveries?limit=1").json()["results"][0]
    assert again["attempts"] == 2 and again["state"] == "succeeded"


@pytest.mark.django_db
def test_reading_needs_view_and_changing_needs_the_api_keys_right(alice, receiver,
                                                                  django_capture_on_commit_callbacks):
    endpoint = delivered_endpoint(alice, receiver, django_capture_on_commit_callbacks, events=1)
    add_member(alice, "viewer@alice.test", "viewer")
    add_member(alice, "dev@alice.test", "developer")
    viewer = api_client("alice", jwt_for("alice", "viewer@alice.test"))
    assert viewer.get(BASE).status_code == 200
    delivery_id = viewer.get(f"{BASE}/{endpoint['id']}/deliveries").json()["results"][0]["id"]
    for method, path, body in (("post", BASE, {"url": "https://h.example.com/"}),
                               ("patch", f"{BASE}/{endpoint['id']}", {"enabled": False}),
                               ("delete", f"{BASE}/{endpoint['id']}", None),
                               ("post", f"/api/v1/webhook-deliveries/{delivery_id}/redeliver", None)):
        assert_problem(getattr(viewer, method)(path, body, format="json"), 403, "role_not_allowed")
        read_key = api_client("alice", make_key(alice, ["read"]))
        assert_problem(getattr(read_key, method)(path, body, format="json"), 403,
                       "insufficient_scope")
    assert len(receiver.requests) == 1 and count_endpoints(alice) == 1

    developer = api_client("alice", jwt_for("alice", "dev@alice.test"))
    assert developer.post(BASE, {"url": "https://dev.example.com/"}, format="json").status_code == 201
    key = api_client("alice", make_key(alice, ["read", "api_keys:write"]))
    assert key.post(BASE, {"url": "https://key.example.com/"}, format="json").status_code == 201


@pytest.mark.django_db
@pytest.mark.parametrize("body, field, production", [
    ({"url": "http://hooks.example.com/"}, "url", True),
    ({"url": "https://192.168.0.10/hooks"}, "url", False),
    ({"url": "https://169.254.169.254/"}, "url", False),
    ({"url": "not a url"}, "url", False),
    ({"url": 42}, "url", False),
    ({}, "url", False),
    ({"url": "https://hooks.example.com/", "events": ["invoice.exploded"]}, "events", False),
    ({"url": "https://hooks.example.com/", "events": "invoice.paid"}, "events", False),
    ({"url": "https://hooks.example.com/", "enabled": "yes"}, "enabled", False),
    ({"url": "https://hooks.example.com/", "description": "x" * 201}, "description", False),
    ({"url": "https://hooks.example.com/", "secret": "whsec_mine"}, "secret", False),
])
def test_bad_endpoints_are_refused_with_the_field_and_change_nothing(alice, body, field,
                                                                     production):
    client = owner("alice")
    audits = AuditEvent.objects.filter(tenant=alice).count()
    with override_settings(AEROLITH_TEST_MODE=not production):
        problem = assert_problem(client.post(BASE, body, format="json"), 400)
    assert field in {e["field"] for e in problem["errors"]}, problem
    assert count_endpoints(alice) == 0
    assert AuditEvent.objects.filter(tenant=alice).count() == audits


@pytest.mark.django_db
def test_other_bad_requests_are_refused_and_change_nothing(alice):
    client = owner("alice")
    assert_problem(client.post(BASE, [1, 2], format="json"), 400, "malformed_request")
    assert_problem(client.post(BASE, "{", content_type="application/json"), 400,
                   "malformed_request")
    for number in range(10):
        client.post(BASE, {"url": f"https://h{number}.example.com/"}, format="json")
    problem = assert_problem(client.post(BASE, {"url": "https://h.example.com/"}, format="json"),
                             400)
    assert problem["errors"][0]["code"] == "too_many_endpoints"
    assert count_endpoints(alice) == 10
    endpoint_id = client.get(BASE).json()[0]["id"]
    assert_problem(client.patch(f"{BASE}/{endpoint_id}", {"url": "ftp://x", "enabled": "no"},
                                format="json"), 400)
    assert_problem(client.patch(f"{BASE}/{endpoint_id}", {"id": 7}, format="json"), 400)
    assert client.get(f"{BASE}/{endpoint_id}").json()["url"] == "https://h0.example.com/"
    assert_problem(client.get(f"{BASE}/{endpoint_id}/deliveries?state=lost"), 400)
    assert_problem(client.get(f"{BASE}/{endpoint_id}/deliveries?cursor=zzz"), 400)
    assert_problem(client.get(f"{BASE}/{endpoint_id}/deliveries?limit=0"), 400)
    for bad in ("abc", "0", "-1", "99999999999999999999999", "999999"):
        assert_problem(client.get(f"{BASE}/{bad}"), 404)
        assert_problem(client.delete(f"{BASE}/{bad}"), 404)
        assert_problem(client.get(f"{BASE}/{bad}/deliveries"), 404)
        assert_problem(client.post(f"/api/v1/webhook-deliveries/{bad}/redeliver"), 404)
    assert count_endpoints(alice) == 10


@pytest.mark.django_db
def test_nothing_of_alices_webhooks_reaches_bob_or_charlie(alice, bob, charlie, receiver,
                                                           django_capture_on_commit_callbacks):
    endpoint = delivered_endpoint(alice, receiver, django_capture_on_commit_callbacks, events=1)
    with tenant_context(alice):
        delivery_id = WebhookDelivery.objects.get().pk
    connection.set_schema_to_public()
    for slug in ("bob", "charlie"):
        client = owner(slug)
        assert client.get(BASE).json() == []
        assert_problem(client.get(f"{BASE}/{endpoint['id']}"), 404)
        assert_problem(client.get(f"{BASE}/{endpoint['id']}/deliveries"), 404)
        assert_problem(client.patch(f"{BASE}/{endpoint['id']}", {"enabled": False},
                                    format="json"), 404)
        assert_problem(client.delete(f"{BASE}/{endpoint['id']}"), 404)
        assert_problem(client.post(f"/api/v1/webhook-deliveries/{delivery_id}/redeliver"), 404)
    # Credentials of bob or charlie on alice's domain get nothing either.
    for token in (jwt_for("bob", "owner@bob.test"), make_key(charlie, ["read", "api_keys:write"])):
        client = api_client("alice", token)
        assert client.get(BASE).status_code in (401, 404)
        assert client.post(BASE, {"url": "https://evil.example.com/"},
                           format="json").status_code in (401, 404)
    assert count_endpoints(alice) == 1 and count_endpoints(charlie) == 0
    assert len(receiver.requests) == 1
    with tenant_context(alice):
        assert WebhookEndpoint.objects.get().enabled
