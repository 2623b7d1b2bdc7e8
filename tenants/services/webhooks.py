"""Webhook endpoints and manual redelivery (SPEC §8). Each service checks the principal's
right (developers and up: webhooks are integrations, managed by whoever manages API keys),
runs in one transaction in the current tenant's schema, audits what it changes, and
refuses bad input with every problem at once, changing nothing."""
import secrets

from django.conf import settings
from django.db import connection, transaction

from aerolith import clock, crypto
from aerolith.errors import Conflict, NotFound, ValidationFailed

from ..models import Tenant
from ..permissions import Action, Principal
from ..webhooks.models import EVENT_TYPES, WebhookDelivery, WebhookEndpoint
from ..webhooks.targets import TargetRefused, endpoint_url_check
from .audit import audit_record
from .webhook_delivery import attempt_queue, secret_context

SECRET_MARKER = "whsec_"  # nosec B105 - the public prefix of generated secrets
MAX_DESCRIPTION = 200
MAX_REASON = 200


def max_endpoints() -> int:
    return getattr(settings, "AEROLITH_WEBHOOK_MAX_ENDPOINTS", 10)


def _check_url(url, errors: dict) -> str | None:
    try:
        return endpoint_url_check(url, test_mode=settings.AEROLITH_TEST_MODE)
    except TargetRefused as exc:
        errors["url"] = [("invalid_url", str(exc))]
        return None


def _check_events(event_types, errors: dict) -> list[str] | None:
    if event_types is None:
        return []
    if not isinstance(event_types, list | tuple) or not all(isinstance(t, str) for t in event_types):
        errors["events"] = [("invalid", "Give a list of event types, or an empty list for all.")]
        return None
    unknown = sorted(set(event_types) - set(EVENT_TYPES))
    if unknown:
        errors["events"] = [("unknown_event_type", f"Unknown event types {unknown}; known types "
                             f"are {list(EVENT_TYPES)} (an empty list means all of them).")]
        return None
    return [t for t in EVENT_TYPES if t in set(event_types)]


def _check_text(value, field: str, limit: int, errors: dict) -> str | None:
    if not isinstance(value, str):
        errors[field] = [("invalid", "Give a text.")]
        return None
    value = value.strip()
    if len(value) > limit:
        errors[field] = [("too_long", f"Keep it to {limit} characters.")]
        return None
    return value


def _state(endpoint: WebhookEndpoint) -> dict:
    return {"url": endpoint.url, "description": endpoint.description,
            "events": list(endpoint.event_types), "enabled": endpoint.enabled}


def _lock_tenant_endpoints(tenant) -> None:
    """One endpoint change per tenant at a time, so two concurrent creates cannot both pass
    the count check. Advisory, keyed on the tenant: it locks no row anyone else needs."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(hashtext('aerolith.webhooks'), %s)",
                       [tenant.pk])


def endpoint_create(*, principal: Principal, url, description="", events=None,
                    enabled=True) -> tuple[WebhookEndpoint, str]:
    """Register an endpoint and return it with its signing secret (`whsec_…`), which is
    never available again: only its sealed form is stored. Raises ValidationFailed for a
    URL webhooks may not use (see tenants.webhooks.targets), unknown event types, a long
    description, or when the organisation already has the most endpoints allowed."""
    principal.require(Action.MANAGE_API_KEYS)
    tenant = principal.tenant
    errors: dict = {}
    url = _check_url(url, errors)
    event_types = _check_events(events, errors)
    description = _check_text(description if description is not None else "", "description",
                              MAX_DESCRIPTION, errors)
    if not isinstance(enabled, bool):
        errors["enabled"] = [("invalid", "Give true or false.")]
    if errors:
        raise ValidationFailed(errors)
    secret = SECRET_MARKER + secrets.token_urlsafe(32)
    with transaction.atomic():
        _lock_tenant_endpoints(tenant)
        if WebhookEndpoint.objects.count() >= max_endpoints():
            raise ValidationFailed({"url": [(
                "too_many_endpoints", f"This organisation already has {max_endpoints()} webhook "
                "endpoints, the most allowed. Delete one you no longer use, or subscribe one "
                "endpoint to more event types.")]})
        endpoint = WebhookEndpoint.objects.create(
            url=url, description=description, event_types=event_types, enabled=enabled,
            secret_sealed="", secret_hint=secret[:len(SECRET_MARKER) + 4],  # nosec B106 - sealed just below, once the row has its id
            created_by=principal.user, created_at=clock.now(tenant))
        # Sealed with the endpoint's id in the context: the token opens for this row only.
        endpoint.secret_sealed = crypto.encrypt(secret, context=secret_context(tenant.pk, endpoint.pk))
        endpoint.save(update_fields=["secret_sealed"])
        audit_record(action="webhook_endpoint.created", tenant=tenant, actor=principal,
                     target=endpoint, after=_state(endpoint))
    return endpoint, secret


def _endpoint_locked(endpoint_id) -> WebhookEndpoint:
    endpoint = WebhookEndpoint.objects.select_for_update().filter(pk=endpoint_id).first()
    if endpoint is None:
        raise NotFound(f"There is no webhook endpoint {endpoint_id} in this organisation.")
    return endpoint


def endpoint_update(*, principal: Principal, endpoint_id: int, changes: dict) -> WebhookEndpoint:
    """Change an endpoint's `enabled`, `events`, `url` or `description` (a disabled endpoint
    receives nothing; `disabled_reason` says why, set by who disabled it). Raises NotFound,
    or ValidationFailed listing every bad field."""
    principal.require(Action.MANAGE_API_KEYS)
    allowed = {"enabled", "events", "url", "description", "disabled_reason"}
    errors: dict = {field: [("unknown_field", f"'{field}' cannot be changed; change "
                             f"{sorted(allowed - {'disabled_reason'})}.")]
                    for field in sorted(set(changes) - allowed)}
    clean: dict = {}
    if "url" in changes:
        clean["url"] = _check_url(changes["url"], errors)
    if "events" in changes:
        clean["event_types"] = _check_events(changes["events"] if changes["events"] is not None
                                             else [], errors)
    if "description" in changes:
        clean["description"] = _check_text(changes["description"] or "", "description",
                                           MAX_DESCRIPTION, errors)
    reason = ""
    if "disabled_reason" in changes:
        reason = _check_text(changes["disabled_reason"] or "", "disabled_reason", MAX_REASON,
                             errors) or ""
    if "enabled" in changes:
        if not isinstance(changes["enabled"], bool):
            errors["enabled"] = [("invalid", "Give true or false.")]
        else:
            clean["enabled"] = changes["enabled"]
    if errors:
        raise ValidationFailed(errors)
    with transaction.atomic():
        endpoint = _endpoint_locked(endpoint_id)
        before = _state(endpoint)
        if clean.get("enabled") is False and endpoint.enabled:
            clean["disabled_reason"] = reason or f"Disabled by {principal.label}."
        elif clean.get("enabled") is True:
            clean["disabled_reason"] = ""
        for field, value in clean.items():
            setattr(endpoint, field, value)
        if clean:
            endpoint.save(update_fields=list(clean))
        after = _state(endpoint)
        if after != before:
            audit_record(action="webhook_endpoint.updated", tenant=principal.tenant,
                         actor=principal, target=endpoint, before=before, after=after)
    return endpoint


def endpoint_delete(*, principal: Principal, endpoint_id: int) -> None:
    """Delete an endpoint with its delivery log; its pending retries are dropped (their
    jobs find no delivery and do nothing)."""
    principal.require(Action.MANAGE_API_KEYS)
    with transaction.atomic():
        endpoint = _endpoint_locked(endpoint_id)
        audit_record(action="webhook_endpoint.deleted", tenant=principal.tenant, actor=principal,
                     target=endpoint, before=_state(endpoint))
        endpoint.delete()


def delivery_redeliver(*, principal: Principal, delivery_id: int) -> WebhookDelivery:
    """Send a delivery's event again now, as a new attempt of the same delivery (same event
    id, so a receiver that already has it can tell). Works whatever its state; if the
    attempt fails, retries continue only within three days of the first attempt. Raises
    NotFound, or Conflict when the endpoint is disabled."""
    principal.require(Action.MANAGE_API_KEYS)
    tenant = principal.tenant
    with transaction.atomic():
        delivery = (WebhookDelivery.objects.select_for_update(of=("self",))
                    .select_related("endpoint").filter(pk=delivery_id).first())
        if delivery is None:
            raise NotFound(f"There is no webhook delivery {delivery_id} in this organisation.")
        if not delivery.endpoint.enabled:
            raise Conflict("This endpoint is disabled, so nothing can be sent to it. Enable it "
                           "first, then redeliver.", code="endpoint_disabled")
        before = {"state": delivery.state, "attempts": delivery.attempts}
        now = clock.now(tenant)
        delivery.state = WebhookDelivery.State.PENDING
        delivery.next_attempt_at = now
        delivery.save(update_fields=["state", "next_attempt_at"])
        attempt_queue(tenant=tenant, delivery=delivery, attempt=delivery.attempts + 1, at=now)
        audit_record(action="webhook_delivery.redelivered", tenant=tenant, actor=principal,
                     target=delivery, before=before,
                     after={"state": delivery.state, "event_id": delivery.event_id,
                            "attempt": delivery.attempts + 1})
    return delivery


def webhook_secrets_reseal(*, actor="cli") -> int:
    """Endpoint secrets not under the newest secret-box key are sealed again, tenant by
    tenant (rows locked while they change). Returns how many; safe to run twice."""
    from django_tenants.utils import schema_context

    resealed = 0
    for tenant in Tenant.objects.exclude(schema_name="public").filter(erased_at__isnull=True):
        with schema_context(tenant.schema_name), transaction.atomic():
            sealed = WebhookEndpoint.objects.select_for_update().exclude(secret_sealed__exact="")  # nosec B106 - filters out empty values, not a password
            for endpoint in sealed:
                if crypto.needs_rotation(endpoint.secret_sealed):
                    endpoint.secret_sealed = crypto.rotate(
                        endpoint.secret_sealed, context=secret_context(tenant.pk, endpoint.pk))
                    endpoint.save(update_fields=["secret_sealed"])
                    resealed += 1
    if resealed:
        audit_record(action="webhooks.secrets_resealed", actor=actor,
                     after={"count": resealed, "key_id": crypto.keys()[0].key_id})
    return resealed
