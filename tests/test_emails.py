"""Every email the product sends, produced by the real services with realistic data: a
subject, a text part and an HTML part, both rendered from templates/emails/ with nothing
left unrendered, both naming the organisation and pointing at the portal."""
import re
from datetime import timedelta

import pytest
from django.conf import settings
from django.core import mail

from aerolith import clock
from billing.models import Payment, Subscription
from billing.services.collection import payment_record_manual
from billing.services.dunning import charge_failed, grace_end
from billing.services.staff import staff_reactivate, staff_suspend
from billing.services.subscriptions import fall_back_to_free, subscription_cancel, trial_remind
from metering.models import Meter
from metering.services.notices import threshold_notice
from tests.billing.test_admin import make_invoice

LEFTOVERS = re.compile(r"\{\{|\}\}|\{%|%\}|\{#|#\}")


def _failed_charge(tenant):
    invoice = make_invoice(tenant, 2900)
    subscription = Subscription.objects.select_related("tenant", "plan").get(tenant=tenant)
    Subscription.objects.filter(pk=subscription.pk).update(status="active")
    subscription.status = "active"
    payment = Payment.objects.create(tenant=tenant, invoice=invoice, method="card", status="failed",
                                     amount_cents=2900, decline_code="insufficient_funds",
                                     failure_message="Your card has insufficient funds.")
    charge_failed(subscription=subscription, invoice=invoice, payment=payment, attempt=0)
    return invoice


def trial_reminder(tenant):
    subscription = Subscription.objects.get(tenant=tenant)
    trial_remind(tenant=tenant, trial_end=subscription.trial_end, days=3)
    return "Your trial ends in 3 days", ["3 days", "Starter"]


def invoice_issued(tenant):
    invoice = make_invoice(tenant, 4200, description="Migration help")
    return f"Invoice {invoice.number}", [invoice.number, "42.00", "Migration help"]


def invoice_paid(tenant):
    invoice = make_invoice(tenant, 4200)
    payment_record_manual(invoice=invoice, amount_cents=4200, reference="BANK-7",
                          received_on=clock.now(tenant).date(), actor="test")
    return f"Receipt for invoice {invoice.number}", [invoice.number, "42.00"]


def payment_failed(tenant):
    invoice = _failed_charge(tenant)
    return f"Payment for invoice {invoice.number} failed", [invoice.number]


def suspended_for_nonpayment(tenant):
    invoice = _failed_charge(tenant)
    grace_end(tenant=tenant, invoice_id=invoice.pk)
    return "Your service is suspended", [invoice.number, "29.00", "cancelled on"]


def suspended_by_staff(tenant):
    staff_suspend(tenant=tenant, actor="staff:ops@aerolith.test", reason="abuse report 42")
    return "Your service is suspended", ["abuse report 42"]


def service_restored(tenant):
    staff_suspend(tenant=tenant, actor="staff:ops@aerolith.test")
    staff_reactivate(tenant=tenant, actor="staff:ops@aerolith.test")
    return "Your service is fully restored", ["again"]


def cancel_scheduled(tenant):
    subscription_cancel(tenant=tenant, at_period_end=True, actor="test")
    return "Your subscription will end", []


def cancelled(tenant):
    subscription_cancel(tenant=tenant, at_period_end=False, actor="test")
    return "Your subscription has ended", []


def fell_back(tenant):
    fall_back_to_free(Subscription.objects.select_related("tenant", "plan").get(tenant=tenant),
                      actor="system", reason="no payment method at trial end")
    return "You are now on the Free plan", ["no payment method at trial end"]


def usage_80(tenant):
    meter = Meter.objects.get(code="compute_hours")
    start = Subscription.objects.get(tenant=tenant).current_period_start
    threshold_notice(tenant=tenant, meter=meter, period_start=start, percent=80,
                     used_micro=8 * 10**6, included_micro=10 * 10**6)
    return "Compute", ["8 of 10", "80%"]


def usage_100(tenant):
    meter = Meter.objects.get(code="compute_hours")
    start = Subscription.objects.get(tenant=tenant).current_period_start
    threshold_notice(tenant=tenant, meter=meter, period_start=start, percent=100,
                     used_micro=105 * 10**5, included_micro=10 * 10**6)
    return "reached your allowance", ["10.5 of 10", "100%"]


@pytest.mark.parametrize("produce", [trial_reminder, invoice_issued, invoice_paid, payment_failed,
                                     suspended_for_nonpayment, suspended_by_staff, service_restored,
                                     cancel_scheduled, cancelled, fell_back, usage_80, usage_100],
                         ids=lambda f: f.__name__)
def test_each_email_has_a_subject_and_rendered_text_and_html_parts(
        alice, produce, django_capture_on_commit_callbacks):
    mail.outbox.clear()
    with django_capture_on_commit_callbacks(execute=True):
        subject, expected = produce(alice)
    messages = [m for m in mail.outbox if subject.lower() in m.subject.lower()]
    assert len(messages) == 1, [m.subject for m in mail.outbox]
    message = messages[0]
    assert message.to == ["owner@alice.test"]
    assert message.from_email
    (html, mimetype), = message.alternatives
    assert mimetype == "text/html" and html.lstrip().startswith("<!doctype html>")
    for part in (message.body, html):
        assert not LEFTOVERS.search(part), part
        assert "None" not in part, part
        assert "Alice Ltd" in part or "alice." in part
        assert f"alice.{settings.AEROLITH_BASE_DOMAIN}" in part  # a link to the portal
        for text in expected:
            assert text in part, (text, part)


def test_development_settings_write_emails_to_files(settings):
    from aerolith.settings import base

    assert base.EMAIL_BACKEND == "django.core.mail.backends.filebased.EmailBackend"
    assert str(base.EMAIL_FILE_PATH).endswith(".var/emails")


def test_trial_reminder_without_a_card_says_what_happens(alice, django_capture_on_commit_callbacks):
    subscription = Subscription.objects.get(tenant=alice)
    with django_capture_on_commit_callbacks(execute=True):
        trial_remind(tenant=alice, trial_end=subscription.trial_end, days=1)
    message, = mail.outbox
    assert message.subject.endswith("Your trial ends in 1 day")
    assert "Free plan" in message.body and "Free plan" in message.alternatives[0][0]
    assert subscription.trial_end - clock.now(alice) > timedelta(0)
