"""Tenant webhooks (SPEC §8): events written to the outbox by real services are fanned out
to the tenant's endpoints and delivered to a real HTTP receiver with a signature that
verifies, retried with backoff on the tenant's clock, given up after three days,
redelivered by hand; filtered by type, never sent to disabled endpoints or other tenants;
the secret sealed at rest; bad input refused without changing anything."""
import json
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection, transaction
from django.test import override_settings
from django_tenants.utils import tenant_context

from aerolith import clock, crypto
from aerolith.errors import Conflict, ValidationFailed
from billing.services.subscriptions import subscription_change
from tenants.models import AuditEvent, OutboxEvent, ScheduledJob
from tenants.services.clocks import tenant_clock_advance, tenant_clock_attach
from tenants.services.events import event_emit
from tenants.services.webhook_delivery import (
    ATTEMPT_JOB,
    RETRY_WINDOW,
    delivery_attempt,
    next_attempt_at,
    outbox_fan_out,
    secret_context,
)
from tenants.services.webhooks import (
    delivery_redeliver,
    endpoint_create,
    endpoint_update,
)
from tenants.webhooks import signing, transport
from tenants.webhooks.models import WebhookDelivery, WebhookEndpoint
from tenants.webhooks.targets import TargetRefused, endpoint_url_check, resolve_checked
from tenants.webhooks.tasks import webhook_send, webhooks_dispatch
from tests.conftest import owner_principal
from tests.fakes.webhook_receiver import WebhookReceiver

# Pure tests use a fixed time; tests with a test clock start it now, so that the session
# tenants' own due work (trial reminders, trial end) stays days away.
T0 = datetime(2031, 3, 1, 12, 0, tzinfo=UTC)
State = WebhookDelivery.State


@pytest.fixture
def receiver():
    server = WebhookReceiver().start()
    yield server
    server.stop()


@pytest.fixture
def other_receiver():
    server = WebhookReceiver().start()
    yield server
    server.stop()


@pytest.fixture
def t0():
    return clock.wall_now().replace(microsecond=0)


@pytest.fixture(autouse=True)
def drained_outbox(db):
    """Events left by the session's signups are fanned out (to nobody) first, so a test
    sees only its own."""
    while outbox_fan_out():
        pass


def make_endpoint(tenant, url, **kwargs):
    with tenant_context(tenant):
        endpoint, secret = endpoint_create(principal=owner_principal(tenant), url=url, **kwargs)
    connection.set_schema_to_public()
    return endpoint, secret


def deliveries(tenant, **filters):
    with tenant_context(tenant):
        found = list(WebhookDelivery.objects.filter(**filters).order_by("id"))
    connection.set_schema_to_public()
    return found


def emit(tenant, type="cluster.scaled", payload=None):
    with transaction.atomic():
        return event_emit(tenant=tenant, type=type, payload=payload or {"cluster": "main",
                                                                      "nodes": 4})


def dispatch(capture):
    with capture(execute=True):
        return webhooks_dispatch()


def advance(tenant, seconds):
    tenant_clock_advance(tenant=tenant, actor="test", seconds=seconds)


# --- the retry schedule (pure) --------------------------------------------------------------

def test_retries_back_off_then_stop_three_days_after_the_first_attempt():
    times, failed_at, attempts = [], T0, 1
    while (retry := next_attempt_at(first_attempt_at=T0, failed_at=failed_at,
                                    attempts=attempts)) is not None:
        times.append(retry - T0)
        failed_at, attempts = retry, attempts + 1
    minutes = [int(t.total_seconds() // 60) for t in times]
    assert minutes[:6] == [1, 6, 36, 156, 456, 1056]  # +1 m, 5 m, 30 m, 2 h, 5 h, 10 h
    assert all(b - a == 600 for a, b in zip(minutes[5:-2], minutes[6:-1], strict=True))
    assert times[-1] == RETRY_WINDOW  # the last retry is made at the three-day mark
    assert len(times) == 12


# --- signatures ---------------------------------------------------------------------------

def test_a_signature_verifies_with_its_secret_only_and_only_while_fresh():
    body, secret = b'{"id":"evt_1","type":"invoice.paid"}', "whsec_test"
    header = signing.sign(body, secret, timestamp=1_900_000_000)
    assert signing.verify(body, header, secret, now=1_900_000_100) == 1_900_000_000
    assert signing.verify(body.decode(), header, secret, now=1_900_000_100)
    for bad_body, bad_secret, now in ((body + b" ", secret, 1_900_000_000),
                                      (body, "whsec_other", 1_900_000_000),
                                      (body, secret, 1_900_000_301)):
        with pytest.raises(signing.SignatureVerificationError):
            signing.verify(bad_body, header, bad_secret, now=now)
    for bad_header in ("", "t=abc,v1=00", "v1=" + "0" * 64, "t=1900000000"):
        with pytest.raises(signing.SignatureVerificationError):
            signing.verify(body, bad_header, secret, now=1_900_000_000)
    # During a secret change a header may carry two signatures; one match is enough.
    other = signing.sign(body, "whsec_old", timestamp=1_900_000_000).split(",")[1]
    assert signing.verify(body, f"{header},{other}", "whsec_old", now=1_900_000_000)


# --- which URLs and addresses -------------------------------------------------------------

@pytest.mark.parametrize("url", [
    "http://example.com/hooks",  # plain http
    "https://127.0.0.1/hooks", "https://10.0.0.5/", "https://192.168.1.1/",
    "https://169.254.169.254/latest/meta-data/", "https://[::1]/", "https://[fe80::1]/",
    "https://[::ffff:127.0.0.1]/", "https://100.64.0.1/", "https://0.0.0.0/",
    "https://localhost/", "https://alice.aerolith.localhost/", "https://intranet/",
    "https://2130706433/", "https://0x7f.1/", "https://user:pass@example.com/",
    "https://example.com/#frag", "ftp://example.com/", "https://", "example.com",
    "https://exa mple.com/", "https://example.com:99999/", "", " ", None, 5, "https://x.com/" + "a" * 2000,
])
def test_production_refuses_urls_that_are_not_public_https(url):
    with pytest.raises(TargetRefused):
        endpoint_url_check(url, test_mode=False)


def test_test_mode_allows_this_machine_and_nothing_more():
    for url in ("http://127.0.0.1:8080/hooks", "http://localhost:9/x", "http://a.localhost/",
                "https://[::1]:8443/", "https://hooks.example.com/aerolith"):
        assert endpoint_url_check(url, test_mode=True) == url
    for url in ("http://example.com/", "http://10.0.0.5/", "https://192.168.0.1/"):
        with pytest.raises(TargetRefused):
            endpoint_url_check(url, test_mode=True)
    assert endpoint_url_check("https://hooks.example.com/a?b=1", test_mode=False)


def test_a_send_in_production_never_reaches_a_private_address(receiver):
    result = transport.send(receiver.url, b"{}", {}, test_mode=False)
    assert not result.ok and result.status_code is None and "not a public address" in result.error
    with pytest.raises(TargetRefused):
        resolve_checked("localhost", 443, test_mode=False)
    assert receiver.requests == []


# --- delivery -----------------------------------------------------------------------------

@pytest.mark.django_db
def test_an_event_from_a_real_service_is_delivered_signed(alice, receiver,
                                                          django_capture_on_commit_callbacks):
    endpoint, secret = make_endpoint(alice, receiver.url, description="billing sync")
    subscription_change(tenant=alice, plan_code="professional", actor="test")
    outbox = OutboxEvent.objects.get(tenant=alice, type="subscription.updated",
                                     delivered_at__isnull=True)

    assert dispatch(django_capture_on_commit_callbacks) >= 1

    [request] = receiver.requests
    assert signing.verify(request.body, request.headers["Aerolith-Signature"], secret)
    body = json.loads(request.body)
    assert body["type"] == "subscription.updated" and body["data"]["plan"] == "professional"
    assert body["id"].startswith("evt_") and body["id"] != f"evt_{outbox.pk}"  # opaque
    assert body["created"] == int(outbox.created_at.timestamp())
    assert request.headers["Aerolith-Event-Id"] == body["id"]
    assert request.headers["Aerolith-Event-Type"] == "subscription.updated"
    assert request.headers["Content-Type"] == "application/json"
    [delivery] = deliveries(alice)
    assert (delivery.state, delivery.attempts, delivery.last_status_code) == (State.SUCCEEDED, 1, 200)
    assert delivery.delivered_at and delivery.next_attempt_at is None
    assert delivery.response_excerpt == '{"received": true}'
    outbox.refresh_from_db()
    assert outbox.delivered_at is not None
    # Sending it again (a duplicate Celery message, the backstop job) sends nothing.
    with tenant_context(alice):
        webhook_send(alice.pk, delivery.pk, 1)
    assert len(receiver.requests) == 1


@pytest.mark.django_db
def test_a_failing_endpoint_is_retried_with_backoff_on_the_tenants_clock(
        alice, t0, receiver, django_capture_on_commit_callbacks):
    tenant_clock_attach(tenant=alice, actor="test", at=t0)
    endpoint, secret = make_endpoint(alice, receiver.url)
    receiver.fail_next(2)
    emit(alice)
    dispatch(django_capture_on_commit_callbacks)

    [delivery] = deliveries(alice)
    assert (delivery.state, delivery.attempts, delivery.last_status_code) == (State.FAILED, 1, 500)
    assert delivery.first_attempt_at == t0 and delivery.next_attempt_at == t0 + timedelta(minutes=1)
    assert len(delivery.response_excerpt) <= transport.EXCERPT_BYTES
    assert "HTTP 500" in delivery.last_error
    assert ScheduledJob.objects.filter(tenant=alice, kind=ATTEMPT_JOB, key=f"{delivery.pk}:2",
                                       due_at=t0 + timedelta(minutes=1)).exists()

    advance(alice, 59)
    assert len(receiver.requests) == 1
    advance(alice, 1)  # attempt 2 at +1 min fails: next at +6 min
    [delivery] = deliveries(alice)
    assert (delivery.state, delivery.attempts) == (State.FAILED, 2)
    assert delivery.next_attempt_at == t0 + timedelta(minutes=6)
    advance(alice, 5 * 60)  # attempt 3 succeeds
    [delivery] = deliveries(alice)
    assert (delivery.state, delivery.attempts, delivery.last_status_code) == (State.SUCCEEDED, 3, 200)
    assert delivery.delivered_at == t0 + timedelta(minutes=6)
    assert [r.headers["Aerolith-Delivery-Attempt"] for r in receiver.requests] == ["1", "2", "3"]
    assert len({r.body for r in receiver.requests}) == 1  # the same event each time
    for request in receiver.requests:
        signing.verify(request.body, request.headers["Aerolith-Signature"], secret)
    advance(alice, 86400)  # later jobs of this delivery (backstop) send nothing more
    assert len(receiver.requests) == 3


@pytest.mark.django_db
def test_a_delivery_is_given_up_three_days_after_its_first_attempt_then_redelivered_by_hand(
        alice, t0, receiver, django_capture_on_commit_callbacks):
    tenant_clock_attach(tenant=alice, actor="test", at=t0)
    make_endpoint(alice, receiver.url)
    receiver.fail_next(1000, status=503)
    emit(alice)
    dispatch(django_capture_on_commit_callbacks)
    advance(alice, 4 * 86400)

    [delivery] = deliveries(alice)
    assert delivery.state == State.GIVEN_UP and delivery.next_attempt_at is None
    assert delivery.attempts == 13 == len(receiver.requests)  # the first and 12 retries
    assert delivery.last_attempt_at == t0 + RETRY_WINDOW

    receiver._failures.clear()
    with tenant_context(alice), django_capture_on_commit_callbacks(execute=True):
        delivery_redeliver(principal=owner_principal(alice), delivery_id=delivery.pk)
    [delivery] = deliveries(alice)
    assert (delivery.state, delivery.attempts, delivery.last_status_code) == (State.SUCCEEDED, 14, 200)
    assert receiver.requests[-1].headers["Aerolith-Delivery-Attempt"] == "14"
    assert AuditEvent.objects.filter(tenant=alice, action="webhook_delivery.redelivered").exists()


@pytest.mark.django_db
def test_a_manual_redelivery_that_fails_after_the_window_is_given_up_at_once(
        alice, t0, receiver, django_capture_on_commit_callbacks):
    tenant_clock_attach(tenant=alice, actor="test", at=t0)
    make_endpoint(alice, receiver.url)
    emit(alice)
    dispatch(django_capture_on_commit_callbacks)
    advance(alice, 5 * 86400)
    receiver.fail_next(1)
    [delivery] = deliveries(alice)
    with tenant_context(alice), django_capture_on_commit_callbacks(execute=True):
        delivery_redeliver(principal=owner_principal(alice), delivery_id=delivery.pk)
    [delivery] = deliveries(alice)
    assert (delivery.state, delivery.attempts, delivery.last_status_code) == (State.GIVEN_UP, 2, 500)
    assert len(receiver.requests) == 2


@pytest.mark.django_db
def test_endpoints_get_only_the_event_types_they_subscribed_to(
        alice, receiver, other_receiver, django_capture_on_commit_callbacks):
    make_endpoint(alice, receiver.url, events=["invoice.paid"])
    make_endpoint(alice, other_receiver.url, events=[])
    emit(alice, "cluster.scaled")
    emit(alice, "invoice.paid", {"number": "AER-2031-000001"})
    dispatch(django_capture_on_commit_callbacks)
    assert [json.loads(r.body)["type"] for r in receiver.requests] == ["invoice.paid"]
    assert sorted(json.loads(r.body)["type"] for r in other_receiver.requests) == [
        "cluster.scaled", "invoice.paid"]


@pytest.mark.django_db
def test_a_disabled_endpoint_gets_nothing(alice, t0, receiver, django_capture_on_commit_callbacks):
    endpoint, _ = make_endpoint(alice, receiver.url, enabled=False)
    emit(alice)
    dispatch(django_capture_on_commit_callbacks)
    assert receiver.requests == [] and deliveries(alice) == []

    # Disabled between a failure and its retry: the retry is not sent, the delivery is
    # given up, and redelivery is refused until the endpoint is enabled again.
    tenant_clock_attach(tenant=alice, actor="test", at=t0)
    with tenant_context(alice):
        endpoint_update(principal=owner_principal(alice), endpoint_id=endpoint.pk,
                        changes={"enabled": True})
    receiver.fail_next(1)
    emit(alice)
    dispatch(django_capture_on_commit_callbacks)
    with tenant_context(alice):
        updated = endpoint_update(principal=owner_principal(alice), endpoint_id=endpoint.pk,
                                  changes={"enabled": False, "disabled_reason": "maintenance"})
    assert updated.disabled_reason == "maintenance"
    advance(alice, 3600)
    [delivery] = deliveries(alice)
    assert delivery.state == State.GIVEN_UP and "disabled" in delivery.last_error
    assert len(receiver.requests) == 1
    with tenant_context(alice), pytest.raises(Conflict):
        delivery_redeliver(principal=owner_principal(alice), delivery_id=delivery.pk)


@pytest.mark.django_db
def test_bob_never_receives_alices_events(alice, bob, charlie, receiver, other_receiver,
                                           django_capture_on_commit_callbacks):
    make_endpoint(alice, receiver.url)
    make_endpoint(bob, other_receiver.url)
    emit(alice, "invoice.paid", {"number": "AER-ALICE"})
    dispatch(django_capture_on_commit_callbacks)
    assert len(receiver.requests) == 1 and other_receiver.requests == []
    assert deliveries(bob) == [] and deliveries(charlie) == []
    emit(bob, "invoice.paid", {"number": "AER-BOB"})
    dispatch(django_capture_on_commit_callbacks)
    assert json.loads(other_receiver.requests[0].body)["data"] == {"number": "AER-BOB"}
    assert len(receiver.requests) == 1


@pytest.mark.django_db
def test_an_event_of_a_tenant_without_endpoints_is_marked_fanned_out(
        charlie, django_capture_on_commit_callbacks):
    event = emit(charlie)
    dispatch(django_capture_on_commit_callbacks)
    event.refresh_from_db()
    assert event.delivered_at is not None and deliveries(charlie) == []


@pytest.mark.django_db
def test_a_redirect_is_a_failure_and_is_not_followed(alice, receiver,
                                                     django_capture_on_commit_callbacks):
    make_endpoint(alice, receiver.url)
    receiver.fail_next(1, status=302)
    emit(alice)
    dispatch(django_capture_on_commit_callbacks)
    [delivery] = deliveries(alice)
    assert delivery.state == State.FAILED and delivery.last_status_code == 302
    assert "redirects are not followed" in delivery.last_error
    assert len(receiver.requests) == 1


@pytest.mark.django_db
def test_an_unreachable_endpoint_is_a_failure_with_a_reason(alice, django_capture_on_commit_callbacks):
    make_endpoint(alice, "http://127.0.0.1:9/nobody-listens")
    emit(alice)
    dispatch(django_capture_on_commit_callbacks)
    [delivery] = deliveries(alice)
    assert delivery.state == State.FAILED and delivery.last_status_code is None
    assert delivery.last_error.startswith("Could not connect")


@pytest.mark.django_db
def test_an_attempt_already_made_is_not_made_again(alice, receiver,
                                                   django_capture_on_commit_callbacks):
    make_endpoint(alice, receiver.url)
    emit(alice)
    dispatch(django_capture_on_commit_callbacks)
    [delivery] = deliveries(alice)
    with tenant_context(alice):
        for _ in range(3):
            delivery_attempt(tenant=alice, delivery_id=delivery.pk, attempt=1)
        delivery_attempt(tenant=alice, delivery_id=10**12, attempt=1)  # gone: nothing
    assert len(receiver.requests) == 1
    assert dispatch(django_capture_on_commit_callbacks) == 0  # fanned out once


@pytest.mark.django_db
def test_the_secret_is_shown_once_and_sealed_at_rest(alice, receiver):
    endpoint, secret = make_endpoint(alice, receiver.url)
    assert secret.startswith("whsec_") and len(secret) > 40
    with tenant_context(alice), connection.cursor() as cursor:
        cursor.execute("SELECT row_to_json(e)::text FROM tenants_webhookendpoint e WHERE id = %s",
                       [endpoint.pk])
        [row] = cursor.fetchone()
    connection.set_schema_to_public()
    assert secret not in row and secret[6:] not in row
    sealed = json.loads(row)["secret_sealed"]
    assert crypto.decrypt(sealed, context=secret_context(alice.pk, endpoint.pk)).decode() == secret
    with pytest.raises(crypto.SecretDecryptionFailed):
        crypto.decrypt(sealed, context=secret_context(alice.pk, endpoint.pk + 1))
    trail = json.dumps(list(AuditEvent.objects.filter(tenant=alice).values("before", "after")))
    assert secret not in trail


@pytest.mark.django_db
def test_bad_input_is_refused_and_changes_nothing(alice):
    principal = owner_principal(alice)
    with tenant_context(alice):
        audits = AuditEvent.objects.count()
        cases = [({"url": "http://hooks.example.com/"}, "url", True),
                 ({"url": "https://10.1.2.3/"}, "url", False),
                 ({"url": "https://hooks.example.com/", "events": ["invoice.exploded"]},
                  "events", True),
                 ({"url": "https://hooks.example.com/", "events": "invoice.paid"}, "events", True),
                 ({"url": "not a url"}, "url", True),
                 ({"url": "https://hooks.example.com/", "description": "x" * 201},
                  "description", True),
                 ({"url": "https://hooks.example.com/", "enabled": "yes"}, "enabled", True)]
        for kwargs, field, production in cases:
            with override_settings(AEROLITH_TEST_MODE=not production), \
                    pytest.raises(ValidationFailed) as refused:
                endpoint_create(principal=principal, **kwargs)
            assert field in refused.value.errors, (kwargs, refused.value.errors)
        assert WebhookEndpoint.objects.count() == 0 and AuditEvent.objects.count() == audits

        for number in range(10):
            endpoint_create(principal=principal, url=f"https://hooks{number}.example.com/")
        with pytest.raises(ValidationFailed) as refused:
            endpoint_create(principal=principal, url="https://one-too-many.example.com/")
        assert refused.value.errors["url"][0][0] == "too_many_endpoints"
        assert WebhookEndpoint.objects.count() == 10

        endpoint = WebhookEndpoint.objects.first()
        before = (endpoint.url, endpoint.event_types, endpoint.enabled)
        with pytest.raises(ValidationFailed) as refused:
            endpoint_update(principal=principal, endpoint_id=endpoint.pk,
                            changes={"url": "ftp://x", "events": ["nope"], "enabled": 1,
                                     "secret": "mine"})
        assert set(refused.value.errors) == {"url", "events", "enabled", "secret"}
        endpoint.refresh_from_db()
        assert (endpoint.url, endpoint.event_types, endpoint.enabled) == before
