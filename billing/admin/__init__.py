"""Billing's staff console (SPEC §11): plans, subscriptions with their dunning state,
invoices and the actions on them, payments (refunds to the card), the balance ledger, the
billing schedule, and Stripe's webhook events (retry), refunds and disputes.
The index page's figures come from billing.metrics (templates/admin/index.html)."""
from . import crypto, invoices, payments, plans, sending, stripe, subscriptions

__all__ = ["crypto", "invoices", "payments", "plans", "sending", "stripe", "subscriptions"]
