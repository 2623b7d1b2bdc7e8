"""Every invoice renders to a PDF (SPEC §4): number, stamp, bill-to, lines and totals in
dollars from integer cents, with any tenant name, and never for a draft."""
from datetime import timedelta
from decimal import Decimal

import pytest

from aerolith import clock
from aerolith.errors import Conflict
from billing.decisions import LineDraft
from billing.models import Invoice
from billing.pdf import invoice_pdf, pdf_text
from billing.services.collection import invoice_pay, payment_method_attach
from billing.services.invoices import invoice_draft, invoice_finalize, invoice_void

from ..conftest import owner_principal


def make_invoice(tenant, lines=None, *, finalize=True) -> Invoice:
    now = clock.now(tenant)
    lines = lines or [
        LineDraft("plan", "Starter plan for the month", 2900, Decimal(1), Decimal(2900)),
        LineDraft("overage", "API calls above the allowance", 123456, Decimal(12345600),
                  Decimal("0.01")),
    ]
    invoice = invoice_draft(tenant=tenant, subscription=tenant.subscription, reason="manual",
                            period_start=now - timedelta(days=30), period_end=now, lines=lines)
    return invoice_finalize(invoice=invoice, actor="test", collect=False) if finalize else invoice


def text_of(invoice) -> str:
    data = invoice_pdf(invoice, compress=False)
    assert data.startswith(b"%PDF-")
    return data.decode("cp1252", errors="replace")


@pytest.mark.django_db
def test_pdf_shows_number_parties_lines_and_totals_in_dollars(alice):
    invoice = make_invoice(alice)
    text = text_of(invoice)
    for expected in (invoice.number, "Aerolith Cloud", "INVOICE", "Alice Ltd", "alice.",
                     "Starter plan for the month", "API calls above the allowance", "12,345,600",
                     "$0.0001", "$29.00", "$1,234.56", "Subtotal", "$1,263.56", "Credit applied",
                     "Amount paid", "$0.00", "Amount due", "Open", "Due", "Issued"):
        assert expected in text, expected
    assert "PAID" not in text and "VOID" not in text


@pytest.mark.django_db
def test_pdf_is_compressed_by_default_and_the_same_invoice_gives_the_same_file(alice):
    invoice = make_invoice(alice)
    data = invoice_pdf(invoice)
    assert data.startswith(b"%PDF-") and b"Starter plan for the month" not in data
    assert invoice_pdf(invoice) == data


@pytest.mark.django_db
def test_a_paid_invoice_is_stamped_and_lists_its_payment(alice):
    payment_method_attach(tenant=alice, gateway_id="pm_card_mastercard", actor=owner_principal(alice))
    invoice = make_invoice(alice)
    invoice_pay(tenant=alice, number=invoice.number, method="card", actor=owner_principal(alice))
    invoice.refresh_from_db()
    text = text_of(invoice)
    assert "PAID" in text and "Payments received" in text and "mastercard ending 4444" in text
    assert "Amount paid" in text and text.count("$1,263.56") >= 3  # subtotal, total, paid, payment


@pytest.mark.django_db
def test_void_and_uncollectible_invoices_are_stamped(alice):
    void = invoice_void(invoice=make_invoice(alice), actor="test")
    assert "VOID" in text_of(void)
    written_off = make_invoice(alice)
    Invoice.objects.filter(pk=written_off.pk).update(status="uncollectible")
    written_off.refresh_from_db()
    assert "UNCOLLECTIBLE" in text_of(written_off)


@pytest.mark.django_db
def test_credit_and_negative_lines_show_the_sign_before_the_dollar(alice):
    subscription = alice.subscription
    subscription.balance_cents = 500
    subscription.save(update_fields=["balance_cents"])
    invoice = make_invoice(alice, [
        LineDraft("proration", "Unused time on Starter", -1497, Decimal("0.516129"), Decimal(-2900)),
        LineDraft("proration", "Remaining time on Professional", 5110, Decimal("0.516129"), Decimal(9900)),
    ])
    text = text_of(invoice)
    assert "-$14.97" in text and "-$29.00" in text and "0.516129" in text
    assert "-$5.00" in text and "$36.13" in text and "$31.13" in text  # credit, subtotal, total


@pytest.mark.django_db
def test_names_outside_latin1_are_replaced_not_fatal(alice):
    alice.name = "Ünïcode Ltd ✓ 東京"
    alice.save(update_fields=["name"])
    invoice = make_invoice(alice, [LineDraft("adjustment", "Ŝpecial “quoted” – ﬁx ✓", 100)])
    data = invoice_pdf(invoice, compress=False)
    assert "Ünïcode Ltd ? ??".encode("cp1252") in data
    assert "Special “quoted” – fix ?".encode("cp1252") in data


def test_pdf_text_keeps_what_helvetica_shows_and_replaces_the_rest():
    assert pdf_text("Zürich € – ok") == "Zürich € – ok"
    assert pdf_text("Ŝ ﬁ ✓ 東\nx") == "S fi ? ? x"


@pytest.mark.django_db
def test_a_draft_has_no_pdf(alice):
    draft = make_invoice(alice, finalize=False)
    with pytest.raises(Conflict) as refused:
        invoice_pdf(draft)
    assert "finalise it first" in refused.value.explain()


@pytest.mark.django_db
def test_many_lines_flow_onto_more_pages(alice):
    lines = [LineDraft("adjustment", f"Adjustment number {i} with a long description that wraps "
                       "across the column because it says a great deal", 100 + i) for i in range(80)]
    text = text_of(make_invoice(alice, lines))
    assert "Adjustment number 79" in text and "page 2 of " in text
