"""Delivering the outbox to tenants' webhook endpoints (SPEC §8).

1. Fan-out (`outbox_fan_out`, beat every few seconds): undelivered outbox events are taken
   in id order with `FOR UPDATE SKIP LOCKED`, so two dispatchers never take the same one;
   each becomes one WebhookDelivery per enabled endpoint of its tenant that wants its type
   (in the tenant's schema), and the event is marked `delivered_at` — "fanned out", in the
   same transaction. After commit, a Celery task per delivery makes its first attempt.
2. An attempt (`delivery_attempt`) locks the delivery row for the duration of the request,
   so the same attempt can never be sent twice at once: every path (the Celery task, the
   backstop job, a retry, a manual redelivery) names the attempt number it wants to make,
   and a second caller finds it already made once the lock is free.
3. A failed attempt (no 2xx, a timeout, a refused address) schedules the next one through
   the tenant's due work (tenants.services.scheduling, kind `webhooks.attempt`) after 1 min,
   5 min, 30 min, 2 h, 5 h, then every 10 h, until three days after the first attempt (the
   last retry is made at exactly that moment); then the delivery is given up.

Times. Attempt times, `next_attempt_at` and the three-day window follow the tenant's clock
(`clock.now(tenant)`), and retries are due work: advancing a test clock makes the retries
happen in order at their simulated times, as every other periodic job does (SPEC §9). The
signature's timestamp is the real time (signing.py), since receivers check it against
their own clock.

Every job is also a backstop: fan-out schedules the first attempt as due work two minutes
on, so a lost Celery message (worker crash, Redis restart) delays an event, never loses it.
Delivery is at least once — a worker dying after the receiver answered 2xx but before the
commit sends that attempt again — so receivers deduplicate on Aerolith-Event-Id.
"""
import json
import logging
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.utils.crypto import salted_hmac
from django_tenants.utils import tenant_context

from aerolith import clock, crypto

from ..models import OutboxEvent, Tenant
from ..webhooks import signing, transport
from ..webhooks.models import WebhookDelivery, WebhookEndpoint
from .scheduling import job_handler, job_schedule, job_schedule_many

logger = logging.getLogger(__name__)

ATTEMPT_JOB = "webhooks.attempt"
RETRY_DELAYS = (timedelta(minutes=1), timedelta(minutes=5), timedelta(minutes=30),
                timedelta(hours=2), timedelta(hours=5), timedelta(hours=10))
RETRY_WINDOW = timedelta(days=3)
BACKSTOP = timedelta(minutes=2)
FAN_OUT_BATCH = 200
FINAL = (WebhookDelivery.State.SUCCEEDED, WebhookDelivery.State.GIVEN_UP)


def secret_context(tenant_id: int, endpoint_id: int) -> str:
    return f"webhook:{tenant_id}:{endpoint_id}"


def event_id_for(outbox_event_id: int) -> str:
    """A stable, opaque id for an outbox event: receivers deduplicate on it, and it does not
    reveal how many events all tenants together have produced (the outbox id would)."""
    digest = salted_hmac("aerolith.webhooks.event-id", str(outbox_event_id), algorithm="sha256")
    return f"evt_{digest.hexdigest()[:24]}"


def next_attempt_at(*, first_attempt_at: datetime, failed_at: datetime,
                    attempts: int) -> datetime | None:
    """When to try again after the `attempts`-th attempt failed at `failed_at`, or None
    when the three-day window is over. Pure, for tests with plain values."""
    deadline = first_attempt_at + RETRY_WINDOW
    if failed_at >= deadline:
        return None
    delay = RETRY_DELAYS[min(attempts, len(RETRY_DELAYS)) - 1]
    return min(failed_at + delay, deadline)


def event_body(delivery: WebhookDelivery) -> bytes:
    """The request body: the same bytes for every attempt of a delivery."""
    return json.dumps({
        "id": delivery.event_id,
        "type": delivery.event_type,
        "created": int(delivery.event_created_at.timestamp()),
        "data": delivery.payload,
    }, separators=(",", ":"), ensure_ascii=False).encode()


# --- fan-out ------------------------------------------------------------------------------

def outbox_fan_out(*, limit: int = FAN_OUT_BATCH) -> int:
    """Fan out up to `limit` undelivered outbox events; returns how many were taken (0
    when the outbox is empty or every waiting event is being fanned out by another worker)."""
    with transaction.atomic():
        events = list(OutboxEvent.objects.select_for_update(skip_locked=True, of=("self",))
                      .filter(delivered_at__isnull=True).select_related("tenant")
                      .order_by("id")[:limit])
        if not events:
            return 0
        by_tenant: dict[int, list[OutboxEvent]] = {}
        for event in events:
            by_tenant.setdefault(event.tenant_id, []).append(event)
        for group in by_tenant.values():
            tenant = group[0].tenant
            try:
                with transaction.atomic(), tenant_context(tenant):
                    _fan_out_tenant(tenant, group)
            except Exception:  # noqa: BLE001 - one broken tenant must not block the queue
                # An event that cannot be fanned out now (its schema is gone) would stay at
                # the head of the queue forever; it is dropped, loudly.
                logger.exception("Webhook fan-out failed for tenant %s; dropping events %s",
                                 tenant.pk, [e.pk for e in group])
        OutboxEvent.objects.filter(pk__in=[e.pk for e in events]).update(
            delivered_at=clock.wall_now())
    return len(events)


def _fan_out_tenant(tenant: Tenant, events: list[OutboxEvent]) -> None:
    endpoints = list(WebhookEndpoint.objects.filter(enabled=True))
    if not endpoints:
        return
    now = clock.now(tenant)
    rows = [
        WebhookDelivery(endpoint=endpoint, outbox_event_id=event.pk,
                        event_id=event_id_for(event.pk), event_type=event.type,
                        event_created_at=event.created_at, payload=event.payload,
                        next_attempt_at=now, created_at=now)
        for event in events for endpoint in endpoints if endpoint.wants(event.type)
    ]
    if not rows:
        return
    # The unique (endpoint, outbox event) pair makes a second fan-out of an event a no-op.
    WebhookDelivery.objects.bulk_create(rows, ignore_conflicts=True)
    fresh = list(WebhookDelivery.objects.filter(
        outbox_event_id__in=[e.pk for e in events], attempts=0,
        state=WebhookDelivery.State.PENDING).values_list("pk", flat=True))
    job_schedule_many([(tenant, ATTEMPT_JOB, f"{pk}:1", now + BACKSTOP,
                        {"delivery_id": pk, "attempt": 1}) for pk in fresh])
    for pk in fresh:
        _send_after_commit(tenant, pk, 1)


def _send_after_commit(tenant: Tenant, delivery_id: int, attempt: int) -> None:
    from ..webhooks.tasks import webhook_send  # the task module imports this one

    transaction.on_commit(lambda: webhook_send.delay(tenant.pk, delivery_id, attempt), robust=True)


def attempt_queue(*, tenant: Tenant, delivery: WebhookDelivery, attempt: int,
                  at: datetime) -> None:
    """Make `attempt` at `at`: a job (the retry itself, or the backstop of an immediate
    send); when `at` is now, also a Celery task right after commit."""
    now = clock.now(tenant)
    job_schedule(tenant=tenant, kind=ATTEMPT_JOB, key=f"{delivery.pk}:{attempt}",
                 due_at=at if at > now else now + BACKSTOP,
                 payload={"delivery_id": delivery.pk, "attempt": attempt})
    if at <= now:
        _send_after_commit(tenant, delivery.pk, attempt)


# --- attempts -----------------------------------------------------------------------------

def delivery_attempt(*, tenant: Tenant, delivery_id: int, attempt: int) -> WebhookDelivery | None:
    """Make the `attempt`-th attempt of a delivery in the current tenant schema, unless it
    was made already, the delivery is settled, or it no longer exists. Never raises for
    what the endpoint does; the outcome is recorded on the delivery."""
    with transaction.atomic():
        # Held for the request: a concurrent caller for the same attempt waits, then finds
        # it made (attempts >= attempt) instead of sending it again.
        delivery = (WebhookDelivery.objects.select_for_update(of=("self",))
                    .select_related("endpoint").filter(pk=delivery_id).first())
        if delivery is None or delivery.state in FINAL or delivery.attempts >= attempt:
            return delivery
        endpoint = delivery.endpoint
        now = clock.now(tenant)
        if not endpoint.enabled:
            delivery.state = WebhookDelivery.State.GIVEN_UP
            delivery.next_attempt_at = None
            delivery.last_error = ("Not sent: the endpoint is disabled. Enable it and redeliver "
                                   "to send this event.")
            delivery.save(update_fields=["state", "next_attempt_at", "last_error"])
            return delivery
        result = _send(tenant, endpoint, delivery, attempt)
        _record(tenant, delivery, result, now)
    return delivery


def _send(tenant, endpoint, delivery, attempt) -> transport.SendResult:
    try:
        secret = crypto.decrypt(endpoint.secret_sealed,
                                context=secret_context(tenant.pk, endpoint.pk)).decode()
    except crypto.SecretBoxError as exc:
        return transport.SendResult(None, f"Not sent: the signing secret cannot be opened "
                                          f"({exc.__class__.__name__}); staff must check "
                                          "AEROLITH_SECRET_KEYS.", "", 0)
    body = event_body(delivery)
    headers = {
        "Content-Type": "application/json",
        signing.HEADER: signing.sign(body, secret, int(clock.wall_now().timestamp())),
        "Aerolith-Event-Id": delivery.event_id,
        "Aerolith-Event-Type": delivery.event_type,
        "Aerolith-Delivery-Attempt": str(attempt),
    }
    return transport.send(endpoint.url, body, headers, test_mode=settings.AEROLITH_TEST_MODE)


def _record(tenant: Tenant, delivery: WebhookDelivery, result: transport.SendResult,
            now: datetime) -> None:
    State = WebhookDelivery.State
    delivery.attempts += 1
    delivery.first_attempt_at = delivery.first_attempt_at or now
    delivery.last_attempt_at = now
    delivery.last_status_code = result.status_code
    delivery.last_error = result.error
    delivery.response_excerpt = result.excerpt
    delivery.last_duration_ms = result.duration_ms
    delivery.total_duration_ms += result.duration_ms
    if result.ok:
        delivery.state, delivery.delivered_at, delivery.next_attempt_at = State.SUCCEEDED, now, None
    else:
        retry_at = next_attempt_at(first_attempt_at=delivery.first_attempt_at, failed_at=now,
                                   attempts=delivery.attempts)
        delivery.next_attempt_at = retry_at
        if retry_at is None:
            delivery.state = State.GIVEN_UP
        else:
            delivery.state = State.FAILED
            attempt_queue(tenant=tenant, delivery=delivery, attempt=delivery.attempts + 1,
                          at=retry_at)
    delivery.save(update_fields=[
        "attempts", "first_attempt_at", "last_attempt_at", "last_status_code", "last_error",
        "response_excerpt", "last_duration_ms", "total_duration_ms", "state", "delivered_at",
        "next_attempt_at"])


@job_handler(ATTEMPT_JOB)
def _attempt_job(job) -> None:
    delivery_attempt(tenant=job.tenant, delivery_id=job.payload["delivery_id"],
                     attempt=job.payload["attempt"])
