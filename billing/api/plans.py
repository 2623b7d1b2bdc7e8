"""The public plan list (public domain, no authentication)."""
from rest_framework import generics, serializers
from rest_framework.permissions import AllowAny

from aerolith.money import money

from ..models import Plan
from ..selectors import public_plans
from .common import decimal_text


class PlanOut(serializers.ModelSerializer):
    price = serializers.SerializerMethodField()
    limits = serializers.SerializerMethodField()
    overage_prices = serializers.SerializerMethodField()

    class Meta:
        model = Plan
        fields = ["code", "name", "price", "price_cents", "limits", "overage_prices", "support",
                  "overage_allowed", "is_custom", "api_rate_per_second"]

    def get_price(self, plan) -> dict:
        return money(plan.price_cents, plan.currency)

    def get_limits(self, plan) -> dict:
        """databases, then the included quantity per meter (None: unlimited)."""
        return {"databases": plan.max_databases,
                **{pm.meter.code: decimal_text(pm.included) for pm in plan.meters.all()}}

    def get_overage_prices(self, plan) -> dict:
        """Per meter: cents per `per` units above the allowance."""
        return {pm.meter.code: {
            "unit_price_cents": decimal_text(pm.meter.unit_price_cents if pm.unit_price_cents is None
                                             else pm.unit_price_cents),
            "per": pm.meter.price_per, "unit": pm.meter.unit} for pm in plan.meters.all()}


class PlanList(generics.ListAPIView):
    authentication_classes = []
    permission_classes = [AllowAny]
    serializer_class = PlanOut
    pagination_class = None

    def get_queryset(self):
        return public_plans()
