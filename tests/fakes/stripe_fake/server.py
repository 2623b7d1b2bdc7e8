"""The HTTP side: /v1 API (auth, form decoding, idempotency keys, JSON), the hosted pages
(/checkout/…, /3ds/…) and the test-only /_fake/… controls."""
import json
import re
import time
import uuid
from http.server import BaseHTTPRequestHandler
from urllib.parse import parse_qsl, urlsplit

from . import pages
from .api import API_VERSION
from .errors import StripeError, invalid
from .forms import parse_form


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out as two writes; no 40 ms stalls
    server_version = "stripe-fake"
    fake = None  # the StripeFake, set on a subclass per server

    def do_GET(self):
        self._handle("GET")

    def do_POST(self):
        self._handle("POST")

    def do_DELETE(self):
        self._handle("DELETE")

    def log_message(self, format, *args):  # noqa: A002 - quiet unless asked
        if self.fake.verbose:
            super().log_message(format, *args)

    def _handle(self, method: str) -> None:
        split = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode() if length else ""
        path = split.path.rstrip("/") or "/"
        self.staged: list = []  # events this request caused: in the outbox now, POSTed after the response
        try:
            if path.startswith("/v1/"):
                self._api(method, path, split.query, body)
            elif path.startswith("/_fake/"):
                self._control(method, path, body)
            else:
                with self.fake.store.lock:
                    page = pages.route(self.fake.store, method, path, body)
                    self.staged = self.fake.webhooks.stage(self.fake.store.take_events())
                if page is None:
                    self._send(404, b"Not found", "text/plain")
                else:
                    status, content, location = page
                    self._send(status, content.encode(), "text/html; charset=utf-8",
                               {"Location": location} if location else None)
        finally:
            self.fake.webhooks.send(self.staged)

    # --- /v1 ----------------------------------------------------------------------------------
    def _api(self, method: str, path: str, query: str, body: str) -> None:
        request_id = f"req_{uuid.uuid4().hex[:14]}"
        headers = {"Request-Id": request_id,
                   "Stripe-Version": self.headers.get("Stripe-Version") or API_VERSION}
        auth = self.headers.get("Authorization", "")
        if not re.match(r"^Bearer sk_test_\S+$", auth):
            error = StripeError(401, "invalid_request_error",
                                "Invalid API Key provided. This fake accepts test keys (sk_test_…) only."
                                if auth else "You did not provide an API key. You need to provide your API "
                                "key in the Authorization header, using Bearer auth.")
            return self._json(401, error.body(), headers)
        params = parse_form(body if method == "POST" else query)
        key = self.headers.get("Idempotency-Key") if method == "POST" else None
        if key:
            headers["Idempotency-Key"] = key
        fake = self.fake
        with fake.store.lock:
            if key:
                scope = (auth, key)
                fingerprint = (method, path, json.dumps(params, sort_keys=True))
                saved = fake.idempotency.get(scope)
                if saved is not None:
                    if saved[0] != fingerprint:
                        error = invalid(
                            "Keys for idempotent requests can only be used with the same parameters they "
                            f"were first used with. Try using a key other than '{key}' if you meant to "
                            "execute a different request.")
                        error.error["type"] = "idempotency_error"
                        return self._json(400, error.body(), headers)
                    return self._json(saved[1], saved[2], {**headers, "Idempotent-Replayed": "true",
                                                           "Original-Request": saved[3]})
            try:
                status, result = 200, fake.store.call(method, path, params)
                saved_result = True
            except StripeError as error:
                status, result, saved_result = error.status, error.body(), error.saved
            if isinstance(result, dict) and "error" in result:
                result["error"]["request_log_url"] = (
                    f"https://dashboard.stripe.com/test/logs/{request_id}?t={int(time.time())}")
            if key and saved_result:
                fake.idempotency[scope] = (fingerprint, status, result, request_id)
            events = fake.store.take_events()
            for event in events:
                event["request"] = {"id": request_id, "idempotency_key": key}
            self.staged = fake.webhooks.stage(events)
        self._json(status, result, headers)

    def _json(self, status: int, data: dict, headers: dict) -> None:
        self._send(status, json.dumps(data, indent=2).encode(), "application/json", headers)

    def _send(self, status: int, content: bytes, content_type: str, headers: dict | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(content)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(content)

    # --- /_fake (test controls, no auth) ------------------------------------------------------
    def _control(self, method: str, path: str, body: str) -> None:
        params = json.loads(body) if body.lstrip().startswith("{") else dict(parse_qsl(body))
        match = re.match(r"^/_fake/disputes/(dp_\w+)/close$", path)
        if method != "POST" or not match:
            error = StripeError(404, "invalid_request_error", f"Unknown control: {method} {path}")
            return self._json(404, error.body(), {})
        try:
            with self.fake.store.lock:
                result = self.fake.store.dispute_close(match.group(1), params.get("status", ""))
                self.staged = self.fake.webhooks.stage(self.fake.store.take_events())
            self._json(200, result, {})
        except StripeError as error:
            self._json(error.status, error.body(), {})
