"""Billing API available so far: the public plan list and the tenant's subscription."""
from drf_spectacular.utils import extend_schema
from rest_framework import generics, serializers
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from aerolith.api.schema import PROBLEM_RESPONSES
from aerolith.money import money

from .models import Plan, Subscription
from .selectors import public_plans


def _text(value):
    return None if value is None else format(value.normalize(), "f")


class PlanOut(serializers.ModelSerializer):
    price = serializers.SerializerMethodField()
    limits = serializers.SerializerMethodField()
    overage_prices = serializers.SerializerMethodField()

    class Meta:
        model = Plan
        fields = ["code", "name", "price", "price_cents", "limits", "overage_prices", "support",
                  "overage_allowed", "is_custom"]

    def get_price(self, plan) -> dict:
        return money(plan.price_cents, plan.currency)

    def get_limits(self, plan) -> dict:
        """databases, then the included quantity per meter (None: unlimited)."""
        return {"databases": plan.max_databases,
                **{pm.meter.code: _text(pm.included) for pm in plan.meters.all()}}

    def get_overage_prices(self, plan) -> dict:
        """Per meter: cents per `per` units above the allowance."""
        return {pm.meter.code: {
            "unit_price_cents": _text(pm.meter.unit_price_cents if pm.unit_price_cents is None
                                      else pm.unit_price_cents),
            "per": pm.meter.price_per, "unit": pm.meter.unit} for pm in plan.meters.all()}


class PlanList(generics.ListAPIView):
    authentication_classes = []
    permission_classes = [AllowAny]
    serializer_class = PlanOut
    pagination_class = None

    def get_queryset(self):
        return public_plans()


class SubscriptionOut(serializers.ModelSerializer):
    plan = serializers.CharField(source="plan.code")
    pending_plan = serializers.SerializerMethodField()

    class Meta:
        model = Subscription
        fields = ["plan", "status", "trial_end", "current_period_start", "current_period_end",
                  "cancel_at_period_end", "pending_plan"]

    def get_pending_plan(self, obj) -> str | None:
        return None


class SubscriptionView(APIView):
    @extend_schema(responses={200: SubscriptionOut, **PROBLEM_RESPONSES},
                   summary="This organisation's subscription")
    def get(self, request):
        return Response(SubscriptionOut(request.tenant.subscription).data)
