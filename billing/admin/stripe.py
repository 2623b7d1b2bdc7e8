"""Stripe in the staff console: webhook events (read-only; a failed one can be retried),
refunds and disputes of card payments, and refunding a card payment from its page (through
the gateway: the card gets the money back, the payment and invoice show it)."""
import json
from datetime import UTC, datetime

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html

from aerolith.admin import CappedPaginator, ReadOnlyAdmin
from aerolith.errors import DomainError, ValidationFailed

from ..models import Dispute, Payment, Refund, StripeEvent
from ..services.cards import payment_refund, payment_refundable_cents
from ..services.stripe_events import stripe_event_process
from .common import DollarsField, admin_link, report_each, short_time, usd


def _unix(value) -> str:
    return short_time(datetime.fromtimestamp(value, UTC)) if value else "—"


@admin.register(StripeEvent)
class StripeEventAdmin(ReadOnlyAdmin):
    list_display = ["event_id", "type", "status", "attempts", "stripe_time", "received_at", "processed_at",
                    "outcome"]
    list_filter = ["status", "type", "livemode"]
    search_fields = ["event_id", "type", "last_error"]
    date_hierarchy = "received_at"
    paginator = CappedPaginator
    show_full_result_count = False
    actions = ["retry"]
    fields = ["event_id", "type", "status", "attempts", "stripe_time", "livemode", "received_at",
              "processed_at", "last_error", "payload_json"]
    readonly_fields = ["stripe_time", "payload_json"]

    @admin.display(description="Created at Stripe", ordering="created")
    def stripe_time(self, obj):
        return _unix(obj.created)

    @admin.display(description="Outcome / error")
    def outcome(self, obj):
        text = obj.last_error or ""
        return text if len(text) <= 120 else text[:119] + "…"

    @admin.display(description="Payload")
    def payload_json(self, obj):
        return format_html('<pre style="white-space: pre-wrap">{}</pre>',
                           json.dumps(obj.payload, indent=2))

    def has_retry_permission(self, request):
        return request.user.has_perm("billing.change_stripeevent")

    @admin.action(description="Retry the selected failed events", permissions=["retry"])
    def retry(self, request, queryset):
        def run(event):
            if event.status != StripeEvent.Status.FAILED:
                state = event.get_status_display().lower()
                raise ValidationFailed({"event": [("not_failed", f"It is {state}; only failed events "
                                                   "are retried.")]})
            event = stripe_event_process(event_pk=event.pk, retry=True)
            if event.status == StripeEvent.Status.FAILED:
                raise ValidationFailed({"event": [("failed_again", f"Failed again: {event.last_error}")]})
            return f"{event.get_status_display().lower()}: {event.last_error or 'done'}"

        report_each(self, request, queryset.order_by("created", "pk"), run)


class PaymentColumns:
    """List columns shared by refunds and disputes: what they belong to and their amount."""

    @admin.display(description="Tenant")
    def tenant(self, obj):
        return obj.payment.tenant

    @admin.display(description="Payment")
    def payment_link(self, obj):
        return admin_link(obj.payment, f"Payment {obj.payment_id}")

    @admin.display(description="Invoice")
    def invoice(self, obj):
        return admin_link(obj.payment.invoice)

    @admin.display(description="Amount", ordering="amount_cents")
    def amount(self, obj):
        return usd(obj.amount_cents)


@admin.register(Refund)
class RefundAdmin(PaymentColumns, ReadOnlyAdmin):
    list_display = ["created_at", "tenant", "payment_link", "invoice", "amount", "status", "reason",
                    "gateway_reference", "created_by"]
    list_filter = ["status"]
    list_select_related = ["payment__tenant", "payment__invoice", "created_by"]
    search_fields = ["payment__tenant__slug", "payment__invoice__number", "gateway_reference"]
    date_hierarchy = "created_at"
    paginator = CappedPaginator
    show_full_result_count = False



@admin.register(Dispute)
class DisputeAdmin(PaymentColumns, ReadOnlyAdmin):
    list_display = ["created_at", "gateway_reference", "tenant", "payment_link", "invoice", "amount",
                    "status", "reason", "updated_at"]
    list_filter = ["status", "reason"]
    list_select_related = ["payment__tenant", "payment__invoice"]
    search_fields = ["gateway_reference", "payment__tenant__slug", "payment__invoice__number"]
    date_hierarchy = "created_at"



class _HistoryInline(admin.TabularInline):
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    @admin.display(description="Amount")
    def amount(self, obj):
        return usd(obj.amount_cents)


class RefundInline(_HistoryInline):
    model = Refund
    fields = ["created_at", "amount", "status", "reason", "gateway_reference", "created_by"]
    readonly_fields = fields


class DisputeInline(_HistoryInline):
    model = Dispute
    fields = ["created_at", "gateway_reference", "amount", "status", "reason", "updated_at"]
    readonly_fields = fields


# --- refunding a card payment ----------------------------------------------------------------

class CardRefundForm(forms.Form):
    amount = DollarsField(label="Amount to refund (USD)")
    reason = forms.CharField(max_length=200, help_text="Why; kept with the refund and in the audit log.")


class CardRefundMixin:
    """For PaymentAdmin: the "Refund to the card" action and the page it opens."""

    def get_urls(self):
        view = self.admin_site.admin_view
        return [path("<path:object_id>/refund/", view(self.card_refund_view), name="billing_payment_refund"),
                *super().get_urls()]

    def has_refund_permission(self, request, obj=None):
        return request.user.has_perm("billing.add_refund")

    def change_view(self, request, object_id, form_url="", extra_context=None):
        payment = self.get_object(request, unquote(object_id))
        if payment is not None:
            extra_context = {**(extra_context or {}),
                             "can_refund_card": self.has_refund_permission(request)
                             and _refusal(payment) is None}
        return super().change_view(request, object_id, form_url, extra_context)

    @admin.action(description="Refund the selected card payment to the card (full or partial)",
                  permissions=["refund"])
    def refund_to_card(self, request, queryset):
        ids = list(queryset.values_list("pk", flat=True)[:2])
        if len(ids) != 1:
            self.message_user(request, "Select exactly one payment to refund.", messages.ERROR)
            return None
        return redirect("admin:billing_payment_refund", ids[0])

    def card_refund_view(self, request, object_id):
        if not self.has_refund_permission(request):
            raise PermissionDenied
        payment = self.get_object(request, unquote(object_id))
        if payment is None:
            return self._get_obj_does_not_exist_redirect(request, self.opts, object_id)
        change_url = reverse("admin:billing_payment_change", args=[payment.pk])
        problem = _refusal(payment)
        if problem:
            self.message_user(request, f"Payment {payment.pk}: {problem}", messages.ERROR)
            return redirect(change_url)
        refundable = payment_refundable_cents(payment)
        form = CardRefundForm(request.POST if request.method == "POST" else None,
                              initial={"amount": refundable})
        if request.method == "POST" and form.is_valid():
            try:
                refund = payment_refund(payment_id=payment.pk, amount_cents=form.cleaned_data["amount"],
                                        reason=form.cleaned_data["reason"], actor=request.user)
            except ValidationFailed as error:
                for item in error.field_errors():
                    form.add_error(item["field"] if item["field"] in form.fields else None, item["detail"])
            except DomainError as error:
                self.message_user(request, f"Payment {payment.pk}: {error.explain()}", messages.ERROR)
                return redirect(change_url)
            else:
                payment.refresh_from_db()
                self.message_user(request, (
                    f"Payment {payment.pk}: refunded {usd(refund.amount_cents)} to the card "
                    f"({refund.get_status_display().lower()}, {refund.gateway_reference}); "
                    f"{usd(payment.refunded_cents)} of {usd(payment.amount_cents)} refunded in all."),
                    messages.SUCCESS)
                return redirect(change_url)
        context = {
            **self.admin_site.each_context(request), "opts": self.opts, "title": "Refund to the card",
            "subtitle": f"Payment {payment.pk}", "payment": payment, "form": form, "change_url": change_url,
            "refundable_cents": refundable, "media": self.media + form.media,
        }
        return TemplateResponse(request, "admin/billing/payment/refund_form.html", context)


def _refusal(payment: Payment) -> str | None:
    if payment.method != Payment.Method.CARD or payment.status != Payment.Status.SUCCEEDED:
        return "only succeeded card payments are refunded to the card."
    if not payment.gateway_reference:
        return "this payment has no charge at the card processor to refund."
    if payment_refundable_cents(payment) <= 0:
        return "nothing is left to refund."
    return None
