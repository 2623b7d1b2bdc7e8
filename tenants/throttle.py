"""Failed sign-in throttling (SPEC §8) with django-axes: the hooks its settings name
(AXES_USERNAME_CALLABLE, AXES_CLIENT_IP_CALLABLE, AXES_LOCKOUT_CALLABLE) and the few
helpers the login views, the two-factor step and the token endpoint share.

Every sign-in goes through django.contrib.auth.authenticate(request, ...), whose first
backend (axes.backends.AxesStandaloneBackend) refuses a locked account or IP before the
password is even checked; a failure is counted by axes' user_login_failed receiver. A wrong
two-factor code after a right password counts as a failure too (`login_failed`)."""
import ipaddress
import math

from django.contrib.auth.signals import user_login_failed
from django.shortcuts import render

from aerolith.api.errors import PROBLEM_CONTENT_TYPE, problem, problem_response


def login_username(request, credentials: dict | None) -> str | None:
    """The account an attempt is for, as one key however it was typed: our forms send
    `email` (public login, API) or `username` (Django's AuthenticationForm, the admin)."""
    credentials = credentials or {}
    raw = credentials.get("email") or credentials.get("username")
    if raw is None:
        data = getattr(request, "data", None) or getattr(request, "POST", {})
        try:
            raw = data.get("email") or data.get("username")
        except AttributeError:  # a JSON body that is a list, not an object
            raw = None
    return str(raw).strip().lower()[:254] if raw else None


def client_ip(request) -> str:
    """REMOTE_ADDR: the proxy in front of the app sets it; X-Forwarded-For is the client's
    to forge, so trusting it would let anyone dodge the per-IP limit."""
    raw = request.META.get("REMOTE_ADDR") or ""
    try:
        return str(ipaddress.ip_address(raw))
    except ValueError:
        # No usable address (a server on a UNIX socket sends ""): axes stores the IP in an
        # inet column, where "unknown" was a 500, so all such clients share 0.0.0.0.
        return "0.0.0.0"  # nosec B104 - a placeholder value stored, not an address bound


def cooloff_seconds() -> int:
    from axes.helpers import get_cool_off

    cool_off = get_cool_off()
    return max(1, math.ceil(cool_off.total_seconds())) if cool_off else 0


def lockout_text() -> str:
    minutes = max(1, math.ceil(cooloff_seconds() / 60))
    return (f"Too many failed sign-in attempts for this account or from your network. "
            f"Wait {minutes} minute{'s' if minutes != 1 else ''} and try again; each new "
            f"failed attempt meanwhile starts the wait again.")


def is_locked_out(request) -> bool:
    """Whether the authenticate() just made on this request was refused or ended in a
    lockout (axes marks the request; DRF's Request keeps its own attributes)."""
    return bool(getattr(request, "axes_locked_out", False))


def login_failed(request, email: str) -> None:
    """Count a failed second factor like a wrong password (same receivers as
    authenticate() uses)."""
    user_login_failed.send(sender=__name__, credentials={"email": email}, request=request)


def lockout_problem():
    """429 problem+json with Retry-After (for DRF views): the whole cool-off, since the
    failure that got here (re)started it."""
    wait = cooloff_seconds()
    body = problem(429, "too_many_login_attempts", lockout_text(),
                   title="Too many sign-in attempts", retry_after=wait)
    return problem_response(body, {"Retry-After": str(wait)})


def lockout_response(request, original_response=None, credentials=None):
    """AXES_LOCKOUT_CALLABLE: what AxesMiddleware answers when a sign-in on a page we did
    not write (Django's admin login) hit the limit. Our own pages already answered 429 with
    the message in the form; those answers are kept."""
    if original_response is not None and original_response.status_code == 429:
        return original_response
    wait = cooloff_seconds()
    if request.path.startswith("/api/"):
        from django.http import JsonResponse

        response = JsonResponse(
            problem(429, "too_many_login_attempts", lockout_text(),
                    title="Too many sign-in attempts", retry_after=wait),
            status=429, content_type=PROBLEM_CONTENT_TYPE)
    else:
        response = render(request, "portal/locked_out.html", {"reason": lockout_text()},
                          status=429)
    response["Retry-After"] = str(wait)
    return response
