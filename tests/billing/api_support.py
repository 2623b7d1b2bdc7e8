"""Helpers of the billing API tests (tests/billing/test_api_*.py)."""
from datetime import timedelta

from django.db import transaction

from billing.decisions import LineDraft
from billing.models import (
    BalanceTransaction,
    Invoice,
    InvoiceLine,
    Payment,
    PaymentMethod,
    Subscription,
)
from billing.services.collection import payment_method_attach
from billing.services.invoices import balance_move, invoice_draft, invoice_finalize
from tenants.models import AuditEvent, Tenant
from tenants.services.clocks import tenant_clock_advance, tenant_clock_attach

from ..conftest import add_member, api_client, jwt_for, owner_principal


def client_as(tenant: Tenant, role: str = "owner"):
    """An API client of `tenant` signed in as its owner, or as a new member with `role`."""
    if role == "owner":
        return api_client(tenant.slug, jwt_for(tenant.slug, f"owner@{tenant.slug}.test"))
    email = f"{role}@{tenant.slug}.test"
    add_member(tenant, email, role)
    return api_client(tenant.slug, jwt_for(tenant.slug, email))


def subscription(tenant: Tenant) -> Subscription:
    return Subscription.objects.select_related("plan", "pending_plan").get(tenant=tenant)


def advance(tenant: Tenant, **delta) -> None:
    tenant_clock_advance(tenant=tenant, actor="test", seconds=int(timedelta(**delta).total_seconds()))


def convert(tenant: Tenant, card: str = "pm_card_visa") -> Subscription:
    """A trial converted at its end with `card`, the first invoice paid: an active tenant
    at the start of its first paid period."""
    tenant_clock_attach(tenant=tenant, actor="test")
    payment_method_attach(tenant=tenant, gateway_id=card, actor=owner_principal(tenant))
    trial_end = subscription(tenant).trial_end
    tenant_clock_advance(tenant=tenant, actor="test", to=trial_end + timedelta(seconds=1))
    converted = subscription(tenant)
    assert converted.status == "active" and converted.trial_outcome == "converted", converted.status
    return converted


def grant_credit(tenant: Tenant, cents: int) -> None:
    with transaction.atomic():
        sub = Subscription.objects.select_for_update().select_related("tenant").get(tenant=tenant)
        balance_move(subscription=sub, kind=BalanceTransaction.Kind.STAFF_GRANT, amount_cents=cents,
                     description="Goodwill", actor="test")


def open_invoice(tenant: Tenant, cents: int = 1500, description: str = "Migration help") -> Invoice:
    """An open invoice of one adjustment line that nothing charges automatically."""
    sub = subscription(tenant)
    invoice = invoice_draft(tenant=tenant, subscription=sub, reason=Invoice.Reason.MANUAL,
                            period_start=sub.current_period_start, period_end=sub.current_period_end,
                            lines=[LineDraft("adjustment", description, cents)])
    return invoice_finalize(invoice=invoice, actor="test", collect=False)


def billing_state(tenant: Tenant) -> tuple:
    """Everything a refused billing request must leave as it was."""
    return (
        list(Subscription.objects.filter(tenant=tenant).values_list(
            "plan_id", "pending_plan_id", "status", "cancel_at_period_end", "default_payment_method_id",
            "balance_cents", "current_period_start", "current_period_end", "past_due_since",
            "suspended_at", "cancelled_at")),
        Tenant.objects.get(pk=tenant.pk).status,
        sorted(Invoice.objects.filter(tenant=tenant).values_list(
            "id", "number", "status", "total_cents", "amount_paid_cents", "amount_due_cents",
            "attempt_count")),
        InvoiceLine.objects.filter(invoice__tenant=tenant).count(),
        sorted(Payment.objects.filter(tenant=tenant).values_list("id", "status")),
        sorted(PaymentMethod.objects.filter(tenant=tenant).values_list("id", "gateway_id", "detached_at")),
        BalanceTransaction.objects.filter(tenant=tenant).count(),
        AuditEvent.objects.filter(tenant=tenant).count(),
    )
