"""An OpenID Connect provider fake for SSO tests (stdlib ThreadingHTTPServer, port 0).

It signs real RS256 ID tokens with an RSA key made at start (cryptography) and publishes
the public half as a JWKS, as Okta, Entra ID or Keycloak do. Served:
- GET  /.well-known/openid-configuration  discovery (OIDC Discovery 1.0 §3)
- GET  /jwks                              the signing key as a JWK set
- GET  /authorize                         auto-approves `server.user`: redirects to the
                                          client's redirect_uri with code and state, or
                                          with `error` when `server.error` is set
- POST /token                             authorization_code grant: checks the client (post
                                          or basic auth), the code (once), redirect_uri and
                                          the PKCE verifier (S256); answers an ID token
- GET  /userinfo                          the user's claims for the access token

Knobs for negative tests: `claim_overrides` (merged into the next ID tokens, e.g. a
wrong `aud` or a past `exp`), `sign_with` (another private key, same kid: a forged
signature), `error`, `discovery_overrides`, `jwks_override`, `kid` (the published key's
id), `auth_methods`.
"""
import base64
import hashlib
import json
import secrets
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlencode, urlsplit

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa

KID = "fake-oidc-key-1"


def new_key():
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


class OidcProvider:
    def __init__(self, *, client_id: str = "aerolith-test-client",
                 client_secret: str = "fake-oidc-client-secret-8f2b1c",
                 auth_methods=("client_secret_post", "client_secret_basic")):
        self.client_id = client_id
        self.client_secret = client_secret
        self.auth_methods = list(auth_methods)
        self.key = new_key()
        self.sign_with = None  # another private key: forged signatures
        self.user = {"sub": "fake-user-1", "email": "ada@example.com", "email_verified": True,
                     "name": "Ada Lovelace"}
        self.claim_overrides: dict = {}
        self.error: str | None = None
        self.discovery_overrides: dict = {}
        self.jwks_override = None  # any JSON value served at /jwks instead of the key
        self.kid = KID
        self.codes: dict[str, dict] = {}
        self.access_tokens: dict[str, dict] = {}
        self.token_requests: list[dict] = []
        self.lock = threading.Lock()
        provider = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _json(self, status: int, body, headers=None):
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.send_header("Cache-Control", "no-store")
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)

            def _redirect(self, location: str):
                self.send_response(302)
                self.send_header("Location", location)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def do_GET(self):
                url = urlsplit(self.path)
                query = {k: v[0] for k, v in parse_qs(url.query).items()}
                if url.path == "/.well-known/openid-configuration":
                    return self._json(200, provider.discovery())
                if url.path == "/jwks":
                    if provider.jwks_override is not None:
                        return self._json(200, provider.jwks_override)
                    return self._json(200, provider.jwks())
                if url.path == "/authorize":
                    status, answer = provider.authorize(query)
                    if status == 302:
                        return self._redirect(answer)
                    return self._json(status, answer)
                if url.path == "/userinfo":
                    token = self.headers.get("Authorization", "").removeprefix("Bearer ")
                    claims = provider.access_tokens.get(token)
                    if claims is None:
                        return self._json(401, {"error": "invalid_token"},
                                          {"WWW-Authenticate": 'Bearer error="invalid_token"'})
                    return self._json(200, claims)
                self._json(404, {"error": "not_found"})

            def do_POST(self):
                if urlsplit(self.path).path != "/token":
                    return self._json(404, {"error": "not_found"})
                length = int(self.headers.get("Content-Length") or 0)
                form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
                status, body = provider.token(form, self.headers.get("Authorization", ""))
                headers = {"WWW-Authenticate": "Basic"} if status == 401 else None
                self._json(status, body, headers)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    # --- lifecycle ----------------------------------------------------------------------

    def start(self) -> "OidcProvider":
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    # --- endpoints ----------------------------------------------------------------------

    def discovery(self) -> dict:
        return {
            "issuer": self.url,
            "authorization_endpoint": f"{self.url}/authorize",
            "token_endpoint": f"{self.url}/token",
            "jwks_uri": f"{self.url}/jwks",
            "userinfo_endpoint": f"{self.url}/userinfo",
            "response_types_supported": ["code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "token_endpoint_auth_methods_supported": self.auth_methods,
            "code_challenge_methods_supported": ["S256"],
            "scopes_supported": ["openid", "email", "profile"],
            "claims_supported": ["sub", "email", "email_verified", "name"],
            **self.discovery_overrides,
        }

    def jwks(self) -> dict:
        jwk = jwt.algorithms.RSAAlgorithm.to_jwk(self.key.public_key(), as_dict=True)
        return {"keys": [{**jwk, "kid": self.kid, "use": "sig", "alg": "RS256"}]}

    def authorize(self, query: dict) -> tuple[int, object]:
        # Unknown clients and bad requests get an error page, never a redirect (RFC 6749 §4.1.2.1).
        if query.get("client_id") != self.client_id:
            return 400, {"error": "invalid_client"}
        redirect_uri = query.get("redirect_uri", "")
        if not redirect_uri.startswith(("http://", "https://")):
            return 400, {"error": "invalid_request", "error_description": "redirect_uri"}
        back = {"state": query.get("state", "")}
        if self.error:
            back.update(error=self.error, error_description="The user cancelled the sign-in.")
        elif (query.get("response_type") != "code" or query.get("code_challenge_method") != "S256"
              or not query.get("code_challenge") or "openid" not in query.get("scope", "").split()):
            back.update(error="invalid_request")
        else:
            code = secrets.token_urlsafe(24)
            with self.lock:
                self.codes[code] = {"redirect_uri": redirect_uri, "nonce": query.get("nonce"),
                                    "challenge": query["code_challenge"], "user": dict(self.user)}
            back["code"] = code
        return 302, f"{redirect_uri}{'&' if '?' in redirect_uri else '?'}{urlencode(back)}"

    def token(self, form: dict, authorization: str) -> tuple[int, dict]:
        self.token_requests.append({"form": {k: v for k, v in form.items() if k != "client_secret"},
                                    "basic": authorization.startswith("Basic ")})
        client_id, client_secret = form.get("client_id"), form.get("client_secret")
        if authorization.startswith("Basic "):
            try:
                client_id, _, client_secret = (base64.b64decode(authorization[6:]).decode()
                                               .partition(":"))
            except ValueError:
                return 401, {"error": "invalid_client"}
        if client_id != self.client_id or client_secret != self.client_secret:
            return 401, {"error": "invalid_client"}
        if form.get("grant_type") != "authorization_code":
            return 400, {"error": "unsupported_grant_type"}
        with self.lock:
            grant = self.codes.pop(form.get("code", ""), None)  # a code works once
        if grant is None or grant["redirect_uri"] != form.get("redirect_uri"):
            return 400, {"error": "invalid_grant"}
        verifier = form.get("code_verifier", "")
        challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=")
        if challenge.decode() != grant["challenge"]:
            return 400, {"error": "invalid_grant", "error_description": "PKCE verification failed"}
        now = int(time.time())
        claims = {"iss": self.url, "aud": self.client_id, "iat": now, "exp": now + 300,
                  "nonce": grant["nonce"], **grant["user"], **self.claim_overrides}
        claims = {k: v for k, v in claims.items() if v is not None}
        id_token = jwt.encode(claims, self.sign_with or self.key, algorithm="RS256",
                              headers={"kid": KID})
        access_token = secrets.token_urlsafe(24)
        self.access_tokens[access_token] = grant["user"]
        return 200, {"access_token": access_token, "token_type": "Bearer", "expires_in": 3600,
                     "id_token": id_token, "scope": "openid email profile"}
