"""Staff console for metering: meters (custom ones are made here), and each tenant's usage
this period against its allowances with a daily chart."""
from datetime import timedelta

from django import forms
from django.contrib import admin
from django.utils.html import format_html, format_html_join

from aerolith import clock
from aerolith.admin import ReadOnlyAdmin
from aerolith.charts import bar_chart, gauge
from aerolith.money import cents_to_text
from billing.selectors import subscription_of

from .analytics import usage_series, usage_summary
from .models import Meter, TenantUsage, ThresholdNotice
from .quantities import micro_to_decimal
from .services.counters import counters_read


class MeterForm(forms.ModelForm):
    class Meta:
        model = Meter
        fields = ["code", "name", "unit", "aggregation", "unique_property", "unit_price_cents",
                  "price_per", "is_active"]

    def clean(self):
        data = super().clean()
        if data.get("aggregation") == "unique_count" and not data.get("unique_property"):
            self.add_error("unique_property", "A unique_count meter counts distinct values of "
                                              "one event property: name it here.")
        if data.get("aggregation") != "unique_count" and data.get("unique_property"):
            self.add_error("unique_property", "Only unique_count meters use a property.")
        return data


@admin.register(Meter)
class MeterAdmin(admin.ModelAdmin):
    form = MeterForm
    list_display = ["code", "name", "unit", "aggregation", "unit_price_cents", "price_per",
                    "is_builtin", "is_active"]
    list_filter = ["aggregation", "is_builtin", "is_active"]
    search_fields = ["code", "name"]

    def get_readonly_fields(self, request, obj=None):
        # Events already name built-in meters by code and aggregate them one way.
        return ["code", "aggregation", "unique_property"] if obj and obj.is_builtin else []

    def has_delete_permission(self, request, obj=None):
        return False  # events refer to meters; deactivate instead


@admin.register(TenantUsage)
class TenantUsageAdmin(ReadOnlyAdmin):
    list_display = ["name", "slug", "status", "api_calls_this_period"]
    list_filter = ["status"]
    search_fields = ["name", "slug"]
    fields = ["name", "slug", "status", "usage_this_period", "daily_usage"]
    readonly_fields = fields
    show_full_result_count = False

    def get_queryset(self, request):
        return super().get_queryset(request).exclude(schema_name="public")

    @admin.display(description="API calls this period (live)")
    def api_calls_this_period(self, obj):
        subscription = subscription_of(obj)
        if subscription is None:
            return "—"
        try:
            live = counters_read(obj.pk, subscription.current_period_start)
        except Exception:  # noqa: BLE001 - the console stays up when Redis is not
            return "counters unavailable"
        return format(micro_to_decimal(live.get("api_calls", 0)).normalize(), "f")

    @admin.display(description="Usage this period against allowances")
    def usage_this_period(self, obj):
        summary = usage_summary(obj)
        if summary is None:
            return "No subscription."
        rows = format_html_join("", "<tr><th>{}</th><td style='min-width:320px'>{}</td><td>{}</td></tr>", (
            (s.usage.meter.name, gauge(s.usage.quantity, s.usage.included, s.usage.meter.unit),
             f"overage so far {cents_to_text(s.usage.overage_amount_cents)} USD"
             if s.usage.overage_amount_cents else "")
            for s in summary["meters"]))
        return format_html("<p>{} – {} · projected bill {} USD</p><table>{}</table>",
                           f"{summary['period_start']:%Y-%m-%d %H:%M}", f"{summary['period_end']:%Y-%m-%d %H:%M}",
                           cents_to_text(summary["projected_total_cents"]), rows)

    @admin.display(description="Daily usage, last 30 days")
    def daily_usage(self, obj):
        end = clock.now(obj)
        charts = [bar_chart(usage_series(tenant_id=obj.pk, meter=meter, granularity="day",
                                         start=end - timedelta(days=30), end=end),
                            unit=meter.unit, title=meter.name)
                  for meter in Meter.objects.filter(is_active=True)]
        return format_html_join("", '<div style="max-width:680px">{}</div>', ((c,) for c in charts))


@admin.register(ThresholdNotice)
class ThresholdNoticeAdmin(admin.ModelAdmin):
    list_display = ["tenant", "meter", "percent", "used", "included", "period_start", "created_at"]
    list_filter = ["percent", "meter"]
    list_select_related = ["tenant", "meter"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False
