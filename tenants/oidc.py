"""OpenID Connect relying party, the protocol only (SPEC §8 SSO): discovery, the
authorization request with PKCE, the code exchange and the ID token's verification.

A gateway like the payment ones: it speaks HTTP (httpx) and JWT (PyJWT) and knows nothing
of tenants or memberships. Every failure is an `OidcError` whose message can be shown to
the person signing in; nothing here raises anything else for a bad or hostile provider.
Secrets (client secret, code, tokens) never appear in an error message or a log.
"""
import base64
import hashlib
import ipaddress
import json
import secrets
import socket
from dataclasses import dataclass
from urllib.parse import urlencode, urlsplit

import httpx
import jwt
from django.conf import settings

TIMEOUT = httpx.Timeout(5.0)
MAX_BODY = 256 * 1024  # discovery, JWKS and token answers are a few kilobytes
CLOCK_SKEW_SECONDS = 60
ALGORITHMS = ["RS256"]
SCOPES = "openid email profile"


class OidcError(Exception):
    """A refusal to show to the user: says what went wrong and what to do."""

    def __init__(self, detail: str, *, code: str = "sso_failed"):
        super().__init__(detail)
        self.detail = detail
        self.code = code


@dataclass(frozen=True)
class Flow:
    """What the callback must find in the session: one use, bound to the browser."""

    state: str
    nonce: str
    verifier: str

    @property
    def challenge(self) -> str:
        digest = hashlib.sha256(self.verifier.encode()).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()

    @classmethod
    def new(cls) -> "Flow":
        # 64 random bytes give a 86-character verifier, inside RFC 7636's 43..128.
        return cls(secrets.token_urlsafe(32), secrets.token_urlsafe(32), secrets.token_urlsafe(64))


def same(a: str, b: str) -> bool:
    """Constant-time equality of two strings of any characters."""
    return secrets.compare_digest(a.encode(), b.encode())


def check_url(url: str, *, what: str) -> str:
    """Refuse URLs the server must not fetch: anything but https, except loopback http in
    test mode (the local fake provider); and, outside test mode, hosts that resolve to a
    private, loopback or link-local address, so an owner cannot point the server at the
    internal network."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        parts.port  # noqa: B018 - raises ValueError on a malformed port
    except ValueError:
        raise OidcError(f"The {what} ({url[:200]}) is not a valid URL.", code="bad_url") from None
    if not host or parts.scheme not in ("https", "http"):
        raise OidcError(f"The {what} must be an https:// URL.", code="bad_url")
    test_mode = getattr(settings, "AEROLITH_TEST_MODE", False)
    if parts.scheme == "http" and not (test_mode and _is_loopback_name(host)):
        raise OidcError(f"The {what} must use https:// (got {url[:200]}).", code="https_required")
    if not test_mode:
        try:
            infos = socket.getaddrinfo(host, parts.port or 443, proto=socket.IPPROTO_TCP)
        except OSError:
            raise OidcError(f"The host of the {what} ({host}) does not resolve. Check the "
                            "address.", code="issuer_unreachable") from None
        for info in infos:
            address = ipaddress.ip_address(info[4][0])
            if not address.is_global:
                raise OidcError(f"The {what} points at a private address ({address}); use the "
                                "provider's public address.", code="bad_url")
    return url


def _is_loopback_name(host: str) -> bool:
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _get_json(url: str, *, what: str) -> dict:
    check_url(url, what=what)
    try:
        with httpx.Client(timeout=TIMEOUT, follow_redirects=False) as client:
            response = client.get(url, headers={"Accept": "application/json"})
    except httpx.HTTPError:
        raise OidcError(f"Could not reach the {what} at {url[:200]}. Check the address and that "
                        "the provider is up.", code="issuer_unreachable") from None
    if response.status_code != 200:
        raise OidcError(f"The {what} at {url[:200]} answered HTTP {response.status_code}, not "
                        "the expected JSON document.", code="issuer_invalid")
    return _json_body(response, what=what)


def _json_body(response: httpx.Response, *, what: str) -> dict:
    if len(response.content) > MAX_BODY:
        raise OidcError(f"The {what} answer is too large.", code="issuer_invalid")
    try:
        body = json.loads(response.content)
    except ValueError:
        raise OidcError(f"The {what} did not answer JSON.", code="issuer_invalid") from None
    if not isinstance(body, dict):
        raise OidcError(f"The {what} did not answer a JSON object.", code="issuer_invalid")
    return body


def discover(issuer: str) -> dict:
    """The provider's metadata, checked: its `issuer` is exactly ours (OIDC Discovery §4.3),
    the endpoints we use are present and fetchable, and it can sign with RS256. Returns the
    subset we keep."""
    issuer = issuer.rstrip("/")
    url = f"{issuer}/.well-known/openid-configuration"
    metadata = _get_json(url, what="provider's discovery document")
    if metadata.get("issuer", "").rstrip("/") != issuer:
        raise OidcError(f"The discovery document names the issuer {str(metadata.get('issuer'))[:200]!r}, "
                        f"not {issuer!r}. Enter the issuer exactly as the provider states it.",
                        code="issuer_invalid")
    kept = {"issuer": metadata["issuer"]}
    for name in ("authorization_endpoint", "token_endpoint", "jwks_uri"):
        value = metadata.get(name)
        if not isinstance(value, str) or not value:
            raise OidcError(f"The discovery document has no {name}; this is not an OpenID "
                            "Connect provider.", code="issuer_invalid")
        kept[name] = check_url(value, what=name.replace("_", " "))
    algorithms = metadata.get("id_token_signing_alg_values_supported") or ["RS256"]
    if "RS256" not in algorithms:
        raise OidcError("The provider does not sign ID tokens with RS256, which Aerolith needs.",
                        code="issuer_invalid")
    methods = metadata.get("token_endpoint_auth_methods_supported") or ["client_secret_basic"]
    if "client_secret_post" in methods:
        kept["token_auth"] = "client_secret_post"
    elif "client_secret_basic" in methods:
        kept["token_auth"] = "client_secret_basic"
    else:
        raise OidcError("The provider supports neither client_secret_post nor "
                        "client_secret_basic at its token endpoint.", code="issuer_invalid")
    return kept


def authorization_url(discovery: dict, *, client_id: str, redirect_uri: str, flow: Flow) -> str:
    query = urlencode({
        "response_type": "code", "client_id": client_id, "redirect_uri": redirect_uri,
        "scope": SCOPES, "state": flow.state, "nonce": flow.nonce,
        "code_challenge": flow.challenge, "code_challenge_method": "S256",
    })
    endpoint = discovery["authorization_endpoint"]
    return f"{endpoint}{'&' if '?' in endpoint else '?'}{query}"


def exchange_code(discovery: dict, *, client_id: str, client_secret: str, code: str,
                  redirect_uri: str, flow: Flow) -> str:
    """The ID token (compact JWT) the token endpoint gives for `code`."""
    url = check_url(discovery["token_endpoint"], what="token endpoint")
    form = {"grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri,
            "code_verifier": flow.verifier}
    auth = None
    if discovery.get("token_auth") == "client_secret_basic":
        auth = httpx.BasicAuth(client_id, client_secret)
    else:
        form.update(client_id=client_id, client_secret=client_secret)
    try:
        with httpx.Client(timeout=TIMEOUT, follow_redirects=False) as client:
            response = client.post(url, data=form, auth=auth, headers={"Accept": "application/json"})
    except httpx.HTTPError:
        raise OidcError("Could not reach your identity provider's token endpoint. Try again in a "
                        "moment.", code="provider_unreachable") from None
    body = _json_body(response, what="token endpoint") if response.content else {}
    if response.status_code != 200:
        error = str(body.get("error", f"HTTP {response.status_code}"))[:100]
        raise OidcError(f"Your identity provider refused the sign-in ({error}). Try again, or ask "
                        "your administrator to check the SSO settings.", code="token_refused")
    id_token = body.get("id_token")
    if not isinstance(id_token, str) or not id_token:
        raise OidcError("Your identity provider answered without an ID token.", code="token_refused")
    return id_token


def verify_id_token(id_token: str, discovery: dict, *, client_id: str, nonce: str) -> dict:
    """The ID token's claims once its RS256 signature (by a key of the provider's JWKS), its
    issuer, audience, expiry and nonce are right. PyJWT checks expiry against the real
    clock, which is right here: the provider stamps tokens with real time, never with a
    tenant's test clock."""
    jwks = _get_json(discovery["jwks_uri"], what="provider's signing keys (JWKS)")
    try:
        header = jwt.get_unverified_header(id_token)
        keyset = jwt.PyJWKSet.from_dict(jwks)
    except (jwt.PyJWTError, ValueError, TypeError, KeyError):
        raise OidcError("The sign-in token or the provider's keys could not be read.",
                        code="bad_token") from None
    keys = [k for k in keyset.keys if k.key_type == "RSA" and k.public_key_use in (None, "sig")]
    if header.get("kid") is not None:
        keys = [k for k in keys if k.key_id == header["kid"]]
    if not keys:
        raise OidcError("The sign-in token was signed with a key your provider does not publish.",
                        code="bad_signature")
    try:
        claims = jwt.decode(
            id_token, keys[0].key, algorithms=ALGORITHMS, audience=client_id,
            issuer=discovery["issuer"], leeway=CLOCK_SKEW_SECONDS,
            options={"require": ["iss", "aud", "exp", "iat", "sub"]},
        )
    except jwt.ExpiredSignatureError:
        raise OidcError("The sign-in token has expired. Sign in again.", code="expired") from None
    except jwt.InvalidAudienceError:
        raise OidcError("The sign-in token was issued for another application.",
                        code="wrong_audience") from None
    except jwt.InvalidIssuerError:
        raise OidcError("The sign-in token comes from another issuer.", code="wrong_issuer") from None
    except jwt.InvalidSignatureError:
        raise OidcError("The sign-in token's signature is not valid.", code="bad_signature") from None
    except jwt.PyJWTError:
        raise OidcError("The sign-in token is not valid.", code="bad_token") from None
    audiences = claims["aud"] if isinstance(claims["aud"], list) else [claims["aud"]]
    if len(audiences) > 1 and claims.get("azp") != client_id:
        raise OidcError("The sign-in token was issued for another application.",
                        code="wrong_audience")
    if not isinstance(claims.get("nonce"), str) or not same(claims["nonce"], nonce):
        raise OidcError("The sign-in token does not belong to this sign-in attempt. Start again.",
                        code="nonce_mismatch")
    return claims
