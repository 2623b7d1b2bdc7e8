"""The pages invoice actions open for one invoice: confirm a finalisation, record a bank
transfer, refund to the balance, and the PDF. GET shows the form; POST calls the service;
refusals come back as form errors or a message, with nothing changed."""
from django.contrib import messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.http import HttpResponse
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse

from aerolith.errors import DomainError, ValidationFailed

from ..models import Invoice, Subscription
from ..services.collection import payment_record_manual
from ..services.invoices import invoice_refund_to_balance
from .common import usd
from .invoice_forms import BankTransferForm, ConfirmForm, RefundForm


class InvoicePagesMixin:
    """For InvoiceAdmin, which provides `_finalise(request, invoice)`."""

    def get_urls(self):
        view = self.admin_site.admin_view
        return [
            path("<path:object_id>/finalise/", view(self.finalise_view), name="billing_invoice_finalise"),
            path("<path:object_id>/record-transfer/", view(self.record_transfer_view),
                 name="billing_invoice_record_transfer"),
            path("<path:object_id>/refund/", view(self.refund_view), name="billing_invoice_refund"),
            path("<path:object_id>/pdf/", view(self.pdf_view), name="billing_invoice_pdf"),
            *super().get_urls(),
        ]

    def finalise_view(self, request, object_id):
        return self._form_view(
            request, object_id, ConfirmForm, title="Finalise invoice", submit="Finalise",
            intro="Finalising gives the draft the next invoice number, applies the tenant's balance "
                  "and schedules a charge of the card on file. Its lines can no longer change.",
            refusal=lambda i: None if i.status == Invoice.Status.DRAFT
            else f"{i} is {i.get_status_display().lower()}; only drafts are finalised.",
            perform=lambda i, data: self._finalise(request, i))

    def record_transfer_view(self, request, object_id):
        def perform(invoice, data):
            payment_record_manual(invoice=invoice, amount_cents=data["amount"], reference=data["reference"],
                                  received_on=data["received_on"], actor=request.user)
            invoice.refresh_from_db()
            rest = ("paid in full." if invoice.status == Invoice.Status.PAID
                    else f"{usd(invoice.amount_due_cents)} is still due.")
            return f"recorded a bank transfer of {usd(data['amount'])} (reference {data['reference']}); {rest}"

        return self._form_view(
            request, object_id, BankTransferForm, title="Record a bank transfer", submit="Record payment",
            intro="Record money that arrived by bank transfer. A partial payment leaves the rest due.",
            refusal=lambda i: None if i.is_payable
            else f"{i} is {i.get_status_display().lower()} and owes nothing.",
            perform=perform)

    def refund_view(self, request, object_id):
        def perform(invoice, data):
            invoice_refund_to_balance(invoice=invoice, amount_cents=data["amount"], actor=request.user,
                                      reason=data["reason"])
            balance = Subscription.objects.values_list("balance_cents", flat=True).get(pk=invoice.subscription_id)
            return (f"refunded {usd(data['amount'])} to the tenant's balance, which now holds "
                    f"{usd(balance)}.")

        def refusal(invoice):
            if invoice.subscription_id is None:
                return f"{invoice} has no subscription to hold a balance."
            if invoice.amount_paid_cents <= invoice.amount_refunded_cents:
                return f"{invoice} has nothing paid that is not already refunded."
            return None

        return self._form_view(
            request, object_id, RefundForm, title="Refund to balance", submit="Refund",
            intro="Give paid money back as credit on the tenant's balance; it applies to the "
                  "next invoices before any charge.",
            refusal=refusal, perform=perform)

    def pdf_view(self, request, object_id):
        from ..pdf import invoice_pdf

        invoice = self.get_object(request, unquote(object_id))
        if invoice is None:
            return self._get_obj_does_not_exist_redirect(request, self.opts, object_id)
        try:
            content = invoice_pdf(invoice)
        except DomainError as error:
            self.message_user(request, f"{invoice}: {error.explain()}", messages.ERROR)
            return redirect("admin:billing_invoice_change", invoice.pk)
        return attachment(content, f"{invoice.number}.pdf", "application/pdf")

    def _form_view(self, request, object_id, form_class, *, title, submit, intro, refusal, perform):
        """An intermediate page for one invoice: GET shows the form, POST calls the service.
        Refusals come back as form errors (field problems) or a message, nothing changed."""
        if not self.has_change_permission(request):
            raise PermissionDenied
        invoice = self.get_object(request, unquote(object_id))
        if invoice is None:
            return self._get_obj_does_not_exist_redirect(request, self.opts, object_id)
        change_url = reverse("admin:billing_invoice_change", args=[invoice.pk])
        problem = refusal(invoice)
        if problem:
            self.message_user(request, problem, messages.ERROR)
            return redirect(change_url)
        form = form_class(request.POST) if request.method == "POST" else form_class()
        if request.method == "POST" and form.is_valid():
            try:
                done = perform(invoice, form.cleaned_data)
            except ValidationFailed as error:
                for item in error.field_errors():
                    form.add_error(item["field"] if item["field"] in form.fields else None, item["detail"])
            except DomainError as error:
                self.message_user(request, f"{invoice}: {error.explain()}", messages.ERROR)
                return redirect(change_url)
            else:
                self.message_user(request, f"{invoice}: {done}", messages.SUCCESS)
                return redirect(change_url)
        context = {
            **self.admin_site.each_context(request), "opts": self.opts, "title": title,
            "subtitle": str(invoice), "invoice": invoice, "form": form, "intro": intro,
            "submit_label": submit, "media": self.media + form.media, "change_url": change_url,
            "refundable_cents": invoice.amount_paid_cents - invoice.amount_refunded_cents,
        }
        return TemplateResponse(request, "admin/billing/invoice/invoice_form.html", context)


def attachment(content: bytes, filename: str, content_type: str) -> HttpResponse:
    return HttpResponse(content, content_type=content_type,
                        headers={"Content-Disposition": f'attachment; filename="{filename}"'})
