"""Forms of the invoice console: a manual draft, its adjustment lines, and the pages an
action opens (record a bank transfer, refund to the balance, confirm a finalisation)."""
from django import forms
from django.contrib.admin import widgets
from django.forms.models import BaseInlineFormSet

from aerolith.money import cents_to_text
from tenants.models import Tenant

from ..models import Invoice, InvoiceLine
from .common import DollarsField


class ManualInvoiceForm(forms.ModelForm):
    class Meta:
        model = Invoice
        fields = ["tenant", "period_start", "period_end"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if "tenant" in self.fields:  # the public schema is the platform, not a customer
            self.fields["tenant"].queryset = Tenant.objects.exclude(schema_name="public")

    def clean(self):
        data = super().clean()
        start, end = data.get("period_start"), data.get("period_end")
        if start and end and end < start:
            self.add_error("period_end", "The period ends before it starts.")
        return data


class AdjustmentLineForm(forms.ModelForm):
    amount = DollarsField(allow_negative=True, label="Amount (USD)",
                          help_text="Negative for a credit, e.g. -15.00.")

    class Meta:
        model = InvoiceLine
        fields = ["description"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.instance.pk is not None:
            self.initial["amount"] = cents_to_text(self.instance.amount_cents)


class AdjustmentFormSet(BaseInlineFormSet):
    """Adjustment lines typed by staff; saved through the invoice services, not here."""

    @classmethod
    def get_default_prefix(cls):
        return "adjustments"  # beside the fixed lines' formset, which has "lines"

    def kept(self) -> list[dict]:
        """The cleaned lines that remain after this submission: existing ones not deleted
        and new ones that were filled in."""
        lines = []
        deleted = set(map(id, self.deleted_forms)) if self.can_delete else set()
        for form in self.forms:
            if id(form) in deleted or not getattr(form, "cleaned_data", None):
                continue
            if form.instance.pk is None and not form.has_changed():
                continue
            lines.append(form.cleaned_data)
        return lines


class BankTransferForm(forms.Form):
    amount = DollarsField(label="Amount received (USD)")
    reference = forms.CharField(max_length=140, help_text="The transfer's reference on the bank statement.")
    received_on = forms.DateField(widget=widgets.AdminDateWidget, help_text="The day the money arrived.")


class RefundForm(forms.Form):
    amount = DollarsField(label="Amount to refund (USD)")
    reason = forms.CharField(max_length=200, help_text="Why; kept in the ledger and the audit log.")


class ConfirmForm(forms.Form):
    """Nothing to type: the page asks staff to confirm."""
