"""Portal views: thin, like the API — parse the form, call one service, render."""
import math
from datetime import timedelta

from django.contrib import messages
from django.contrib.auth import authenticate, login, logout
from django.contrib.auth.views import LoginView
from django.db.models import Sum
from django.http import Http404, HttpResponseRedirect
from django.shortcuts import redirect, render
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_http_methods, require_POST
from django_otp import login as otp_login
from django_otp.models import Device

from aerolith import clock
from aerolith.errors import DomainError, ValidationFailed
from aerolith.portal_forms import apply_errors
from billing.selectors import public_plans

from ..models import User
from ..permissions import Action, member_principal
from ..selectors import memberships_of, tenant_url
from ..services.members import invitation_accept, invitation_for_token
from ..services.signup import tenant_signup
from ..services.two_factor import two_factor_enabled
from ..throttle import is_locked_out, lockout_text
from .access import member_required
from .forms import AcceptInvitationForm, EmailLoginForm, SignupForm, TenantLoginForm
from .handoff import handoff_claims, handoff_token
from .security import OtpForm, pending_clear, pending_get, pending_start, verify_code

MODEL_BACKEND = "django.contrib.auth.backends.ModelBackend"


def _enter(tenant, user, device=None) -> HttpResponseRedirect:
    token = handoff_token(user_id=user.pk, tenant_id=tenant.pk,
                          otp_device=device.persistent_id if device else None)
    return HttpResponseRedirect(tenant_url(tenant, f"/login/continue?token={token}"))


def _public_enter(request, user, form, device=None):
    """After the password (and the code, when the user has two-factor authentication):
    (response, organisation choices); neither when the form got an error."""
    memberships = list(memberships_of(user))
    if len(memberships) == 1:
        return _enter(memberships[0].tenant, user, device), None
    if not memberships and user.is_staff:
        # Staff without a confirmed device are sent on to enrol by tenants.staff_otp.
        login(request, user, backend=MODEL_BACKEND)
        if device is not None:
            otp_login(request, device)
        return redirect("admin:index"), None
    if not memberships:
        form.add_error(None, "This account belongs to no organisation yet. Accept an "
                             "invitation or sign up.")
        return None, None
    device_id = device.persistent_id if device else None
    return None, [(m, tenant_url(m.tenant, "/login/continue?token=" + handoff_token(
        user_id=user.pk, tenant_id=m.tenant_id, otp_device=device_id))) for m in memberships]


# --- public domain ------------------------------------------------------------------------

def home(request):
    return render(request, "portal/home.html", {"plans": public_plans()})


@require_http_methods(["GET", "POST"])
def signup(request):
    plans = public_plans()
    form = SignupForm(request.POST or None, plans=plans,
                      initial={"plan": request.GET.get("plan", "starter")})
    if request.method == "POST" and form.is_valid():
        try:
            result = tenant_signup(**form.cleaned_data)
        except DomainError as error:
            apply_errors(form, error)
        else:
            return _enter(result.tenant, result.user)
    status = 400 if form.errors else 200
    return render(request, "portal/signup.html", {"form": form, "plans": plans}, status=status)


@require_http_methods(["GET", "POST"])
def public_login(request):
    form = EmailLoginForm(request.POST or None)
    choices = None
    if request.method == "POST" and form.is_valid():
        user = authenticate(request, email=form.cleaned_data["email"].strip(),
                            password=form.cleaned_data["password"])
        if user is None:
            form.add_error(None, lockout_text() if is_locked_out(request)
                           else "Email or password is wrong.")
        elif two_factor_enabled(user):
            pending_start(request, user)
            return redirect("portal:public-login-verify")
        else:
            response, choices = _public_enter(request, user, form)
            if response is not None:
                return response
    status = 429 if is_locked_out(request) else 400 if form.errors else 200
    return render(request, "portal/public_login.html", {"form": form, "choices": choices}, status=status)


@require_http_methods(["GET", "POST"])
def login_verify(request):
    """The second step of signing in, on either domain, for users with two-factor
    authentication: their password was right a moment ago in this session."""
    login_page = "portal:public-login" if request.tenant.is_public else "portal:login"
    user, next_url = pending_get(request)
    if user is None:
        messages.error(request, "Your sign-in expired or was not started here. Enter your "
                                "email and password again.")
        return redirect(login_page)
    form = OtpForm(request.POST or None)
    choices = None
    if request.method == "POST" and form.is_valid():
        device, locked = verify_code(request, form, user)
        if locked:
            pending_clear(request)
        elif device is not None:
            pending_clear(request)
            if request.tenant.is_public:
                response, choices = _public_enter(request, user, form, device)
                if response is not None:
                    return response
            else:
                return _tenant_enter(request, user, device, next_url)
    status = 429 if is_locked_out(request) else 400 if form.errors else 200
    return render(request, "portal/login_verify.html",
                  {"form": form, "choices": choices, "login_page": login_page}, status=status)


def _tenant_enter(request, user, device: Device, next_url: str):
    if member_principal(request.tenant, user) is None:
        messages.error(request, "This account is not a member of this organisation.")
        return redirect("portal:login")
    login(request, user, backend=MODEL_BACKEND)
    otp_login(request, device)
    if not url_has_allowed_host_and_scheme(next_url, allowed_hosts={request.get_host()},
                                           require_https=request.is_secure()):
        next_url = ""
    return redirect(next_url or "portal:dashboard")


# --- tenant domain ------------------------------------------------------------------------

class TenantLoginView(LoginView):
    template_name = "portal/login.html"
    authentication_form = TenantLoginForm
    redirect_authenticated_user = False
    next_page = "portal:dashboard"  # without ?next=, not Django's /accounts/profile/

    def dispatch(self, request, *args, **kwargs):
        if request.tenant.is_public:
            raise Http404
        return super().dispatch(request, *args, **kwargs)

    def form_valid(self, form):
        user = form.get_user()
        if two_factor_enabled(user):
            pending_start(self.request, user, self.get_redirect_url())
            return redirect("portal:login-verify")
        return super().form_valid(form)

    def form_invalid(self, form):
        response = super().form_invalid(form)
        response.status_code = 429 if is_locked_out(self.request) else 400
        return response


def login_continue(request):
    claims = handoff_claims(request.GET.get("token", ""), tenant_id=request.tenant.pk)
    user = User.objects.filter(pk=claims["u"], is_active=True).first() if claims else None
    if user is None:
        messages.error(request, "That sign-in link expired or was used. Sign in here.")
        return redirect("portal:login")
    login(request, user, backend=MODEL_BACKEND)
    device = Device.from_persistent_id(claims["d"]) if claims.get("d") else None
    if device is not None:
        otp_login(request, device)  # refused by django-otp unless it is this user's
    return redirect("portal:dashboard")


@require_POST
def logout_view(request):
    logout(request)
    return redirect("portal:login")


DASHBOARD_CHART_DAYS = 30


def _open_invoices(tenant) -> dict:
    """The invoices still owing money: their total and the oldest one (to pay first)."""
    from billing.models import Invoice

    payable = Invoice.objects.filter(tenant=tenant, amount_due_cents__gt=0, status__in=[
        Invoice.Status.OPEN, Invoice.Status.UNCOLLECTIBLE])
    total = payable.aggregate(total=Sum("amount_due_cents"))["total"] or 0
    return {"amount_due_cents": total,
            "first_invoice": payable.order_by("due_at", "id").only("number", "amount_due_cents",
                                                                  "due_at").first()}


@member_required()
def dashboard(request):
    """What needs doing (an actionable banner per state), the usage of this period against
    the plan's allowances with 30 days of history per meter, the projected bill, and the
    organisation's resources. A fixed number of queries, plus one per meter of the plan."""
    from billing.selectors import billing_settings, subscription_of
    from metering.analytics import usage_summary
    from metering.portal import meter_panels
    from provisioning.models import Cluster, Database

    tenant = request.tenant
    subscription = subscription_of(tenant)
    now = clock.now(tenant)
    trial_days_left = None
    if subscription and subscription.trial_end and subscription.status == "trialing":
        # Rounded up: a 14-day trial started a moment ago has 14 days left, not 13.
        trial_days_left = max(0, math.ceil((subscription.trial_end - now) / timedelta(days=1)))
    summary = usage_summary(tenant) if subscription else None
    meters = (meter_panels(tenant, summary, start=now - timedelta(days=DASHBOARD_CHART_DAYS),
                           end=now, granularity="day") if summary else [])
    context = {
        "subscription": subscription,
        "trial_days_left": trial_days_left,
        "members": tenant.memberships.filter(accepted_at__isnull=False).count(),
        "databases": Database.objects.count(),
        "clusters": Cluster.objects.filter(tenant=tenant, deleted_at__isnull=True).count(),
        "summary": summary,
        "meters": meters,
        "projected_overage_cents": (summary["projected_total_cents"]
                                    - summary["subscription"].plan.price_cents) if summary else 0,
        "chart_days": DASHBOARD_CHART_DAYS,
        "now": now,
        "can_billing": request.principal.can(Action.MANAGE_BILLING),
        "has_card": bool(subscription and subscription.default_payment_method_id),
    }
    if tenant.status in ("past_due", "suspended"):
        context.update(_open_invoices(tenant))
        settings_row = billing_settings()
        if subscription and subscription.past_due_since:
            context["grace_end"] = (subscription.past_due_since
                                    + timedelta(days=settings_row.grace_days))
        if subscription and subscription.suspended_at:
            context["cancel_on"] = (subscription.suspended_at
                                    + timedelta(days=settings_row.suspension_days))
    return render(request, "portal/dashboard.html", context)


@require_http_methods(["GET", "POST"])
def accept_invitation(request, token):
    if request.tenant.is_public:
        raise Http404
    try:
        membership = invitation_for_token(tenant=request.tenant, token=token)
    except DomainError as error:
        return render(request, "errors/404.html", {"reason": error.detail}, status=404)
    needs_password = not membership.user.has_usable_password()
    form = AcceptInvitationForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            accepted = invitation_accept(tenant=request.tenant, token=token,
                                         password=form.cleaned_data["password"])
        except ValidationFailed as error:
            apply_errors(form, error)
        else:
            if two_factor_enabled(accepted.user):
                # The invitation link proves the mailbox, not the second factor.
                messages.info(request, "Invitation accepted. Sign in with your password and "
                                       "your two-factor code.")
                return redirect("portal:login")
            login(request, accepted.user, backend=MODEL_BACKEND)
            return redirect("portal:dashboard")
    return render(request, "portal/accept_invitation.html",
                  {"form": form, "membership": membership, "needs_password": needs_password},
                  status=400 if form.errors else 200)
