"""Staff console for tenants, people, keys, audit trail, test clocks and scheduled work."""
from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.admin.views.main import ChangeList
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.db import transaction
from django.db.models import BigIntegerField, Case, F, OuterRef, Subquery, Value, When
from django.template.response import TemplateResponse
from django.utils.html import format_html, format_html_join
from django_tenants.utils import tenant_context

from aerolith.admin import CappedPaginator, ReadOnlyAdmin
from aerolith.errors import DomainError
from aerolith.money import usd

from .models import (
    ApiKey,
    AuditEvent,
    Domain,
    Membership,
    PooledSchema,
    Role,
    ScheduledJob,
    Tenant,
    TestClock,
    User,
)
from .selectors import tenant_url
from .services.audit import audit_record
from .services.clocks import tenant_clock_advance, tenant_clock_attach


class DomainInline(admin.TabularInline):
    model = Domain
    extra = 0
    fields = ["domain", "is_primary"]
    readonly_fields = ["domain", "is_primary"]
    can_delete = False


class MembershipInline(admin.TabularInline):
    model = Membership
    fk_name = "tenant"
    extra = 0
    fields = ["user", "role", "created_at", "accepted_at"]
    readonly_fields = ["user", "role", "created_at", "accepted_at"]
    can_delete = False


class ExtendTrialForm(forms.Form):
    days = forms.IntegerField(label="Extend by (days)", min_value=1, max_value=90, initial=7,
                              help_text="The trial end moves this many days later (1 to 90).")


class ChangePlanForm(forms.Form):
    plan = forms.ChoiceField(label="New plan")
    when = forms.ChoiceField(label="When", choices=[
        ("", "The default: upgrades now, downgrades at the period end"),
        ("now", "Now (a downgrade credits the balance)"),
        ("period_end", "At the end of the current period")], required=False)

    def __init__(self, *args, **kwargs):
        from billing.models import Plan

        super().__init__(*args, **kwargs)
        self.fields["plan"].choices = [
            (code, f"{name} ({usd(price)}/month)") for code, name, price in
            Plan.objects.filter(for_tenant__isnull=True, is_custom=False)
            .order_by("sort_order", "price_cents").values_list("code", "name", "price_cents")]


class TenantChangeList(ChangeList):
    """The page's usage against allowances, read for all its rows at once."""

    def get_results(self, request):
        from .admin_overview import usage_peaks

        super().get_results(request)
        peaks = usage_peaks(self.result_list)
        for tenant in self.result_list:
            tenant.usage_peak = peaks.get(tenant.pk)


@admin.register(Tenant)
class TenantAdmin(admin.ModelAdmin):
    """Every tenant with its plan, status and MRR in one query per page (annotated, joined,
    capped count), searchable by name, slug, domain and member email; the change view adds
    the tenant's standing, usage, billing, clusters and audit trail around the form."""

    list_display = ["name", "slug", "status", "plan", "mrr", "usage", "owner_email", "region",
                    "created_at"]
    list_filter = ["status", "region", "subscription__plan"]
    search_fields = ["name", "slug", "domains__domain", "memberships__user__email"]
    list_select_related = ["subscription__plan"]
    readonly_fields = ["slug", "schema_name", "status", "created_at", "portal_link", "api_keys",
                       "erasure_requested_at", "erased_at"]
    fields = ["name", "region", "slug", "schema_name", "status", "created_at", "portal_link", "api_keys",
              "erasure_requested_at", "erased_at"]
    inlines = [DomainInline, MembershipInline]
    actions = ["suspend", "reactivate", "extend_trial", "change_plan", "attach_test_clock",
               "advance_one_day", "advance_thirty_days", "erase_data"]
    show_full_result_count = False
    paginator = CappedPaginator

    def get_queryset(self, request):
        from billing.metrics import PAYING

        owner = (Membership.objects.filter(tenant=OuterRef("pk"), role=Role.OWNER)
                 .order_by("id").values("user__email")[:1])
        return (super().get_queryset(request).exclude(schema_name="public")
                .annotate(mrr_cents=Case(When(subscription__status__in=PAYING,
                                              then=F("subscription__plan__price_cents")),
                                         default=Value(0), output_field=BigIntegerField()),
                          owner=Subquery(owner)))

    def get_changelist(self, request, **kwargs):
        return TenantChangeList

    def change_view(self, request, object_id, form_url="", extra_context=None):
        from .admin_overview import tenant_overview

        tenant = self.get_object(request, object_id)
        extra = tenant_overview(tenant) if tenant is not None else {}
        return super().change_view(request, object_id, form_url, {**extra, **(extra_context or {})})

    def has_add_permission(self, request):
        return False  # organisations are created by signup, which also makes their schema

    def has_delete_permission(self, request, obj=None):
        return False  # erasure is its own audited workflow

    @admin.display(description="MRR", ordering="mrr_cents")
    def mrr(self, obj):
        return usd(obj.mrr_cents)

    @admin.display(description="Usage (highest against its allowance)")
    def usage(self, obj):
        peak = getattr(obj, "usage_peak", None)
        if peak is None:
            return "—"
        meter, percent = peak
        state = "over" if percent > 100 else "near" if percent >= 80 else "ok"
        return format_html('<span class="usage-{}">{}: {}%</span>', state, meter.name, f"{percent:.0f}")

    @admin.display(description="Owner", ordering="owner")
    def owner_email(self, obj):
        return obj.owner or "—"

    @admin.display(ordering="subscription__plan__price_cents")
    def plan(self, obj):
        subscription = getattr(obj, "subscription", None)
        return subscription.plan.name if subscription else "—"

    @admin.display(description="Portal")
    def portal_link(self, obj):
        return format_html('<a href="{0}">{0}</a>', tenant_url(obj, "/"))

    @admin.display(description="API keys (metadata only)")
    def api_keys(self, obj):
        if obj.erased_at is not None:
            return "Erased with the tenant's schema"
        with tenant_context(obj):
            keys = list(ApiKey.objects.values_list("name", "prefix", "scopes", "created_at",
                                                   "last_used_at", "revoked_at"))
        if not keys:
            return "None"
        # format_html escapes its arguments to text first, so dates are formatted here.
        rows = format_html_join(
            "", "<tr><td>{}</td><td>{}…</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            ((n, p, ", ".join(s), f"{c:%Y-%m-%d}", f"{u:%Y-%m-%d %H:%M}" if u else "never",
              "revoked" if r else "active") for n, p, s, c, u, r in keys),
        )
        return format_html("<table><tr><th>Name</th><th>Prefix</th><th>Scopes</th><th>Created</th>"
                           "<th>Last used</th><th>State</th></tr>{}</table>", rows)

    def save_model(self, request, obj, form, change):
        with transaction.atomic():
            before = {f: form.initial.get(f) for f in form.changed_data}
            super().save_model(request, obj, form, change)
            if form.changed_data:
                audit_record(action="tenant.updated_by_staff", tenant=obj, actor=request.user,
                             target=obj, before=before,
                             after={f: form.cleaned_data.get(f) for f in form.changed_data})

    @admin.action(description="Suspend (databases refuse writes; owners are emailed)")
    def suspend(self, request, queryset):
        from billing.services.staff import staff_suspend

        def suspend(tenant):
            staff_suspend(tenant=tenant, actor=request.user)
            return tenant.slug

        self._each(request, queryset, suspend, "suspended")

    @admin.action(description="Reactivate (lift a suspension)")
    def reactivate(self, request, queryset):
        from billing.services.staff import staff_reactivate

        def reactivate(tenant):
            subscription = staff_reactivate(tenant=tenant, actor=request.user)
            return f"{tenant.slug}: now {subscription.get_status_display().lower()}"

        self._each(request, queryset, reactivate, "reactivated")

    @admin.action(description="Extend the trial…")
    def extend_trial(self, request, queryset):
        from billing.services.staff import trial_extend

        def perform(data):
            def extend(tenant):
                subscription = trial_extend(tenant=tenant, days=data["days"], actor=request.user)
                return f"{tenant.slug}: trial ends {subscription.trial_end:%Y-%m-%d %H:%M} UTC"

            self._each(request, queryset, extend, f"extended by {data['days']} day(s) the trial of")

        return self._with_form(request, queryset, ExtendTrialForm, "Extend the trial", perform)

    @admin.action(description="Change the plan…")
    def change_plan(self, request, queryset):
        from billing.services.subscriptions import subscription_change

        def perform(data):
            def change(tenant):
                subscription, invoice = subscription_change(
                    tenant=tenant, plan_code=data["plan"], when=data["when"] or None, actor=request.user)
                if subscription.pending_plan is not None:
                    return (f"{tenant.slug}: moves to {subscription.pending_plan.name} at "
                            f"{subscription.current_period_end:%Y-%m-%d %H:%M} UTC")
                billed = f", invoice {invoice.number}" if invoice is not None else ""
                return f"{tenant.slug}: now on {subscription.plan.name}{billed}"

            self._each(request, queryset, change, "changed the plan of")

        return self._with_form(request, queryset, ChangePlanForm, "Change the plan", perform)

    def _with_form(self, request, queryset, form_class, title, perform):
        """An action with a page of its own: the form first, the operation on "apply"; a
        bad entry shows the page again with the error, nothing changed."""
        form = form_class(request.POST if "apply" in request.POST else None)
        if "apply" in request.POST and form.is_valid():
            perform(form.cleaned_data)
            return None
        return TemplateResponse(request, "admin/tenants/tenant/action_form.html", {
            **self.admin_site.each_context(request), "opts": self.opts, "title": title,
            "form": form, "tenants": queryset, "action": request.POST.get("action", ""),
            "selected": request.POST.getlist(helpers.ACTION_CHECKBOX_NAME),
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME})

    @admin.action(description="Attach a test clock (test mode)")
    def attach_test_clock(self, request, queryset):
        self._each(request, queryset, lambda t: tenant_clock_attach(tenant=t, actor=request.user),
                   "attached a test clock to")

    @admin.action(description="Advance test clock by 1 day")
    def advance_one_day(self, request, queryset):
        self._advance(request, queryset, 86400)

    @admin.action(description="Advance test clock by 30 days")
    def advance_thirty_days(self, request, queryset):
        self._advance(request, queryset, 30 * 86400)

    @admin.action(description="Erase data (cancelled tenants only; keeps invoices)")
    def erase_data(self, request, queryset):
        from .services.erasure import erasure_request

        # The staff member's deliberate choice of this action stands for the slug the
        # owner types in the portal.
        self._each(request, queryset,
                   lambda t: erasure_request(tenant=t, actor=request.user, confirm=t.slug),
                   "scheduled the erasure of")

    def _advance(self, request, queryset, seconds):
        def advance(tenant):
            clock, ran = tenant_clock_advance(tenant=tenant, actor=request.user, seconds=seconds)
            return f"{tenant.slug}: now {clock.frozen_time:%Y-%m-%d %H:%M}, {len(ran)} job(s) run"

        self._each(request, queryset, advance, "advanced the clock of")

    def _each(self, request, queryset, operation, verb):
        done = []
        for tenant in queryset:
            try:
                result = operation(tenant)
            except DomainError as error:
                self.message_user(request, f"{tenant.slug}: {error.explain()}", messages.ERROR)
            else:
                done.append(result if isinstance(result, str) else tenant.slug)
        if done:
            self.message_user(request, f"Staff {verb} {len(done)} tenant(s): {'; '.join(done)}",
                              messages.SUCCESS)


@admin.register(User)
class UserAdmin(DjangoUserAdmin):
    ordering = ["email"]
    list_display = ["email", "full_name", "is_staff", "is_active", "date_joined"]
    list_filter = ["is_staff", "is_active"]
    search_fields = ["email", "full_name"]
    fieldsets = [
        (None, {"fields": ["email", "password", "full_name"]}),
        ("Access", {"fields": ["is_active", "is_staff", "is_superuser", "groups"]}),
        ("Dates", {"fields": ["last_login", "date_joined"]}),
    ]
    add_fieldsets = [(None, {"classes": ["wide"], "fields": ["email", "password1", "password2"]})]
    readonly_fields = ["last_login", "date_joined"]
    inlines = []


@admin.register(Membership)
class MembershipAdmin(ReadOnlyAdmin):
    list_display = ["user", "tenant", "role", "created_at", "accepted_at"]
    list_filter = ["role"]
    list_select_related = ["user", "tenant"]
    search_fields = ["user__email", "tenant__slug"]


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyAdmin):
    list_display = ["occurred_at", "actor_label", "action", "tenant_slug", "target_type",
                    "target_id", "request_id"]
    list_filter = ["action"]
    search_fields = ["actor_label", "action", "target_id", "request_id"]
    date_hierarchy = "occurred_at"
    show_full_result_count = False
    paginator = CappedPaginator

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("tenant")

    @admin.display(description="Tenant")
    def tenant_slug(self, obj):
        return obj.tenant.slug if obj.tenant_id and obj.tenant else "—"


class TestClockForm(forms.ModelForm):
    class Meta:
        model = TestClock
        fields = ["tenant", "frozen_time"]

    def clean_frozen_time(self):
        value = self.cleaned_data["frozen_time"]
        if self.instance.pk:
            current = TestClock.objects.get(pk=self.instance.pk).frozen_time
            if value < current:
                raise forms.ValidationError(
                    f"The clock is at {current:%Y-%m-%d %H:%M:%S} UTC; it only moves forward.")
        return value


@admin.register(TestClock)
class TestClockAdmin(admin.ModelAdmin):
    """Editing the time advances the clock through the service, running due work."""

    form = TestClockForm
    list_display = ["tenant", "frozen_time", "created_at"]
    list_select_related = ["tenant"]

    def get_readonly_fields(self, request, obj=None):
        return ["tenant"] if obj else []

    def save_model(self, request, obj, form, change):
        if not change:
            tenant_clock_attach(tenant=obj.tenant, actor=request.user, at=obj.frozen_time)
            return
        target = obj.frozen_time
        try:
            _, ran = tenant_clock_advance(tenant=obj.tenant, actor=request.user, to=target)
        except DomainError as error:
            self.message_user(request, error.explain(), messages.ERROR)
            return
        self.message_user(request, f"Advanced {obj.tenant.slug} to {target:%Y-%m-%d %H:%M}; "
                                   f"{len(ran)} due job(s) ran.", messages.SUCCESS)


@admin.register(ScheduledJob)
class ScheduledJobAdmin(ReadOnlyAdmin):
    list_display = ["kind", "tenant", "key", "due_at", "status", "attempts", "completed_at"]
    list_filter = ["status", "kind"]
    list_select_related = ["tenant"]
    search_fields = ["tenant__slug", "key"]


@admin.register(PooledSchema)
class PooledSchemaAdmin(ReadOnlyAdmin):
    list_display = ["schema_name", "fingerprint", "created_at"]
