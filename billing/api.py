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


class PlanOut(serializers.ModelSerializer):
    price = serializers.SerializerMethodField()
    limits = serializers.SerializerMethodField()

    class Meta:
        model = Plan
        fields = ["code", "name", "price", "price_cents", "limits", "support", "overage_allowed",
                  "is_custom"]

    def get_price(self, plan) -> dict:
        return money(plan.price_cents, plan.currency)

    def get_limits(self, plan) -> dict:
        def text(value):
            return None if value is None else format(value.normalize(), "f")

        return {"databases": plan.max_databases, "storage_gb": text(plan.storage_gb),
                "api_calls": plan.api_calls, "compute_hours": text(plan.compute_hours),
                "bandwidth_gb": text(plan.bandwidth_gb)}


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
