"""Which URLs a webhook endpoint may have, and which addresses a delivery may reach.

Webhooks make our servers send requests to URLs that customers choose, which is the
textbook set-up for server-side request forgery: an endpoint at http://169.254.169.254/
(cloud metadata), http://10.0.0.5:6379/ or http://localhost:5432/ would have Aerolith
probe its own network and show the answers in the delivery log. So:

- an endpoint must use https; plain http is accepted only in test mode (AEROLITH_TEST_MODE)
  and only towards this machine (127.0.0.1, ::1, localhost, *.localhost), for local
  receivers and the test suite;
- IP literals must be public (not private, loopback, link-local, CGNAT, multicast,
  reserved...), except loopback in test mode; names like `localhost`, single-label hosts
  (`intranet`) and numeric hosts (`2130706433`, `0x7f.1`) are refused;
- a name can still resolve to a private address (or be re-pointed there after the check),
  so every send resolves the name, refuses if any address is not public, and connects to
  the address it checked (tenants.webhooks.transport pins it), never resolving twice.
"""
import ipaddress
import re
import socket
from urllib.parse import urlsplit

MAX_URL_LENGTH = 2000
_NUMERIC_LABEL = re.compile(r"^(0x[0-9a-f]*|[0-9]+)$", re.IGNORECASE)
_BAD_CHARACTERS = re.compile(r"[\s\x00-\x1f\x7f]")


class TargetRefused(Exception):
    """A URL or address webhooks may not use; the message says why and what to do."""


def _ip(host: str):
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def _is_loopback_name(host: str) -> bool:
    return host == "localhost" or host.endswith(".localhost")


def address_allowed(address, *, test_mode: bool) -> bool:
    """Public addresses only; loopback too in test mode."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if test_mode and address.is_loopback:
        return True
    return address.is_global and not address.is_multicast


def endpoint_url_check(url, *, test_mode: bool) -> str:
    """The URL, stripped, if an endpoint may use it; else TargetRefused."""
    if not isinstance(url, str) or not url.strip():
        raise TargetRefused("Give the URL that should receive events, e.g. "
                            "https://example.com/aerolith/webhooks.")
    url = url.strip()
    if len(url) > MAX_URL_LENGTH:
        raise TargetRefused(f"The URL is longer than {MAX_URL_LENGTH} characters.")
    if _BAD_CHARACTERS.search(url):
        raise TargetRefused("The URL contains spaces or control characters.")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise TargetRefused("This is not a valid URL (check the host and port).") from None
    scheme, host = parts.scheme.lower(), (parts.hostname or "").lower().rstrip(".")
    if scheme not in ("https", "http") or not host:
        raise TargetRefused("Give a full https:// URL, e.g. https://example.com/webhooks.")
    if parts.username is not None or parts.password is not None:
        raise TargetRefused("Credentials in the URL are not allowed (they would be stored and "
                            "shown in clear); every delivery is signed, verify the signature "
                            "instead.")
    if parts.fragment:
        raise TargetRefused("Remove the #fragment: it is never sent to a server.")
    if port == 0:
        raise TargetRefused("Port 0 is not a port that can receive requests.")
    address = _ip(host)
    local = (address is not None and address.is_loopback) or _is_loopback_name(host)
    if scheme == "http" and not (test_mode and local):
        raise TargetRefused("Use https:// — events carry your billing data and are sent over "
                            "TLS only" + (" (plain http is allowed in test mode for 127.0.0.1 "
                                          "and *.localhost only)." if test_mode else "."))
    if address is not None:
        if not address_allowed(address, test_mode=test_mode):
            raise TargetRefused(f"{host} is a private, loopback, link-local or reserved address; "
                                "webhooks are sent to public addresses only.")
    elif _is_loopback_name(host):
        if not test_mode:
            raise TargetRefused(f"{host} is this machine; give a public host name.")
    elif "." not in host or _NUMERIC_LABEL.match(host.rsplit(".", 1)[-1]):
        raise TargetRefused(f"'{host}' is not a public host name; give one like "
                            "hooks.example.com.")
    return url


def resolve_checked(host: str, port: int, *, test_mode: bool) -> str:
    """The address to connect to for `host`: every address it resolves to must be allowed
    (one bad answer refuses all, so a round-robin record cannot sneak one in)."""
    literal = _ip(host)
    if literal is not None:
        candidates = [literal]
    else:
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (OSError, UnicodeError) as exc:
            raise TargetRefused(f"{host} does not resolve ({exc.__class__.__name__}).") from None
        candidates = [ipaddress.ip_address(info[4][0].split("%", 1)[0]) for info in infos]
    if not candidates:
        raise TargetRefused(f"{host} does not resolve.")
    for address in candidates:
        if not address_allowed(address, test_mode=test_mode):
            raise TargetRefused(f"{host} resolves to {address}, which is not a public address; "
                                "nothing was sent.")
    ipv4 = [a for a in candidates if a.version == 4]
    return str((ipv4 or candidates)[0])
