"""A first walk through the lifecycle with a test clock (the thorough tests build on it)."""
from datetime import timedelta

import pytest
from django.core import mail

from billing.models import Invoice, Payment, Subscription
from billing.services.collection import payment_method_attach
from tenants.services.clocks import tenant_clock_advance, tenant_clock_attach

from ..conftest import owner_principal


@pytest.mark.django_db
def test_trial_converts_then_renews_with_a_card(alice, django_capture_on_commit_callbacks):
    tenant_clock_attach(tenant=alice, actor="test")
    payment_method_attach(tenant=alice, gateway_id="pm_card_visa", actor=owner_principal(alice))
    with django_capture_on_commit_callbacks(execute=True):
        tenant_clock_advance(tenant=alice, actor="test", seconds=15 * 86400)
    subscription = Subscription.objects.get(tenant=alice)
    assert subscription.status == "active"
    invoice = Invoice.objects.get(tenant=alice)
    assert invoice.status == "paid" and invoice.total_cents == 2900
    assert invoice.number.startswith("AER-")
    tenant_clock_advance(tenant=alice, actor="test", seconds=31 * 86400)
    assert Invoice.objects.filter(tenant=alice, reason="renewal", status="paid").count() == 1
    assert any("Receipt" in m.subject for m in mail.outbox)


@pytest.mark.django_db
def test_soft_decline_walks_dunning_to_suspension(alice):
    tenant_clock_attach(tenant=alice, actor="test")
    payment_method_attach(tenant=alice, gateway_id="pm_card_chargeDeclined", actor=owner_principal(alice))
    tenant_clock_advance(tenant=alice, actor="test", seconds=14 * 86400 + 1)
    subscription = Subscription.objects.get(tenant=alice)
    assert subscription.status == "past_due"
    tenant_clock_advance(tenant=alice, actor="test", seconds=8 * 86400)
    subscription.refresh_from_db()
    # a trial's first invoice failing through every retry falls back to Free
    assert subscription.status == "active" and subscription.plan.code == "free"
    assert Payment.objects.filter(tenant=alice, status="failed").count() == 5


@pytest.mark.django_db
def test_no_card_at_trial_end_falls_back_to_free(alice):
    tenant_clock_attach(tenant=alice, actor="test")
    tenant_clock_advance(tenant=alice, actor="test", seconds=int(timedelta(days=15).total_seconds()))
    subscription = Subscription.objects.get(tenant=alice)
    assert subscription.plan.code == "free" and subscription.status == "active"
