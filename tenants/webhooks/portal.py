"""The portal's webhooks page (SPEC §8, §11): endpoints, creating one (its signing secret
shown once, on the page that answers the creation), enabling, disabling and deleting with
confirmation, and each endpoint's delivery log with a Redeliver button. Thin like the API:
parse the form, call one service, render; a refusal is shown on the form (status 400) and
changes nothing. Same rights as the API: VIEW to look, MANAGE_API_KEYS to change."""
from django import forms
from django.contrib import messages
from django.core.paginator import Paginator
from django.http import Http404
from django.shortcuts import redirect, render
from django.urls import path
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from aerolith.errors import DomainError
from aerolith.portal_forms import ActionForm, apply_errors, refused_while_inactive

from ..permissions import Action
from ..portal.access import member_required
from ..services import webhooks
from .models import EVENT_TYPES, WebhookDelivery, WebhookEndpoint

MAX_ID = 2**63 - 1
LOG_PAGE = 50


class EndpointForm(forms.Form):
    url = forms.CharField(label="Endpoint URL", max_length=2000,
                          help_text="An https:// URL that accepts POST requests.")
    description = forms.CharField(label="Description", max_length=200, required=False)
    events = forms.MultipleChoiceField(
        label="Events", required=False, widget=forms.CheckboxSelectMultiple,
        choices=[(t, t) for t in EVENT_TYPES],
        help_text="Leave all unticked to receive every event.")


def _endpoint(pk: int) -> WebhookEndpoint:
    endpoint = WebhookEndpoint.objects.filter(pk=pk).first() if 0 < pk <= MAX_ID else None
    if endpoint is None:
        raise Http404("No such webhook endpoint in this organisation.")
    return endpoint


def _list_page(request, *, form=None, status=200):
    endpoints = list(WebhookEndpoint.objects.order_by("created_at", "id"))
    return render(request, "portal/webhooks.html", {
        "endpoints": endpoints, "form": form or EndpointForm(auto_id="wh_%s"),
        "can_manage": request.principal.can(Action.MANAGE_API_KEYS),
        "event_types": EVENT_TYPES, "max_endpoints": webhooks.max_endpoints(),
    }, status=status)


@require_GET
@member_required()
def webhook_list(request):
    return _list_page(request)


@never_cache
@require_POST
@member_required(Action.MANAGE_API_KEYS)
def webhook_new(request):
    form = EndpointForm(request.POST, auto_id="wh_%s")
    if form.is_valid():
        refusal = refused_while_inactive(request)
        if refusal:
            form.add_error(None, refusal)
        else:
            data = form.cleaned_data
            try:
                endpoint, secret = webhooks.endpoint_create(
                    principal=request.principal, url=data["url"],
                    description=data["description"], events=data["events"])
            except DomainError as error:
                apply_errors(form, error)
            else:
                # The only page that ever shows the secret: not cached, not stored.
                return render(request, "portal/webhook_created.html",
                              {"endpoint": endpoint, "secret": secret}, status=201)
    return _list_page(request, form=form, status=400)


@require_GET
@member_required()
def webhook_detail(request, pk):
    endpoint = _endpoint(pk)
    deliveries = WebhookDelivery.objects.filter(endpoint=endpoint).order_by("-created_at", "-id")
    page = Paginator(deliveries, LOG_PAGE).get_page(request.GET.get("page"))
    return render(request, "portal/webhook.html", {
        "endpoint": endpoint, "page": page,
        "can_manage": request.principal.can(Action.MANAGE_API_KEYS),
    })


@require_POST
@member_required(Action.MANAGE_API_KEYS)
def webhook_toggle(request, pk):
    endpoint = _endpoint(pk)
    refusal = refused_while_inactive(request)
    if refusal:
        messages.error(request, refusal)
    else:
        try:
            webhooks.endpoint_update(principal=request.principal, endpoint_id=endpoint.pk,
                                     changes={"enabled": not endpoint.enabled})
        except DomainError as error:
            messages.error(request, error.explain())
        else:
            messages.success(request, "Endpoint disabled: it receives nothing until enabled."
                             if endpoint.enabled else "Endpoint enabled.")
    return redirect("portal:webhook", pk=endpoint.pk)


@require_http_methods(["GET", "POST"])
@member_required(Action.MANAGE_API_KEYS)
def webhook_delete(request, pk):
    endpoint = _endpoint(pk)
    form = ActionForm(request.POST if request.method == "POST" else None)
    status = 200
    if request.method == "POST":
        form.is_valid()
        refusal = refused_while_inactive(request)
        if refusal:
            form.add_error(None, refusal)
        else:
            try:
                webhooks.endpoint_delete(principal=request.principal, endpoint_id=endpoint.pk)
            except DomainError as error:
                apply_errors(form, error)
            else:
                messages.success(request, f"Endpoint {endpoint.url} and its delivery log were "
                                          "deleted.")
                return redirect("portal:webhooks")
        status = 400
    return render(request, "portal/webhook_delete.html", {"endpoint": endpoint, "form": form},
                  status=status)


@require_POST
@member_required(Action.MANAGE_API_KEYS)
def delivery_redeliver(request, pk):
    delivery = WebhookDelivery.objects.filter(pk=pk).first() if 0 < pk <= MAX_ID else None
    if delivery is None:
        raise Http404("No such webhook delivery in this organisation.")
    refusal = refused_while_inactive(request)
    if refusal:
        messages.error(request, refusal)
    else:
        try:
            webhooks.delivery_redeliver(principal=request.principal, delivery_id=delivery.pk)
        except DomainError as error:
            messages.error(request, error.explain())
        else:
            messages.success(request, f"Event {delivery.event_id} is being sent again; this log "
                                      "shows the outcome.")
    return redirect("portal:webhook", pk=delivery.endpoint_id)


urlpatterns = [
    path("webhooks", webhook_list, name="webhooks"),
    path("webhooks/new", webhook_new, name="webhook-new"),
    path("webhooks/<int:pk>", webhook_detail, name="webhook"),
    path("webhooks/<int:pk>/toggle", webhook_toggle, name="webhook-toggle"),
    path("webhooks/<int:pk>/delete", webhook_delete, name="webhook-delete"),
    path("webhooks/deliveries/<int:pk>/redeliver", delivery_redeliver,
         name="webhook-redeliver"),
]
