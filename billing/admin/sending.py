"""Sending in the staff console: the wallet's signing keys (address only — the sealed
secret is never a field here) and the outgoing transactions, read-only, with explorer
links and "broadcast again" (the same signed bytes, never a new signature)."""
from django.contrib import admin
from django.utils.html import format_html

from aerolith.admin import CappedPaginator, ReadOnlyAdmin

from ..models import OutgoingTransaction, SigningKey
from ..services.sending import outgoing_send
from .common import admin_link, report_each, short_time


@admin.register(SigningKey)
class SigningKeyAdmin(ReadOnlyAdmin):
    """Keys are added with `manage.py wallet import-key|generate-key`, never here."""

    list_display = ["network", "address", "label", "created_at"]
    list_filter = ["network"]
    fields = ["network", "address", "label", "created_at"]
    search_fields = ["address", "label"]


@admin.register(OutgoingTransaction)
class OutgoingTransactionAdmin(ReadOnlyAdmin):
    list_display = ["id", "created", "purpose", "tenant", "quote_link", "currency", "amount", "to_address",
                    "status", "attempts", "explorer"]
    list_filter = ["status", "purpose", "network", "currency"]
    list_select_related = ["tenant", "quote"]
    search_fields = ["txid", "to_address", "tenant__slug", "quote__invoice__number"]
    paginator = CappedPaginator
    show_full_result_count = False
    actions = ["broadcast_again"]
    fields = ["network", "purpose", "tenant", "quote_link", "currency", "from_address", "to_address", "token",
              "amount", "fee_estimate", "balance_debit_cents", "status", "explorer", "attempts", "last_error",
              "actor_label", "created_at", "broadcast_at", "confirmed_at"]
    readonly_fields = ["quote_link", "amount", "explorer"]

    @admin.display(description="Created", ordering="created_at")
    def created(self, obj):
        return short_time(obj.created_at)

    @admin.display(description="Quote")
    def quote_link(self, obj):
        return admin_link(obj.quote)

    @admin.display(description="Amount (base units)", ordering="amount_base_units")
    def amount(self, obj):
        return str(int(obj.amount_base_units))

    @admin.display(description="Transaction")
    def explorer(self, obj):
        if not obj.txid:
            return "—"
        return format_html('<a href="{}" target="_blank" rel="noopener">{}…</a>', obj.explorer_url, obj.txid[:16])

    @admin.action(description="Broadcast again (the same signed bytes; signs first only if never signed)")
    def broadcast_again(self, request, queryset):
        def send(outgoing):
            outgoing = outgoing_send(outgoing_id=outgoing.pk)
            tail = f" Last error: {outgoing.last_error}" if outgoing.last_error else ""
            return f"{outgoing.get_status_display()} after {outgoing.attempts} attempt(s).{tail}"

        report_each(self, request, queryset, send)
