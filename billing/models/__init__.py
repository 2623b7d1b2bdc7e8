"""Billing's tables: plans, subscriptions, invoices, payments and the tenant's balance.
All live in the public schema, because staff query them across tenants (SPEC §2)."""
from .crypto import ChainTransfer, CryptoQuote, CryptoRate
from .invoices import Invoice, InvoiceCounter, InvoiceLine
from .payments import BalanceTransaction, Payment, PaymentMethod
from .plans import Plan, PlanMeter
from .sending import OutgoingTransaction, SigningKey
from .stripe import Dispute, Refund, StripeCustomer, StripeEvent
from .subscriptions import BillingSettings, Subscription

__all__ = [
    "BalanceTransaction", "BillingSettings", "ChainTransfer", "CryptoQuote", "CryptoRate", "Dispute",
    "Invoice", "InvoiceCounter", "InvoiceLine", "OutgoingTransaction",
    "Payment", "PaymentMethod", "Plan", "PlanMeter", "Refund", "SigningKey", "StripeCustomer",
    "StripeEvent", "Subscription",
]
