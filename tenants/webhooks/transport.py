"""Sending one webhook request: resolve and check the address (targets.resolve_checked),
connect to that very address with the original Host header and TLS name, no redirects,
a 10 s timeout, and read at most a small excerpt of the answer (an endpoint cannot make
us download a large body). Network failures become a SendResult, never an exception."""
import time
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

import httpx

from .targets import TargetRefused, resolve_checked

TIMEOUT = httpx.Timeout(10.0, connect=5.0)
EXCERPT_BYTES = 1024
# A body dribbled a byte at a time would dodge the per-read timeout; stop reading here.
TOTAL_SECONDS = 15.0
USER_AGENT = "Aerolith-Webhooks/1.0 (+https://aerolith.cloud/docs/webhooks)"


@dataclass(frozen=True)
class SendResult:
    status_code: int | None
    error: str
    excerpt: str
    duration_ms: int

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


def _pinned(url: str, address: str) -> tuple[str, str, str]:
    """(URL with the host replaced by `address`, Host header, TLS server name)."""
    parts = urlsplit(url)
    host = parts.hostname
    literal = f"[{address}]" if ":" in address else address
    netloc = literal if parts.port is None else f"{literal}:{parts.port}"
    host_header = parts.netloc.rsplit("@", 1)[-1]
    return urlunsplit(parts._replace(netloc=netloc)), host_header, host


def send(url: str, body: bytes, headers: dict[str, str], *, test_mode: bool) -> SendResult:
    started = time.monotonic()

    def result(status=None, error="", excerpt=""):
        return SendResult(status, error[:500], excerpt,
                          int((time.monotonic() - started) * 1000))

    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        address = resolve_checked(parts.hostname or "", port, test_mode=test_mode)
    except TargetRefused as exc:
        return result(error=f"Refused: {exc}")
    target, host_header, server_name = _pinned(url, address)
    request_headers = {**headers, "Host": host_header, "User-Agent": USER_AGENT}
    try:
        # trust_env=False: no proxy or netrc from the environment may reroute a delivery.
        with httpx.Client(timeout=TIMEOUT, follow_redirects=False, trust_env=False) as client:
            with client.stream("POST", target, content=body, headers=request_headers,
                               extensions={"sni_hostname": server_name}) as response:
                chunks, size = [], 0
                for chunk in response.iter_raw():
                    chunks.append(chunk)
                    size += len(chunk)
                    if size >= EXCERPT_BYTES or time.monotonic() - started > TOTAL_SECONDS:
                        break
                excerpt = b"".join(chunks)[:EXCERPT_BYTES].decode("utf-8", "replace")
                error = "" if 200 <= response.status_code < 300 else (
                    f"The endpoint answered HTTP {response.status_code}"
                    + (" (redirects are not followed; give the final URL)"
                       if 300 <= response.status_code < 400 else "") + ".")
                return result(response.status_code, error, excerpt)
    except httpx.TimeoutException:
        return result(error=f"No answer within {TIMEOUT.read:.0f} s (timeout).")
    except httpx.HTTPError as exc:
        return result(error=f"Could not connect: {exc.__class__.__name__}: {exc}")
