"""Billing API (SPEC §10): plans on the public domain; the subscription, plan changes,
invoices, payments and cards on file on the organisation's domain."""
from .crypto import CryptoQuoteDetail
from .invoices import InvoiceDetail, InvoiceList, InvoicePay, InvoicePdf
from .payments import PaymentList, PaymentMethodDetail, PaymentMethodListCreate, PaymentMethodSetup
from .plans import PlanList
from .subscription import (
    SubscriptionCancelView,
    SubscriptionChangeView,
    SubscriptionPreviewView,
    SubscriptionResumeView,
    SubscriptionView,
)

__all__ = [
    "CryptoQuoteDetail",
    "InvoiceDetail", "InvoiceList", "InvoicePay", "InvoicePdf", "PaymentList", "PaymentMethodDetail",
    "PaymentMethodListCreate", "PaymentMethodSetup", "PlanList", "SubscriptionCancelView", "SubscriptionChangeView",
    "SubscriptionPreviewView", "SubscriptionResumeView", "SubscriptionView",
]
