"""A year of a Starter subscription on a test clock (issue 4, "Tests"): a 14-day trial, the
conversion, twelve renewals with overage from ingested usage, an upgrade to Professional
mid-period and a downgrade back to Starter at a period end. Every invoice's lines and total
are written out by hand below, with the arithmetic beside them.

The trial starts 2028-01-17, so the anchor is Jan 31 of a leap year: periods end Feb 29,
Mar 31, Apr 30, ... (month ends clamped, never drifting).

Overage prices (SPEC §3): API calls 1¢ per 1,000 above the allowance; compute 10¢ per hour;
bandwidth 9¢ per GB; amounts rounded half up to the cent. Starter includes 100,000 calls,
100 compute hours and 50 GB; Professional 5,000,000 calls, 750 hours and 500 GB.
"""
from decimal import Decimal

import pytest
from django.core import mail

from billing.models import InvoiceCounter, Payment, Plan
from billing.services.subscriptions import preview_change, subscription_change
from tenants.models import AuditEvent, ScheduledJob

from ..conftest import owner_principal
from .lifecycle import (
    advance,
    at,
    card_attach,
    invoices,
    lines,
    subscription_of,
    trial_restart,
    usage,
)

STARTER, PROFESSIONAL = 2900, 9900


def _counter(year: int) -> int:
    return InvoiceCounter.objects.filter(year=year).values_list("last_number", flat=True).first() or 0


def _renewal(tenant, period_end):
    """Move to `period_end` and return the one renewal invoice that starts there."""
    advance(tenant, to=period_end)
    (invoice,) = invoices(tenant, reason="renewal", period_start=period_end)
    return invoice


@pytest.mark.django_db
def test_a_year_of_starter_with_overage_an_upgrade_and_a_downgrade(
        alice, django_capture_on_commit_callbacks):
    base_2028, base_2029 = _counter(2028), _counter(2029)
    owner = owner_principal(alice)
    trial_restart(alice, "starter", at(2028, 1, 17))

    # --- the trial: reminders 3 days and 1 day before it ends, a card added meanwhile
    with django_capture_on_commit_callbacks(execute=True):
        advance(alice, to=at(2028, 1, 20))
        card_attach(alice, "pm_card_visa")
        advance(alice, to=at(2028, 1, 30, 12))
    assert [m.subject for m in mail.outbox] == ["[Aerolith] Your trial ends in 3 days",
                                                "[Aerolith] Your trial ends in 1 day"]
    assert "Your card on file will be charged" in mail.outbox[1].body

    # --- conversion at trial end: the first period [Jan 31, Feb 29) is invoiced and paid
    advance(alice, to=at(2028, 1, 31))
    # usage in the trial's last second is part of no billed period
    usage(alice, "api_calls", 900_000, at(2028, 1, 30, 23, 59, 59))
    subscription = subscription_of(alice)
    assert (subscription.status, subscription.trial_outcome) == ("active", "converted")
    assert subscription.billing_anchor == at(2028, 1, 31)
    assert (subscription.current_period_start, subscription.current_period_end) == (
        at(2028, 1, 31), at(2028, 2, 29))
    (first,) = invoices(alice, reason="trial_conversion")
    assert lines(first) == [("plan", STARTER)]
    assert (first.total_cents, first.status, first.number) == (
        2900, "paid", f"AER-2028-{base_2028 + 1:06d}")
    issued = [first]

    # --- Feb 29: 123,456 calls in [Jan 31, Feb 29) -> 23,456 above 100,000
    advance(alice, to=at(2028, 2, 15))
    usage(alice, "api_calls", 100_000, at(2028, 1, 31))  # the period's first second counts
    usage(alice, "api_calls", 23_456, at(2028, 2, 14, 23, 59, 59))
    invoice = _renewal(alice, at(2028, 2, 29))
    # 23,456 calls x 1¢/1,000 = 23.456¢ -> 23¢; then Starter for [Feb 29, Mar 31)
    assert lines(invoice) == [("overage", 23), ("plan", STARTER)]
    assert invoice.total_cents == 23 + 2900 == 2923
    overage = invoice.lines.get(kind="overage")
    assert (overage.meter.code, overage.quantity) == ("api_calls", 23_456)
    assert (invoice.period_start, invoice.period_end) == (at(2028, 2, 29), at(2028, 3, 31))
    issued.append(invoice)

    # --- Mar 31: 112.5 compute hours in [Feb 29, Mar 31)
    advance(alice, to=at(2028, 3, 20))
    usage(alice, "compute_hours", 60, at(2028, 2, 29))
    usage(alice, "compute_hours", "52.5", at(2028, 3, 19))
    invoice = _renewal(alice, at(2028, 3, 31))
    # 12.5 h x 10¢ = 125¢
    assert lines(invoice) == [("overage", 125), ("plan", STARTER)]
    assert invoice.total_cents == 125 + 2900 == 3025
    issued.append(invoice)

    # --- Apr 30: 73.3 GB of bandwidth in [Mar 31, Apr 30), 10 GB of it at the first second
    usage(alice, "bandwidth_gb", 10, at(2028, 3, 31))
    advance(alice, to=at(2028, 4, 29, 23, 59, 59))
    usage(alice, "bandwidth_gb", "63.3", at(2028, 4, 29, 23, 59, 59))
    invoice = _renewal(alice, at(2028, 4, 30))
    # 23.3 GB x 9¢ = 209.7¢ -> 210¢
    assert lines(invoice) == [("overage", 210), ("plan", STARTER)]
    assert invoice.total_cents == 210 + 2900 == 3110
    issued.append(invoice)

    # --- May 31: every meter half a cent over, each rounded half up
    advance(alice, to=at(2028, 5, 30))
    usage(alice, "api_calls", 100_500, at(2028, 5, 1))      # 500 calls x 1¢/1,000 = 0.5¢ -> 1¢
    usage(alice, "compute_hours", "100.05", at(2028, 5, 2))  # 0.05 h x 10¢ = 0.5¢ -> 1¢
    usage(alice, "bandwidth_gb", "50.5", at(2028, 5, 3))     # 0.5 GB x 9¢ = 4.5¢ -> 5¢
    advance(alice, to=at(2028, 5, 30, 23, 56))
    # the next period's first second (4 minutes ahead, within the senders' clock slack)
    usage(alice, "api_calls", 1, at(2028, 5, 31))
    invoice = _renewal(alice, at(2028, 5, 31))
    assert lines(invoice) == [("overage", 1), ("overage", 1), ("overage", 5), ("plan", STARTER)]
    assert [line.meter.code for line in invoice.lines.filter(kind="overage").order_by("position")] == [
        "api_calls", "compute_hours", "bandwidth_gb"]
    assert invoice.total_cents == 1 + 1 + 5 + 2900 == 2907
    issued.append(invoice)

    # --- Jun 10 12:34:56: upgrade to Professional, prorated to the second. The period
    # [May 31, Jun 30) has 30 x 86,400 = 2,592,000 s; 19 d 11:25:04 = 1,682,704 s remain.
    advance(alice, to=at(2028, 6, 5))
    usage(alice, "compute_hours", 400, at(2028, 6, 5))
    upgrade_at = at(2028, 6, 10, 12, 34, 56)
    advance(alice, to=upgrade_at)
    preview = preview_change(subscription=subscription_of(alice),
                             plan=Plan.objects.get(code="professional"), when=None)
    subscription, invoice = subscription_change(tenant=alice, plan_code="professional", actor=owner,
                                                proration_at=preview.proration_at)
    assert subscription.plan.code == "professional" and preview.when == "now"
    # credit 2,900 x 1,682,704 / 2,592,000 = 1,882.65¢ -> 1,883¢
    # charge 9,900 x 1,682,704 / 2,592,000 = 6,426.99¢ -> 6,427¢
    assert lines(invoice) == [("proration", -1883), ("proration", 6427)]
    assert invoice.total_cents == -1883 + 6427 == 4544
    assert [(d.kind, d.amount_cents) for d in preview.lines] == lines(invoice)
    assert preview.amount_due_now_cents == invoice.amount_due_cents == 4544
    assert (invoice.reason, invoice.period_start, invoice.period_end) == (
        "plan_change", upgrade_at, at(2028, 6, 30))
    assert invoice.lines.first().quantity == Decimal("0.649191")  # of the period, to 6 places
    advance(alice, seconds=0)  # runs the charge, due at once
    invoice.refresh_from_db()
    assert invoice.status == "paid"
    issued.append(invoice)

    # --- Jun 30: 800 compute hours in the period, 400 of them before the upgrade; the
    # period's usage is priced by the plan in force when it closes (Professional, 750 h)
    advance(alice, to=at(2028, 6, 20))
    usage(alice, "compute_hours", 400, at(2028, 6, 20))
    invoice = _renewal(alice, at(2028, 6, 30))
    # 50 h x 10¢ = 500¢; then Professional for [Jun 30, Jul 31)
    assert lines(invoice) == [("overage", 500), ("plan", PROFESSIONAL)]
    assert invoice.total_cents == 500 + 9900 == 10400
    issued.append(invoice)

    # --- Jul 31: no usage
    invoice = _renewal(alice, at(2028, 7, 31))
    assert lines(invoice) == [("plan", PROFESSIONAL)]
    assert invoice.total_cents == 9900
    issued.append(invoice)

    # --- Aug 15: downgrade to Starter, by default at the period end; nothing billed now
    advance(alice, to=at(2028, 8, 15))
    subscription, nothing = subscription_change(tenant=alice, plan_code="starter", actor=owner)
    assert nothing is None
    assert (subscription.plan.code, subscription.pending_plan.code) == ("professional", "starter")
    usage(alice, "compute_hours", 760, at(2028, 8, 14))
    usage(alice, "api_calls", 5_000_100, at(2028, 8, 14))  # 100 calls above: 0.1¢ -> no line
    # --- Aug 31: the closed period is billed on Professional's allowances (760 - 750 h),
    # the new one on Starter
    invoice = _renewal(alice, at(2028, 8, 31))
    # 10 h x 10¢ = 100¢ (on Starter's 100 h it would have been 6,600¢)
    assert lines(invoice) == [("overage", 100), ("plan", STARTER)]
    assert invoice.total_cents == 100 + 2900 == 3000
    subscription = subscription_of(alice)
    assert subscription.plan.code == "starter" and subscription.pending_plan is None
    issued.append(invoice)

    # --- Sep 30: no usage
    invoice = _renewal(alice, at(2028, 9, 30))
    assert lines(invoice) == [("plan", STARTER)] and invoice.total_cents == 2900
    issued.append(invoice)

    # --- Oct 31: 250,000 calls -> 150,000 above
    advance(alice, to=at(2028, 10, 30))
    usage(alice, "api_calls", 250_000, at(2028, 10, 30))
    invoice = _renewal(alice, at(2028, 10, 31))
    # 150,000 x 1¢/1,000 = 150¢
    assert lines(invoice) == [("overage", 150), ("plan", STARTER)]
    assert invoice.total_cents == 150 + 2900 == 3050
    issued.append(invoice)

    # --- Nov 30: no usage
    invoice = _renewal(alice, at(2028, 11, 30))
    assert lines(invoice) == [("plan", STARTER)] and invoice.total_cents == 2900
    issued.append(invoice)

    # --- Dec 31: 51 GB -> 1 GB above
    advance(alice, to=at(2028, 12, 30, 23, 59, 59))
    usage(alice, "bandwidth_gb", 51, at(2028, 12, 30, 23, 59, 59))
    invoice = _renewal(alice, at(2028, 12, 31))
    # 1 GB x 9¢ = 9¢
    assert lines(invoice) == [("overage", 9), ("plan", STARTER)]
    assert invoice.total_cents == 9 + 2900 == 2909
    issued.append(invoice)

    # --- Jan 31, 2029: 101 compute hours -> 1 h above; the number is 2029's first
    advance(alice, to=at(2029, 1, 30))
    usage(alice, "compute_hours", 101, at(2029, 1, 30))
    invoice = _renewal(alice, at(2029, 1, 31))
    # 1 h x 10¢ = 10¢
    assert lines(invoice) == [("overage", 10), ("plan", STARTER)]
    assert invoice.total_cents == 10 + 2900 == 2910
    assert invoice.number == f"AER-2029-{base_2029 + 1:06d}"
    assert (invoice.period_start, invoice.period_end) == (at(2029, 1, 31), at(2029, 2, 28))
    issued.append(invoice)

    # --- the whole year: 1 conversion + 12 renewals + 1 upgrade, all paid, gapless
    every = invoices(alice)
    assert [i.pk for i in every] == [i.pk for i in issued]
    assert [i.reason for i in every].count("renewal") == 12
    assert [i.total_cents for i in every] == [
        2900, 2923, 3025, 3110, 2907, 4544, 10400, 9900, 3000, 2900, 3050, 2900, 2909, 2910]
    assert {i.status for i in every} == {"paid"}
    assert [i.number for i in every[:-1]] == [f"AER-2028-{base_2028 + n:06d}" for n in range(1, 14)]
    for i in every:
        assert i.total_cents == sum(amount for _kind, amount in lines(i)) == i.amount_paid_cents
    paid = Payment.objects.filter(tenant=alice, status="succeeded")
    assert sorted(paid.values_list("amount_cents", flat=True)) == sorted(i.total_cents for i in every)
    assert sum(i.total_cents for i in every) == 57_378
    subscription = subscription_of(alice)
    assert (subscription.status, subscription.plan.code, subscription.balance_cents) == ("active", "starter", 0)
    assert (subscription.current_period_start, subscription.current_period_end) == (
        at(2029, 1, 31), at(2029, 2, 28))
    assert ScheduledJob.objects.filter(tenant=alice, status="pending").get().kind == "billing.renewal"
    assert AuditEvent.objects.filter(tenant=alice, action="invoice.paid").count() == 14
