"""Portal pages for single sign-on (SPEC §8, §11): the settings page at /security/sso, and
the sign-in round trip through the tenant's OpenID provider (/sso/login → provider →
/sso/callback). Thin: the protocol is tenants.oidc, the writes tenants.services.sso.

Every refusal of the round trip (state or nonce mismatch, a bad token, the provider's own
error, an unverified email...) renders one friendly page with status 400 or 403 and
changes nothing; the flow's secrets are single-use because the callback pops them first.
"""
from datetime import datetime, timedelta

from django import forms
from django.contrib import messages
from django.contrib.auth import login
from django.http import Http404, HttpResponseRedirect
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_http_methods

from aerolith import clock
from aerolith.errors import DomainError
from aerolith.portal_forms import apply_errors

from .. import oidc
from ..models import Role
from ..permissions import Action
from ..selectors import tenant_url
from ..services.sso import (
    JIT_ROLES,
    SsoNotAvailable,
    sso_client_secret,
    sso_config_of,
    sso_config_save,
    sso_login_config,
    sso_require_plan,
    sso_sign_in,
)
from .access import member_required

FLOW_SESSION_KEY = "sso_flow"
# Read by the two-factor step: a session opened through the organisation's provider has
# had its MFA there, so the local TOTP step does not apply (README, Security).
AUTH_METHOD_SESSION_KEY = "auth_method"
FLOW_MAX_AGE = timedelta(minutes=10)


class SsoSettingsForm(forms.Form):
    issuer = forms.CharField(label="Issuer URL", max_length=300,
                             help_text="As your provider states it, e.g. https://login.example.com. "
                                       "Aerolith reads <issuer>/.well-known/openid-configuration.")
    client_id = forms.CharField(label="Client ID", max_length=255)
    client_secret = forms.CharField(
        label="Client secret", max_length=1000, required=False,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text="Stored encrypted and never shown again.")
    default_role = forms.ChoiceField(
        label="Role of new members", choices=[(r, Role(r).label) for r in JIT_ROLES],
        initial=Role.VIEWER,
        help_text="People who sign in through SSO for the first time join with this role.")
    allowed_domains = forms.CharField(
        label="Allowed email domains", max_length=2000, required=False,
        help_text="Optional, comma-separated (example.com, example.org). Empty allows every "
                  "address your provider has verified.")
    enabled = forms.BooleanField(label="Let members sign in through SSO", required=False)


def _redirect_uri(tenant) -> str:
    # The address registered with the provider; from settings, not from the request's Host.
    return tenant_url(tenant, reverse("portal:sso-callback"))


@never_cache
@require_http_methods(["GET", "POST"])
@member_required(Action.MANAGE_MEMBERS)
def sso_settings(request):
    tenant = request.tenant
    context = {"redirect_uri": _redirect_uri(tenant)}
    try:
        sso_require_plan(tenant)
    except SsoNotAvailable as error:
        # Shown on GET too: the page explains what the plan lacks; a POST changes nothing.
        return render(request, "portal/sso_settings.html", {**context, "reason": error.detail},
                      status=error.status)
    config = sso_config_of(tenant)
    initial = {}
    if config is not None:
        initial = {"issuer": config.issuer, "client_id": config.client_id,
                   "default_role": config.default_role, "enabled": config.enabled,
                   "allowed_domains": ", ".join(config.allowed_domains)}
    form = SsoSettingsForm(request.POST or None, initial=initial)
    if config is not None:
        form.fields["client_secret"].help_text = ("A secret is stored; leave empty to keep it. "
                                                  "It is never shown again.")
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        domains = [d for d in data["allowed_domains"].replace(";", ",").replace(" ", ",").split(",")
                   if d.strip()]
        try:
            sso_config_save(principal=request.principal, issuer=data["issuer"],
                            client_id=data["client_id"], client_secret=data["client_secret"],
                            default_role=data["default_role"], enabled=data["enabled"],
                            allowed_domains=domains)
        except DomainError as error:
            apply_errors(form, error)
        else:
            messages.success(request, "Single sign-on settings saved; the provider answered.")
            return redirect("portal:sso-settings")
    return render(request, "portal/sso_settings.html", {**context, "form": form, "config": config},
                  status=400 if form.errors else 200)


def _refuse(request, detail: str, status: int = 400):
    return render(request, "portal/sso_error.html", {"reason": detail}, status=status)


def _safe_next(request, candidate: str | None) -> str:
    if candidate and url_has_allowed_host_and_scheme(candidate, allowed_hosts={request.get_host()},
                                                     require_https=request.is_secure()):
        return candidate
    return reverse("portal:dashboard")


@never_cache
@require_GET
def sso_login(request):
    """Start the round trip: fresh state, nonce and PKCE verifier in the session, then off
    to the provider's authorization endpoint."""
    if request.tenant.is_public:
        raise Http404
    config = sso_login_config(request.tenant)
    if config is None:
        return _refuse(request, "Single sign-on is not enabled for this organisation. Sign in with "
                                "your email and password.", status=403)
    flow = oidc.Flow.new()
    request.session[FLOW_SESSION_KEY] = {
        "state": flow.state, "nonce": flow.nonce, "verifier": flow.verifier,
        "next": _safe_next(request, request.GET.get("next")),
        "started": clock.wall_now().isoformat(),
    }
    return HttpResponseRedirect(oidc.authorization_url(
        config.discovery, client_id=config.client_id, redirect_uri=_redirect_uri(request.tenant),
        flow=flow))


def _flow_from_session(request) -> tuple[oidc.Flow, str]:
    saved = request.session.pop(FLOW_SESSION_KEY, None)
    try:
        flow = oidc.Flow(saved["state"], saved["nonce"], saved["verifier"])
        started = datetime.fromisoformat(saved["started"])
    except (TypeError, KeyError, ValueError):
        raise oidc.OidcError("This sign-in was not started from this browser, or was already "
                             "used. Start again from the sign-in page.", code="no_flow") from None
    if clock.wall_now() - started > FLOW_MAX_AGE:
        raise oidc.OidcError("This sign-in took too long. Start again from the sign-in page.",
                             code="flow_expired")
    return flow, saved.get("next") or reverse("portal:dashboard")


@never_cache
@require_GET
def sso_callback(request):
    """The provider sends the browser back here with `code` and `state` (or `error`)."""
    tenant = request.tenant
    if tenant.is_public:
        raise Http404
    try:
        flow, next_url = _flow_from_session(request)
        if not oidc.same(request.GET.get("state", ""), flow.state):
            raise oidc.OidcError("The answer from your identity provider does not match this "
                                 "sign-in attempt. Start again from the sign-in page.",
                                 code="state_mismatch")
        if request.GET.get("error"):
            description = request.GET.get("error_description", "")[:200]
            raise oidc.OidcError(
                f"Your identity provider refused the sign-in ({request.GET['error'][:60]}"
                f"{': ' + description if description else ''}). Try again or ask your "
                "administrator.", code="provider_error")
        config = sso_login_config(tenant)
        if config is None:
            return _refuse(request, "Single sign-on is not enabled for this organisation. Sign "
                                    "in with your email and password.", status=403)
        code = request.GET.get("code", "")
        if not code or len(code) > 2000:
            raise oidc.OidcError("Your identity provider answered without an authorization code.",
                                 code="no_code")
        id_token = oidc.exchange_code(
            config.discovery, client_id=config.client_id,
            client_secret=sso_client_secret(tenant, config), code=code,
            redirect_uri=_redirect_uri(tenant), flow=flow)
        claims = oidc.verify_id_token(id_token, config.discovery, client_id=config.client_id,
                                      nonce=flow.nonce)
        user = sso_sign_in(tenant=tenant, config=config, claims=claims)
    except oidc.OidcError as error:
        return _refuse(request, error.detail)
    except DomainError as error:
        return _refuse(request, error.detail, status=error.status)
    login(request, user, backend="django.contrib.auth.backends.ModelBackend")
    request.session[AUTH_METHOD_SESSION_KEY] = "sso"
    messages.success(request, f"Signed in through {tenant.name}'s identity provider.")
    return HttpResponseRedirect(next_url)
