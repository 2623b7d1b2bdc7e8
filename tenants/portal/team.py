"""The portal's team page and audit log (SPEC §10, §11), through the same services as the
API (tenants.services.members) and with the same rules: VIEW to see the team,
MANAGE_MEMBERS to invite, change roles and remove; only owners make or change owners and
the last owner stays; the audit trail is for owners only. A refusal is shown on the form
(status 400, or the service's 403/409) and changes nothing."""
import re

from django import forms
from django.contrib import messages
from django.core.paginator import Paginator
from django.http import Http404
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from aerolith.errors import DomainError
from aerolith.portal_forms import ActionForm, apply_errors, refused_while_inactive

from ..models import Membership, Role
from ..permissions import Action
from ..selectors import audit_events_of, members_of
from ..services import members
from .access import member_required

MAX_ID = 2**63 - 1
AUDIT_PAGE = 50
ACTION_PREFIX = re.compile(r"^[a-z0-9_.]{1,80}$")


def _role_choices(principal) -> list[tuple[str, str]]:
    """Roles this member may hand out: only owners make owners."""
    return [(value, label) for value, label in Role.choices
            if value != Role.OWNER or principal.role == Role.OWNER]


class InviteForm(forms.Form):
    email = forms.CharField(label="Email", max_length=254)
    role = forms.ChoiceField(label="Role")

    def __init__(self, *args, principal, **kwargs):
        kwargs.setdefault("auto_id", "invite_%s")
        super().__init__(*args, **kwargs)
        self.fields["role"].choices = _role_choices(principal)
        self.fields["role"].initial = Role.DEVELOPER


class RoleForm(forms.Form):
    role = forms.ChoiceField(label="Role", choices=Role.choices)


class AuditFilterForm(forms.Form):
    action = forms.CharField(label="Action starts with", max_length=80, required=False,
                             help_text="e.g. member. or api_key.revoked")

    def clean_action(self):
        value = self.cleaned_data["action"].strip().lower()
        if value and not ACTION_PREFIX.match(value):
            raise forms.ValidationError("Use lower-case letters, digits, dots and underscores, "
                                        "e.g. member. or api_key.")
        return value


def _membership(request, pk: int) -> Membership:
    membership = (members_of(request.tenant).filter(pk=pk).first() if 0 < pk <= MAX_ID else None)
    if membership is None:
        raise Http404("No such member in this organisation.")
    return membership


def _team_page(request, *, invite_form=None, role_errors=None, status=200):
    principal = request.principal
    everyone = list(members_of(request.tenant).order_by("created_at", "id"))
    can_manage = principal.can(Action.MANAGE_MEMBERS)
    is_owner = principal.role == Role.OWNER
    rows = []
    for membership in everyone:
        if membership.is_pending:
            continue
        # A non-owner cannot change an owner, nor offer the owner role.
        editable = can_manage and (is_owner or membership.role != Role.OWNER)
        rows.append({
            "membership": membership, "editable": editable,
            "is_me": membership.user_id == principal.user.pk,
            "choices": _role_choices(principal) if editable else (),
            "error": (role_errors or {}).get(membership.pk),
        })
    return render(request, "portal/team.html", {
        "rows": rows,
        "pending": [m for m in everyone if m.is_pending],
        "can_manage": can_manage, "is_owner": is_owner,
        "invite_form": invite_form or InviteForm(principal=principal),
    }, status=status)


@require_GET
@member_required()
def team(request):
    return _team_page(request)


@require_POST
@member_required(Action.MANAGE_MEMBERS)
def team_invite(request):
    form = InviteForm(request.POST, principal=request.principal)
    status = 400
    if form.is_valid():
        refusal = refused_while_inactive(request)
        if refusal:
            form.add_error(None, refusal)
        else:
            try:
                membership, _token = members.member_invite(
                    principal=request.principal, email=form.cleaned_data["email"],
                    role=form.cleaned_data["role"])
            except DomainError as error:
                apply_errors(form, error)
                status = error.status if error.status in (403, 409) else 400
            else:
                messages.success(request, f"Invitation sent to {membership.user.email} as "
                                          f"{membership.get_role_display().lower()}.")
                return redirect("portal:team")
    return _team_page(request, invite_form=form, status=status)


@require_POST
@member_required(Action.MANAGE_MEMBERS)
def team_role(request, pk):
    membership = _membership(request, pk)
    form = RoleForm(request.POST)
    problem, status = None, 400
    if not form.is_valid():
        problem = f"Choose a role among {', '.join(Role.values)}."
    else:
        problem = refused_while_inactive(request)
    if problem is None:
        try:
            changed = members.member_change_role(principal=request.principal,
                                                 membership_id=membership.pk,
                                                 role=form.cleaned_data["role"])
        except DomainError as error:
            problem = error.detail
            status = error.status if error.status in (403, 409) else 400
        else:
            messages.success(request, f"{changed.user.email} is now "
                                      f"{changed.get_role_display().lower()}.")
            return redirect("portal:team")
    return _team_page(request, role_errors={membership.pk: problem}, status=status)


@require_http_methods(["GET", "POST"])
@member_required(Action.MANAGE_MEMBERS)
def team_remove(request, pk):
    membership = _membership(request, pk)
    form = ActionForm(request.POST if request.method == "POST" else None)
    status = 200
    if request.method == "POST":
        form.is_valid()
        status = 400
        refusal = refused_while_inactive(request)
        if refusal:
            form.add_error(None, refusal)
        else:
            try:
                members.member_remove(principal=request.principal, membership_id=membership.pk)
            except DomainError as error:
                apply_errors(form, error)
                status = error.status if error.status in (403, 409) else 400
            else:
                what = "Invitation of" if membership.is_pending else "Member"
                messages.success(request, f"{what} {membership.user.email} was removed.")
                if membership.user_id == request.principal.user.pk:
                    return redirect("portal:login")
                return redirect("portal:team")
    return render(request, "portal/team_remove.html", {"membership": membership, "form": form},
                  status=status)


@require_GET
@member_required(Action.OWN)
def audit_log(request):
    form = AuditFilterForm(request.GET or None)
    events = audit_events_of(request.tenant).order_by("-occurred_at", "-id")
    status = 200
    prefix = ""
    if form.is_bound:
        if form.is_valid():
            prefix = form.cleaned_data["action"]
        else:
            status = 400
    if prefix:
        events = events.filter(action__startswith=prefix)
    page = Paginator(events, AUDIT_PAGE).get_page(request.GET.get("page"))
    return render(request, "portal/audit.html", {
        "form": form if form.is_bound else AuditFilterForm(), "page": page, "prefix": prefix,
    }, status=status)
