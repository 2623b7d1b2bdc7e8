"""Signing events and sending them to the webhook endpoint.

Signature: https://docs.stripe.com/webhooks#verify-manually — the header is
`t=<unix time>,v1=<hex HMAC-SHA256 of "<t>.<payload>" keyed with the endpoint secret>`.
Deliveries run in order on one background thread, each after the API response that caused it.
"""
import hashlib
import hmac
import json
import queue
import threading
import time
import urllib.error
import urllib.request


def sign(payload: bytes, secret: str, timestamp: int | None = None) -> str:
    timestamp = int(time.time()) if timestamp is None else int(timestamp)
    signed = f"{timestamp}.".encode() + payload
    digest = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


class Webhooks:
    def __init__(self, url: str | None, secret: str):
        self.url = url
        self.secret = secret
        self.outbox: list[tuple[bytes, str]] = []  # every event: (payload, Stripe-Signature header)
        self.deliveries: list[dict] = []  # {"event": id, "type", "status": HTTP status or None, "error"}
        self._queue: queue.Queue = queue.Queue()
        self._idle = threading.Condition()
        self._pending = 0
        self._thread: threading.Thread | None = None

    def stage(self, events: list[dict]) -> list[tuple[dict, bytes]]:
        """Sign events into the outbox (before the API response goes out, so a test sees them at
        once); returns what `send` should deliver once the response has been written."""
        staged = []
        for event in events:
            payload = json.dumps(event, indent=2).encode()
            self.outbox.append((payload, sign(payload, self.secret)))
            staged.append((event, payload))
        if self.url and staged:
            with self._idle:
                self._pending += len(staged)
        return staged if self.url else []

    def send(self, staged: list[tuple[dict, bytes]]) -> None:
        if staged:
            self._ensure_thread()
            for item in staged:
                self._queue.put(item)

    def publish(self, events: list[dict]) -> None:
        self.send(self.stage(events))

    def _ensure_thread(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._run, name="stripe-fake-webhooks", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            event, payload = item
            try:
                self._deliver(event, payload)
            finally:
                with self._idle:
                    self._pending -= 1
                    self._idle.notify_all()

    def _deliver(self, event: dict, payload: bytes) -> None:
        record = {"event": event["id"], "type": event["type"], "status": None, "error": ""}
        request = urllib.request.Request(self.url, data=payload, method="POST", headers={
            "Content-Type": "application/json; charset=utf-8",
            "Stripe-Signature": sign(payload, self.secret),  # signed when sent, as Stripe does
            "User-Agent": "Stripe/1.0 (+https://stripe.com/docs/webhooks)"})
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                record["status"] = response.status
        except urllib.error.HTTPError as error:
            record.update(status=error.code, error=error.read()[:2000].decode(errors="replace"))
        except OSError as error:
            record["error"] = str(error)
        self.deliveries.append(record)

    def wait(self, timeout: float = 5.0) -> bool:
        """Until every published event has been delivered; False on timeout."""
        with self._idle:
            return self._idle.wait_for(lambda: self._pending == 0, timeout)

    def stop(self) -> None:
        if self._thread and self._thread.is_alive():
            self._queue.put(None)
            self._thread.join(timeout=5)
