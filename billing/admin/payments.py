"""Money history, read-only: payments (attempts and receipts), cards on file and the
tenants' balance ledger. Services write them; staff look."""
from django.contrib import admin

from aerolith.admin import CappedPaginator, ReadOnlyAdmin

from ..models import BalanceTransaction, Payment, PaymentMethod
from .common import admin_link, usd
from .stripe import CardRefundMixin, DisputeInline, RefundInline


class DeclinedFilter(admin.SimpleListFilter):
    """Failed payments by decline code, listing only codes that occur."""

    title = "decline code"
    parameter_name = "decline_code"

    def lookups(self, request, model_admin):
        codes = (Payment.objects.exclude(decline_code="").order_by("decline_code")
                 .values_list("decline_code", flat=True).distinct())
        return [(code, code) for code in codes]

    def queryset(self, request, queryset):
        return queryset.filter(decline_code=self.value()) if self.value() else queryset


@admin.register(Payment)
class PaymentAdmin(CardRefundMixin, ReadOnlyAdmin):
    list_display = ["created_at", "tenant", "invoice_link", "method", "status", "amount", "refunded",
                    "attempt", "decline_code", "hard_decline", "reference"]
    list_filter = ["status", "method", DeclinedFilter, "hard_decline"]
    list_select_related = ["tenant", "invoice"]
    search_fields = ["tenant__slug", "invoice__number", "reference", "gateway_reference"]
    date_hierarchy = "created_at"
    paginator = CappedPaginator
    show_full_result_count = False
    readonly_fields = ["invoice_link", "amount", "refunded"]
    fields = ["tenant", "invoice_link", "method", "payment_method", "status", "amount", "refunded",
              "currency", "attempt", "idempotency_key", "gateway_reference", "reference", "received_on",
              "decline_code", "failure_message", "hard_decline", "action_url", "gateway_updated",
              "recorded_by", "created_at"]
    inlines = [RefundInline, DisputeInline]
    actions = ["refund_to_card"]
    change_form_template = "admin/billing/payment/change_form.html"

    @admin.display(description="Refunded", ordering="refunded_cents")
    def refunded(self, obj):
        return usd(obj.refunded_cents) if obj.refunded_cents else "—"

    @admin.display(description="Invoice", ordering="invoice__number")
    def invoice_link(self, obj):
        return admin_link(obj.invoice)

    @admin.display(description="Amount", ordering="amount_cents")
    def amount(self, obj):
        return usd(obj.amount_cents)


@admin.register(PaymentMethod)
class PaymentMethodAdmin(ReadOnlyAdmin):
    list_display = ["tenant", "kind", "brand", "last4", "expires", "gateway_id", "created_at",
                    "detached_at"]
    list_filter = ["kind", "brand"]
    list_select_related = ["tenant"]
    search_fields = ["tenant__slug", "gateway_id", "last4"]

    @admin.display(description="Expires")
    def expires(self, obj):
        return f"{obj.exp_month:02d}/{obj.exp_year}" if obj.exp_month and obj.exp_year else "—"


@admin.register(BalanceTransaction)
class BalanceTransactionAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "tenant", "kind", "amount", "balance_after", "invoice_link",
                    "description", "actor_label"]
    list_filter = ["kind"]
    list_select_related = ["tenant", "invoice"]
    search_fields = ["tenant__slug", "invoice__number", "description"]
    date_hierarchy = "created_at"
    paginator = CappedPaginator
    show_full_result_count = False

    @admin.display(description="Amount", ordering="amount_cents")
    def amount(self, obj):
        return usd(obj.amount_cents)

    @admin.display(description="Balance after")
    def balance_after(self, obj):
        return usd(obj.balance_after_cents)

    @admin.display(description="Invoice")
    def invoice_link(self, obj):
        return admin_link(obj.invoice)
