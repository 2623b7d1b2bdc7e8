"""The account's security page on a tenant's domain (`/security`): two-factor
authentication on or off, recovery codes, and the way to the organisation's SSO settings.
Also the pieces every two-factor step shares: the code form, the pending sign-in kept in
the session between password and code, and the enrolment page's QR code (drawn here with
segno, no outside service sees the secret)."""
from base64 import b32encode

import segno
from django import forms
from django.contrib import messages
from django.contrib.auth import authenticate
from django.shortcuts import redirect, render
from django.urls import NoReverseMatch, reverse
from django.views.decorators.http import require_http_methods, require_POST

from aerolith import clock
from aerolith.errors import DomainError, ValidationFailed
from aerolith.portal_forms import apply_errors

from ..models import User
from ..permissions import Action
from ..services import two_factor
from ..throttle import is_locked_out, lockout_text, login_failed
from .access import member_required

PENDING_KEY = "aerolith_2fa_pending"
PENDING_SECONDS = 300  # between the right password and the code


class OtpForm(forms.Form):
    code = forms.CharField(label="Code", max_length=32, help_text=two_factor.CODE_HELP,
                           widget=forms.TextInput(attrs={"autocomplete": "one-time-code",
                                                         "autofocus": True}))


class EnrolForm(forms.Form):
    code = forms.CharField(label="Code from the app", max_length=32,
                           widget=forms.TextInput(attrs={"autocomplete": "one-time-code",
                                                         "inputmode": "numeric"}))


class ConfirmIdentityForm(forms.Form):
    """Changing the second factor needs the password or a current code, so an unattended
    session alone cannot remove it or read new recovery codes."""

    password = forms.CharField(label="Your password", widget=forms.PasswordInput,
                               max_length=128, required=False)
    code = forms.CharField(label="…or a code", max_length=32, required=False,
                           help_text=two_factor.CODE_HELP)

    def clean(self):
        data = super().clean()
        if not data.get("password") and not data.get("code"):
            raise forms.ValidationError("Enter your password or a code to confirm.",
                                        code="confirmation_required")
        return data


# --- the pending sign-in ------------------------------------------------------------------

def pending_start(request, user: User, next_url: str = "") -> None:
    request.session[PENDING_KEY] = {"u": user.pk, "at": int(clock.wall_now().timestamp()),
                                    "next": next_url or ""}


def pending_get(request) -> tuple[User | None, str]:
    """The user who gave the right password in this session in the last few minutes and
    still owes a code, and where they were going."""
    data = request.session.get(PENDING_KEY)
    if not isinstance(data, dict):
        return None, ""
    if clock.wall_now().timestamp() - data.get("at", 0) > PENDING_SECONDS:
        request.session.pop(PENDING_KEY, None)
        return None, ""
    user = User.objects.filter(pk=data.get("u"), is_active=True).first()
    return user, data.get("next") or ""


def pending_clear(request) -> None:
    request.session.pop(PENDING_KEY, None)


def verify_code(request, form, user: User):
    """The device that accepted the form's code, or None with the form's errors set; a
    wrong code counts as a failed sign-in (django-axes). Returns (device, locked_out)."""
    try:
        return two_factor.otp_check(user, form.cleaned_data["code"]), False
    except ValidationFailed as error:
        login_failed(request, user.email)
        if is_locked_out(request):
            form.add_error(None, lockout_text())
            return None, True
        apply_errors(form, error)
        return None, False


# --- enrolment pieces ---------------------------------------------------------------------

def enrolment_context(device) -> dict:
    secret = b32encode(device.bin_key).decode()
    return {
        "qr_data_uri": segno.make(device.config_url, error="m").svg_data_uri(scale=5),
        "secret": " ".join(secret[i:i + 4] for i in range(0, len(secret), 4)),
    }


def codes_context(codes: list[str]) -> dict:
    return {"codes": [two_factor.format_recovery_code(code) for code in codes]}


def _sso_url(principal) -> str | None:
    """The organisation's SSO settings, for those who may change them, when that page
    exists in this deployment."""
    if not principal.can(Action.MANAGE_MEMBERS):
        return None
    try:
        return reverse("portal:sso-settings")
    except NoReverseMatch:
        return None


# --- /security ----------------------------------------------------------------------------

@member_required()
def security(request):
    user = request.user
    return render(request, "portal/security.html", {
        "enabled": two_factor.two_factor_enabled(user),
        "device": two_factor.totp_device_of(user),
        "codes_left": two_factor.recovery_codes_left(user),
        "confirm_form": ConfirmIdentityForm(),
        "sso_url": _sso_url(request.principal),
    })


def _signed_in_with_password(request) -> bool:
    """Two-factor settings belong to the global account: a session opened through one
    organisation's identity provider may not change them (that provider could otherwise
    lock the person out of every other organisation)."""
    from .sso import AUTH_METHOD_SESSION_KEY

    if request.session.get(AUTH_METHOD_SESSION_KEY) != "sso":
        return True
    messages.error(request, "You signed in through your organisation's identity provider, "
                            "which handles the second factor. To change two-factor settings "
                            "of your Aerolith account, sign in with its password.")
    return False


@member_required()
@require_http_methods(["GET", "POST"])
def security_enrol(request):
    user = request.user
    if not _signed_in_with_password(request):
        return redirect("portal:security")
    if two_factor.two_factor_enabled(user):
        messages.info(request, "Two-factor authentication is already on.")
        return redirect("portal:security")
    device = two_factor.totp_enrolment(user)
    form = EnrolForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            device, codes = two_factor.totp_enrol_confirm(user=user, code=form.cleaned_data["code"],
                                                          tenant=request.tenant)
        except DomainError as error:
            apply_errors(form, error)
        else:
            from django_otp import login as otp_login

            otp_login(request, device)
            return render(request, "portal/recovery_codes.html", {
                **codes_context(codes), "title": "Two-factor authentication is on",
                "continue_url": reverse("portal:security")})
    return render(request, "portal/two_factor_setup.html",
                  {**enrolment_context(device), "form": form,
                   "cancel_url": reverse("portal:security")},
                  status=400 if form.errors else 200)


def _confirmed(request, form) -> bool:
    """Whether the form's password or code is the signed-in user's (errors set if not)."""
    user = request.user
    if not form.is_valid():
        return False
    if form.cleaned_data["password"]:
        if authenticate(request, email=user.email, password=form.cleaned_data["password"]) is None:
            form.add_error("password", lockout_text() if is_locked_out(request)
                           else "That password is wrong.")
            return False
        return True
    if not two_factor.two_factor_enabled(user):
        form.add_error("code", "Two-factor authentication is off: confirm with your password.")
        return False
    device, _locked = verify_code(request, form, user)
    return device is not None


def _security_with_errors(request, form):
    user = request.user
    return render(request, "portal/security.html", {
        "enabled": two_factor.two_factor_enabled(user),
        "device": two_factor.totp_device_of(user),
        "codes_left": two_factor.recovery_codes_left(user),
        "confirm_form": form,
        "sso_url": _sso_url(request.principal),
    }, status=429 if is_locked_out(request) else 400)


@member_required()
@require_POST
def security_recovery_codes(request):
    if not _signed_in_with_password(request):
        return redirect("portal:security")
    form = ConfirmIdentityForm(request.POST)
    if not _confirmed(request, form):
        return _security_with_errors(request, form)
    try:
        codes = two_factor.recovery_codes_regenerate(user=request.user, tenant=request.tenant)
    except DomainError as error:
        apply_errors(form, error)
        return _security_with_errors(request, form)
    return render(request, "portal/recovery_codes.html", {
        **codes_context(codes), "title": "New recovery codes",
        "continue_url": reverse("portal:security")})


@member_required()
@require_POST
def security_disable(request):
    if not _signed_in_with_password(request):
        return redirect("portal:security")
    form = ConfirmIdentityForm(request.POST)
    if not _confirmed(request, form):
        return _security_with_errors(request, form)
    try:
        two_factor.two_factor_disable(user=request.user, tenant=request.tenant)
    except DomainError as error:
        apply_errors(form, error)
        return _security_with_errors(request, form)
    messages.info(request, "Two-factor authentication is off. Sign-ins now need only your "
                           "password.")
    return redirect("portal:security")
