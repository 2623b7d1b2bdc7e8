"""Tenant events for webhooks, written to the outbox inside the caller's transaction."""
from ..models import OutboxEvent, Tenant


def event_emit(*, tenant: Tenant, type: str, payload: dict) -> OutboxEvent:
    return OutboxEvent.objects.create(tenant=tenant, type=type, payload=payload)
