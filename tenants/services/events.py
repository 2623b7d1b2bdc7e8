"""Tenant events for webhooks, written to the outbox inside the caller's transaction."""
from ..models import OutboxEvent, Tenant


def event_emit(*, tenant: Tenant, type: str, payload: dict) -> OutboxEvent:
    return OutboxEvent.objects.create(tenant=tenant, type=type, payload=payload)


def event_emit_many(events: list[tuple[Tenant, str, dict]]) -> None:
    """Several (tenant, type, payload) events in one statement."""
    OutboxEvent.objects.bulk_create([OutboxEvent(tenant=t, type=k, payload=p) for t, k, p in events])
