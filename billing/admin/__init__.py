"""Billing's staff console (SPEC §11): plans, subscriptions with their dunning state,
invoices and the actions on them, payments, the balance ledger and the billing schedule.
The index page's figures come from billing.metrics (templates/admin/index.html)."""
from . import invoices, payments, plans, subscriptions

__all__ = ["invoices", "payments", "plans", "subscriptions"]
