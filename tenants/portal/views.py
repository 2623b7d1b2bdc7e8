"""Portal views: thin, like the API — parse the form, call one service, render."""
import math
from datetime import timedelta

from django.contrib import messages
from django.contrib.auth import authenticate, login, logout
from django.contrib.auth.views import LoginView
from django.http import Http404, HttpResponseRedirect
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods, require_POST

from aerolith import clock
from aerolith.errors import DomainError, ValidationFailed
from billing.selectors import public_plans

from ..models import User
from ..selectors import memberships_of, tenant_url
from ..services.members import invitation_accept, invitation_for_token
from ..services.signup import tenant_signup
from .access import member_required
from .forms import AcceptInvitationForm, EmailLoginForm, SignupForm, TenantLoginForm
from .handoff import handoff_redeem, handoff_token


def _apply_errors(form, error: DomainError) -> None:
    for item in error.field_errors() or [{"field": None, "detail": error.detail}]:
        field = item["field"] if item["field"] in form.fields else None
        form.add_error(field, item["detail"])


def _enter(tenant, user) -> HttpResponseRedirect:
    token = handoff_token(user_id=user.pk, tenant_id=tenant.pk)
    return HttpResponseRedirect(tenant_url(tenant, f"/login/continue?token={token}"))


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
            _apply_errors(form, error)
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
            form.add_error(None, "Email or password is wrong.")
        else:
            memberships = list(memberships_of(user))
            if len(memberships) == 1:
                return _enter(memberships[0].tenant, user)
            if not memberships and user.is_staff:
                login(request, user)
                return redirect("admin:index")
            if not memberships:
                form.add_error(None, "This account belongs to no organisation yet. Accept an "
                                     "invitation or sign up.")
            else:
                choices = [(m, tenant_url(m.tenant, "/login/continue?token=" +
                                          handoff_token(user_id=user.pk, tenant_id=m.tenant_id)))
                           for m in memberships]
    status = 400 if form.errors else 200
    return render(request, "portal/public_login.html", {"form": form, "choices": choices}, status=status)


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

    def form_invalid(self, form):
        response = super().form_invalid(form)
        response.status_code = 400
        return response


def login_continue(request):
    user_id = handoff_redeem(request.GET.get("token", ""), tenant_id=request.tenant.pk)
    user = User.objects.filter(pk=user_id, is_active=True).first() if user_id else None
    if user is None:
        messages.error(request, "That sign-in link expired or was used. Sign in here.")
        return redirect("portal:login")
    login(request, user, backend="django.contrib.auth.backends.ModelBackend")
    return redirect("portal:dashboard")


@require_POST
def logout_view(request):
    logout(request)
    return redirect("portal:login")


@member_required()
def dashboard(request):
    tenant = request.tenant
    subscription = getattr(tenant, "subscription", None)
    now = clock.now(tenant)
    trial_days_left = None
    if subscription and subscription.trial_end and subscription.status == "trialing":
        # Rounded up: a 14-day trial started a moment ago has 14 days left, not 13.
        trial_days_left = max(0, math.ceil((subscription.trial_end - now) / timedelta(days=1)))
    return render(request, "portal/dashboard.html", {
        "subscription": subscription,
        "trial_days_left": trial_days_left,
        "members": tenant.memberships.filter(accepted_at__isnull=False).count(),
        "now": now,
    })


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
            _apply_errors(form, error)
        else:
            login(request, accepted.user, backend="django.contrib.auth.backends.ModelBackend")
            return redirect("portal:dashboard")
    return render(request, "portal/accept_invitation.html",
                  {"form": form, "membership": membership, "needs_password": needs_password},
                  status=400 if form.errors else 200)
