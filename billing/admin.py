from django.contrib import admin

from .models import Plan, PlanMeter, Subscription


class PlanMeterInline(admin.TabularInline):
    model = PlanMeter
    extra = 0
    fields = ["meter", "included", "unit_price_cents"]


@admin.register(Plan)
class PlanAdmin(admin.ModelAdmin):
    list_display = ["name", "code", "price_cents", "max_databases", "support", "overage_allowed",
                    "is_public", "for_tenant"]
    list_filter = ["is_public", "is_custom"]
    search_fields = ["code", "name"]
    inlines = [PlanMeterInline]


@admin.register(Subscription)
class SubscriptionAdmin(admin.ModelAdmin):
    list_display = ["tenant", "plan", "status", "trial_end", "current_period_start",
                    "current_period_end", "cancel_at_period_end"]
    list_filter = ["status", "plan"]
    list_select_related = ["tenant", "plan"]
    readonly_fields = ["tenant", "plan", "status", "trial_end", "current_period_start",
                       "current_period_end", "cancel_at_period_end", "created_at"]

    def has_add_permission(self, request):
        return False
