"""The portal's API keys page (SPEC §10, §11): the organisation's keys, creating one with
the scopes the member's own role may grant (its secret shown once, on the page that
answers the creation, never cached), and revoking with confirmation. Thin like the API:
parse the form, call the service (tenants.services.api_keys), render; a refusal is shown
on the form (status 400) and changes nothing. Same rights as the API: VIEW to look,
MANAGE_API_KEYS to change."""
from django import forms
from django.contrib import messages
from django.http import Http404
from django.shortcuts import redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from aerolith.errors import DomainError
from aerolith.portal_forms import ActionForm, apply_errors, refused_while_inactive

from ..models import ApiKey
from ..permissions import ACTION_SCOPES, Action, scopes_for_role
from ..services import api_keys
from .access import member_required

MAX_ID = 2**63 - 1
SCOPE_TEXT = {scope: f"{scope} — {text}" for scope, text in (
    (ACTION_SCOPES[Action.VIEW], "read everything"),
    (ACTION_SCOPES[Action.MANAGE_DATABASES], "create and delete databases and clusters"),
    (ACTION_SCOPES[Action.MANAGE_API_KEYS], "manage API keys and webhooks"),
    (ACTION_SCOPES[Action.WRITE_USAGE], "send usage events"),
    (ACTION_SCOPES[Action.MANAGE_BILLING], "change the plan, pay invoices"),
    (ACTION_SCOPES[Action.MANAGE_MEMBERS], "invite and remove members"),
    (ACTION_SCOPES[Action.MANAGE_TEST_CLOCK], "advance the test clock"),
    (ACTION_SCOPES[Action.OWN], "owner actions (cancel, export, audit trail)"),
)}


class ApiKeyForm(forms.Form):
    name = forms.CharField(label="Name", max_length=100,
                           help_text="What uses the key, e.g. 'ci-pipeline'.")
    scopes = forms.MultipleChoiceField(
        label="Scopes", widget=forms.CheckboxSelectMultiple,
        help_text="Only the scopes your role allows are offered.",
        error_messages={"required": "Give the key at least one scope, e.g. read."})

    def __init__(self, *args, role: str, **kwargs):
        kwargs.setdefault("auto_id", "key_%s")
        super().__init__(*args, **kwargs)
        self.fields["scopes"].choices = [(s, SCOPE_TEXT.get(s, s)) for s in scopes_for_role(role)]


def _key(pk: int) -> ApiKey:
    key = ApiKey.objects.filter(pk=pk).first() if 0 < pk <= MAX_ID else None
    if key is None:
        raise Http404("No such API key in this organisation.")
    return key


def _list_page(request, *, form=None, status=200):
    return render(request, "portal/api_keys.html", {
        "keys": list(ApiKey.objects.order_by("-created_at", "-id")),
        "form": form or ApiKeyForm(role=request.principal.role),
        "can_manage": request.principal.can(Action.MANAGE_API_KEYS),
    }, status=status)


@require_GET
@member_required()
def api_key_list(request):
    return _list_page(request)


@never_cache
@require_POST
@member_required(Action.MANAGE_API_KEYS)
def api_key_new(request):
    form = ApiKeyForm(request.POST, role=request.principal.role)
    if form.is_valid():
        refusal = refused_while_inactive(request)
        if refusal:
            form.add_error(None, refusal)
        else:
            try:
                key, secret = api_keys.api_key_create(
                    principal=request.principal, name=form.cleaned_data["name"],
                    scopes=form.cleaned_data["scopes"])
            except DomainError as error:
                apply_errors(form, error)
            else:
                # The only page that ever shows the secret: not cached, not stored.
                return render(request, "portal/api_key_created.html",
                              {"key": key, "secret": secret}, status=201)
    return _list_page(request, form=form, status=400)


@require_http_methods(["GET", "POST"])
@member_required(Action.MANAGE_API_KEYS)
def api_key_revoke(request, pk):
    key = _key(pk)
    form = ActionForm(request.POST if request.method == "POST" else None)
    status = 200
    if request.method == "POST":
        form.is_valid()
        refusal = refused_while_inactive(request)
        if refusal:
            form.add_error(None, refusal)
        else:
            try:
                api_keys.api_key_revoke(principal=request.principal, key_id=key.pk)
            except DomainError as error:
                apply_errors(form, error)
            else:
                messages.success(request, f"API key {key.name} ({key.prefix}…) was revoked: "
                                          "requests made with it are refused from now on.")
                return redirect("portal:api-keys")
        status = 400
    return render(request, "portal/api_key_revoke.html", {"key": key, "form": form},
                  status=status)
