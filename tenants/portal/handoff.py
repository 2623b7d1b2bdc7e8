"""Signing a user in on a tenant's domain from the public domain. Sessions are per host,
so the public login hands over a signed token valid for 60 seconds and usable once."""
import secrets

from django.core import signing
from django.core.cache import cache

SALT = "aerolith.portal.handoff"
MAX_AGE = 60


def handoff_token(*, user_id: int, tenant_id: int) -> str:
    return signing.dumps({"u": user_id, "t": tenant_id, "n": secrets.token_hex(12)}, salt=SALT)


def handoff_redeem(token: str, *, tenant_id: int) -> int | None:
    """The user id the token was made for, or None if it is invalid, stale, for another
    tenant, or was used before."""
    try:
        data = signing.loads(token, salt=SALT, max_age=MAX_AGE)
    except signing.BadSignature:
        return None
    if data.get("t") != tenant_id:
        return None
    if not cache.add(f"handoff:{data['n']}", 1, timeout=MAX_AGE * 2):
        return None
    return data["u"]
