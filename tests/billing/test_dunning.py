"""Dunning and enforcement on a test clock (SPEC §4): a soft decline walks past_due →
retries on days 1, 3, 5 and 7 → suspended after 7 days of grace → cancelled after 30 days
suspended, on the right days; paying during grace or suspension restores service at once;
a hard decline is not retried (grace and suspension still run) until a new card revives
the retries; staff's schedule applies to new failures. Every step emails the billing
contacts and writes the audit log.

The subscription is an active Starter one whose trial converted on 2027-03-01; the renewal
of 2027-04-01 (2,900¢, due that day) is the invoice that fails.
"""
import pytest
from django.core import mail

from billing.models import BillingSettings, Invoice, Payment
from billing.services.collection import invoice_pay
from tenants.models import Role, ScheduledJob, Tenant

from ..conftest import add_member, owner_principal
from .lifecycle import (
    DAY,
    SECOND,
    active_since,
    advance,
    at,
    audit_actions,
    card_attach,
    invoices,
    last_audit_id,
    recording_hook,
    subscription_of,
    trial_restart,
)

CONVERTED = at(2027, 3, 1)
DUE = at(2027, 4, 1)


@pytest.fixture
def hook():
    """An enforcement hook recording what billing asks of provisioning."""
    with recording_hook() as recorder:
        yield recorder


def _failing_renewal(tenant, card: str) -> Invoice:
    """Active since Mar 1 (paid with a Mastercard), then `card` becomes the default and
    the Apr 1 renewal is charged to it."""
    active_since(tenant, "starter", CONVERTED, card="pm_card_mastercard")
    card_attach(tenant, card)
    advance(tenant, to=DUE)
    (invoice,) = invoices(tenant, reason="renewal")
    return invoice


def _attempts(invoice) -> list[tuple[int, str, str]]:
    return list(Payment.objects.filter(invoice=invoice).order_by("id")
                .values_list("attempt", "status", "decline_code"))


def _pending(tenant) -> list[tuple[str, object]]:
    return list(ScheduledJob.objects.filter(tenant=tenant, status="pending").order_by("due_at", "id")
                .values_list("kind", "due_at"))


def _subjects(start: int = 0) -> list[str]:
    return [m.subject.removeprefix("[Aerolith] ") for m in mail.outbox[start:]]


def _status(tenant) -> str:
    subscription = subscription_of(tenant)
    assert Tenant.objects.get(pk=tenant.pk).status == subscription.status  # they move together
    return subscription.status


@pytest.mark.django_db
def test_a_soft_decline_walks_past_due_retries_suspension_and_cancellation_on_the_right_days(
        alice, hook, django_capture_on_commit_callbacks):
    add_member(alice, "accounts@alice.test", Role.BILLING)  # billing contacts: owners and billing
    add_member(alice, "dev@alice.test", Role.DEVELOPER)  # ...but not developers
    with django_capture_on_commit_callbacks(execute=True):
        invoice = _failing_renewal(alice, "pm_card_chargeDeclined")
    subscription = subscription_of(alice)
    assert (subscription.status, subscription.past_due_since) == ("past_due", DUE)
    assert _attempts(invoice) == [(0, "failed", "generic_decline")]
    assert (invoice.status, invoice.amount_due_cents, invoice.due_at) == ("open", 2900, DUE)
    assert _pending(alice) == [
        ("billing.invoice_charge", at(2027, 4, 2)), ("billing.invoice_charge", at(2027, 4, 4)),
        ("billing.invoice_charge", at(2027, 4, 6)), ("billing.invoice_charge", at(2027, 4, 8)),
        ("billing.grace_end", at(2027, 4, 8)), ("billing.renewal", at(2027, 5, 1))]
    assert _subjects()[-1] == f"Payment for invoice {invoice.number} failed"
    assert "We will try again on 2027-04-02" in mail.outbox[-1].body
    assert "until 2027-04-08 00:00 UTC" in mail.outbox[-1].body
    assert {"invoice.payment_failed", "payment.failed", "subscription.past_due"} <= set(audit_actions(alice))

    # day by day from the due date: (status, card attempts on all invoices so far)
    expected = {
        at(2027, 4, 1, 23, 59, 59): ("past_due", 1),
        at(2027, 4, 2): ("past_due", 2),  # retry, day 1
        at(2027, 4, 3): ("past_due", 2),
        at(2027, 4, 4): ("past_due", 3),  # retry, day 3
        at(2027, 4, 5): ("past_due", 3),
        at(2027, 4, 6): ("past_due", 4),  # retry, day 5
        at(2027, 4, 7, 23, 59, 59): ("past_due", 4),  # full service for 7 days
        at(2027, 4, 8): ("suspended", 5),  # retry, day 7, then grace is over
        at(2027, 4, 30): ("suspended", 5),
        at(2027, 5, 1): ("suspended", 6),  # the May renewal is billed, and fails too
        at(2027, 5, 2): ("suspended", 7),
        at(2027, 5, 4): ("suspended", 8),
        at(2027, 5, 6): ("suspended", 9),
        at(2027, 5, 7, 23, 59, 59): ("suspended", 9),
        at(2027, 5, 8): ("cancelled", 9),  # 30 days suspended; no charge after that
        at(2027, 6, 8): ("cancelled", 9),
    }
    seen, steps, jobs = {}, {}, {}
    for moment in expected:
        before_mail, before_audit = len(mail.outbox), last_audit_id()
        with django_capture_on_commit_callbacks(execute=True):
            advance(alice, to=moment)
        seen[moment] = (_status(alice), Payment.objects.filter(tenant=alice, invoice__reason="renewal").count())
        steps[moment] = (_subjects(before_mail), audit_actions(alice, before_audit))
        jobs[moment] = _pending(alice)
    assert seen == expected

    # what is left to do after each turning point
    assert jobs[at(2027, 4, 8)] == [("billing.renewal", at(2027, 5, 1)),
                                    ("billing.suspension_end", at(2027, 5, 8))]
    assert jobs[at(2027, 5, 1)] == [
        ("billing.invoice_charge", at(2027, 5, 2)), ("billing.invoice_charge", at(2027, 5, 4)),
        ("billing.invoice_charge", at(2027, 5, 6)), ("billing.suspension_end", at(2027, 5, 8)),
        ("billing.invoice_charge", at(2027, 5, 8)), ("billing.grace_end", at(2027, 5, 8)),
        ("billing.renewal", at(2027, 6, 1))]
    assert jobs[at(2027, 5, 8)] == [("billing.renewal", at(2027, 6, 1))]  # it will do nothing
    assert jobs[at(2027, 6, 8)] == []

    failed = f"Payment for invoice {invoice.number} failed"
    for moment in (at(2027, 4, 2), at(2027, 4, 4), at(2027, 4, 6), at(2027, 4, 8)):  # each retry
        emails, actions = steps[moment]
        assert emails[0] == failed
        assert ["payment.failed", "invoice.payment_failed"] == [a for a in actions if "failed" in a]
    assert steps[at(2027, 4, 2)][0] == [failed]
    assert steps[at(2027, 4, 3)] == ([], ["test_clock.advanced"])
    assert steps[at(2027, 4, 8)][0] == [failed, "Your service is suspended"]
    assert "subscription.suspended" in steps[at(2027, 4, 8)][1]
    may = invoices(alice, reason="renewal")[1]
    assert steps[at(2027, 5, 1)][0] == [f"Payment for invoice {may.number} failed"]
    assert steps[at(2027, 5, 8)][0] == ["Your subscription has ended"]
    assert {"subscription.cancelled_for_nonpayment", "invoice.uncollectible"} <= set(steps[at(2027, 5, 8)][1])
    assert "payment.failed" not in steps[at(2027, 5, 8)][1]
    for message in mail.outbox:
        assert message.to == ["owner@alice.test", "accounts@alice.test"]

    subscription = subscription_of(alice)
    assert (subscription.suspended_at, subscription.cancelled_at, subscription.data_kept_until) == (
        at(2027, 4, 8), at(2027, 5, 8), at(2027, 6, 7))
    assert _attempts(invoice) == [(n, "failed", "generic_decline") for n in range(5)]
    assert _attempts(may) == [(n, "failed", "generic_decline") for n in range(4)]
    invoice.refresh_from_db()
    may.refresh_from_db()
    assert (invoice.status, may.status) == ("uncollectible", "uncollectible")
    assert hook.events() == ["suspended", "cancelled"]
    assert ScheduledJob.objects.filter(tenant=alice, status="failed").count() == 0


@pytest.mark.django_db
def test_paying_during_grace_restores_active_at_once_and_the_rest_of_dunning_does_nothing(
        alice, django_capture_on_commit_callbacks):
    invoice = _failing_renewal(alice, "pm_card_chargeDeclinedInsufficientFunds")
    advance(alice, to=at(2027, 4, 3, 12))
    assert (_status(alice), len(_attempts(invoice))) == ("past_due", 2)
    card_attach(alice, "pm_card_visa")
    since = last_audit_id()
    with recording_hook() as hook, django_capture_on_commit_callbacks(execute=True):
        payment = invoice_pay(tenant=alice, number=invoice.number, method="card", actor=owner_principal(alice))
    assert (payment.status, payment.amount_cents, payment.payment_method.last4) == ("succeeded", 2900, "4242")
    invoice.refresh_from_db()
    assert (invoice.status, invoice.amount_due_cents, invoice.paid_at) == ("paid", 0, at(2027, 4, 3, 12))
    subscription = subscription_of(alice)
    assert (_status(alice), subscription.past_due_since) == ("active", None)
    assert _subjects()[-2:] == [f"Receipt for invoice {invoice.number}", "Your service is fully restored"]
    assert {"payment.succeeded", "invoice.paid", "subscription.reactivated"} <= set(audit_actions(alice, since))
    assert hook.calls == []  # service never stopped: nothing to reactivate
    # the retries of days 3, 5 and 7 and the end of grace find nothing to do
    advance(alice, to=at(2027, 4, 30))
    assert _status(alice) == "active"
    assert [a[1] for a in _attempts(invoice)] == ["failed", "failed", "succeeded"]
    assert not ScheduledJob.objects.filter(tenant=alice, kind__startswith="billing.", status="pending")\
        .exclude(kind="billing.renewal").exists()
    advance(alice, to=at(2027, 5, 1))  # and the next renewal is charged to the new card
    assert invoices(alice, reason="renewal")[1].status == "paid"


@pytest.mark.django_db
def test_paying_during_suspension_restores_active_and_reactivates_the_databases(
        alice, django_capture_on_commit_callbacks):
    invoice = _failing_renewal(alice, "pm_card_chargeDeclined")
    with recording_hook() as hook, django_capture_on_commit_callbacks(execute=True):
        advance(alice, to=at(2027, 4, 10))
        assert _status(alice) == "suspended"
        card_attach(alice, "pm_card_visa")
        invoice_pay(tenant=alice, number=invoice.number, method="card", actor=owner_principal(alice))
    assert hook.events() == ["suspended", "reactivated"]
    subscription = subscription_of(alice)
    assert (_status(alice), subscription.suspended_at, subscription.past_due_since) == ("active", None, None)
    assert "Your service is fully restored" in _subjects()
    advance(alice, to=at(2027, 5, 9))  # past the day it would have been cancelled
    assert _status(alice) == "active"
    assert [i.status for i in invoices(alice)] == ["paid", "paid", "paid"]


@pytest.mark.django_db
def test_with_two_invoices_overdue_service_returns_only_when_both_are_paid(alice):
    first = _failing_renewal(alice, "pm_card_chargeDeclined")
    advance(alice, to=at(2027, 5, 1, 12))
    second = invoices(alice, reason="renewal")[1]
    assert (_status(alice), second.status) == ("suspended", "open")
    card_attach(alice, "pm_card_visa")
    owner = owner_principal(alice)
    invoice_pay(tenant=alice, number=first.number, method="card", actor=owner)
    assert _status(alice) == "suspended"
    invoice_pay(tenant=alice, number=second.number, method="card", actor=owner)
    assert _status(alice) == "active"


@pytest.mark.django_db
def test_a_hard_decline_is_not_retried_but_grace_and_suspension_still_run(
        alice, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        invoice = _failing_renewal(alice, "pm_card_chargeDeclinedStolenCard")
    assert _attempts(invoice) == [(0, "failed", "stolen_card")]
    assert invoice.payments.get().hard_decline
    assert "we will not retry it" in mail.outbox[-1].body
    assert _status(alice) == "past_due"
    since = last_audit_id()
    advance(alice, to=at(2027, 4, 7, 23, 59, 59))
    assert (_status(alice), len(_attempts(invoice))) == ("past_due", 1)
    assert audit_actions(alice, since).count("invoice.retry_skipped") == 3  # days 1, 3, 5
    advance(alice, to=at(2027, 4, 8))
    assert (_status(alice), len(_attempts(invoice))) == ("suspended", 1)
    advance(alice, to=at(2027, 5, 8))
    assert _status(alice) == "cancelled"
    assert _attempts(invoice) == [(0, "failed", "stolen_card")]
    # May's invoice was tried once on the card on file, and not retried either
    may = invoices(alice, reason="renewal")[1]
    assert _attempts(may) == [(0, "failed", "stolen_card")]


@pytest.mark.django_db
def test_a_new_card_after_a_hard_decline_revives_the_scheduled_retries(alice, django_capture_on_commit_callbacks):
    invoice = _failing_renewal(alice, "pm_card_chargeDeclinedStolenCard")
    advance(alice, to=at(2027, 4, 2, 12))  # day 1's retry was skipped
    assert len(_attempts(invoice)) == 1
    card_attach(alice, "pm_card_visa")
    with django_capture_on_commit_callbacks(execute=True):
        advance(alice, to=at(2027, 4, 4))  # day 3's retry uses the new card
    assert [(a, s) for a, s, _code in _attempts(invoice)] == [(0, "failed"), (2, "succeeded")]
    assert invoice.payments.get(status="succeeded").payment_method.gateway_id == "pm_card_visa"
    assert _status(alice) == "active"
    assert "Your service is fully restored" in _subjects()
    advance(alice, to=at(2027, 4, 20))
    assert _status(alice) == "active" and len(_attempts(invoice)) == 2


@pytest.mark.django_db
def test_staff_schedule_applies_to_new_failures(alice):
    BillingSettings.objects.update_or_create(pk=1, defaults={
        "retry_days": [2], "grace_days": 3, "suspension_days": 10, "retention_days": 5})
    invoice = _failing_renewal(alice, "pm_card_chargeDeclined")
    assert _pending(alice) == [("billing.invoice_charge", at(2027, 4, 3)), ("billing.grace_end", at(2027, 4, 4)),
                               ("billing.renewal", at(2027, 5, 1))]
    advance(alice, to=at(2027, 4, 3, 23, 59, 59))
    assert (_status(alice), len(_attempts(invoice))) == ("past_due", 2)
    advance(alice, to=at(2027, 4, 4))
    assert _status(alice) == "suspended"
    advance(alice, to=at(2027, 4, 13, 23, 59, 59))
    assert _status(alice) == "suspended"
    advance(alice, to=at(2027, 4, 14))
    subscription = subscription_of(alice)
    assert (subscription.status, subscription.cancelled_at, subscription.data_kept_until) == (
        "cancelled", at(2027, 4, 14), at(2027, 4, 19))


@pytest.mark.django_db
def test_a_schedule_changed_after_a_failure_leaves_that_failures_steps_in_place(alice):
    invoice = _failing_renewal(alice, "pm_card_chargeDeclined")
    BillingSettings.objects.update_or_create(pk=1, defaults={"retry_days": [2], "grace_days": 3})
    advance(alice, to=at(2027, 4, 7, 23, 59, 59))
    assert (_status(alice), len(_attempts(invoice))) == ("past_due", 4)
    advance(alice, to=at(2027, 4, 8))
    assert _status(alice) == "suspended"


@pytest.mark.django_db
def test_a_trials_first_invoice_failing_through_the_retries_falls_back_to_free(
        alice, django_capture_on_commit_callbacks):
    trial_restart(alice, "professional", at(2027, 2, 15))
    card_attach(alice, "pm_card_chargeDeclined")
    with recording_hook() as hook, django_capture_on_commit_callbacks(execute=True):
        advance(alice, to=CONVERTED)
        (invoice,) = invoices(alice)
        assert (invoice.reason, invoice.total_cents) == ("trial_conversion", 9900)
        assert _status(alice) == "past_due"
        advance(alice, to=CONVERTED + 7 * DAY - SECOND)
        assert (_status(alice), len(_attempts(invoice))) == ("past_due", 4)
        advance(alice, to=CONVERTED + 7 * DAY)
    subscription = subscription_of(alice)
    assert (subscription.status, subscription.plan.code, subscription.trial_outcome) == (
        "active", "free", "fell_back")
    assert (subscription.past_due_since, subscription.suspended_at) == (None, None)
    assert (subscription.current_period_start, subscription.current_period_end) == (
        at(2027, 3, 8), at(2027, 4, 8))
    invoice.refresh_from_db()
    assert (invoice.status, invoice.amount_due_cents) == ("void", 0)
    assert len(_attempts(invoice)) == 5
    assert hook.calls == [("plan_applied", "alice", "free")]  # never suspended
    assert _subjects()[-1] == "You are now on the Free plan"
    assert "failed through every retry" in mail.outbox[-1].body
    assert "subscription.fell_back_to_free" in audit_actions(alice)
    advance(alice, to=at(2027, 5, 1))
    assert len(invoices(alice)) == 1 and _status(alice) == "active"
