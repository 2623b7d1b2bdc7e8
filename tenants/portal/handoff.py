"""Signing a user in on a tenant's domain from the public domain. Sessions are per host,
so the public login hands over a signed token valid for 60 seconds and usable once."""
import secrets

from django.core import signing
from django.core.cache import cache

SALT = "aerolith.portal.handoff"
MAX_AGE = 60


def handoff_token(*, user_id: int, tenant_id: int, otp_device: str | None = None) -> str:
    """`otp_device`: the persistent id of the second factor the user just passed on the
    public domain, so the tenant's session starts verified too."""
    data = {"u": user_id, "t": tenant_id, "n": secrets.token_hex(12)}
    if otp_device:
        data["d"] = otp_device
    return signing.dumps(data, salt=SALT)


def handoff_redeem(token: str, *, tenant_id: int) -> int | None:
    """The user id the token was made for, or None if it is invalid, stale, for another
    tenant, or was used before."""
    claims = handoff_claims(token, tenant_id=tenant_id)
    return claims["u"] if claims else None


def handoff_claims(token: str, *, tenant_id: int) -> dict | None:
    """The token's claims (u: user id, d: optional OTP device), or None like
    handoff_redeem; redeeming it either way uses it up."""
    try:
        data = signing.loads(token, salt=SALT, max_age=MAX_AGE)
    except signing.BadSignature:
        return None
    if data.get("t") != tenant_id:
        return None
    if not cache.add(f"handoff:{data['n']}", 1, timeout=MAX_AGE * 2):
        return None
    return data
