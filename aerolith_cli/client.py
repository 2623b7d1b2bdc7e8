"""The HTTP side of the CLI: httpx against /api/v1/, and every failure turned into a
`CliError` whose message says what happened and what to do (the API's problem+json
`detail` when it sent one).

`*.localhost` names: browsers resolve them to this machine, but Python asks the OS
resolver, which often does not know `acme.aerolith.localhost`. For such hosts the client
connects to 127.0.0.1 and sends the original name in the Host header, which is what
selects the organisation (the same trick as `curl -H 'Host: …' localhost:8000`).
"""
from urllib.parse import urlsplit, urlunsplit

import httpx

EXIT_OK, EXIT_API, EXIT_USAGE, EXIT_AUTH = 0, 1, 2, 3
API_PREFIX = "/api/v1"
TIMEOUT = httpx.Timeout(30.0, connect=5.0)
USER_AGENT = "aerolith-cli/0.1"


class CliError(Exception):
    def __init__(self, message: str, exit_code: int = EXIT_API):
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code


def normalise_url(raw: str) -> str:
    """`acme.aerolith.localhost:8000` or `http://…/api/v1/` → `http://acme…:8000`."""
    raw = raw.strip()
    if "://" not in raw:
        raw = "http://" + raw
    parts = urlsplit(raw)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise CliError(f"'{raw}' is not an http(s) URL; give e.g. "
                       "http://acme.aerolith.localhost:8000", EXIT_USAGE)
    path = parts.path.rstrip("/")
    if path.endswith(API_PREFIX):
        path = path[: -len(API_PREFIX)]
    return urlunsplit((parts.scheme, parts.netloc, path, "", ""))


def _connection_target(url: str) -> tuple[str, dict]:
    """The base URL to connect to and the headers to add (Host for *.localhost)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if host == "localhost" or host.endswith(".localhost"):
        port = f":{parts.port}" if parts.port else ""
        target = urlunsplit((parts.scheme, f"127.0.0.1{port}", parts.path, "", ""))
        return target, {"Host": parts.netloc}
    return url, {}


class Api:
    def __init__(self, url: str, key: str, transport: httpx.BaseTransport | None = None):
        self.url = normalise_url(url)
        base, extra = _connection_target(self.url)
        self._http = httpx.Client(
            base_url=base + API_PREFIX, timeout=TIMEOUT, transport=transport,
            headers={"Authorization": f"Bearer {key}", "User-Agent": USER_AGENT,
                     "Accept": "application/json", **extra})

    def close(self) -> None:
        self._http.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def request(self, method: str, path: str, **kwargs) -> httpx.Response:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.ConnectError as exc:
            raise CliError(f"Cannot connect to {self.url} ({_reason(exc)}). Is the server "
                           "running and the URL right? Log in again with "
                           "`aerolith login --url …` to change it.") from exc
        except httpx.TimeoutException as exc:
            raise CliError(f"{self.url} did not answer in time; try again later.") from exc
        except httpx.HTTPError as exc:
            raise CliError(f"The request to {self.url} failed: {exc}.") from exc
        if response.status_code >= 400:
            raise error_for(response)
        return response

    def get(self, path: str, **kwargs):
        return self.request("GET", path, **kwargs).json()

    def post(self, path: str, body: dict):
        return self.request("POST", path, json=body).json()

    def patch(self, path: str, body: dict):
        return self.request("PATCH", path, json=body).json()

    def delete(self, path: str) -> None:
        self.request("DELETE", path)

    def paginate(self, path: str, params: dict | None = None) -> list:
        """Every item of a cursor-paginated list ({results, next}), following `next`."""
        items: list = []
        body = self.get(path, params=params)
        while True:
            if not isinstance(body, dict) or "results" not in body:
                return body if isinstance(body, list) else items
            items += body["results"]
            if not body.get("next"):
                return items
            # `next` is absolute on the server's own name; keep our connection and Host.
            parts = urlsplit(body["next"])
            path = parts.path[parts.path.index(API_PREFIX) + len(API_PREFIX):]
            body = self.get(f"{path}?{parts.query}" if parts.query else path)


def _reason(exc: Exception) -> str:
    text = str(exc)
    if "refused" in text.lower():
        return "connection refused"
    return text or exc.__class__.__name__


def _detail(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return ""
    if not isinstance(body, dict):
        return ""
    detail = str(body.get("detail") or body.get("title") or "")
    fields = [f"{e.get('field')}: {e.get('detail')}" if e.get("field") else str(e.get("detail"))
              for e in body.get("errors") or [] if isinstance(e, dict)]
    return (detail + "".join(f"\n  - {f}" for f in fields)).strip()


def error_for(response: httpx.Response) -> CliError:
    status, detail = response.status_code, _detail(response)
    if status == 401:
        return CliError(f"The API refused the key: {detail or 'not authenticated'}\n"
                        "Log in again with `aerolith login --url <your organisation URL>`.",
                        EXIT_AUTH)
    if status == 403:
        return CliError(f"Not allowed: {detail or 'this key may not do that'}", EXIT_AUTH)
    if status == 404:
        return CliError(f"Not found: {detail or response.request.url.path}")
    if status == 429:
        wait = response.headers.get("Retry-After")
        after = f" Retry after {wait} seconds." if wait else " Wait a little and retry."
        return CliError(f"Too many requests: {detail or 'rate limit reached'}.{after}".replace(
            "..", "."))
    if status >= 500:
        request_id = response.headers.get("X-Request-ID")
        ref = f" (request id {request_id})" if request_id else ""
        return CliError(f"The server failed (HTTP {status}){ref}; try again later, and "
                        "contact support if it persists.")
    return CliError(detail or f"The API answered HTTP {status}.")
