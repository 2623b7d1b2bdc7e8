"""Stripe's webhook events: verified, stored by event id, processed once.

`stripe_event_receive` checks the signature (and its age: 300 s), keeps the event by its
id — a redelivery finds it and does nothing more — and processes it at once. Processing
holds the event's row lock, so two deliveries of one event never run together; a failing
handler rolls back its own work and leaves the event `failed` with the error, for a
redelivery or staff (the admin's retry) to run again. Handlers apply the state the event
carries through the card services, which ignore anything older than what they have.
"""
import logging

from django.db import DataError, IntegrityError, transaction

from aerolith import clock
from aerolith.errors import NotFound

from ..models import StripeCustomer, StripeEvent
from ..payments.stripe_gateway import WebhookRejected, intent_state_of, webhook_event
from . import cards

logger = logging.getLogger(__name__)
Status = StripeEvent.Status


class Ignored(Exception):
    """Nothing in this event concerns us; the message says why."""


def _payment_intent(intent: dict, created: int) -> str:
    metadata = intent.get("metadata") if isinstance(intent.get("metadata"), dict) else {}
    method = intent.get("payment_method")
    if not method:
        method = ((intent.get("last_payment_error") or {}).get("payment_method") or {}).get("id", "")
    if isinstance(method, dict):
        method = method.get("id", "")
    outcome = cards.charge_state_apply(state=intent_state_of(intent), at=created, metadata=metadata,
                                       payment_method_id=method or "")
    if outcome.startswith("no payment"):
        raise Ignored(outcome)
    return outcome


def _charge_refunded(charge: dict, created: int) -> str:
    outcome = cards.charge_refunds_apply(charge=charge, at=created)
    if outcome.startswith("no payment"):
        raise Ignored(outcome)
    return outcome


def _dispute(dispute: dict, created: int) -> str:
    outcome = cards.dispute_apply(dispute=dispute, at=created)
    if outcome.startswith("no payment"):
        raise Ignored(outcome)
    return outcome


def _tenant_of_customer(customer) -> object:
    if isinstance(customer, dict):
        customer = customer.get("id")
    row = (StripeCustomer.objects.select_related("tenant").filter(customer_id=customer).first()
           if isinstance(customer, str) and customer else None)
    if row is None:
        raise Ignored(f"customer {customer!r} is not one of ours")
    return row.tenant


def _setup_intent_succeeded(intent: dict, created: int) -> str:
    tenant = _tenant_of_customer(intent.get("customer"))
    method = intent.get("payment_method")
    if isinstance(method, dict):
        method = method.get("id")
    if intent.get("status") != "succeeded" or not isinstance(method, str) or not method:
        raise Ignored("the setup intent saved no payment method")
    card, added = cards.card_attach_once(tenant=tenant, gateway_id=method, actor=cards.GATEWAY_ACTOR,
                                         unless_removed=True)
    return f"{tenant.slug}: card {card.pk} {_attached(card, added)}"


def _attached(card, added: bool) -> str:
    if added:
        return "attached"
    return "removed by the customer since" if card.detached_at else "already on file"


def _checkout_completed(session: dict, created: int) -> str:
    if session.get("mode") != "setup":
        raise Ignored(f"a Checkout session in {session.get('mode')} mode")
    tenant = _tenant_of_customer(session.get("customer"))
    session_id = session.get("id")
    try:
        card, added = cards.card_setup_complete(tenant=tenant, session_id=session_id,
                                                actor=cards.GATEWAY_ACTOR, unless_removed=True)
    except NotFound as error:
        raise Ignored(error.detail) from error
    return f"{tenant.slug}: card {card.pk} {_attached(card, added)}"


HANDLERS = {
    "payment_intent.succeeded": _payment_intent,
    "payment_intent.payment_failed": _payment_intent,
    "payment_intent.requires_action": _payment_intent,
    "payment_intent.processing": _payment_intent,
    "payment_intent.canceled": _payment_intent,
    "charge.refunded": _charge_refunded,
    "charge.dispute.created": _dispute,
    "charge.dispute.updated": _dispute,
    "charge.dispute.closed": _dispute,
    "charge.dispute.funds_withdrawn": _dispute,
    "charge.dispute.funds_reinstated": _dispute,
    "setup_intent.succeeded": _setup_intent_succeeded,
    "checkout.session.completed": _checkout_completed,
}


def stripe_event_receive(*, payload: bytes, signature: str | None) -> tuple[StripeEvent, bool]:
    """Verify, store and process one delivery. Returns the event and whether this delivery
    was a repeat of one already handled (then nothing was done). Raises WebhookRejected for
    a bad signature, a stale timestamp or a payload that is not an event (nothing stored)."""
    event = webhook_event(payload, signature)
    try:
        with transaction.atomic():
            row = StripeEvent.objects.create(
                event_id=event["id"], type=event["type"], created=event["created"],
                livemode=bool(event.get("livemode")), payload=event, received_at=clock.wall_now())
        repeat = False
    except IntegrityError:  # delivered before (or right now, by a concurrent delivery)
        row, repeat = StripeEvent.objects.get(event_id=event["id"]), True
    except DataError as error:  # e.g. a NUL character, which jsonb cannot hold
        raise WebhookRejected("The event cannot be stored as JSON.", code="malformed_event") from error
    if repeat and row.status in (Status.PROCESSED, Status.IGNORED):
        return row, True
    return stripe_event_process(event_pk=row.pk), repeat


def stripe_event_process(*, event_pk: int, retry: bool = False) -> StripeEvent:
    """Run the event's handler once: processed, ignored (not ours, or no handler) or failed
    with the error kept. An event already processed or ignored is left alone; `retry` (staff)
    runs a failed one again."""
    with transaction.atomic():
        row = StripeEvent.objects.select_for_update().get(pk=event_pk)
        if row.status in (Status.PROCESSED, Status.IGNORED):
            return row
        if retry and row.status != Status.FAILED:
            return row
        handler = HANDLERS.get(row.type)
        row.attempts += 1
        if handler is None:
            row.status, row.last_error = Status.IGNORED, f"No handler for {row.type}."
        else:
            try:
                with transaction.atomic():
                    data = row.payload["data"]["object"]
                    note = handler(data, row.created)
            except Ignored as reason:
                row.status, row.last_error = Status.IGNORED, str(reason)[:2000]
            except Exception as error:  # noqa: BLE001 - kept on the event for staff to retry
                logger.exception("Stripe event %s (%s) failed", row.event_id, row.type)
                row.status, row.last_error = Status.FAILED, f"{error.__class__.__name__}: {error}"[:2000]
            else:
                row.status, row.last_error = Status.PROCESSED, (note or "")[:2000]
        row.processed_at = clock.wall_now()
        row.save(update_fields=["status", "attempts", "last_error", "processed_at"])
    return row
