"""Payments and the cards on file (SPEC §10). Adding a card or making one the default works
while suspended: it is how a suspended organisation pays and comes back."""
from drf_spectacular.utils import extend_schema
from rest_framework import generics, serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from tenants.permissions import Action

from ..models import Payment, PaymentMethod
from ..selectors import subscription_of
from ..services.cards import card_setup_start
from ..services.collection import (
    payment_method_attach,
    payment_method_detach,
    payment_method_make_default,
)
from .common import BILLING_PROBLEMS, CardOut, StrictBooleanField, StrictCharField, positive_id


class PaymentOut(serializers.ModelSerializer):
    invoice = serializers.CharField(source="invoice.number")
    card = CardOut(source="payment_method", allow_null=True)
    message = serializers.CharField(source="failure_message")

    class Meta:
        model = Payment
        fields = ["id", "invoice", "method", "status", "amount_cents", "currency", "decline_code",
                  "hard_decline", "message", "card", "reference", "action_url", "refunded_cents",
                  "created_at"]


class PaymentList(generics.ListAPIView):
    """Payments and attempts, newest first."""

    serializer_class = PaymentOut

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):  # schema generation has no tenant
            return Payment.objects.none()
        return Payment.objects.filter(tenant=self.request.tenant).select_related("invoice",
                                                                                  "payment_method")

    @extend_schema(responses={200: PaymentOut(many=True), **BILLING_PROBLEMS},
                   summary="Payments and their states, newest first")
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)


class PaymentMethodOut(serializers.ModelSerializer):
    is_default = serializers.SerializerMethodField()

    class Meta:
        model = PaymentMethod
        fields = ["id", "kind", "brand", "last4", "exp_month", "exp_year", "is_default", "created_at"]

    def get_is_default(self, method) -> bool:
        return method.pk == self.context.get("default_payment_method_id")


class PaymentMethodIn(serializers.Serializer):
    stripe_payment_method = StrictCharField(
        max_length=255, help_text="The pm_… id of a card created with Stripe.js")
    make_default = StrictBooleanField(default=True)


# No braces: DRF formats field error messages with str.format.
MAKE_DEFAULT_ONLY = ("Give make_default: true to make this card the default. A card stops being the "
                     "default when you make another card the default (PATCH that card).")


class PaymentMethodPatchIn(serializers.Serializer):
    make_default = StrictBooleanField(
        help_text="true makes this card the one future invoices are charged to; only true is "
                  "accepted (to change the default, make another card the default)",
        error_messages={"required": MAKE_DEFAULT_ONLY, "null": MAKE_DEFAULT_ONLY})

    def validate_make_default(self, value):
        if value is not True:
            raise serializers.ValidationError(MAKE_DEFAULT_ONLY, code="must_be_true")
        return value


def _default_id(tenant) -> int | None:
    subscription = subscription_of(tenant)
    return subscription.default_payment_method_id if subscription else None


class PaymentMethodListCreate(generics.ListAPIView):
    serializer_class = PaymentMethodOut
    required_actions = {"POST": Action.MANAGE_BILLING}
    allowed_when_suspended = True

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return PaymentMethod.objects.none()
        return PaymentMethod.objects.filter(tenant=self.request.tenant, detached_at__isnull=True)

    def get_serializer_context(self):
        context = super().get_serializer_context()
        if not getattr(self, "swagger_fake_view", False):
            context["default_payment_method_id"] = _default_id(self.request.tenant)
        return context

    @extend_schema(responses={200: PaymentMethodOut(many=True), **BILLING_PROBLEMS},
                   summary="Cards on file")
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    @extend_schema(request=PaymentMethodIn, responses={201: PaymentMethodOut, **BILLING_PROBLEMS},
                   summary="Attach a card created with Stripe.js (pm_…)")
    def post(self, request):
        data = PaymentMethodIn(data=request.data)
        data.is_valid(raise_exception=True)
        method = payment_method_attach(tenant=request.tenant,
                                       gateway_id=data.validated_data["stripe_payment_method"],
                                       make_default=data.validated_data["make_default"],
                                       actor=request.auth)
        context = {"default_payment_method_id": _default_id(request.tenant)}
        return Response(PaymentMethodOut(method, context=context).data, status=status.HTTP_201_CREATED)


class SetupSessionOut(serializers.Serializer):
    url = serializers.URLField(help_text="Send the customer here to save a card (Stripe Checkout)")
    session_id = serializers.CharField()


class PaymentMethodSetup(APIView):
    """A Stripe Checkout page (setup mode) where the customer saves a card. When they are
    done, Checkout returns them to the portal, which attaches the card (the webhook does too,
    whichever comes first) and makes it the default."""

    required_actions = {"POST": Action.MANAGE_BILLING}
    allowed_when_suspended = True  # a new card is how a suspended organisation pays

    @extend_schema(request=None, responses={201: SetupSessionOut, **BILLING_PROBLEMS},
                   summary="Start adding a card through Stripe Checkout (setup mode)")
    def post(self, request):
        session = card_setup_start(tenant=request.tenant)
        return Response(SetupSessionOut({"url": session.url, "session_id": session.id}).data,
                        status=status.HTTP_201_CREATED)


class PaymentMethodDetail(APIView):
    # Suspended organisations may switch to a working card: that is how they pay and come back.
    required_actions = {"PATCH": Action.MANAGE_BILLING, "DELETE": Action.MANAGE_BILLING}
    allowed_when_suspended = True

    @extend_schema(request=PaymentMethodPatchIn, responses={200: PaymentMethodOut, **BILLING_PROBLEMS},
                   summary="Make a card on file the default for future invoices")
    def patch(self, request, pk):
        data = PaymentMethodPatchIn(data=request.data)
        data.is_valid(raise_exception=True)
        method = payment_method_make_default(tenant=request.tenant, method_id=positive_id(pk, "card"),
                                             actor=request.auth)
        context = {"default_payment_method_id": _default_id(request.tenant)}
        return Response(PaymentMethodOut(method, context=context).data)

    @extend_schema(responses={204: None, **BILLING_PROBLEMS},
                   summary="Remove a card; the newest other card becomes the default")
    def delete(self, request, pk):
        payment_method_detach(tenant=request.tenant, method_id=positive_id(pk, "card"),
                              actor=request.auth)
        return Response(status=status.HTTP_204_NO_CONTENT)
