"""Staff need a second factor before the admin opens (SPEC §8).

A middleware rather than django-otp's OTPAdminSite: every app registers on the default
`admin.site`, which would have to be swapped for another class through a custom AdminConfig;
OTPAdminSite's login form also only asks for a code from a device the user already has, so a
new staff member could never get in to enrol. Here staff sign in with their password as
before (admin login or the public /login), and until this session has passed a code every
admin URL sends them to the code page — or, without a confirmed device yet, to the enrolment
page (QR code, then recovery codes shown once). On tenant domains the admin does not exist."""
from functools import cached_property
from urllib.parse import urlencode

from django.conf import settings
from django.contrib.auth import logout
from django.contrib.auth.views import redirect_to_login
from django.http import Http404
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_http_methods
from django_otp import login as otp_login

from aerolith.errors import DomainError

from .services import two_factor
from .throttle import lockout_text


class StaffOTPRequiredMiddleware:
    """After django_otp's OTPMiddleware: an unverified staff session reaches only the admin's
    login and logout pages."""

    def __init__(self, get_response):
        self.get_response = get_response

    @cached_property
    def _admin_paths(self) -> tuple[str, tuple[str, ...]]:
        conf = settings.PUBLIC_SCHEMA_URLCONF
        return (reverse("admin:index", urlconf=conf),
                (reverse("admin:login", urlconf=conf), reverse("admin:logout", urlconf=conf)))

    def __call__(self, request):
        tenant = getattr(request, "tenant", None)
        if tenant is not None and tenant.is_public:
            prefix, open_paths = self._admin_paths
            if request.path.startswith(prefix) and request.path not in open_paths:
                user = request.user
                if user.is_authenticated and user.is_staff and not user.is_verified():
                    step = ("portal:staff-2fa-verify" if two_factor.two_factor_enabled(user)
                            else "portal:staff-2fa-setup")
                    url = reverse(step, urlconf=settings.PUBLIC_SCHEMA_URLCONF)
                    return redirect(f"{url}?{urlencode({'next': request.get_full_path()})}")
        return self.get_response(request)


def _staff_only(request):
    """None when the request may see the staff two-factor pages, else the answer."""
    if not request.tenant.is_public:
        raise Http404
    if not request.user.is_authenticated:
        return redirect_to_login(request.get_full_path(), reverse("admin:login"))
    if not request.user.is_staff:
        raise Http404
    return None


def _next(request) -> str:
    target = request.GET.get("next") or request.POST.get("next") or ""
    if url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()},
                                       require_https=request.is_secure()):
        return target
    return reverse("admin:index")


@require_http_methods(["GET", "POST"])
def staff_verify(request):
    from .portal.security import OtpForm, verify_code

    refused = _staff_only(request)
    if refused is not None:
        return refused
    user = request.user
    if user.is_verified():
        return redirect(_next(request))
    if not two_factor.two_factor_enabled(user):
        return redirect(f"{reverse('portal:staff-2fa-setup')}?{urlencode({'next': _next(request)})}")
    form = OtpForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        device, locked = verify_code(request, form, user)
        if locked:
            logout(request)
            response = render(request, "portal/locked_out.html", {"reason": lockout_text()},
                              status=429)
            return response
        if device is not None:
            otp_login(request, device)
            return redirect(_next(request))
    return render(request, "portal/login_verify.html",
                  {"form": form, "staff": True, "next": _next(request)},
                  status=400 if form.errors else 200)


@require_http_methods(["GET", "POST"])
def staff_setup(request):
    from aerolith.portal_forms import apply_errors

    from .portal.security import EnrolForm, codes_context, enrolment_context

    refused = _staff_only(request)
    if refused is not None:
        return refused
    user = request.user
    if two_factor.two_factor_enabled(user):
        return redirect(f"{reverse('portal:staff-2fa-verify')}?{urlencode({'next': _next(request)})}")
    device = two_factor.totp_enrolment(user)
    form = EnrolForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            device, codes = two_factor.totp_enrol_confirm(user=user, code=form.cleaned_data["code"])
        except DomainError as error:
            apply_errors(form, error)
        else:
            otp_login(request, device)
            return render(request, "portal/recovery_codes.html", {
                **codes_context(codes), "title": "Two-factor authentication is on",
                "continue_url": _next(request)})
    return render(request, "portal/two_factor_setup.html",
                  {**enrolment_context(device), "form": form, "staff": True,
                   "next": _next(request)},
                  status=400 if form.errors else 200)
