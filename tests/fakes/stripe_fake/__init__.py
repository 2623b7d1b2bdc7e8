"""A Stripe-compatible HTTP server for tests and test mode — the official `stripe` library talks to
it as to api.stripe.com (`stripe.api_base = fake.url`, any `sk_test_…` key).

    fake = StripeFake(webhook_url="http://localhost:8000/webhooks/stripe/")
    url = fake.start()          # port 0: a free port
    ...
    fake.stop()

Every event is appended to `fake.outbox` as (payload bytes, Stripe-Signature header) and, when
`webhook_url` is set, POSTed there on a background thread after the API response that caused it.
See cards.py for the test payment methods and what each does, api.py/payments.py for the
endpoints. `python -m tests.fakes.stripe_fake --port 12111 --webhook-url … --webhook-secret …`
runs it on its own.
"""
import copy
import json
import threading
from http.server import ThreadingHTTPServer

from .api import API_VERSION, Store
from .cards import CARDS, TestCard
from .server import Handler
from .webhooks import Webhooks, sign

__all__ = ["API_VERSION", "CARDS", "StripeFake", "TestCard", "sign"]


class StripeFake:
    def __init__(self, webhook_url: str | None = None, webhook_secret: str = "whsec_test_fake",
                 verbose: bool = False):
        self.webhook_secret = webhook_secret
        self.verbose = verbose
        self.store = Store()
        self.webhooks = Webhooks(webhook_url, webhook_secret)
        self.idempotency: dict = {}
        self.url = ""
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # --- lifecycle ----------------------------------------------------------------------------
    def start(self, port: int = 0, host: str = "127.0.0.1") -> str:
        handler = type("StripeFakeHandler", (Handler,), {"fake": self})
        self._server = ThreadingHTTPServer((host, port), handler)
        self._server.daemon_threads = True
        self.url = f"http://{host}:{self._server.server_address[1]}"
        self.store.base_url = self.url
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,),
                                        name="stripe-fake", daemon=True)
        self._thread.start()
        return self.url

    def stop(self) -> None:
        if self._server:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        self.webhooks.stop()

    def __enter__(self) -> "StripeFake":
        if not self._server:
            self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    # --- webhooks -----------------------------------------------------------------------------
    @property
    def webhook_url(self) -> str | None:
        return self.webhooks.url

    @webhook_url.setter
    def webhook_url(self, url: str | None) -> None:
        self.webhooks.url = url

    @property
    def outbox(self) -> list[tuple[bytes, str]]:
        return self.webhooks.outbox

    @property
    def deliveries(self) -> list[dict]:
        return self.webhooks.deliveries

    @property
    def events(self) -> list[dict]:
        """The events sent so far, oldest first, as dicts."""
        return [json.loads(payload) for payload, _ in self.webhooks.outbox]

    def events_of(self, event_type: str) -> list[dict]:
        return [event for event in self.events if event["type"] == event_type]

    def sign(self, payload: bytes, timestamp: int | None = None) -> str:
        return sign(payload, self.webhook_secret, timestamp)

    def wait_for_webhooks(self, timeout: float = 5.0) -> bool:
        return self.webhooks.wait(timeout)

    # --- state and test controls (in process; events are published as over HTTP) --------------
    def get(self, object_id: str) -> dict:
        """A copy of any object the fake holds (cus_, pm_, pi_, ch_, seti_, cs_, re_, dp_, evt_)."""
        with self.store.lock:
            return copy.deepcopy(self.store.get(object_id))

    def _run(self, action, *args):
        with self.store.lock:
            try:
                return action(*args)
            finally:
                events = self.store.take_events()
                self.webhooks.publish(events)

    def checkout_complete(self, session_id: str, card: str = "pm_card_visa") -> str:
        """As if the customer picked `card` on the Checkout page; returns the success redirect."""
        return self._run(self.store.checkout_complete, session_id, card)

    def three_d_secure(self, payment_intent_id: str, outcome: str = "complete") -> str:
        """As if the customer pressed Complete (or Fail) on the 3DS page; returns the redirect."""
        return self._run(self.store.three_d_secure, payment_intent_id, outcome)

    def dispute_close(self, dispute_id: str, status: str) -> dict:
        """The network decides a dispute: `won` or `lost` (event charge.dispute.closed)."""
        return copy.deepcopy(self._run(self.store.dispute_close, dispute_id, status))

    def reset(self) -> None:
        """Forget every object, event and idempotency key (the server keeps running)."""
        with self.store.lock:
            base_url = self.store.base_url
            self.store = Store(base_url)
            self.idempotency.clear()
            self.webhooks.outbox.clear()
            self.webhooks.deliveries.clear()
