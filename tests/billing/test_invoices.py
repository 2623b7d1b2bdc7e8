"""Invoices (SPEC §4): totals always equal the sum of lines (a hypothesis test through
invoice_draft + invoice_finalize, and the deferred trigger of migration billing 0008 that
refuses to commit a finalised invoice saying otherwise), and gapless numbers
AER-YYYY-NNNNNN taken from the tenant's clock."""
import pytest
from django.db import DatabaseError, IntegrityError, connection, transaction
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aerolith import clock
from aerolith.errors import Conflict
from billing.decisions import LineDraft
from billing.models import BalanceTransaction, Invoice, InvoiceCounter, InvoiceLine, Subscription
from billing.services.invoices import (
    balance_move,
    invoice_draft,
    invoice_finalize,
    invoice_mark_uncollectible,
    invoice_void,
)

from .lifecycle import advance, at, lines, trial_restart

KINDS = ["plan", "proration", "overage", "adjustment"]


def _draft(tenant, amounts, kinds=None) -> Invoice:
    now = clock.now(tenant)
    kinds = kinds or ["adjustment"] * len(amounts)
    return invoice_draft(tenant=tenant, subscription=Subscription.objects.get(tenant=tenant),
                         reason="manual", period_start=now, period_end=now,
                         lines=[LineDraft(kind, f"line {i}", amount)
                                for i, (kind, amount) in enumerate(zip(kinds, amounts, strict=True))])


def _finalized(tenant, amounts) -> Invoice:
    return invoice_finalize(invoice=_draft(tenant, amounts), collect=False)


def _balance_set(tenant, cents: int) -> None:
    subscription = Subscription.objects.select_for_update().get(tenant=tenant)
    if cents != subscription.balance_cents:
        balance_move(subscription=subscription, kind="staff_grant", description="test",
                     amount_cents=cents - subscription.balance_cents)


def _constraints_now():
    """Fire the deferred checks now rather than at a commit the test never makes."""
    with connection.cursor() as cursor:
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")


def _counter(year: int) -> int:
    return InvoiceCounter.objects.filter(year=year).values_list("last_number", flat=True).first() or 0


# --- totals equal the sum of lines ----------------------------------------------------------

line_lists = st.lists(st.tuples(st.sampled_from(KINDS), st.integers(-10**7, 10**7)), max_size=8)


@pytest.mark.django_db
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(drawn=line_lists, balance=st.integers(0, 3 * 10**7))
def test_finalised_totals_always_equal_the_sum_of_lines(alice, drawn, balance):
    _constraints_now()  # the database's own check runs after every statement too
    _balance_set(alice, balance)
    ledger_before = sum(BalanceTransaction.objects.filter(tenant=alice).values_list("amount_cents", flat=True))
    invoice = invoice_finalize(invoice=_draft(alice, [a for _k, a in drawn], [k for k, _a in drawn]),
                               collect=False)
    invoice.refresh_from_db()
    stored = lines(invoice)
    credit_lines = [amount for kind, amount in stored if kind == "credit"]
    assert invoice.total_cents == sum(amount for _kind, amount in stored)
    assert invoice.subtotal_cents == sum(amount for _kind, amount in drawn)
    assert invoice.total_cents == invoice.subtotal_cents - invoice.credit_applied_cents
    assert credit_lines == ([-invoice.credit_applied_cents] if invoice.credit_applied_cents else [])
    assert 0 <= invoice.credit_applied_cents <= balance
    assert invoice.amount_due_cents == max(invoice.total_cents, 0) >= 0
    assert invoice.status == ("paid" if invoice.amount_due_cents == 0 else "open")
    after = Subscription.objects.get(tenant=alice).balance_cents
    assert after == balance - invoice.credit_applied_cents + max(-invoice.total_cents, 0)
    ledger_after = sum(BalanceTransaction.objects.filter(tenant=alice).values_list("amount_cents", flat=True))
    assert ledger_after - ledger_before == after - balance


@pytest.mark.django_db
@pytest.mark.parametrize("tamper", [
    lambda invoice: InvoiceLine.objects.create(invoice=invoice, kind="adjustment",
                                               description="slipped in", amount_cents=1),
    lambda invoice: InvoiceLine.objects.filter(invoice=invoice, kind="plan").update(amount_cents=2899),
    lambda invoice: InvoiceLine.objects.filter(invoice=invoice, kind="overage").delete(),
    # consistent with the row's own check (total = subtotal − credit), not with the lines
    lambda invoice: Invoice.objects.filter(pk=invoice.pk).update(subtotal_cents=3000, total_cents=3000),
], ids=["line added", "line changed", "line deleted", "total changed"])
def test_the_database_refuses_a_finalised_invoice_whose_lines_do_not_sum_to_its_total(alice, tamper):
    invoice = invoice_finalize(invoice=_draft(alice, [2900, 125], ["plan", "overage"]), collect=False)
    _constraints_now()  # the invoice as finalised passes
    with pytest.raises((IntegrityError, DatabaseError)) as refused, transaction.atomic():
        tamper(invoice)
    assert "lines sum to" in str(refused.value)
    # deferred: the same change passes the statement and fails when checks are due
    with connection.cursor() as cursor:
        cursor.execute("SET CONSTRAINTS ALL DEFERRED")
    with pytest.raises((IntegrityError, DatabaseError)), transaction.atomic():
        tamper(invoice)
        _constraints_now()
    assert Invoice.objects.get(pk=invoice.pk).total_cents == 3025 == sum(a for _k, a in lines(invoice))


@pytest.mark.django_db
def test_a_mismatch_mended_before_the_commit_is_accepted_and_drafts_are_free(alice):
    invoice = invoice_finalize(invoice=_draft(alice, [2900]), collect=False)
    line = invoice.lines.get()
    with transaction.atomic():
        InvoiceLine.objects.filter(pk=line.pk).update(amount_cents=100)
        InvoiceLine.objects.create(invoice=invoice, position=1, kind="adjustment",
                                   description="rest", amount_cents=2800)
        _constraints_now()
    draft = _draft(alice, [10, 20])
    Invoice.objects.filter(pk=draft.pk).update(subtotal_cents=1, total_cents=1)
    _constraints_now()
    assert sum(a for _k, a in lines(invoice)) == 2900


# --- gapless numbers ------------------------------------------------------------------------

@pytest.mark.django_db
def test_numbers_increase_by_one_per_finalisation_and_a_rollback_gives_its_number_back(alice):
    trial_restart(alice, "starter", at(2031, 6, 1))
    base = _counter(2031)
    first, second = _finalized(alice, [100]), _finalized(alice, [200])
    assert (first.number, second.number) == (f"AER-2031-{base + 1:06d}", f"AER-2031-{base + 2:06d}")

    undone = _draft(alice, [300])
    with pytest.raises(RuntimeError), transaction.atomic():
        invoice_finalize(invoice=undone, collect=False)
        raise RuntimeError("the finalising transaction fails after taking a number")
    undone.refresh_from_db()
    assert (undone.status, undone.number) == ("draft", None)
    with pytest.raises(Conflict):  # a refused finalisation takes no number either
        invoice_finalize(invoice=first, collect=False)
    third = invoice_finalize(invoice=undone, collect=False)
    assert third.number == f"AER-2031-{base + 3:06d}"
    assert _counter(2031) == base + 3


@pytest.mark.django_db
def test_the_numbers_year_is_the_tenants_clock_year(alice, bob):
    trial_restart(alice, "starter", at(2031, 12, 31, 23, 59, 59))
    base_2031, base_2032 = _counter(2031), _counter(2032)
    assert _finalized(alice, [100]).number == f"AER-2031-{base_2031 + 1:06d}"
    advance(alice, seconds=1)
    assert _finalized(alice, [100]).number == f"AER-2032-{base_2032 + 1:06d}"
    # bob has no test clock: his year is the real one, with its own sequence
    wall_year = clock.wall_now().year
    base_wall = _counter(wall_year)
    assert _finalized(bob, [100]).number == f"AER-{wall_year}-{base_wall + 1:06d}"
    assert _finalized(alice, [100]).number == f"AER-2032-{base_2032 + 2:06d}"


# --- closing invoices keeps the books straight -----------------------------------------------

@pytest.mark.django_db
def test_voiding_returns_the_credit_the_invoice_used_and_owes_nothing(alice):
    _balance_set(alice, 1000)
    invoice = _finalized(alice, [2900])
    assert lines(invoice) == [("adjustment", 2900), ("credit", -1000)]
    assert (invoice.total_cents, invoice.amount_due_cents) == (1900, 1900)
    assert Subscription.objects.get(tenant=alice).balance_cents == 0
    invoice_void(invoice=invoice, actor="test")
    invoice.refresh_from_db()
    assert (invoice.status, invoice.amount_due_cents, invoice.total_cents) == ("void", 0, 1900)
    assert Subscription.objects.get(tenant=alice).balance_cents == 1000
    with pytest.raises(Conflict):
        invoice_void(invoice=invoice, actor="test")
    with pytest.raises(Conflict):
        invoice_mark_uncollectible(invoice=invoice, actor="test")
    _constraints_now()
