"""Portal billing pages (SPEC §11): the plan and its status, plan changes through a preview
of the exact amounts, cards on file, cancel and resume; invoices with their PDF and a Pay
button. Thin like the API: parse the form, call one service, render. A refused form is
shown again with the service's explanation (status 400) and nothing changes."""
import math
from datetime import timedelta

from django import forms
from django.contrib import messages
from django.core.paginator import Paginator
from django.http import Http404, HttpResponse
from django.shortcuts import redirect, render
from django.urls import path, reverse
from django.utils.dateparse import parse_datetime
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from aerolith import clock
from aerolith.errors import DomainError
from aerolith.money import usd
from aerolith.portal_forms import ActionForm
from aerolith.portal_forms import apply_errors as shared_apply_errors
from tenants.permissions import Action
from tenants.portal.access import member_required
from tenants.selectors import tenant_url

from .models import Invoice, Payment, PaymentMethod
from .pdf import invoice_pdf
from .selectors import billing_settings, invoices_of, plans_for_tenant, subscription_of
from .services.cards import (
    card_setup_complete,
    card_setup_start,
    payment_awaiting_action,
    payment_confirm_return,
    payment_confirm_start,
)
from .services.collection import (
    invoice_for_number,
    invoice_pay,
    payment_method_attach,
    payment_method_detach,
    payment_method_make_default,
)
from .services.subscriptions import (
    plan_for_change,
    preview_change,
    subscription_cancel,
    subscription_change,
    subscription_resume,
)

Status = Invoice.Status
WHEN_CHOICES = [("now", "Now"), ("period_end", "At the end of the current period")]

# Where a service's message speaks the API's language, the portal says it its own way.
PORTAL_TEXT = {
    ("method", "no_payment_method"): "No card on file: add one on the Billing page first.",
    ("proration_at", "out_of_range"): "This preview is more than an hour old; preview the change "
                                      "again.",
}
FIELD_NAMES = {"stripe_payment_method": "payment_method"}


def apply_errors(form: forms.Form, error: DomainError) -> None:
    shared_apply_errors(form, error, renames=FIELD_NAMES, texts=PORTAL_TEXT)


# --- forms --------------------------------------------------------------------------------

class CardAddForm(forms.Form):
    payment_method = forms.CharField(
        label="Card (Stripe payment method id)", max_length=255,
        help_text="In test mode Stripe's test ids work: pm_card_visa or pm_card_mastercard "
                  "succeed, pm_card_chargeDeclined declines. Or use \"Add a card\" above to "
                  "enter one on Stripe's page.")
    make_default = forms.BooleanField(label="Use for future invoices", required=False, initial=True)


class CardRemoveForm(forms.Form):
    method = forms.IntegerField(widget=forms.HiddenInput, min_value=1)


class CardDefaultForm(CardRemoveForm):
    """The card to charge future invoices to, chosen from the list."""


class PlanChangeForm(forms.Form):
    plan = forms.ChoiceField(error_messages={
        "invalid_choice": "Unknown plan '%(value)s'. Choose one of the plans in the list.",
        "required": "Choose a plan."})
    when = forms.ChoiceField(
        required=False, choices=[("", "Upgrades now, downgrades at the end of the period"),
                                 *WHEN_CHOICES],
        error_messages={"invalid_choice": "Choose now or at the end of the period."})

    def __init__(self, *args, plans=(), current=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["plan"].choices = [
            (p.code, f"{p.name} · {usd(p.price_cents)}/month" + (" (current)" if p == current else ""))
            for p in plans]


class ConfirmChangeForm(forms.Form):
    STALE = "This preview is not valid; preview the change again."

    plan = forms.CharField(max_length=40)
    when = forms.ChoiceField(choices=WHEN_CHOICES, error_messages={
        "required": "Choose now or at the end of the period.",
        "invalid_choice": "Choose now or at the end of the period."})
    proration_at = forms.CharField(max_length=40, error_messages={"required": STALE,
                                                                  "max_length": STALE})

    def clean_proration_at(self):
        value = parse_datetime(self.cleaned_data["proration_at"])
        if value is None or value.tzinfo is None:
            raise forms.ValidationError(self.STALE)
        return value


class CancelForm(forms.Form):
    when = forms.ChoiceField(
        label="When", widget=forms.RadioSelect, initial="period_end",
        choices=[("period_end", "At the end of the current period (you can resume until then)"),
                 ("now", "Now: service stops at once and a final invoice bills usage so far")],
        error_messages={"invalid_choice": "Choose at the end of the period or now.",
                        "required": "Choose when the subscription ends."})


def action_form(data=None) -> ActionForm:
    form = ActionForm(data if data is not None else {})
    form.is_valid()  # always valid; cleaned, it can take errors
    return form


# --- the billing page ---------------------------------------------------------------------

def _subscription(request):
    subscription = subscription_of(request.tenant)
    if subscription is None:
        raise Http404("This organisation has no subscription.")
    return subscription


def _payable(tenant):
    return list(invoices_of(tenant).filter(status__in=[Status.OPEN, Status.UNCOLLECTIBLE],
                                           amount_due_cents__gt=0).order_by("due_at", "id"))


def _change_form(request, subscription, data=None):
    plans = [p for p in plans_for_tenant(request.tenant).order_by("price_cents", "code")
             if not (p.is_custom and p.for_tenant_id is None)]
    return PlanChangeForm(data, plans=plans, current=subscription.plan,
                          initial={"when": ""}, auto_id="change_%s")


def _billing_page(request, *, status=200, **forms_given):
    tenant = request.tenant
    subscription = _subscription(request)
    now = clock.now(tenant)
    settings_row = billing_settings()
    trial_days_left = None
    if subscription.status == "trialing" and subscription.trial_end:
        trial_days_left = max(0, math.ceil((subscription.trial_end - now) / timedelta(days=1)))
    payable = _payable(tenant)
    context = {
        "subscription": subscription,
        "now": now,
        "trial_days_left": trial_days_left,
        "payable": payable,
        "amount_due_cents": sum(invoice.amount_due_cents for invoice in payable),
        "grace_end": (subscription.past_due_since + timedelta(days=settings_row.grace_days)
                      if subscription.past_due_since else None),
        "cancel_on": (subscription.suspended_at + timedelta(days=settings_row.suspension_days)
                      if subscription.suspended_at else None),
        "cards": PaymentMethod.objects.filter(tenant=tenant, detached_at__isnull=True),
        "can_manage": request.principal.can(Action.MANAGE_BILLING),
        "is_owner": request.principal.can(Action.OWN),
        "card_form": CardAddForm(auto_id="card_%s"),
        "remove_form": CardRemoveForm(),
        "default_form": CardDefaultForm(),
        "change_form": _change_form(request, subscription),
        "resume_form": ActionForm(),
        "checkout_form": ActionForm(),
    }
    context.update(forms_given)
    return render(request, "portal/billing.html", context, status=status)


@require_GET
@member_required()
def billing_page(request):
    return _billing_page(request)


@require_POST
@member_required(Action.MANAGE_BILLING)
def card_add(request):
    form = CardAddForm(request.POST, auto_id="card_%s")
    if form.is_valid():
        try:
            method = payment_method_attach(tenant=request.tenant,
                                           gateway_id=form.cleaned_data["payment_method"].strip(),
                                           make_default=form.cleaned_data["make_default"],
                                           actor=request.principal)
        except DomainError as error:
            apply_errors(form, error)
        else:
            messages.success(request, f"Added {method.brand} ···· {method.last4}.")
            return redirect("portal:billing")
    return _billing_page(request, status=400, card_form=form)


@require_POST
@member_required(Action.MANAGE_BILLING)
def card_checkout(request):
    """Add a card on Stripe's hosted page (Checkout, setup mode); it comes back to card_added."""
    form = action_form(request.POST)
    try:
        session = card_setup_start(tenant=request.tenant)
    except DomainError as error:
        apply_errors(form, error)
        return _billing_page(request, status=400, checkout_form=form)
    return redirect(session.url)


@require_GET
@member_required(Action.MANAGE_BILLING)
def card_added(request):
    """Back from the hosted page: attach the card it saved (the webhook may have already)."""
    form = action_form()
    session_id = request.GET.get("session_id", "")
    try:
        method, _added = card_setup_complete(tenant=request.tenant, session_id=session_id,
                                             actor=request.principal)
    except DomainError as error:
        apply_errors(form, error)
        return _billing_page(request, status=400, checkout_form=form)
    messages.success(request, f"Added {method.brand} ···· {method.last4}; future invoices are "
                              "charged to it.")
    return redirect("portal:billing")


@require_POST
@member_required(Action.MANAGE_BILLING)
def card_remove(request):
    form = CardRemoveForm(request.POST)
    if not form.is_valid():
        form = action_form()
        form.add_error(None, "Choose a card from the list to remove.")
    else:
        try:
            payment_method_detach(tenant=request.tenant, method_id=form.cleaned_data["method"],
                                  actor=request.principal)
        except DomainError as error:
            apply_errors(form, error)
        else:
            messages.success(request, "The card was removed.")
            return redirect("portal:billing")
    return _billing_page(request, status=400, remove_form=form)


@require_POST
@member_required(Action.MANAGE_BILLING)
def card_make_default(request):
    form = CardDefaultForm(request.POST)
    if not form.is_valid():
        form = action_form()
        form.add_error(None, "Choose a card from the list to make the default.")
    else:
        try:
            method = payment_method_make_default(
                tenant=request.tenant, method_id=form.cleaned_data["method"], actor=request.principal)
        except DomainError as error:
            apply_errors(form, error)
        else:
            messages.success(request, f"{method.brand.title()} ···· {method.last4} is now the default: "
                                      "future invoices are charged to it.")
            return redirect("portal:billing")
    return _billing_page(request, status=400, default_form=form)


@require_GET
@member_required(Action.MANAGE_BILLING)
def change_preview(request):
    """What a plan change costs now, line by line, with the form that confirms exactly it."""
    subscription = _subscription(request)
    form = _change_form(request, subscription, data=request.GET)
    if form.is_valid():
        try:
            plan = plan_for_change(request.tenant, form.cleaned_data["plan"])
            preview = preview_change(subscription=subscription, plan=plan,
                                     when=form.cleaned_data["when"] or None)
        except DomainError as error:
            apply_errors(form, error)
        else:
            confirm = ConfirmChangeForm(initial={
                "plan": plan.code, "when": preview.when,
                "proration_at": preview.proration_at.isoformat()})
            return render(request, "portal/billing_preview.html",
                          {"subscription": subscription, "preview": preview, "confirm": confirm})
    return _billing_page(request, status=400, change_form=form)


@require_POST
@member_required(Action.MANAGE_BILLING)
def change_confirm(request):
    subscription = _subscription(request)
    form = _change_form(request, subscription, data={"plan": request.POST.get("plan", ""),
                                                     "when": request.POST.get("when", "")})
    confirm = ConfirmChangeForm(request.POST)
    if not form.is_valid():
        return _billing_page(request, status=400, change_form=form)
    if not confirm.is_valid():
        for problems in confirm.errors.values():
            for problem in problems:
                form.add_error(None, problem)
        return _billing_page(request, status=400, change_form=form)
    data = confirm.cleaned_data
    try:
        subscription, invoice = subscription_change(
            tenant=request.tenant, plan_code=data["plan"], when=data["when"],
            proration_at=data["proration_at"], actor=request.principal)
    except DomainError as error:
        apply_errors(form, error)
        return _billing_page(request, status=400, change_form=form)
    if subscription.pending_plan is not None:
        messages.success(request, f"You move to {subscription.pending_plan.name} on "
                                  f"{subscription.current_period_end:%d %b %Y}.")
    else:
        messages.success(request, f"You are now on {subscription.plan.name}.")
    if invoice is not None:
        messages.info(request, f"Invoice {invoice.number} for {usd(invoice.total_cents)} was issued.")
        return redirect("portal:invoice", number=invoice.number)
    return redirect("portal:billing")


@require_http_methods(["GET", "POST"])
@member_required(Action.OWN)
def cancel(request):
    """A page of its own, so cancelling is always a deliberate second step."""
    subscription = _subscription(request)
    form = CancelForm(request.POST if request.method == "POST" else None, auto_id="cancel_%s")
    status = 200
    if request.method == "POST":
        if form.is_valid():
            at_period_end = form.cleaned_data["when"] == "period_end"
            try:
                subscription = subscription_cancel(tenant=request.tenant, at_period_end=at_period_end,
                                                   actor=request.principal)
            except DomainError as error:
                apply_errors(form, error)
            else:
                if at_period_end:
                    messages.success(request, "Your subscription ends on "
                                              f"{subscription.current_period_end:%d %b %Y}. "
                                              "You can resume it until then.")
                else:
                    messages.success(request, "Your subscription is cancelled.")
                return redirect("portal:billing")
        status = 400
    return render(request, "portal/billing_cancel.html",
                  {"subscription": subscription, "form": form}, status=status)


@require_POST
@member_required(Action.OWN)
def resume(request):
    form = action_form(request.POST)
    try:
        subscription_resume(tenant=request.tenant, actor=request.principal)
    except DomainError as error:
        apply_errors(form, error)
        return _billing_page(request, status=400, resume_form=form)
    messages.success(request, "Your subscription continues; nothing changes.")
    return redirect("portal:billing")


# --- invoices -----------------------------------------------------------------------------

@require_GET
@member_required()
def invoice_list(request):
    pages = Paginator(invoices_of(request.tenant).order_by("-finalized_at", "-id"), 25)
    page = pages.get_page(request.GET.get("page"))
    return render(request, "portal/invoices.html", {
        "page": page, "can_manage": request.principal.can(Action.MANAGE_BILLING)})


def _invoice(request, number) -> Invoice:
    try:
        return invoice_for_number(request.tenant, number)
    except DomainError as error:
        raise Http404(error.detail) from error


def _invoice_page(request, invoice, *, status=200, pay_form=None):
    subscription = subscription_of(request.tenant)
    return render(request, "portal/invoice.html", {
        "invoice": invoice,
        "lines": invoice.lines.all(),
        "payments": invoice.payments.select_related("payment_method").order_by("created_at", "id"),
        "card": subscription.default_payment_method if subscription else None,
        "can_manage": request.principal.can(Action.MANAGE_BILLING),
        "pay_form": pay_form or ActionForm(),
        "awaiting_action": payment_awaiting_action(invoice) if invoice.is_payable else None,
    }, status=status)


@require_GET
@member_required()
def invoice_detail(request, number):
    return _invoice_page(request, _invoice(request, number))


@require_POST
@member_required(Action.MANAGE_BILLING)
def invoice_pay_view(request, number):
    invoice = _invoice(request, number)
    form = action_form(request.POST)
    try:
        payment = invoice_pay(tenant=request.tenant, number=invoice.number, method="card",
                              actor=request.principal)
    except DomainError as error:
        apply_errors(form, error)
        return _invoice_page(request, invoice, status=400, pay_form=form)
    invoice.refresh_from_db()
    if payment.status == Payment.Status.REQUIRES_ACTION:
        return redirect("portal:invoice-confirm", number=invoice.number)
    if payment.status == Payment.Status.SUCCEEDED:
        messages.success(request, f"Paid {usd(payment.amount_cents)} for invoice {invoice.number}. "
                                  "Thank you.")
        return redirect("portal:invoice", number=invoice.number)
    reason = payment.failure_message or "The payment did not go through."
    form.add_error(None, f"{reason} Add another card on the Billing page, or try again later.")
    return _invoice_page(request, invoice, status=402, pay_form=form)


def _confirm_page(request, invoice, *, status=200, form=None):
    return render(request, "portal/invoice_confirm.html", {
        "invoice": invoice, "payment": payment_awaiting_action(invoice), "form": form or ActionForm(),
    }, status=status)


@require_http_methods(["GET", "POST"])
@member_required(Action.MANAGE_BILLING)
def invoice_confirm(request, number):
    """3-D Secure: the bank wants the customer to confirm a charge. GET explains; POST sends
    them to the bank's page, which returns to invoice_confirm_return."""
    invoice = _invoice(request, number)
    if request.method == "GET":
        return _confirm_page(request, invoice)
    form = action_form(request.POST)
    return_url = tenant_url(request.tenant, reverse("portal:invoice-confirm-return", args=[invoice.number]))
    try:
        state = payment_confirm_start(tenant=request.tenant, number=invoice.number, return_url=return_url)
    except DomainError as error:
        apply_errors(form, error)
        return _confirm_page(request, invoice, status=400, form=form)
    if state.redirect_url:
        return redirect(state.redirect_url)
    return _after_confirmation(request, invoice.number, state.status, state.message)


@require_GET
@member_required(Action.MANAGE_BILLING)
def invoice_confirm_return(request, number):
    invoice = _invoice(request, number)
    try:
        invoice, payment, outcome = payment_confirm_return(tenant=request.tenant, number=invoice.number)
    except DomainError as error:
        messages.error(request, error.explain())
        return redirect("portal:invoice", number=invoice.number)
    return _after_confirmation(request, invoice.number, outcome, payment.failure_message)


def _after_confirmation(request, number, outcome, message):
    if outcome == Payment.Status.SUCCEEDED:
        messages.success(request, f"Payment confirmed: invoice {number} is paid. Thank you.")
    elif outcome == Payment.Status.FAILED:
        messages.error(request, f"{message or 'The payment was not confirmed.'} Pay again, or add "
                                "another card on the Billing page.")
    elif outcome == Payment.Status.REQUIRES_ACTION:
        messages.warning(request, "The payment still needs your confirmation.")
        return redirect("portal:invoice-confirm", number=number)
    else:
        messages.info(request, "Your bank is still processing the payment; reload this page in a "
                               "moment to see it settled.")
    return redirect("portal:invoice", number=number)


@require_GET
@member_required()
def invoice_pdf_download(request, number):
    invoice = _invoice(request, number)
    response = HttpResponse(invoice_pdf(invoice), content_type="application/pdf")
    response["Content-Disposition"] = f'attachment; filename="{invoice.number}.pdf"'
    return response


urlpatterns = [
    path("billing", billing_page, name="billing"),
    path("billing/cards", card_add, name="billing-card-add"),
    path("billing/cards/checkout", card_checkout, name="billing-card-checkout"),
    path("billing/cards/added", card_added, name="billing-card-added"),
    path("billing/cards/remove", card_remove, name="billing-card-remove"),
    path("billing/cards/default", card_make_default, name="billing-card-default"),
    path("billing/change/preview", change_preview, name="billing-change-preview"),
    path("billing/change", change_confirm, name="billing-change"),
    path("billing/cancel", cancel, name="billing-cancel"),
    path("billing/resume", resume, name="billing-resume"),
    path("invoices", invoice_list, name="invoices"),
    path("invoices/<str:number>", invoice_detail, name="invoice"),
    path("invoices/<str:number>/pay", invoice_pay_view, name="invoice-pay"),
    path("invoices/<str:number>/confirm", invoice_confirm, name="invoice-confirm"),
    path("invoices/<str:number>/confirm/return", invoice_confirm_return, name="invoice-confirm-return"),
    path("invoices/<str:number>/pdf", invoice_pdf_download, name="invoice-pdf"),
]
