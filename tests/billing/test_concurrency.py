"""Racing workers (SPEC §3, issue 4): two renewal runs at once give one invoice, and two
plan changes at once leave a consistent subscription.

Why this module commits: row locks and unique constraints only meet between two
connections, and another connection cannot see the rows of a test's open transaction. So
everything here is written from threads, each with a connection of its own in autocommit
(`committed`, tests.metering.conftest.in_threads): the `racer` fixture signs a fresh tenant
up for real, the racing calls run in threads, and afterwards the fixture deletes all the
tenant left behind in one transaction, drops its schema and puts the invoice counters back
as they were. The test's own connection (inside the usual rolled-back transaction, which
the session tenants rely on) only reads: at READ COMMITTED it sees what the threads
committed, and it never writes, so it holds no lock a thread could wait for. The tenant's
clock is set in 2035, a year no other test numbers invoices in. Audit events stay behind:
PostgreSQL refuses to delete them (they name a tenant id that is never reused).
"""
import uuid
from datetime import datetime

import pytest
from django.db import IntegrityError, connection, transaction
from django_tenants.utils import tenant_context

from aerolith.errors import Conflict
from billing.decisions import proration_lines
from billing.models import (
    BalanceTransaction,
    Invoice,
    InvoiceCounter,
    Payment,
    Plan,
    Subscription,
)
from billing.services.invoices import invoice_draft
from billing.services.renewal import subscription_renew
from billing.services.subscriptions import subscription_change
from tenants.models import ScheduledJob, Tenant, TestClock, User
from tenants.services.scheduling import due_work_run
from tenants.services.signup import tenant_signup
from tests.metering.conftest import in_threads

from ..conftest import PASSWORD, owner_principal
from .lifecycle import active_since, advance, at, card_attach, invoices, lines, trial_restart

CONVERTED = at(2035, 2, 1)


def _erase(tenant: Tenant, counters_before: dict[int, int]) -> None:
    with transaction.atomic(), tenant_context(tenant):  # users' API keys live in its schema
        Payment.objects.filter(tenant=tenant).delete()
        BalanceTransaction.objects.filter(tenant=tenant).delete()
        Invoice.objects.filter(tenant=tenant).delete()  # and their lines
        Subscription.objects.filter(tenant=tenant).delete()
        emails = list(User.objects.filter(memberships__tenant=tenant).values_list("email", flat=True))
        User.objects.filter(email__in=emails).delete()
        Tenant.objects.filter(pk=tenant.pk).delete()  # domains, members, clock, jobs, cards, outbox
        for year, number in InvoiceCounter.objects.values_list("year", "last_number"):
            if year not in counters_before:
                InvoiceCounter.objects.filter(year=year).delete()
            elif number != counters_before[year]:
                InvoiceCounter.objects.filter(year=year).update(last_number=counters_before[year])
        with connection.cursor() as cursor:
            cursor.execute(f"DROP SCHEMA IF EXISTS {connection.ops.quote_name(tenant.schema_name)} CASCADE")


def committed(work):
    """Run `work` on a connection of its own, committing as it goes; re-raise its error."""
    (result,) = in_threads(work)
    if isinstance(result, BaseException):
        raise result
    return result


@pytest.fixture
def racer(db):
    """A committed Starter tenant whose trial converted on 2035-02-01 (paid by card)."""
    slug = f"race-{uuid.uuid4().hex[:10]}"
    counters_before = dict(InvoiceCounter.objects.values_list("year", "last_number"))
    made = []

    def sign_up() -> Tenant:
        made.append(tenant_signup(organization="Race Ltd", slug=slug, email=f"owner@{slug}.test",
                                  password=PASSWORD, plan="starter", region="eu-central").tenant)
        connection.set_schema_to_public()
        trial_restart(made[0], "starter", at(2035, 1, 18))
        card_attach(made[0], "pm_card_visa")
        advance(made[0], to=CONVERTED)
        return made[0]

    try:
        yield committed(sign_up)
    finally:
        if made:
            committed(lambda: _erase(made[0], counters_before))
        assert not Tenant.objects.filter(slug=slug).exists()
        assert dict(InvoiceCounter.objects.values_list("year", "last_number")) == counters_before


def _clock_to(tenant, moment: datetime) -> None:
    """Move the clock without running the due work: the racing workers will."""
    committed(lambda: TestClock.objects.filter(tenant=tenant).update(frozen_time=moment))


def test_two_renewals_at_once_give_one_invoice(racer):
    period_end = at(2035, 3, 1)
    _clock_to(racer, period_end)
    results = in_threads(lambda: subscription_renew(tenant=racer, period_end=period_end),
                         lambda: subscription_renew(tenant=racer, period_end=period_end))
    assert not [r for r in results if isinstance(r, BaseException)], results
    winners = [r for r in results if r is not None]
    assert len(winners) == 1 and results.count(None) == 1  # the loser found the period renewed
    (renewal,) = Invoice.objects.filter(tenant=racer, reason="renewal")
    assert renewal.pk == winners[0].pk and lines(renewal) == [("plan", 2900)]
    subscription = Subscription.objects.get(tenant=racer)
    assert (subscription.current_period_start, subscription.current_period_end) == (period_end, at(2035, 4, 1))

    # two beat dispatchers at once on the same tenant, its next renewal due
    _clock_to(racer, at(2035, 4, 1))
    results = in_threads(lambda: due_work_run(tenant=racer), lambda: due_work_run(tenant=racer))
    assert not [r for r in results if isinstance(r, BaseException)], results
    renewals = Invoice.objects.filter(tenant=racer, reason="renewal").order_by("period_start")
    assert [(i.period_start, i.status) for i in renewals] == [(period_end, "paid"), (at(2035, 4, 1), "paid")]
    for invoice in renewals:  # each charged once
        assert list(invoice.payments.values_list("status", flat=True)) == ["succeeded"]
    jobs = ScheduledJob.objects.filter(tenant=racer)
    assert not jobs.exclude(last_error="").exists()
    assert sorted(jobs.filter(status="pending").values_list("kind", flat=True)) == ["billing.renewal"]
    ran = [job.pk for jobs_run in results for job in jobs_run]
    assert ran and len(ran) == len(set(ran))  # no job ran twice


def test_two_renewals_at_once_apply_a_pending_downgrade_once(racer):
    owner = owner_principal(racer)
    _clock_to(racer, at(2035, 2, 10))
    committed(lambda: subscription_change(tenant=racer, plan_code="professional", actor=owner))
    committed(lambda: subscription_change(tenant=racer, plan_code="starter", actor=owner))
    period_end = at(2035, 3, 1)
    _clock_to(racer, period_end)
    results = in_threads(lambda: subscription_renew(tenant=racer, period_end=period_end),
                         lambda: subscription_renew(tenant=racer, period_end=period_end))
    assert not [r for r in results if isinstance(r, BaseException)], results
    assert results.count(None) == 1
    (renewal,) = Invoice.objects.filter(tenant=racer, reason="renewal")
    assert lines(renewal) == [("plan", 2900)]
    subscription = Subscription.objects.select_related("plan").get(tenant=racer)
    assert (subscription.plan.code, subscription.pending_plan_id) == ("starter", None)


def test_two_changes_to_the_same_plan_at_once_apply_once(racer):
    _clock_to(racer, at(2035, 2, 10, 6))
    owner = owner_principal(racer)
    results = in_threads(
        lambda: subscription_change(tenant=racer, plan_code="professional", actor=owner),
        lambda: subscription_change(tenant=racer, plan_code="professional", actor=owner))
    refused = [r for r in results if isinstance(r, BaseException)]
    assert len(refused) == 1 and isinstance(refused[0], Conflict) and refused[0].code == "same_plan"
    (change,) = Invoice.objects.filter(tenant=racer, reason="plan_change")
    # Feb 2035 has 28 days; 18 d 18 h remain: 2,900 and 9,900 x 1,620,000 / 2,419,200
    assert lines(change) == [("proration", -1942), ("proration", 6629)]
    subscription = Subscription.objects.select_related("plan").get(tenant=racer)
    assert (subscription.plan.code, subscription.pending_plan_id) == ("professional", None)


def test_two_different_changes_at_once_leave_a_consistent_subscription(racer):
    moment = at(2035, 2, 10, 6)
    _clock_to(racer, moment)
    owner = owner_principal(racer)
    results = in_threads(
        lambda: subscription_change(tenant=racer, plan_code="professional", actor=owner),
        lambda: subscription_change(tenant=racer, plan_code="enterprise", actor=owner))
    assert not [r for r in results if isinstance(r, BaseException)], results
    subscription = Subscription.objects.select_related("plan", "pending_plan").get(tenant=racer)
    changes = list(Invoice.objects.filter(tenant=racer, reason="plan_change").order_by("id"))
    prices = dict(Plan.objects.values_list("code", "price_cents"))

    def expected(old: str, new: str) -> list[tuple[str, int]]:
        return [(line.kind, line.amount_cents) for line in proration_lines(
            old_name=old, old_price_cents=prices[old], new_name=new, new_price_cents=prices[new],
            start=CONVERTED, end=at(2035, 3, 1), at=moment)]

    if len(changes) == 2:  # Professional won, then Enterprise was an upgrade from it
        assert [lines(i) for i in changes] == [expected("starter", "professional"),
                                               expected("professional", "enterprise")]
        assert (subscription.plan.code, subscription.pending_plan) == ("enterprise", None)
    else:  # Enterprise won; Professional was then a downgrade, waiting for the period end
        assert [lines(i) for i in changes] == [expected("starter", "enterprise")]
        assert (subscription.plan.code, subscription.pending_plan.code) == ("enterprise", "professional")
    for invoice in changes:
        assert invoice.total_cents == sum(amount for _kind, amount in lines(invoice))


# --- the same guarantees one after the other (in the test's transaction) --------------------

@pytest.mark.django_db
def test_a_renewal_run_again_for_the_same_period_does_nothing(alice):
    active_since(alice, "starter", at(2027, 1, 1))
    advance(alice, to=at(2027, 2, 1))
    (renewal,) = invoices(alice, reason="renewal")
    assert subscription_renew(tenant=alice, period_end=at(2027, 2, 1)) is None
    assert invoices(alice, reason="renewal") == [renewal]


@pytest.mark.django_db
def test_the_database_allows_one_renewal_invoice_per_subscription_and_period(alice):
    subscription = active_since(alice, "starter", at(2027, 1, 1))
    advance(alice, to=at(2027, 2, 1))
    with pytest.raises(IntegrityError), transaction.atomic():
        invoice_draft(tenant=alice, subscription=subscription, reason="renewal",
                      period_start=at(2027, 2, 1), period_end=at(2027, 3, 1), lines=[])
