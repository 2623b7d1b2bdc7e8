"""Invoices in the staff console: lines inline (adjustments editable on drafts only),
payments inline, and actions that call the invoice services and say what they did:
finalise, void, write off, download PDF, record a bank transfer, refund to the balance.
Staff also make manual drafts here (reason manual) from adjustment lines."""
import io
import zipfile
from decimal import Decimal

from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.db.models import OuterRef, Subquery
from django.shortcuts import redirect

from aerolith import clock
from aerolith.admin import CappedPaginator
from aerolith.errors import DomainError

from ..decisions import LineDraft
from ..models import Invoice, InvoiceLine, Payment
from ..services.invoices import (
    invoice_adjustments_set,
    invoice_finalize,
    invoice_manual_draft,
    invoice_mark_uncollectible,
    invoice_pay_from_balance,
    invoice_void,
)
from .common import admin_link, report_each, short_time, usd
from .invoice_forms import AdjustmentFormSet, AdjustmentLineForm, ManualInvoiceForm
from .invoice_pages import InvoicePagesMixin, attachment

PDF_BATCH_MAX = 100
AMOUNTS = ["subtotal", "credit_applied", "total", "amount_paid", "amount_due", "amount_refunded"]


def _amount(field: str):
    def show(self, obj):
        return usd(getattr(obj, f"{field}_cents"))

    show.__name__ = field
    return admin.display(description=field.replace("_", " ").capitalize(),
                         ordering=f"{field}_cents")(show)


class InvoiceLineInline(admin.TabularInline):
    """All lines of a finalised invoice, as they were issued."""

    model = InvoiceLine
    extra = 0
    fields = ["kind", "description", "meter", "quantity", "unit_price", "amount", "period_start",
              "period_end"]
    readonly_fields = fields
    can_delete = False
    verbose_name_plural = "Lines"

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    @admin.display(description="Unit price")
    def unit_price(self, obj):
        if obj.unit_amount_cents is None:
            return "—"
        return f"{(obj.unit_amount_cents / 100).normalize():f} USD"

    @admin.display(description="Amount")
    def amount(self, obj):
        return usd(obj.amount_cents)


class DraftFixedLineInline(InvoiceLineInline):
    """A draft's lines from billing (plan, proration, overage): fixed; only staff's own
    adjustments are edited."""

    verbose_name_plural = "Lines from billing (fixed)"

    def get_queryset(self, request):
        return super().get_queryset(request).exclude(kind=InvoiceLine.Kind.ADJUSTMENT)


class AdjustmentLineInline(admin.TabularInline):
    model = InvoiceLine
    form = AdjustmentLineForm
    formset = AdjustmentFormSet
    fields = ["description", "amount"]
    extra = 1
    verbose_name = "adjustment line"
    verbose_name_plural = "Adjustment lines"

    def get_queryset(self, request):
        return super().get_queryset(request).filter(kind=InvoiceLine.Kind.ADJUSTMENT)

    def get_formset(self, request, obj=None, **kwargs):
        if obj is None:  # a manual invoice needs at least one line
            kwargs.update(min_num=1, validate_min=True, extra=0)
        return super().get_formset(request, obj, **kwargs)


class PaymentInline(admin.TabularInline):
    model = Payment
    extra = 0
    fields = ["created_at", "method", "status", "amount", "attempt", "reference", "received_on",
              "decline_code", "hard_decline", "failure_message", "recorded_by"]
    readonly_fields = fields
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    @admin.display(description="Amount")
    def amount(self, obj):
        return usd(obj.amount_cents)


@admin.register(Invoice)
class InvoiceAdmin(InvoicePagesMixin, admin.ModelAdmin):
    list_display = ["invoice", "tenant", "status", "reason", "total", "amount_due", "finalized",
                    "due", "last_decline"]
    list_filter = ["status", "reason"]
    search_fields = ["number", "tenant__slug", "tenant__name"]
    date_hierarchy = "created_at"
    list_select_related = ["tenant"]
    paginator = CappedPaginator
    show_full_result_count = False
    autocomplete_fields = ["tenant"]
    form = ManualInvoiceForm
    change_form_template = "admin/billing/invoice/change_form.html"
    actions = ["finalise", "void", "mark_uncollectible", "download_pdf", "record_bank_transfer",
               "refund_to_balance", "pay_from_balance"]
    summary_fields = ["number", "tenant_link", "status", "reason", "currency", "period_start",
                      "period_end", *AMOUNTS, "created_at", "finalized_at", "due_at", "paid_at",
                      "closed_at", "attempt_count"]
    readonly_fields = ["tenant_link", *AMOUNTS]

    subtotal, credit_applied, total, amount_paid, amount_due, amount_refunded = map(_amount, AMOUNTS)

    # --- list and pages -------------------------------------------------------------------

    def get_queryset(self, request):
        decline = (Payment.objects.filter(invoice=OuterRef("pk"), status=Payment.Status.FAILED)
                   .order_by("-created_at", "-id").values("decline_code")[:1])
        return super().get_queryset(request).annotate(last_decline_code=Subquery(decline))

    @admin.display(description="Invoice", ordering="number")
    def invoice(self, obj):
        return str(obj)

    @admin.display(description="Finalised", ordering="finalized_at")
    def finalized(self, obj):
        return short_time(obj.finalized_at)

    @admin.display(description="Due", ordering="due_at")
    def due(self, obj):
        return short_time(obj.due_at)

    @admin.display(description="Last decline")
    def last_decline(self, obj):
        return obj.last_decline_code or ""

    @admin.display(description="Tenant")
    def tenant_link(self, obj):
        return admin_link(obj.tenant, f"{obj.tenant.name} ({obj.tenant.slug})")

    def get_fieldsets(self, request, obj=None):
        if obj is None:
            return [(None, {"fields": ["tenant", "period_start", "period_end"],
                            "description": "A manual invoice of adjustment lines (reason: manual). "
                                           "It stays a draft until you finalise it."})]
        return [(None, {"fields": self.summary_fields})]

    def get_readonly_fields(self, request, obj=None):
        return [] if obj is None else self.summary_fields

    def get_changeform_initial_data(self, request):
        now = clock.wall_now().replace(microsecond=0)
        return {"period_start": now, "period_end": now, **super().get_changeform_initial_data(request)}

    def get_inline_instances(self, request, obj=None):
        if obj is None:
            classes = [AdjustmentLineInline]
        elif obj.status == Invoice.Status.DRAFT:
            fixed = obj.lines.exclude(kind=InvoiceLine.Kind.ADJUSTMENT).exists()
            classes = [DraftFixedLineInline, AdjustmentLineInline] if fixed else [AdjustmentLineInline]
        else:
            classes = [InvoiceLineInline, PaymentInline]
        return [cls(self.model, self.admin_site) for cls in classes]

    def has_change_permission(self, request, obj=None):
        """Only a draft's adjustment lines are edited here; everything else moves through
        the actions."""
        allowed = super().has_change_permission(request, obj)
        return allowed and (obj is None or obj.status == Invoice.Status.DRAFT)

    def has_delete_permission(self, request, obj=None):
        return False  # invoices are voided, never deleted

    def change_view(self, request, object_id, form_url="", extra_context=None):
        invoice = self.get_object(request, unquote(object_id))
        if invoice is not None:
            extra_context = {**(extra_context or {}),
                             "can_finalise": invoice.status == Invoice.Status.DRAFT,
                             "can_record_transfer": invoice.is_payable,
                             "can_refund": invoice.amount_paid_cents > invoice.amount_refunded_cents
                             and invoice.subscription_id is not None,
                             "has_pdf": bool(invoice.number)}
        return super().change_view(request, object_id, form_url, extra_context)

    # --- saving a manual draft through the services ---------------------------------------

    def save_model(self, request, obj, form, change):
        """Nothing is written here: save_related makes or adjusts the draft through the
        invoice services, once the adjustment lines are known."""

    def save_related(self, request, form, formsets, change):
        for formset in formsets:  # what construct_change_message reads; nothing saved directly
            formset.new_objects, formset.changed_objects, formset.deleted_objects = [], [], []
        adjustments = next((f for f in formsets if isinstance(f, AdjustmentFormSet)), None)
        if adjustments is None:
            return
        lines = [LineDraft(InvoiceLine.Kind.ADJUSTMENT, data["description"], data["amount"],
                           Decimal(1), Decimal(data["amount"]))
                 for data in adjustments.kept()]
        invoice = form.instance
        try:
            if not change:
                made = invoice_manual_draft(tenant=invoice.tenant, period_start=invoice.period_start,
                                            period_end=invoice.period_end, adjustments=lines,
                                            actor=request.user)
                invoice.pk, invoice._state.adding = made.pk, False
            elif adjustments.has_changed():
                invoice_adjustments_set(invoice=invoice, adjustments=lines, actor=request.user)
        except DomainError as error:
            self.message_user(request, f"{invoice}: {error.explain()}", messages.ERROR)

    # --- actions --------------------------------------------------------------------------

    @admin.action(description="Finalise selected drafts (number them, charge the card on file)",
                  permissions=["change"])
    def finalise(self, request, queryset):
        report_each(self, request, queryset.order_by("pk"), lambda i: self._finalise(request, i))

    @admin.action(description="Void selected open invoices", permissions=["change"])
    def void(self, request, queryset):
        report_each(self, request, queryset.order_by("pk"), lambda i: self._void(request, i))

    @admin.action(description="Mark selected open invoices uncollectible", permissions=["change"])
    def mark_uncollectible(self, request, queryset):
        def write_off(invoice):
            invoice = invoice_mark_uncollectible(invoice=invoice, actor=request.user)
            return f"written off as uncollectible; {usd(invoice.amount_due_cents)} stays due if paid later."

        report_each(self, request, queryset.order_by("pk"), write_off)

    @admin.action(description="Pay selected invoices from the tenant's balance", permissions=["change"])
    def pay_from_balance(self, request, queryset):
        def pay(invoice):
            invoice = invoice_pay_from_balance(invoice=invoice, actor=request.user)
            left = f"{usd(invoice.amount_due_cents)} still due." if invoice.amount_due_cents else "paid."
            return f"balance applied; {left}"

        report_each(self, request, queryset.order_by("pk"), pay)

    @admin.action(description="Download PDF (a zip for several)", permissions=["view"])
    def download_pdf(self, request, queryset):
        from ..pdf import invoice_pdf

        invoices = list(queryset.select_related("tenant", "subscription").order_by("pk")[:PDF_BATCH_MAX + 1])
        if len(invoices) > PDF_BATCH_MAX:
            self.message_user(request, f"Select at most {PDF_BATCH_MAX} invoices for one download.",
                              messages.ERROR)
            return None
        files = []
        for invoice in invoices:
            try:
                files.append((f"{invoice.number}.pdf", invoice_pdf(invoice)))
            except DomainError as error:
                self.message_user(request, f"{invoice}: {error.explain()}", messages.ERROR)
        if not files:
            return None
        if len(files) == 1:
            return attachment(files[0][1], files[0][0], "application/pdf")
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
            for name, content in files:
                archive.writestr(name, content)
        return attachment(buffer.getvalue(), f"invoices-{clock.wall_now():%Y%m%d-%H%M%S}.zip",
                           "application/zip")

    @admin.action(description="Record a bank transfer against the selected invoice", permissions=["change"])
    def record_bank_transfer(self, request, queryset):
        return self._to_form(request, queryset, "record_transfer", "record a bank transfer against")

    @admin.action(description="Refund part of the selected invoice to the tenant's balance",
                  permissions=["change"])
    def refund_to_balance(self, request, queryset):
        return self._to_form(request, queryset, "refund", "refund")

    def _to_form(self, request, queryset, view: str, verb: str):
        ids = list(queryset.values_list("pk", flat=True)[:2])
        if len(ids) != 1:
            self.message_user(request, f"Select exactly one invoice to {verb}.", messages.ERROR)
            return None
        return redirect(f"admin:billing_invoice_{view}", ids[0])

    def _finalise(self, request, invoice):
        invoice = invoice_finalize(invoice=invoice, actor=request.user)
        owed = ("paid at once (nothing due)" if invoice.status == Invoice.Status.PAID
                else f"{usd(invoice.amount_due_cents)} due")
        return f"finalised as {invoice.number}: total {usd(invoice.total_cents)}, {owed}."

    def _void(self, request, invoice):
        invoice = invoice_void(invoice=invoice, actor=request.user)
        returned = (f"; {usd(invoice.credit_applied_cents)} of credit returned to the balance"
                    if invoice.credit_applied_cents else "")
        return f"voided{returned}."
