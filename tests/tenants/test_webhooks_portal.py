"""The portal's webhooks page: list, add (the secret shown once), delete with confirmation,
enable/disable, delivery log with status, attempts and next retry, Redeliver; rights by
role; bad input shown on the form, changing nothing; nothing of alice's on charlie's or
bob's domain."""
import pytest
from django.db import connection, transaction
from django.test import override_settings
from django_tenants.utils import tenant_context

from tenants.services.events import event_emit
from tenants.services.webhook_delivery import outbox_fan_out
from tenants.webhooks.models import WebhookDelivery, WebhookEndpoint
from tenants.webhooks.tasks import webhooks_dispatch
from tests.conftest import host_of, portal_member, portal_user
from tests.fakes.webhook_receiver import WebhookReceiver


@pytest.fixture
def receiver():
    server = WebhookReceiver().start()
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def drained_outbox(db):
    while outbox_fan_out():
        pass


def endpoints(tenant) -> list[WebhookEndpoint]:
    with tenant_context(tenant):
        found = list(WebhookEndpoint.objects.all())
    connection.set_schema_to_public()
    return found


def add(client, url, events=()):
    return client.post("/webhooks/new", {"url": url, "description": "", "events": list(events)})


@pytest.mark.django_db
def test_an_owner_adds_an_endpoint_and_sees_its_secret_once(alice):
    client = portal_user(alice)
    page = client.get("/webhooks")
    assert page.status_code == 200 and b'action="/webhooks/new"' in page.content
    assert b'href="/webhooks"' in page.content  # the nav link

    response = add(client, "https://hooks.example.com/aerolith", ["invoice.paid"])
    assert response.status_code == 201, response.content
    [endpoint] = endpoints(alice)
    secret = response.content.decode().split('id="webhook-secret">')[1].split("<")[0]
    assert secret.startswith("whsec_") and "no-store" in response["Cache-Control"]
    listing = client.get("/webhooks").content.decode()
    assert "https://hooks.example.com/aerolith" in listing and secret not in listing
    assert endpoint.secret_hint in listing and "invoice.paid" in listing
    assert secret not in client.get(f"/webhooks/{endpoint.pk}").content.decode()


@pytest.mark.django_db
def test_the_delivery_log_shows_state_attempts_and_next_retry_and_redelivers(
        alice, receiver, django_capture_on_commit_callbacks):
    client = portal_user(alice)
    add(client, receiver.url)
    [endpoint] = endpoints(alice)
    receiver.fail_next(1, status=500)
    with transaction.atomic():
        event_emit(tenant=alice, type="cluster.scaled", payload={"cluster": "main", "nodes": 5})
    with django_capture_on_commit_callbacks(execute=True):
        webhooks_dispatch()

    page = client.get(f"/webhooks/{endpoint.pk}").content.decode()
    assert "cluster.scaled" in page and "Failed, retrying" in page and "HTTP 500" in page
    with tenant_context(alice):
        delivery = WebhookDelivery.objects.get()
    connection.set_schema_to_public()
    assert f"{delivery.next_attempt_at:%H:%M:%S}" in page and "Redeliver" in page

    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(f"/webhooks/deliveries/{delivery.pk}/redeliver")
    assert response.status_code == 302 and response["Location"] == f"/webhooks/{endpoint.pk}"
    assert len(receiver.requests) == 2
    page = client.get(f"/webhooks/{endpoint.pk}").content.decode()
    assert "Succeeded" in page and "HTTP 200" in page


@pytest.mark.django_db
def test_an_endpoint_is_disabled_then_deleted_after_confirmation(alice):
    client = portal_user(alice)
    add(client, "https://hooks.example.com/")
    [endpoint] = endpoints(alice)
    assert client.post(f"/webhooks/{endpoint.pk}/toggle").status_code == 302
    assert endpoints(alice)[0].enabled is False
    assert "Disabled" in client.get(f"/webhooks/{endpoint.pk}").content.decode()

    confirm = client.get(f"/webhooks/{endpoint.pk}/delete")
    assert confirm.status_code == 200 and b"cannot be undone" in confirm.content
    assert endpoints(alice) == [endpoint]
    response = client.post(f"/webhooks/{endpoint.pk}/delete")
    assert response.status_code == 302 and endpoints(alice) == []


@pytest.mark.django_db
@pytest.mark.parametrize("url, events, production, message", [
    ("http://hooks.example.com/", [], True, "Use https://"),
    ("https://10.0.0.1/", [], False, "private"),
    ("not a url", [], False, "spaces"),
    ("hooks.example.com/no-scheme", [], False, "full https:// URL"),
    ("https://hooks.example.com/", ["invoice.exploded"], False, "invoice.exploded"),
])
def test_bad_input_is_shown_on_the_form_and_changes_nothing(alice, url, events, production,
                                                            message):
    client = portal_user(alice)
    with override_settings(AEROLITH_TEST_MODE=not production):
        response = add(client, url, events)
    assert response.status_code == 400 and message in response.content.decode()
    assert endpoints(alice) == []


@pytest.mark.django_db
def test_the_eleventh_endpoint_is_refused(alice):
    client = portal_user(alice)
    for number in range(10):
        assert add(client, f"https://h{number}.example.com/").status_code == 201
    response = add(client, "https://h10.example.com/")
    assert response.status_code == 400 and "the most allowed" in response.content.decode()
    assert len(endpoints(alice)) == 10


@pytest.mark.django_db
def test_a_viewer_sees_the_log_but_cannot_change_anything(alice):
    add(portal_user(alice), "https://hooks.example.com/")
    [endpoint] = endpoints(alice)
    viewer = portal_member(alice, "viewer")
    page = viewer.get("/webhooks")
    assert page.status_code == 200 and b"https://hooks.example.com/" in page.content
    assert b'action="/webhooks/new"' not in page.content
    assert add(viewer, "https://mine.example.com/").status_code == 403
    assert viewer.post(f"/webhooks/{endpoint.pk}/toggle").status_code == 403
    assert viewer.post(f"/webhooks/{endpoint.pk}/delete").status_code == 403
    assert endpoints(alice) == [endpoint] and endpoints(alice)[0].enabled


@pytest.mark.django_db
def test_nothing_of_alices_webhooks_shows_on_bobs_or_charlies_portal(
        alice, bob, charlie, receiver, django_capture_on_commit_callbacks):
    add(portal_user(alice), receiver.url)
    [endpoint] = endpoints(alice)
    with transaction.atomic():
        event_emit(tenant=alice, type="invoice.paid", payload={"number": "AER-1"})
    with django_capture_on_commit_callbacks(execute=True):
        webhooks_dispatch()
    with tenant_context(alice):
        delivery = WebhookDelivery.objects.get()
    connection.set_schema_to_public()

    for tenant in (bob, charlie):
        client = portal_user(tenant)
        assert receiver.url.encode() not in client.get("/webhooks").content
        assert client.get(f"/webhooks/{endpoint.pk}").status_code == 404
        assert client.post(f"/webhooks/{endpoint.pk}/toggle").status_code == 404
        assert client.post(f"/webhooks/{endpoint.pk}/delete").status_code == 404
        assert client.post(f"/webhooks/deliveries/{delivery.pk}/redeliver").status_code == 404
    # alice's owner on charlie's domain: not a member there.
    stranger = portal_user(alice)
    stranger.defaults["HTTP_HOST"] = host_of("charlie")
    assert stranger.get("/webhooks").status_code == 404
    assert len(receiver.requests) == 1 and endpoints(alice)[0].enabled
    assert stranger.get("/webhooks/99999999999999999999").status_code == 404
