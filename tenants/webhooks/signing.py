"""The webhook signature scheme (Stripe's, with our header name), and a verifier for
receivers. Standard library only, so a receiver can copy this file as it is.

Every delivery carries

    Aerolith-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<raw body>")>

`t` is the real time of this attempt (never a test clock: receivers compare it with their
own clock), so a captured request cannot be replayed later than `tolerance` seconds. The
secret is the whole `whsec_…` string, used as UTF-8 bytes. During a secret change a header
may carry several v1= values; any one that matches is enough.
"""
import hashlib
import hmac
import time

HEADER = "Aerolith-Signature"
SCHEME = "v1"
DEFAULT_TOLERANCE = 300


class SignatureVerificationError(Exception):
    """The request was not signed with this secret, or was signed too long ago."""


def compute(secret: str, timestamp: int, body: bytes) -> str:
    signed = f"{timestamp}.".encode() + body
    return hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()


def sign(body: bytes, secret: str, timestamp: int | None = None) -> str:
    """The Aerolith-Signature header value for `body` at `timestamp` (default: now)."""
    timestamp = int(time.time()) if timestamp is None else int(timestamp)
    return f"t={timestamp},{SCHEME}={compute(secret, timestamp, body)}"


def verify(payload: bytes | str, header: str, secret: str, tolerance: int = DEFAULT_TOLERANCE,
           now: int | None = None) -> int:
    """Check `header` against the raw request body `payload`; returns the signed timestamp.
    Raises SignatureVerificationError when no v1 signature matches or the timestamp is more
    than `tolerance` seconds away from `now` (0 turns the age check off)."""
    body = payload.encode() if isinstance(payload, str) else bytes(payload)
    timestamp, signatures = None, []
    for part in (header or "").split(","):
        key, _, value = part.strip().partition("=")
        if key == "t":
            try:
                timestamp = int(value)
            except ValueError:
                raise SignatureVerificationError("The signature's timestamp is not a number.") from None
        elif key == SCHEME and value:
            signatures.append(value)
    if timestamp is None or not signatures:
        raise SignatureVerificationError(
            f"The {HEADER} header must look like 't=<unix time>,{SCHEME}=<hex>'.")
    expected = compute(secret, timestamp, body)
    if not any(hmac.compare_digest(expected, candidate) for candidate in signatures):
        raise SignatureVerificationError(
            "No signature matches: check the endpoint's secret and that you verify the raw "
            "body as received, before any JSON parsing.")
    current = int(time.time()) if now is None else int(now)
    if tolerance and abs(current - timestamp) > tolerance:
        raise SignatureVerificationError(
            f"The signature is {abs(current - timestamp)} s old, more than the {tolerance} s "
            "tolerance: a replay, or a clock that is off.")
    return timestamp
