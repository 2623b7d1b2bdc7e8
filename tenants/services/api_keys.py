"""API keys: created with scopes the creator's role allows, shown once, stored as a
SHA-256 digest, revocable, with a last-used time that costs at most one write a minute."""
import hashlib
import hmac
import secrets
from datetime import timedelta

from django.db import transaction
from django.db.models import Q
from rest_framework import exceptions

from aerolith import clock
from aerolith.errors import NotFound, ValidationFailed

from ..models import ApiKey
from ..permissions import ALL_SCOPES, Action, Principal, scopes_for_role
from .audit import audit_record

API_KEY_MARKER = "ak_"
LAST_USED_RESOLUTION = timedelta(minutes=1)


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _split(token: str) -> tuple[str, str] | None:
    body = token[len(API_KEY_MARKER):]
    prefix, dot, secret = body.partition(".")
    if not dot or len(prefix) != 12 or not secret:
        return None
    return prefix, secret


def api_key_create(*, principal: Principal, name: str, scopes: list[str]) -> tuple[ApiKey, str]:
    """Create a key and return it with its full secret, which is never available again.
    Raises ValidationFailed for an empty name, unknown scopes or scopes beyond the
    creator's own role."""
    principal.require(Action.MANAGE_API_KEYS)
    errors = {}
    name = (name or "").strip()
    if not name:
        errors["name"] = [("required", "Give the key a name, e.g. 'ci-pipeline'.")]
    unknown = sorted(set(scopes) - set(ALL_SCOPES))
    if unknown:
        errors["scopes"] = [("unknown_scope", f"Unknown scopes {unknown}; valid scopes are "
                             f"{list(ALL_SCOPES)}.")]
    elif not scopes:
        errors["scopes"] = [("required", "Give the key at least one scope, e.g. ['read'].")]
    else:
        allowed = set(principal.scopes) if principal.api_key else set(scopes_for_role(principal.role))
        beyond = sorted(set(scopes) - allowed)
        if beyond:
            errors["scopes"] = [("scope_not_allowed", f"You cannot grant {beyond}: it is more "
                                 "than you may do yourself.")]
    if errors:
        raise ValidationFailed(errors)

    prefix = secrets.token_hex(6)
    secret = secrets.token_urlsafe(32)
    with transaction.atomic():
        key = ApiKey.objects.create(
            name=name[:100], prefix=prefix, secret_hash=_digest(secret),
            scopes=sorted(set(scopes)), created_by=principal.user,
        )
        audit_record(action="api_key.created", tenant=principal.tenant, actor=principal,
                     target=key, after={"name": key.name, "prefix": prefix, "scopes": key.scopes})
    return key, f"{API_KEY_MARKER}{prefix}.{secret}"


def api_key_revoke(*, principal: Principal, key_id: int) -> ApiKey:
    principal.require(Action.MANAGE_API_KEYS)
    with transaction.atomic():
        key = ApiKey.objects.select_for_update().filter(pk=key_id).first()
        if key is None:
            raise NotFound(f"There is no API key {key_id} in this organisation.")
        if key.revoked_at is None:
            key.revoked_at = clock.now(principal.tenant)
            key.save(update_fields=["revoked_at"])
            audit_record(action="api_key.revoked", tenant=principal.tenant, actor=principal,
                         target=key, before={"active": True}, after={"active": False})
    return key


def api_key_authenticate(token: str) -> ApiKey:
    """The active key for `token` in the current tenant schema, or AuthenticationFailed."""
    parts = _split(token)
    if parts is None:
        raise exceptions.AuthenticationFailed(
            "This API key is malformed. Keys look like 'ak_<12 characters>.<secret>'."
        )
    prefix, secret = parts
    key = ApiKey.objects.filter(prefix=prefix).first()
    if key is None or not hmac.compare_digest(key.secret_hash, _digest(secret)):
        raise exceptions.AuthenticationFailed(
            "This API key is not valid for this organisation. Check the key and the "
            "organisation's domain."
        )
    if key.revoked_at is not None:
        raise exceptions.AuthenticationFailed(
            "This API key was revoked. Create a new key in the portal or with "
            "POST /api/v1/api-keys."
        )
    now = clock.wall_now()
    if key.last_used_at is None or now - key.last_used_at >= LAST_USED_RESOLUTION:
        ApiKey.objects.filter(pk=key.pk).filter(
            Q(last_used_at__isnull=True) | Q(last_used_at__lt=now - LAST_USED_RESOLUTION)
        ).update(last_used_at=now)
    return key
