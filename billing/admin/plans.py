"""Plans and their allowances per meter (SPEC §3), editable by staff."""
from django.contrib import admin

from ..models import Plan, PlanMeter


class PlanMeterInline(admin.TabularInline):
    model = PlanMeter
    extra = 0
    fields = ["meter", "included", "unit_price_cents"]


@admin.register(Plan)
class PlanAdmin(admin.ModelAdmin):
    list_display = ["name", "code", "price_cents", "max_databases", "api_rate_per_second",
                    "support", "overage_allowed", "is_public", "for_tenant"]
    list_filter = ["is_public", "is_custom"]
    search_fields = ["code", "name"]
    inlines = [PlanMeterInline]
