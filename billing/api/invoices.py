"""Invoices (SPEC §10): the list, one invoice with its lines, its PDF, and paying it."""
from django.db.models import prefetch_related_objects
from django.http import HttpResponse
from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import generics, serializers
from rest_framework.negotiation import BaseContentNegotiation
from rest_framework.response import Response
from rest_framework.views import APIView

from aerolith.api.errors import problem, problem_response
from tenants.permissions import Action

from ..models import CryptoQuote, Invoice, Payment, Subscription
from ..selectors import invoices_of
from ..services.collection import invoice_for_number, invoice_pay
from .common import BILLING_PROBLEMS, LineOut
from .crypto import CryptoQuoteOut

PAY_METHODS = ["card", "sol", "usdc", "trx", "usdt"]


class InvoiceOut(serializers.ModelSerializer):
    lines = LineOut(many=True)
    pdf_url = serializers.SerializerMethodField()

    class Meta:
        model = Invoice
        fields = ["number", "status", "reason", "currency", "period_start", "period_end",
                  "subtotal_cents", "credit_applied_cents", "total_cents", "amount_paid_cents",
                  "amount_due_cents", "amount_refunded_cents", "finalized_at", "due_at", "paid_at",
                  "closed_at", "lines", "pdf_url"]

    def get_pdf_url(self, invoice) -> str:
        path = reverse("invoice-pdf", kwargs={"number": invoice.number})
        request = self.context.get("request")
        return request.build_absolute_uri(path) if request is not None else path


def _invoice(request, number) -> Invoice:
    invoice = invoice_for_number(request.tenant, number)
    prefetch_related_objects([invoice], "lines__meter")
    return invoice


class InvoiceList(generics.ListAPIView):
    """Finalised invoices, newest first (drafts are not shown)."""

    serializer_class = InvoiceOut

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):  # schema generation has no tenant
            return Invoice.objects.none()
        return invoices_of(self.request.tenant).prefetch_related("lines__meter")

    @extend_schema(responses={200: InvoiceOut(many=True), **BILLING_PROBLEMS},
                   summary="Invoices, newest first")
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)


class InvoiceDetail(APIView):
    @extend_schema(responses={200: InvoiceOut, **BILLING_PROBLEMS},
                   summary="One invoice with its lines and totals")
    def get(self, request, number):
        return Response(InvoiceOut(_invoice(request, number), context={"request": request}).data)


class _JsonForProblems(BaseContentNegotiation):
    """The PDF view answers application/pdf whatever the Accept header says; only its
    problems are rendered, as problem+json."""

    def select_renderer(self, request, renderers, format_suffix=None):
        return renderers[0], renderers[0].media_type

    def select_parser(self, request, parsers):
        return parsers[0] if parsers else None


class InvoicePdf(APIView):
    content_negotiation_class = _JsonForProblems

    @extend_schema(responses={(200, "application/pdf"): OpenApiResponse(OpenApiTypes.BINARY,
                                                                        description="The invoice as PDF"),
                              **BILLING_PROBLEMS},
                   summary="The invoice as a PDF document")
    def get(self, request, number):
        from ..pdf import invoice_pdf

        invoice = invoice_for_number(request.tenant, number)
        response = HttpResponse(invoice_pdf(invoice), content_type="application/pdf")
        response["Content-Disposition"] = f'attachment; filename="{invoice.number}.pdf"'
        return response


# --- paying -------------------------------------------------------------------------------

class PayIn(serializers.Serializer):
    method = serializers.ChoiceField(
        choices=PAY_METHODS, help_text="card charges the default card; sol and usdc answer a Solana Pay "
                                       "quote (201); trx and usdt come later")


class InvoiceStateOut(serializers.Serializer):
    number = serializers.CharField()
    status = serializers.CharField()
    amount_paid_cents = serializers.IntegerField()
    amount_due_cents = serializers.IntegerField()


class PayOut(serializers.Serializer):
    payment_id = serializers.IntegerField()
    status = serializers.ChoiceField(choices=Payment.Status.choices)
    amount_cents = serializers.IntegerField()
    currency = serializers.CharField()
    decline_code = serializers.CharField(allow_blank=True)
    hard_decline = serializers.BooleanField()
    message = serializers.CharField()
    action_url = serializers.CharField(
        allow_blank=True, help_text="When status is requires_action: the page where the customer "
                                    "confirms the payment with their bank (3-D Secure)")
    invoice = InvoiceStateOut()
    account_status = serializers.CharField(
        help_text="The organisation's status after the payment (active again once nothing "
                  "overdue is left)")


def _pay_result(payment: Payment) -> dict:
    invoice = Invoice.objects.get(pk=payment.invoice_id)
    account_status = (Subscription.objects.filter(pk=invoice.subscription_id)
                      .values_list("status", flat=True).first() or invoice.tenant.status)
    failed = payment.status == Payment.Status.FAILED
    if failed:
        message = payment.failure_message or "The card was declined."
    elif payment.status == Payment.Status.SUCCEEDED:
        message = f"Paid. Invoice {invoice.number} is {invoice.get_status_display().lower()}."
    elif payment.status == Payment.Status.REQUIRES_ACTION:
        message = f"The bank asks the cardholder to confirm this payment: open {payment.action_url}."
    else:
        message = "The payment is being processed."
    return {
        "payment_id": payment.pk, "status": payment.status, "amount_cents": payment.amount_cents,
        "currency": payment.currency, "decline_code": payment.decline_code,
        "hard_decline": payment.hard_decline, "message": message, "action_url": payment.action_url,
        "invoice": {"number": invoice.number, "status": invoice.status,
                    "amount_paid_cents": invoice.amount_paid_cents,
                    "amount_due_cents": invoice.amount_due_cents},
        "account_status": account_status,
    }


class InvoicePay(APIView):
    required_actions = {"POST": Action.MANAGE_BILLING}
    allowed_when_suspended = True  # paying is how a suspended organisation comes back

    @extend_schema(request=PayIn, responses={200: PayOut, 201: CryptoQuoteOut, **BILLING_PROBLEMS},
                   summary="Pay an open invoice now; a declined card answers 402 card_declined, "
                           "sol and usdc answer a crypto quote to pay (201)")
    def post(self, request, number):
        data = PayIn(data=request.data)
        data.is_valid(raise_exception=True)
        payment = invoice_pay(tenant=request.tenant, number=number, method=data.validated_data["method"],
                              actor=request.auth)
        if isinstance(payment, CryptoQuote):
            return Response(CryptoQuoteOut(payment).data, status=201)
        # A decline is an answer, not an exception: the failed payment and its dunning
        # steps are already committed by the service.
        result = _pay_result(payment)
        if payment.status != Payment.Status.FAILED:
            return Response(PayOut(result).data)
        next_step = ("This card cannot be charged again: add a different card "
                     "(POST /api/v1/payment-methods) and pay again." if payment.hard_decline else
                     "Try again later, or add another card (POST /api/v1/payment-methods) and pay again.")
        detail = f"{result['message']} {next_step}"
        # `status` is the problem's HTTP status; the payment's goes in payment_status.
        extra = {k: v for k, v in result.items() if k not in ("status", "message")}
        return problem_response(problem(402, "card_declined", detail, title="Payment declined",
                                        payment_status=payment.status, **extra))
