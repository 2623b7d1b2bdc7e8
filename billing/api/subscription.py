"""The organisation's subscription (SPEC §10): read it, preview and make a plan change,
cancel and resume."""
from django.db.models import prefetch_related_objects
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from aerolith.errors import NotFound
from tenants.permissions import Action

from ..models import Subscription
from ..selectors import subscription_of
from ..services.subscriptions import (
    plan_for_change,
    preview_change,
    subscription_cancel,
    subscription_change,
    subscription_resume,
)
from .common import BILLING_PROBLEMS, CardOut, LineOut, StrictBooleanField, StrictCharField
from .invoices import InvoiceOut

WHEN = ["now", "period_end"]


def current_subscription(tenant) -> Subscription:
    subscription = subscription_of(tenant)
    if subscription is None:
        raise NotFound("This organisation has no subscription.", code="no_subscription")
    return subscription


def valid_input(serializer_class, request) -> dict:
    data = serializer_class(data=request.data)
    data.is_valid(raise_exception=True)
    return data.validated_data


class SubscriptionOut(serializers.ModelSerializer):
    plan = serializers.CharField(source="plan.code")
    plan_name = serializers.CharField(source="plan.name")
    pending_plan = serializers.SerializerMethodField(
        help_text="A downgrade waiting for the period end")
    trial_outcome = serializers.SerializerMethodField(help_text="converted | fell_back")
    default_payment_method = CardOut(allow_null=True)

    class Meta:
        model = Subscription
        fields = ["plan", "plan_name", "status", "trial_end", "trial_outcome", "current_period_start",
                  "current_period_end", "cancel_at_period_end", "pending_plan", "balance_cents",
                  "default_payment_method", "past_due_since", "suspended_at", "cancelled_at",
                  "data_kept_until"]

    def get_pending_plan(self, obj) -> str | None:
        return obj.pending_plan.code if obj.pending_plan_id else None

    def get_trial_outcome(self, obj) -> str | None:
        return obj.trial_outcome or None


class SubscriptionView(APIView):
    @extend_schema(responses={200: SubscriptionOut, **BILLING_PROBLEMS},
                   summary="This organisation's subscription")
    def get(self, request):
        return Response(SubscriptionOut(current_subscription(request.tenant)).data)


# --- plan change ----------------------------------------------------------------------------

class PreviewIn(serializers.Serializer):
    plan = StrictCharField(max_length=40)
    when = serializers.ChoiceField(
        choices=WHEN, required=False,
        help_text="Default: now for an upgrade, period_end for a downgrade")


class PreviewOut(serializers.Serializer):
    plan = serializers.CharField()
    direction = serializers.ChoiceField(choices=["upgrade", "downgrade"])
    when = serializers.ChoiceField(choices=WHEN)
    proration_at = serializers.DateTimeField(
        help_text="Give it to `change` to be invoiced exactly these lines (valid for an hour)")
    effective_at = serializers.DateTimeField()
    lines = LineOut(many=True)
    currency = serializers.CharField()
    subtotal_cents = serializers.IntegerField()
    credit_applied_cents = serializers.IntegerField()
    total_cents = serializers.IntegerField()
    amount_due_now_cents = serializers.IntegerField()
    balance_credit_cents = serializers.IntegerField(
        help_text="Credit that goes to the balance (a downgrade now)")


class SubscriptionPreviewView(APIView):
    required_actions = {"POST": Action.MANAGE_BILLING}

    @extend_schema(request=PreviewIn, responses={200: PreviewOut, **BILLING_PROBLEMS},
                   summary="The exact lines and amounts a plan change will invoice; changes nothing")
    def post(self, request):
        data = valid_input(PreviewIn, request)
        tenant = request.tenant
        subscription = current_subscription(tenant)
        plan = plan_for_change(tenant, data["plan"])
        preview = preview_change(subscription=subscription, plan=plan, when=data.get("when"))
        lines = preview.invoice_lines
        return Response(PreviewOut({
            "plan": plan.code, "direction": preview.direction, "when": preview.when,
            "proration_at": preview.proration_at, "effective_at": preview.effective_at,
            "lines": lines, "currency": plan.currency, "subtotal_cents": preview.subtotal_cents,
            "credit_applied_cents": preview.credit_applied_cents, "total_cents": preview.total_cents,
            "amount_due_now_cents": preview.amount_due_now_cents,
            "balance_credit_cents": preview.balance_credit_cents,
        }).data)


class ChangeIn(PreviewIn):
    proration_at = serializers.DateTimeField(
        required=False, help_text="The proration_at of a preview (made within the last hour): "
                                  "the invoice then equals the preview to the cent")


class ChangeOut(serializers.Serializer):
    subscription = SubscriptionOut()
    invoice = InvoiceOut(allow_null=True, help_text="The invoice issued for an upgrade now")


class SubscriptionChangeView(APIView):
    required_actions = {"POST": Action.MANAGE_BILLING}

    @extend_schema(request=ChangeIn, responses={200: ChangeOut, **BILLING_PROBLEMS},
                   summary="Change plan: an upgrade now is prorated and invoiced at once")
    def post(self, request):
        data = valid_input(ChangeIn, request)
        _subscription, invoice = subscription_change(
            tenant=request.tenant, plan_code=data["plan"], when=data.get("when"), actor=request.auth,
            proration_at=data.get("proration_at"))
        if invoice is not None:
            prefetch_related_objects([invoice], "lines__meter")
        return Response(ChangeOut({"subscription": current_subscription(request.tenant),
                                   "invoice": invoice}, context={"request": request}).data)


# --- cancel and resume ------------------------------------------------------------------------

class CancelIn(serializers.Serializer):
    at_period_end = StrictBooleanField(
        default=True, help_text="true (default): service runs to the period end and the "
                                "subscription can be resumed until then; false: it ends now")


class SubscriptionCancelView(APIView):
    required_actions = {"POST": Action.OWN}
    allowed_when_suspended = True  # a customer may always leave

    @extend_schema(request=CancelIn, responses={200: SubscriptionOut, **BILLING_PROBLEMS},
                   summary="Cancel at period end (default) or now; owner only")
    def post(self, request):
        data = valid_input(CancelIn, request)
        subscription_cancel(tenant=request.tenant, at_period_end=data["at_period_end"],
                            actor=request.auth)
        return Response(SubscriptionOut(current_subscription(request.tenant)).data)


class ResumeIn(serializers.Serializer):
    """No fields: an empty body or {}."""


class SubscriptionResumeView(APIView):
    required_actions = {"POST": Action.OWN}

    @extend_schema(request=ResumeIn, responses={200: SubscriptionOut, **BILLING_PROBLEMS},
                   summary="Undo a cancellation at period end, before the period ends; owner only")
    def post(self, request):
        valid_input(ResumeIn, request)  # a body, if any, is a JSON object
        subscription_resume(tenant=request.tenant, actor=request.auth)
        return Response(SubscriptionOut(current_subscription(request.tenant)).data)
