"""Writing the audit trail. Every state-changing service calls `audit_record` inside its
own transaction, so the entry exists exactly when the change does."""
from django.contrib.auth.models import AnonymousUser

from aerolith import clock
from aerolith.logging import request_id_var

from ..models import AuditEvent, Tenant, User


def _actor(actor) -> tuple[User | None, str]:
    from ..permissions import Principal

    if actor is None or isinstance(actor, AnonymousUser):
        return None, "system"
    if isinstance(actor, str):
        return None, actor
    if isinstance(actor, Principal):
        return actor.user, actor.label
    if isinstance(actor, User):
        return actor, f"{'staff' if actor.is_staff else 'user'}:{actor.email}"
    raise TypeError(f"Unknown actor {actor!r}")


def actor_label(actor) -> str:
    """How an actor (a Principal, a User, a label, or None) is named in records such as
    `requested_by` or `actor_label` columns: the same text the audit trail uses."""
    return _actor(actor)[1]


def actor_identity(actor) -> tuple[User | None, str]:
    """The actor's user (None for keys and the system) and its label."""
    return _actor(actor)


def audit_entry(*, action: str, tenant: Tenant | None = None, actor=None, target=None,
                before: dict | None = None, after: dict | None = None) -> AuditEvent:
    """One entry, not yet saved (for audit_record_many)."""
    user, label = _actor(actor)
    return AuditEvent(
        occurred_at=clock.now(tenant),
        tenant=tenant,
        actor=user,
        actor_label=label[:200],
        action=action,
        target_type=target._meta.label_lower if target is not None else "",
        target_id=str(target.pk) if target is not None else "",
        before=before,
        after=after,
        request_id=request_id_var.get(),
    )


def audit_record(*, action: str, tenant: Tenant | None = None, actor=None, target=None,
                 before: dict | None = None, after: dict | None = None) -> AuditEvent:
    """Append one entry. `actor` is a Principal, a User, a label like "system", or None."""
    entry = audit_entry(action=action, tenant=tenant, actor=actor, target=target, before=before,
                        after=after)
    entry.save(force_insert=True)
    return entry


def audit_record_many(entries: list[AuditEvent]) -> None:
    """Append many entries in one statement (batch work such as month-end renewal)."""
    AuditEvent.objects.bulk_create(entries)
