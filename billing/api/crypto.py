"""Crypto payments in the API (SPEC §10): the quote `POST /invoices/{number}/pay` answers
for sol, usdc, trx and usdt, and `GET /crypto-quotes/{id}` to follow its status."""
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from ..models import CryptoQuote
from ..services.crypto import quote_for
from .common import BILLING_PROBLEMS, positive_id


class CryptoQuoteOut(serializers.Serializer):
    payment_id = serializers.IntegerField(
        source="pk", help_text="The crypto payment's id (GET /api/v1/crypto-quotes/{payment_id})")
    invoice = serializers.CharField(source="invoice.number")
    currency = serializers.ChoiceField(choices=["sol", "usdc", "trx", "usdt"])
    network = serializers.ChoiceField(choices=["solana", "tron"])
    address = serializers.CharField(help_text="The recipient: the merchant wallet on Solana, a deposit "
                                              "address for this payment only on Tron")
    url = serializers.CharField(help_text="The Solana Pay transfer request (solana:…), also as a QR code "
                                          "in the portal; on Tron a tron:<address>?amount=… URI")
    reference = serializers.CharField(allow_null=True, help_text="The Solana Pay reference key; null on Tron")
    token_mint = serializers.CharField(source="token", help_text="The SPL token mint for USDC, the TRC-20 "
                                       "contract for USDT; blank for SOL and TRX")
    amount_cents = serializers.IntegerField(help_text="What the payment settles of the invoice, in US cents")
    amount_base_units = serializers.SerializerMethodField(
        help_text="The amount to send in base units (lamports; SUN; 6-decimal USDC/USDT units), as a string: "
                  "it may exceed 2**53")
    amount = serializers.CharField(source="amount_text", help_text="The same amount in coins, exact decimal")
    decimals = serializers.IntegerField()
    rate = serializers.SerializerMethodField(help_text="US dollars per coin, locked until expires_at")
    rate_source = serializers.CharField()
    expires_at = serializers.DateTimeField()
    status = serializers.ChoiceField(choices=CryptoQuote.Status.choices)
    paid_partial = serializers.BooleanField()
    paid_over = serializers.BooleanField()
    paid_late = serializers.BooleanField()
    received_base_units = serializers.SerializerMethodField(help_text="Everything seen so far, as a string")
    credited_cents = serializers.IntegerField(help_text="Credited to the organisation's balance")
    settled_at = serializers.DateTimeField(allow_null=True)
    receipt_payment_id = serializers.IntegerField(
        source="payment_id", allow_null=True, help_text="The payment in GET /api/v1/payments once settled")
    created_at = serializers.DateTimeField()

    def get_amount_base_units(self, quote) -> str:
        return str(int(quote.amount_base_units))

    def get_received_base_units(self, quote) -> str:
        return str(int(quote.received_base_units))

    def get_rate(self, quote) -> str:
        return format(quote.rate.normalize(), "f")


class CryptoQuoteDetail(APIView):
    @extend_schema(responses={200: CryptoQuoteOut, **BILLING_PROBLEMS},
                   summary="A crypto payment (quote) and its status, for polling")
    def get(self, request, pk):
        quote = quote_for(request.tenant, positive_id(pk, "crypto payment"))
        return Response(CryptoQuoteOut(quote).data)
