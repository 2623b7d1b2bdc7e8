"""Subscriptions (read-only: status changes only through the services) with each
tenant's dunning state, and the one row of staff-editable billing schedules."""
from django import forms
from django.contrib import admin
from django.db import transaction
from django.db.models import OuterRef, Subquery, Sum
from django.shortcuts import redirect
from django.utils.html import format_html, format_html_join

from aerolith import clock
from aerolith.admin import ReadOnlyAdmin
from tenants.models import ScheduledJob, TestClock
from tenants.services.audit import audit_record

from ..models import BillingSettings, Invoice, Payment, Subscription
from ..selectors import billing_settings
from .common import admin_link, short_time, usd

UNPAID = [Invoice.Status.OPEN, Invoice.Status.UNCOLLECTIBLE]
JOBS_SHOWN = 20


def _when(value) -> str:
    return f"{short_time(value)} UTC" if value else "—"


def _in(delta) -> str:
    """A signed span as staff read it: 'in 3 d 4 h' or '2 d 1 h ago'."""
    seconds = int(delta.total_seconds())
    days, rest = divmod(abs(seconds), 86400)
    text = f"{days} d {rest // 3600} h" if days else f"{rest // 3600} h {rest % 3600 // 60} min"
    return f"in {text}" if seconds >= 0 else f"{text} ago"


@admin.register(Subscription)
class SubscriptionAdmin(ReadOnlyAdmin):
    list_display = ["tenant", "plan", "status", "current_period_end", "pending_plan",
                    "cancel_at_period_end", "balance", "owing", "past_due_since", "suspended_at"]
    list_filter = ["status", "plan", "cancel_at_period_end"]
    list_select_related = ["tenant", "plan", "pending_plan"]
    search_fields = ["tenant__slug", "tenant__name"]
    show_full_result_count = False
    fieldsets = [
        (None, {"fields": ["tenant_link", "plan", "status", "pending_plan", "cancel_at_period_end",
                           "default_payment_method", "balance"]}),
        ("Dunning", {"fields": ["past_due_since", "suspended_at", "cancelled_at", "data_kept_until",
                                "dunning_state"]}),
        ("Periods", {"fields": ["trial_end", "trial_outcome", "billing_anchor", "current_period_start",
                                "current_period_end", "created_at"]}),
    ]
    readonly_fields = ["tenant_link", "balance", "dunning_state"]

    def get_queryset(self, request):
        owing = (Invoice.objects.filter(subscription=OuterRef("pk"), status__in=UNPAID)
                 .values("subscription").annotate(cents=Sum("amount_due_cents")).values("cents"))
        return super().get_queryset(request).annotate(owing_cents=Subquery(owing))

    @admin.display(description="Tenant", ordering="tenant__slug")
    def tenant_link(self, obj):
        return admin_link(obj.tenant, f"{obj.tenant.name} ({obj.tenant.slug})")

    @admin.display(description="Balance (credit)", ordering="balance_cents")
    def balance(self, obj):
        return usd(obj.balance_cents)

    @admin.display(description="Owing", ordering="owing_cents")
    def owing(self, obj):
        return usd(obj.owing_cents or 0)

    @admin.display(description="Dunning state")
    def dunning_state(self, obj):
        tenant = obj.tenant
        now = clock.now(tenant)
        test_clock = TestClock.objects.filter(tenant=tenant).exists()
        invoices = list(Invoice.objects.filter(tenant=tenant, status__in=UNPAID, amount_due_cents__gt=0)
                        .order_by("due_at", "id"))
        jobs = list(ScheduledJob.objects.filter(tenant=tenant, status=ScheduledJob.Status.PENDING,
                                                kind__startswith="billing.")
                    .order_by("due_at", "id")[:JOBS_SHOWN])
        failed = (Payment.objects.filter(tenant=tenant, status=Payment.Status.FAILED)
                  .select_related("invoice", "payment_method").order_by("-created_at", "-id").first())
        clock_line = format_html("<p>The tenant's clock reads {}{}.</p>", _when(now),
                                 " (test clock)" if test_clock else "")
        if invoices:
            rows = format_html_join("", "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>"
                                        "<td>{}</td><td>{}</td></tr>", (
                (admin_link(i), i.get_status_display(), i.get_reason_display(), usd(i.amount_due_cents),
                 _when(i.due_at), ("overdue, due " + _in(i.due_at - now)) if i.due_at and i.due_at <= now
                 else "not yet due", i.attempt_count) for i in invoices))
            invoice_part = format_html(
                "<h4>Unpaid invoices</h4><table><tr><th>Invoice</th><th>Status</th><th>Reason</th>"
                "<th>Due</th><th>Due at</th><th>State</th><th>Charge attempts</th></tr>{}</table>", rows)
        else:
            invoice_part = format_html("<h4>Unpaid invoices</h4><p>{}</p>", "None: nothing is owed.")
        if jobs:
            rows = format_html_join("", "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>", (
                (j.kind, j.key, _when(j.due_at), _in(j.due_at - now), j.attempts) for j in jobs))
            job_part = format_html(
                "<h4>Scheduled billing work</h4><table><tr><th>Kind</th><th>Key</th><th>Due at</th>"
                "<th>By the tenant's clock</th><th>Attempts</th></tr>{}</table>", rows)
        else:
            job_part = format_html("<h4>Scheduled billing work</h4><p>{}</p>", "Nothing pending.")
        if failed:
            failed_part = format_html(
                "<h4>Last failed payment</h4><p>{} on {} for {}: decline code <code>{}</code>{}. {}</p>",
                _when(failed.created_at), admin_link(failed.invoice), usd(failed.amount_cents),
                failed.decline_code or "none", " (hard decline: not retried)" if failed.hard_decline else "",
                failed.failure_message)
        else:
            failed_part = format_html("<h4>Last failed payment</h4><p>{}</p>", "None.")
        return format_html('<div class="dunning-state">{}{}{}{}</div>', clock_line, invoice_part,
                           job_part, failed_part)


class BillingSettingsForm(forms.ModelForm):
    class Meta:
        model = BillingSettings
        fields = ["trial_days", "trial_reminder_days", "retry_days", "grace_days", "suspension_days",
                  "retention_days"]

    @staticmethod
    def _days(values, name: str) -> list[int]:
        if any(not 0 <= day <= 365 for day in values):
            raise forms.ValidationError(f"Each {name} day must be between 0 and 365.")
        if len(set(values)) != len(values):
            raise forms.ValidationError(f"Give each {name} day once.")
        return list(values)

    def clean_retry_days(self):
        days = self._days(self.cleaned_data["retry_days"], "retry")
        if days != sorted(days):
            raise forms.ValidationError("List the retry days in increasing order, e.g. 1,3,5,7.")
        return days

    def clean_trial_reminder_days(self):
        return self._days(self.cleaned_data["trial_reminder_days"], "reminder")

    def clean(self):
        data = super().clean()
        trial_days, reminders = data.get("trial_days"), data.get("trial_reminder_days")
        if trial_days is not None and reminders and max(reminders) >= trial_days:
            self.add_error("trial_reminder_days", f"A reminder {max(reminders)} days before the end "
                                                  f"of a {trial_days}-day trial would come before it starts.")
        return data


@admin.register(BillingSettings)
class BillingSettingsAdmin(admin.ModelAdmin):
    """The single row: the list opens its change form; it is never added or deleted."""

    form = BillingSettingsForm

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def changelist_view(self, request, extra_context=None):
        return redirect("admin:billing_billingsettings_change", billing_settings().pk)

    def save_model(self, request, obj, form, change):
        # Fields with callable defaults always look changed to the form, so the audit
        # compares with the stored row instead.
        with transaction.atomic():
            stored = BillingSettings.objects.select_for_update().filter(pk=obj.pk).values().first() or {}
            super().save_model(request, obj, form, change)
            changed = [f for f in form.fields if stored.get(f) != getattr(obj, f)]
            if changed:
                audit_record(action="billing_settings.updated", actor=request.user, target=obj,
                             before={f: stored.get(f) for f in changed},
                             after={f: getattr(obj, f) for f in changed})
