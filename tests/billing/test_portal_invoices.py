"""The portal's invoices (SPEC §11): the list, an invoice with its lines, totals and
payments, paying it by card (a decline is a form error), the PDF download; and nothing of
one organisation's invoices reaches a member of another (charlie sees nothing)."""
from decimal import Decimal

import pytest
from django.test import Client

from billing.decisions import LineDraft
from billing.models import Invoice, Payment, Subscription
from billing.services.collection import invoice_pay, payment_method_attach
from billing.services.invoices import invoice_void
from tests.billing.test_pdf import make_invoice
from tests.conftest import host_of, owner_principal
from tests.conftest import portal_member as member
from tests.conftest import portal_user as portal


def html(response) -> str:
    return response.content.decode()


def card(tenant, gateway_id="pm_card_visa"):
    return payment_method_attach(tenant=tenant, gateway_id=gateway_id, actor=owner_principal(tenant))


def snapshot(invoice) -> tuple:
    invoice.refresh_from_db()
    return (invoice.status, invoice.amount_paid_cents, invoice.amount_due_cents, invoice.attempt_count,
            Payment.objects.filter(invoice=invoice).count(),
            Subscription.objects.get(tenant_id=invoice.tenant_id).status)


# --- list and detail -----------------------------------------------------------------------

@pytest.mark.django_db
def test_invoice_list_shows_number_date_total_status_due_pdf_and_pay(alice):
    open_invoice = make_invoice(alice)
    void = invoice_void(invoice=make_invoice(alice), actor="test")
    page = portal(alice).get("/invoices")
    assert page.status_code == 200
    text = html(page)
    for expected in (open_invoice.number, void.number, "$1,263.56", "Open", "Void",
                     f'href="/invoices/{open_invoice.number}/pdf"',
                     f'action="/invoices/{open_invoice.number}/pay"',
                     f"{open_invoice.finalized_at:%-d %b %Y}"):
        assert expected in text, expected
    assert f'action="/invoices/{void.number}/pay"' not in text  # nothing to pay


@pytest.mark.django_db
def test_an_empty_invoice_list_says_when_the_first_invoice_comes(charlie):
    text = html(portal(charlie).get("/invoices"))
    assert "No invoices yet" in text


@pytest.mark.django_db
def test_invoice_page_shows_lines_totals_and_a_pay_button(alice):
    card(alice)
    invoice = make_invoice(alice)
    page = portal(alice).get(f"/invoices/{invoice.number}")
    assert page.status_code == 200
    text = html(page)
    for expected in (f"Invoice {invoice.number}", "Starter plan for the month", "API calls above the allowance",
                     "12,345,600", "$0.0001", "$29.00", "$1,234.56", "Subtotal", "$1,263.56",
                     "Pay by card", "Charge $1,263.56 to Visa ···· 4242", "No payments yet.",
                     f'href="/invoices/{invoice.number}/pdf"'):
        assert expected in text, expected


@pytest.mark.django_db
@pytest.mark.parametrize("role", ["viewer", "developer"])
def test_members_who_cannot_pay_see_invoices_without_the_pay_form(alice, role):
    invoice = make_invoice(alice)
    client = member(alice, role)
    assert invoice.number in html(client.get("/invoices"))
    assert f'action="/invoices/{invoice.number}/pay"' not in html(client.get("/invoices"))
    detail = html(client.get(f"/invoices/{invoice.number}"))
    assert "$1,263.56" in detail and "Pay by card" not in detail
    assert f"Your role ({role}) cannot pay invoices" in detail
    before = snapshot(invoice)
    assert client.post(f"/invoices/{invoice.number}/pay").status_code == 403
    assert snapshot(invoice) == before
    assert client.get(f"/invoices/{invoice.number}/pdf").status_code == 200


# --- paying --------------------------------------------------------------------------------

@pytest.mark.django_db
def test_paying_by_card_settles_the_invoice(alice):
    card(alice, "pm_card_mastercard")
    invoice = make_invoice(alice)
    client = member(alice, "billing")
    response = client.post(f"/invoices/{invoice.number}/pay")
    assert response.status_code == 302 and response["Location"] == f"/invoices/{invoice.number}"
    invoice.refresh_from_db()
    assert invoice.status == "paid" and invoice.amount_due_cents == 0
    text = html(client.get(response["Location"]))
    assert f"Paid $1,263.56 for invoice {invoice.number}. Thank you." in text
    assert "Mastercard ···· 4444" in text and "Succeeded" in text and "Pay by card" not in text


@pytest.mark.django_db
def test_a_declined_card_is_a_form_error_that_says_what_to_do(alice):
    card(alice, "pm_card_chargeDeclinedInsufficientFunds")
    invoice = make_invoice(alice)
    page = portal(alice).post(f"/invoices/{invoice.number}/pay")
    assert page.status_code == 402
    text = html(page)
    assert 'class="errorlist"' in text
    assert "Your card has insufficient funds. Add another card on the Billing page" in text
    invoice.refresh_from_db()
    assert invoice.status == "open" and invoice.amount_due_cents == 126356
    assert Payment.objects.get(invoice=invoice).status == "failed"  # the attempt is recorded


@pytest.mark.django_db
def test_past_due_billing_page_offers_to_pay_and_paying_restores_the_account(alice):
    card(alice, "pm_card_chargeDeclined")
    invoice = make_invoice(alice)
    first = portal(alice).post(f"/invoices/{invoice.number}/pay")
    assert first.status_code == 402
    assert Subscription.objects.get(tenant=alice).status == "past_due"
    client = portal(alice)
    text = html(client.get("/billing"))
    assert "A payment failed: <strong>$1,263.56</strong> is due." in text
    assert f"Pay $1,263.56 ({invoice.number})" in text
    client.post("/billing/cards", {"payment_method": "pm_card_visa", "make_default": "on"})
    assert client.post(f"/invoices/{invoice.number}/pay").status_code == 302
    invoice.refresh_from_db()
    assert invoice.status == "paid"
    assert Subscription.objects.get(tenant=alice).status != "past_due"


@pytest.mark.django_db
def test_paying_a_paid_or_void_invoice_or_without_a_card_is_refused(alice):
    invoice = make_invoice(alice)
    before = snapshot(invoice)
    page = portal(alice).post(f"/invoices/{invoice.number}/pay")
    assert page.status_code == 400 and "No card on file: add one on the Billing page first." in html(page)
    assert snapshot(invoice) == before

    card(alice)
    invoice_pay(tenant=alice, number=invoice.number, method="card", actor=owner_principal(alice))
    before = snapshot(invoice)
    page = portal(alice).post(f"/invoices/{invoice.number}/pay")
    assert page.status_code == 400
    assert f"Invoice {invoice.number} is paid and owes nothing." in html(page)
    assert snapshot(invoice) == before

    void = invoice_void(invoice=make_invoice(alice), actor="test")
    before = snapshot(void)
    page = portal(alice).post(f"/invoices/{void.number}/pay")
    assert page.status_code == 400 and "is void and owes nothing" in html(page)
    assert snapshot(void) == before


@pytest.mark.django_db
def test_unknown_and_draft_numbers_are_404(alice):
    draft = make_invoice(alice, [LineDraft("adjustment", "Not yet", 100, Decimal(1))], finalize=False)
    client = portal(alice)
    for path in ("/invoices/AER-2099-999999", f"/invoices/{draft.pk}", "/invoices/None"):
        assert client.get(path).status_code == 404
        assert client.get(f"{path}/pdf").status_code == 404
        assert client.post(f"{path}/pay").status_code == 404
    assert Invoice.objects.get(pk=draft.pk).status == "draft"


# --- PDF -----------------------------------------------------------------------------------

@pytest.mark.django_db
def test_pdf_downloads_as_an_attachment_named_after_the_number(alice):
    invoice = make_invoice(alice)
    response = portal(alice).get(f"/invoices/{invoice.number}/pdf")
    assert response.status_code == 200
    assert response["Content-Type"] == "application/pdf"
    assert response["Content-Disposition"] == f'attachment; filename="{invoice.number}.pdf"'
    assert response.content.startswith(b"%PDF-")


# --- isolation -----------------------------------------------------------------------------

@pytest.mark.django_db
def test_another_organisations_members_see_nothing_of_alices_invoices(alice, bob, charlie):
    card(alice)
    invoice = make_invoice(alice)
    bob_invoice = make_invoice(bob)
    before = snapshot(invoice)
    # a member of another tenant on alice's domain: 404 everywhere
    for intruder in ("owner@bob.test", "owner@charlie.test"):
        client = portal(alice, intruder)
        for path in ("/invoices", f"/invoices/{invoice.number}", f"/invoices/{invoice.number}/pdf"):
            response = client.get(path)
            assert response.status_code == 404, (intruder, path)
            assert invoice.number not in html(response)
        assert client.post(f"/invoices/{invoice.number}/pay").status_code == 404
    # on their own domain, alice's number does not exist
    for slug in ("bob", "charlie"):
        client = portal(bob if slug == "bob" else charlie)
        assert invoice.number not in html(client.get("/invoices"))
        assert client.get(f"/invoices/{invoice.number}").status_code == 404
        assert client.get(f"/invoices/{invoice.number}/pdf").status_code == 404
        assert client.post(f"/invoices/{invoice.number}/pay").status_code == 404
    assert snapshot(invoice) == before
    # and bob still sees his own
    assert bob_invoice.number in html(portal(bob).get("/invoices"))
    assert invoice.number not in html(portal(bob).get(f"/invoices/{bob_invoice.number}"))


@pytest.mark.django_db
def test_invoices_need_sign_in(alice):
    invoice = make_invoice(alice)
    client = Client(HTTP_HOST=host_of("alice"))
    for path in ("/invoices", f"/invoices/{invoice.number}", f"/invoices/{invoice.number}/pdf"):
        response = client.get(path)
        assert response.status_code == 302 and "/login" in response["Location"]
    assert client.post(f"/invoices/{invoice.number}/pay").status_code == 302
    assert not Payment.objects.filter(invoice=invoice).exists()
