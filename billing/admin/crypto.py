"""Crypto payments in the staff console: quotes with their transfers (read-only, with
explorer links), the transfers on their own, and the fallback rates staff set. The one
action looks on chain now, as the beat pass does every 15 seconds."""
from django.contrib import admin
from django.utils.html import format_html

from aerolith.admin import CappedPaginator, ReadOnlyAdmin

from ..models import ChainTransfer, CryptoQuote, CryptoRate
from ..services.crypto import quote_refresh
from .common import admin_link, report_each, short_time, usd


def explorer_link(transfer: ChainTransfer) -> str:
    return format_html('<a href="{}" target="_blank" rel="noopener">{}…</a>', transfer.explorer_url,
                       transfer.txid[:16])


class ChainTransferInline(admin.TabularInline):
    model = ChainTransfer
    extra = 0
    fields = ["explorer", "amount", "sender", "slot", "block_time", "finality", "late", "seen_at"]
    readonly_fields = fields
    can_delete = False
    verbose_name_plural = "Transfers seen on chain"

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    @admin.display(description="Transaction")
    def explorer(self, obj):
        return explorer_link(obj)

    @admin.display(description="Amount (base units)")
    def amount(self, obj):
        return str(int(obj.amount_base_units))


@admin.register(CryptoQuote)
class CryptoQuoteAdmin(ReadOnlyAdmin):
    list_display = ["id", "created", "tenant", "invoice_link", "currency", "amount", "quoted", "status",
                    "paid_partial", "paid_over", "paid_late", "credited", "expires"]
    list_filter = ["status", "currency", "network", "paid_partial", "paid_over", "paid_late"]
    list_select_related = ["tenant", "invoice"]
    search_fields = ["tenant__slug", "invoice__number", "reference", "address", "transfers__txid"]
    date_hierarchy = "created_at"
    paginator = CappedPaginator
    show_full_result_count = False
    inlines = [ChainTransferInline]
    actions = ["look_on_chain", "refund_excess_on_chain", "sweep_to_merchant"]
    fields = ["tenant", "invoice_link", "currency", "network", "status", "paid_partial", "paid_over",
              "paid_late", "quoted", "amount", "received", "rate", "rate_source", "address", "token",
              "derivation_index", "reference", "memo", "url", "expires_at", "settled_at", "payment_link",
              "applied", "credited",
              "last_checked_at", "last_error", "created_at"]
    readonly_fields = ["invoice_link", "quoted", "amount", "received", "payment_link", "applied", "credited"]

    @admin.display(description="Created", ordering="created_at")
    def created(self, obj):
        return short_time(obj.created_at)

    @admin.display(description="Expires", ordering="expires_at")
    def expires(self, obj):
        return short_time(obj.expires_at)

    @admin.display(description="Invoice", ordering="invoice__number")
    def invoice_link(self, obj):
        return admin_link(obj.invoice)

    @admin.display(description="Payment")
    def payment_link(self, obj):
        return admin_link(obj.payment)

    @admin.display(description="Amount")
    def amount(self, obj):
        return f"{obj.amount_text} {obj.get_currency_display()} ({int(obj.amount_base_units)} base units)"

    @admin.display(description="Received")
    def received(self, obj):
        return f"{obj.received_text} {obj.get_currency_display()} ({int(obj.received_base_units)} base units)"

    @admin.display(description="For", ordering="amount_cents")
    def quoted(self, obj):
        return usd(obj.amount_cents)

    @admin.display(description="Paid to invoice")
    def applied(self, obj):
        return usd(obj.applied_cents)

    @admin.display(description="Credited to balance", ordering="credited_cents")
    def credited(self, obj):
        return usd(obj.credited_cents)

    @admin.action(description="Look on chain now (apply payments found, expire if due)")
    def look_on_chain(self, request, queryset):
        def refresh(quote):
            quote = quote_refresh(quote_id=quote.pk)
            return (f"{quote.get_status_display()}; received {quote.received_text} "
                    f"{quote.get_currency_display()}.")

        report_each(self, request, queryset, refresh)

    @admin.action(description="Refund excess on chain (instead of the balance credit)")
    def refund_excess_on_chain(self, request, queryset):
        from ..services.sending import overpayment_refund

        def refund(quote):
            outgoing = overpayment_refund(quote=quote, actor=request.user)
            tail = f" Last error: {outgoing.last_error}" if outgoing.last_error else ""
            return (f"refund {outgoing.pk} of {int(outgoing.amount_base_units)} base units to "
                    f"{outgoing.to_address}: {outgoing.get_status_display()}; "
                    f"{outgoing.balance_debit_cents} cents taken back from the balance.{tail}")

        report_each(self, request, queryset, refund)

    @admin.action(description="Sweep to merchant (settled Tron quotes)")
    def sweep_to_merchant(self, request, queryset):
        from ..services.sweeping import deposit_sweep

        def sweep(quote):
            outgoing = deposit_sweep(quote=quote, actor=request.user)
            tail = f" Last error: {outgoing.last_error}" if outgoing.last_error else ""
            step = "TRX funding for energy" if outgoing.purpose == "sweep_fund" else "sweep"
            return (f"{step} {outgoing.pk} of {int(outgoing.amount_base_units)} base units from "
                    f"{outgoing.from_address} to {outgoing.to_address}: {outgoing.get_status_display()}.{tail}")

        report_each(self, request, queryset, sweep)


@admin.register(ChainTransfer)
class ChainTransferAdmin(ReadOnlyAdmin):
    list_display = ["seen_at", "quote_link", "network", "explorer", "amount", "finality", "late", "sender"]
    list_filter = ["network", "finality", "late"]
    list_select_related = ["quote"]
    search_fields = ["txid", "sender", "quote__reference", "quote__invoice__number"]
    paginator = CappedPaginator
    show_full_result_count = False

    @admin.display(description="Transaction")
    def explorer(self, obj):
        return explorer_link(obj)

    @admin.display(description="Quote")
    def quote_link(self, obj):
        return admin_link(obj.quote)

    @admin.display(description="Amount (base units)", ordering="amount_base_units")
    def amount(self, obj):
        return str(int(obj.amount_base_units))


@admin.register(CryptoRate)
class CryptoRateAdmin(admin.ModelAdmin):
    """Staff set the fallback rate used when the rate source cannot be reached."""

    list_display = ["currency", "fallback_usd", "last_usd", "last_fetched_at", "last_error", "updated_at"]
    fields = ["currency", "fallback_usd", "last_usd", "last_fetched_at", "last_error", "updated_at"]
    readonly_fields = ["last_usd", "last_fetched_at", "last_error", "updated_at"]

    def has_delete_permission(self, request, obj=None):
        return False
