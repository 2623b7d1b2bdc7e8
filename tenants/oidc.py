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
from dataclasses import dataclass
from urllib.parse import urlencode, urlsplit, urlunsplit

import httpx
import jwt
from django.conf import settings

from .webhooks.targets import TargetRefused, address_allowed, resolve_checked

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
    """Refuse URLs the server must not fetch: anything but https (loopback http is allowed
    in test mode, for the local fake provider), credentials in the URL, and IP literals
    that are not public. Names are checked again when connecting (`_send`)."""
    try:
        parts = urlsplit(url)
        host = (parts.hostname or "").rstrip(".")
        parts.port  # noqa: B018 - raises ValueError on a malformed port
    except ValueError:
        raise OidcError(f"The {what} ({url[:200]}) is not a valid URL.", code="bad_url") from None
    if not host or parts.scheme not in ("https", "http"):
        raise OidcError(f"The {what} must be an https:// URL.", code="bad_url")
    if parts.username is not None or parts.password is not None:
        raise OidcError(f"The {what} must not contain credentials.", code="bad_url")
    test_mode = _test_mode()
    if parts.scheme == "http" and not (test_mode and _is_loopback_name(host)):
        raise OidcError(f"The {what} must use https:// (got {url[:200]}).", code="https_required")
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        address = None
    if address is not None and not address_allowed(address, test_mode=test_mode):
        raise OidcError(f"The {what} points at a private address ({address}); use the "
                        "provider's public address.", code="bad_url")
    return url


def _test_mode() -> bool:
    return bool(getattr(settings, "AEROLITH_TEST_MODE", False))


def _is_loopback_name(host: str) -> bool:
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _send(method: str, url: str, *, what: str, **kwargs) -> tuple[int, bytes]:
    """One request to a provider URL the owner chose. Like webhook deliveries (SSRF): the
    name is resolved once, every address must be public (loopback too in test mode), and
    the connection goes to that checked address with the original Host header and TLS name,
    so DNS cannot be re-pointed between check and connect. No redirects, no proxies from
    the environment, at most MAX_BODY bytes read."""
    check_url(url, what=what)
    parts = urlsplit(url)
    host = parts.hostname or ""
    try:
        address = resolve_checked(host, parts.port or (443 if parts.scheme == "https" else 80),
                                  test_mode=_test_mode())
    except TargetRefused as refused:
        raise OidcError(f"Could not use the {what}: {refused}", code="issuer_unreachable") from None
    literal = f"[{address}]" if ":" in address else address
    netloc = literal if parts.port is None else f"{literal}:{parts.port}"
    target = urlunsplit(parts._replace(netloc=netloc))
    headers = {**kwargs.pop("headers", {}), "Host": parts.netloc.rsplit("@", 1)[-1],
               "Accept": "application/json"}
    try:
        with httpx.Client(timeout=TIMEOUT, follow_redirects=False, trust_env=False) as client:
            with client.stream(method, target, headers=headers,
                               extensions={"sni_hostname": host}, **kwargs) as response:
                body = bytearray()
                for chunk in response.iter_bytes():
                    body += chunk
                    if len(body) > MAX_BODY:
                        raise OidcError(f"The {what} answer is too large.", code="issuer_invalid")
    except httpx.HTTPError:
        raise OidcError(f"Could not reach the {what} at {url[:200]}. Check the address and that "
                        "the provider is up.", code="issuer_unreachable") from None
    return response.status_code, bytes(body)


def _get_json(url: str, *, what: str) -> dict:
    status, content = _send("GET", url, what=what)
    if status != 200:
        raise OidcError(f"The {what} at {url[:200]} answered HTTP {status}, not the expected "
                        "JSON document.", code="issuer_invalid")
    return _json_body(content, what=what)


def _json_body(content: bytes, *, what: str) -> dict:
    try:
        body = json.loads(content)
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
    if str(metadata.get("issuer") or "").rstrip("/") != issuer:
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
    algorithms = _names(metadata, "id_token_signing_alg_values_supported", ["RS256"])
    if "RS256" not in algorithms:
        raise OidcError("The provider does not sign ID tokens with RS256, which Aerolith needs.",
                        code="issuer_invalid")
    # The spec's default when the provider says nothing is client_secret_basic.
    methods = _names(metadata, "token_endpoint_auth_methods_supported", ["client_secret_basic"])
    if "client_secret_post" in methods:
        kept["token_auth"] = "client_secret_post"  # nosec B105 - an OAuth auth method name, not a secret
    elif "client_secret_basic" in methods:
        kept["token_auth"] = "client_secret_basic"  # nosec B105 - an OAuth auth method name, not a secret
    else:
        raise OidcError("The provider supports neither client_secret_post nor "
                        "client_secret_basic at its token endpoint.", code="issuer_invalid")
    return kept


def _names(metadata: dict, key: str, default: list[str]) -> list[str]:
    value = metadata.get(key)
    if value is None:
        return default
    if not isinstance(value, list):
        raise OidcError(f"The discovery document's {key} is not a list.", code="issuer_invalid")
    return [v for v in value if isinstance(v, str)]


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
    form = {"grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri,
            "code_verifier": flow.verifier}
    auth = None
    if discovery.get("token_auth") == "client_secret_basic":
        auth = httpx.BasicAuth(client_id, client_secret)
    else:
        form.update(client_id=client_id, client_secret=client_secret)
    try:
        status, content = _send("POST", discovery["token_endpoint"], what="token endpoint",
                                data=form, auth=auth)
    except OidcError as error:
        if error.code != "issuer_unreachable":
            raise
        raise OidcError("Could not reach your identity provider's token endpoint. Try again in a "
                        "moment.", code="provider_unreachable") from None
    body = _json_body(content, what="token endpoint") if content else {}
    if status != 200:
        error = str(body.get("error", f"HTTP {status}"))[:100]
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
    except (jwt.PyJWTError, ValueError, TypeError, KeyError, AttributeError):
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
