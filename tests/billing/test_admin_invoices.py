"""Invoice actions in the staff console call the services, report what they did per
invoice, and refuse bad input with a message and nothing changed (SPEC §12)."""
import io
import zipfile
from datetime import timedelta

import pytest
from django.contrib.messages import get_messages

from aerolith import clock
from billing.admin.common import dollars_to_cents
from billing.models import BalanceTransaction, Invoice, InvoiceLine, Payment, Subscription
from tenants.models import AuditEvent, ScheduledJob

from .test_admin import console_for, make_invoice, make_paid_invoice, reverse, staff_user

LIST = "/admin/billing/invoice/"


@pytest.fixture
def staff(db):
    return staff_user()


@pytest.fixture
def console(staff):
    return console_for(staff)


def act(console, action, *invoices, follow=True):
    return console.post(LIST, {"action": action, "_selected_action": [i.pk for i in invoices]},
                        follow=follow)


def messages_of(response) -> list[str]:
    return [str(m) for m in get_messages(response.wsgi_request)]


def snapshot(invoice) -> dict:
    return Invoice.objects.values().get(pk=invoice.pk)


# --- finalise, void, write off ---------------------------------------------------------------

def test_finalise_numbers_a_draft_and_says_so(console, alice):
    draft = make_invoice(alice, 4200, finalize=False)
    response = act(console, "finalise", draft)
    draft.refresh_from_db()
    assert draft.status == "open" and draft.number.startswith("AER-")
    assert f"Draft #{draft.pk}: finalised as {draft.number}: total 42.00 USD, 42.00 USD due." in messages_of(response)
    # alice has no card: a manual invoice waits for a transfer instead of starting dunning
    assert not ScheduledJob.objects.filter(tenant=alice, kind="billing.invoice_charge").exists()


def test_finalising_a_manual_invoice_charges_the_card_on_file(console, alice):
    from billing.services.collection import payment_method_attach

    payment_method_attach(tenant=alice, gateway_id="pm_card_visa", actor="test")
    draft = make_invoice(alice, 4200, finalize=False)
    act(console, "finalise", draft)
    assert ScheduledJob.objects.filter(tenant=alice, kind="billing.invoice_charge", key=f"{draft.pk}:0").exists()


def test_finalise_reports_each_invoice_and_refuses_non_drafts(console, alice, bob):
    draft = make_invoice(alice, 1000, finalize=False)
    already = make_invoice(bob, 2000)
    before = snapshot(already)
    response = act(console, "finalise", draft, already)
    found = messages_of(response)
    assert any(m.startswith(f"Draft #{draft.pk}: finalised as AER-") for m in found)
    assert f"{already.number}: Invoice {already.number} is open; only drafts are finalised." in found
    assert snapshot(already) == before


def test_finalise_page_confirms_then_finalises(console, alice):
    draft = make_invoice(alice, 1500, finalize=False)
    url = reverse("admin:billing_invoice_finalise", [draft.pk])
    page = console.get(url)
    assert page.status_code == 200 and "next invoice number" in page.content.decode()
    response = console.post(url, follow=True)
    draft.refresh_from_db()
    assert draft.status == "open"
    assert any("finalised as" in m for m in messages_of(response))
    again = console.get(url, follow=True)  # a finalised invoice cannot be finalised again
    assert "only drafts are finalised" in " ".join(messages_of(again))


def test_void_closes_an_open_invoice(console, alice):
    invoice = make_invoice(alice, 3000)
    response = act(console, "void", invoice)
    invoice.refresh_from_db()
    assert invoice.status == "void" and invoice.amount_due_cents == 0
    assert f"{invoice.number}: voided." in messages_of(response)


def test_void_of_a_paid_invoice_is_refused_and_nothing_changes(console, bob):
    paid = make_paid_invoice(bob, 9900)
    before = snapshot(paid)
    response = act(console, "void", paid)
    assert response.status_code == 200
    assert f"{paid.number}: Invoice {paid.number} is paid; only open invoices can be voided." in messages_of(response)
    assert snapshot(paid) == before


def test_void_of_a_partly_paid_invoice_says_to_refund_first(console, alice):
    invoice = make_invoice(alice, 5000)
    console.post(reverse("admin:billing_invoice_record_transfer", [invoice.pk]), transfer("10.00"))
    before = snapshot(invoice)
    response = act(console, "void", invoice)
    assert "refund it to the balance before voiding" in " ".join(messages_of(response))
    assert snapshot(invoice) == before


def test_mark_uncollectible_writes_off_and_refuses_drafts(console, alice):
    invoice = make_invoice(alice, 3000)
    draft = make_invoice(alice, 100, finalize=False)
    response = act(console, "mark_uncollectible", invoice, draft)
    invoice.refresh_from_db()
    draft.refresh_from_db()
    assert invoice.status == "uncollectible" and invoice.amount_due_cents == 3000
    assert draft.status == "draft"
    found = messages_of(response)
    assert f"{invoice.number}: written off as uncollectible; 30.00 USD stays due if paid later." in found
    assert f"Draft #{draft.pk}: Invoice Draft #{draft.pk} is draft; only open invoices can be written off." in found


# --- PDF -------------------------------------------------------------------------------------

def test_pdf_of_one_invoice_is_a_pdf(console, alice):
    invoice = make_invoice(alice, 2500)
    response = act(console, "download_pdf", invoice, follow=False)
    assert response.status_code == 200 and response["Content-Type"] == "application/pdf"
    assert response["Content-Disposition"] == f'attachment; filename="{invoice.number}.pdf"'
    assert response.content.startswith(b"%PDF")
    page = console.get(reverse("admin:billing_invoice_pdf", [invoice.pk]))
    assert page.status_code == 200 and page.content.startswith(b"%PDF")


def test_pdf_of_several_invoices_is_a_zip_and_drafts_are_left_out(console, alice, bob):
    first, second = make_invoice(alice, 2500), make_paid_invoice(bob, 9900)
    draft = make_invoice(alice, 100, finalize=False)
    response = act(console, "download_pdf", first, second, draft, follow=False)
    assert response["Content-Type"] == "application/zip"
    names = zipfile.ZipFile(io.BytesIO(response.content)).namelist()
    assert sorted(names) == sorted([f"{first.number}.pdf", f"{second.number}.pdf"])
    assert any("A draft invoice has no PDF" in m for m in messages_of(response))


def test_pdf_of_only_a_draft_explains_and_returns_to_the_list(console, alice):
    draft = make_invoice(alice, 100, finalize=False)
    response = act(console, "download_pdf", draft)
    assert response.status_code == 200
    assert f"Draft #{draft.pk}: A draft invoice has no PDF; finalise it first." in messages_of(response)


# --- bank transfers --------------------------------------------------------------------------

def transfer(amount, reference="NL91-2026-0042", received_on=None):
    return {"amount": amount, "reference": reference,
            "received_on": (received_on or clock.wall_now().date()).isoformat()}


def test_record_transfer_action_opens_the_form_for_one_invoice(console, alice, bob):
    invoice = make_invoice(alice, 5000)
    response = act(console, "record_bank_transfer", invoice, follow=False)
    assert response.status_code == 302
    assert response["Location"] == reverse("admin:billing_invoice_record_transfer", [invoice.pk])
    other = make_invoice(bob, 100)
    response = act(console, "record_bank_transfer", invoice, other)
    assert "Select exactly one invoice to record a bank transfer against." in messages_of(response)


def test_partial_transfer_leaves_the_rest_due_then_the_rest_pays_it(console, staff, alice):
    invoice = make_invoice(alice, 5000)
    url = reverse("admin:billing_invoice_record_transfer", [invoice.pk])
    response = console.post(url, transfer("20.00"), follow=True)
    invoice.refresh_from_db()
    assert invoice.status == "open" and invoice.amount_paid_cents == 2000 and invoice.amount_due_cents == 3000
    assert (f"{invoice.number}: recorded a bank transfer of 20.00 USD (reference NL91-2026-0042); "
            "30.00 USD is still due.") in messages_of(response)
    payment = Payment.objects.get(invoice=invoice)
    assert payment.method == "bank_transfer" and payment.recorded_by == staff
    assert payment.reference == "NL91-2026-0042" and payment.received_on == clock.wall_now().date()
    response = console.post(url, transfer("$30", reference="NL91-2026-0043"), follow=True)
    invoice.refresh_from_db()
    assert invoice.status == "paid" and invoice.amount_due_cents == 0
    assert any(m.endswith("paid in full.") for m in messages_of(response))
    assert AuditEvent.objects.filter(tenant=alice, action="payment.recorded").count() == 2


@pytest.mark.parametrize("data, message", [
    (transfer("-5.00"), "Give a positive amount."),
    (transfer("0"), "Give a non-zero amount."),
    (transfer("0.00"), "Give a non-zero amount."),
    (transfer("50.01"), "Only 50.00 USD is due; record at most that."),
    (transfer("12.345"), "at most two decimals"),
    (transfer("abc"), "at most two decimals"),
    (transfer("1,000.00"), "at most two decimals"),
    (transfer("1e3"), "at most two decimals"),
    (transfer(""), "This field is required."),
    (transfer("10.00", reference="  "), "This field is required."),
    (transfer("10.00", received_on=clock.wall_now().date() + timedelta(days=3)),
     "The money cannot arrive in the future."),
    ({"amount": "10.00", "reference": "X", "received_on": "31/02/2026"}, "Enter a valid date."),
])
def test_bad_transfers_are_refused_with_a_message_and_nothing_changes(console, alice, data, message):
    invoice = make_invoice(alice, 5000)
    before, payments = snapshot(invoice), Payment.objects.count()
    response = console.post(reverse("admin:billing_invoice_record_transfer", [invoice.pk]), data)
    assert response.status_code == 200
    html = response.content.decode()
    assert "Please correct the errors below." in html and message in html
    assert snapshot(invoice) == before and Payment.objects.count() == payments


def test_transfer_against_a_paid_invoice_is_refused(console, bob):
    paid = make_paid_invoice(bob, 9900)
    payments = Payment.objects.count()
    url = reverse("admin:billing_invoice_record_transfer", [paid.pk])
    for response in (console.get(url, follow=True), console.post(url, transfer("1.00"), follow=True)):
        assert f"{paid.number} is paid and owes nothing." in messages_of(response)
    assert Payment.objects.count() == payments


def test_transfer_to_an_invoice_voided_meanwhile_is_refused_by_the_service(console, alice, monkeypatch):
    invoice = make_invoice(alice, 5000)
    from billing.admin import invoice_pages
    from billing.services.invoices import invoice_void

    real = invoice_pages.payment_record_manual

    def voided_first(**kwargs):  # another staff member voids it between page and submit
        invoice_void(invoice=kwargs["invoice"], actor="other")
        return real(**kwargs)

    monkeypatch.setattr(invoice_pages, "payment_record_manual", voided_first)
    response = console.post(reverse("admin:billing_invoice_record_transfer", [invoice.pk]),
                            transfer("10.00"), follow=True)
    assert f"{invoice.number}: Invoice {invoice.number} is void and owes nothing." in messages_of(response)
    assert not Payment.objects.filter(invoice=invoice).exists()


# --- refunds ---------------------------------------------------------------------------------

def test_refund_to_balance_credits_the_tenant(console, bob):
    paid = make_paid_invoice(bob, 9900)
    response = act(console, "refund_to_balance", paid, follow=False)
    assert response["Location"] == reverse("admin:billing_invoice_refund", [paid.pk])
    response = console.post(reverse("admin:billing_invoice_refund", [paid.pk]),
                            {"amount": "19.50", "reason": "outage credit"}, follow=True)
    paid.refresh_from_db()
    assert paid.amount_refunded_cents == 1950
    assert Subscription.objects.get(tenant=bob).balance_cents == 1950
    entry = BalanceTransaction.objects.get(invoice=paid)
    assert entry.kind == "refund_to_balance" and "outage credit" in entry.description
    assert (f"{paid.number}: refunded 19.50 USD to the tenant's balance, which now holds 19.50 USD."
            in messages_of(response))


@pytest.mark.parametrize("data, message", [
    ({"amount": "99.01", "reason": "x"}, "Refund between 0.01 and 99.00 USD"),
    ({"amount": "-1", "reason": "x"}, "Give a positive amount."),
    ({"amount": "0", "reason": "x"}, "Give a non-zero amount."),
    ({"amount": "1.001", "reason": "x"}, "at most two decimals"),
    ({"amount": "10", "reason": ""}, "This field is required."),
])
def test_bad_refunds_are_refused_and_nothing_changes(console, bob, data, message):
    paid = make_paid_invoice(bob, 9900)
    before = snapshot(paid)
    response = console.post(reverse("admin:billing_invoice_refund", [paid.pk]), data)
    assert response.status_code == 200 and message in response.content.decode()
    assert snapshot(paid) == before
    assert Subscription.objects.get(tenant=bob).balance_cents == 0


def test_refund_more_than_remains_after_an_earlier_refund_is_refused(console, bob):
    paid = make_paid_invoice(bob, 9900)
    url = reverse("admin:billing_invoice_refund", [paid.pk])
    console.post(url, {"amount": "90.00", "reason": "first"})
    response = console.post(url, {"amount": "9.01", "reason": "second"})
    assert "Refund between 0.01 and 9.00 USD" in response.content.decode()
    paid.refresh_from_db()
    assert paid.amount_refunded_cents == 9000


def test_refund_of_an_unpaid_invoice_is_refused(console, alice):
    invoice = make_invoice(alice, 5000)
    response = console.get(reverse("admin:billing_invoice_refund", [invoice.pk]), follow=True)
    assert f"{invoice.number} has nothing paid that is not already refunded." in messages_of(response)


# --- manual invoices and draft adjustments ---------------------------------------------------

def add_form(organisation, lines, **fields):
    now = clock.wall_now()
    data = {"tenant": organisation.pk, "period_start_0": f"{now:%Y-%m-%d}", "period_start_1": "00:00:00",
            "period_end_0": f"{now:%Y-%m-%d}", "period_end_1": "00:00:00",
            "adjustments-TOTAL_FORMS": str(len(lines)), "adjustments-INITIAL_FORMS": "0",
            "adjustments-MIN_NUM_FORMS": "1", "adjustments-MAX_NUM_FORMS": "1000", **fields}
    for index, (description, amount) in enumerate(lines):
        data[f"adjustments-{index}-description"] = description
        data[f"adjustments-{index}-amount"] = amount
    return data


def test_staff_make_a_manual_draft_then_finalise_it(console, alice):
    response = console.post(reverse("admin:billing_invoice_add"),
                            add_form(alice, [("Migration assistance", "150.00"), ("Goodwill", "-25.50")]))
    assert response.status_code == 302, response.content.decode()[:3000]
    invoice = Invoice.objects.get(tenant=alice, reason="manual")
    assert invoice.status == "draft" and invoice.subtotal_cents == invoice.total_cents == 12450
    assert list(invoice.lines.values_list("kind", "description", "amount_cents")) == [
        ("adjustment", "Migration assistance", 15000), ("adjustment", "Goodwill", -2550)]
    assert AuditEvent.objects.filter(tenant=alice, action="invoice.draft_created").exists()
    act(console, "finalise", invoice)
    invoice.refresh_from_db()
    assert invoice.status == "open" and invoice.amount_due_cents == 12450 and invoice.number


@pytest.mark.parametrize("lines, fields, message", [
    ([], {}, "Please submit at least 1 form."),
    ([("Setup", "12.345")], {}, "at most two decimals"),
    ([("Setup", "0")], {}, "Give a non-zero amount."),
    ([("", "10")], {}, "This field is required."),
    ([("Setup", "10")], {"tenant": ""}, "This field is required."),
    ([("Setup", "10")], {"period_end_0": "2000-01-01"}, "The period ends before it starts."),
])
def test_bad_manual_invoices_are_refused(console, alice, lines, fields, message):
    response = console.post(reverse("admin:billing_invoice_add"), add_form(alice, lines, **fields))
    assert response.status_code == 200 and message in response.content.decode()
    assert not Invoice.objects.filter(reason="manual").exists()


def draft_change_form(invoice, adjustments, fixed_count=0):
    lines = list(invoice.lines.filter(kind="adjustment").order_by("position", "id"))
    data = {"adjustments-TOTAL_FORMS": str(len(adjustments)), "adjustments-INITIAL_FORMS": str(len(lines)),
            "adjustments-MIN_NUM_FORMS": "0", "adjustments-MAX_NUM_FORMS": "1000"}
    if fixed_count:
        data.update({"lines-TOTAL_FORMS": str(fixed_count), "lines-INITIAL_FORMS": str(fixed_count),
                     "lines-MIN_NUM_FORMS": "0", "lines-MAX_NUM_FORMS": "1000"})
    for index, (description, amount, delete) in enumerate(adjustments):
        data[f"adjustments-{index}-description"] = description
        data[f"adjustments-{index}-amount"] = amount
        data[f"adjustments-{index}-invoice"] = invoice.pk
        if index < len(lines):
            data[f"adjustments-{index}-id"] = lines[index].pk
        if delete:
            data[f"adjustments-{index}-DELETE"] = "on"
    return data


def test_a_drafts_adjustments_are_edited_and_its_totals_follow(console, alice):
    draft = make_invoice(alice, 1000, finalize=False, description="Setup")
    url = reverse("admin:billing_invoice_change", [draft.pk])
    assert "Adjustment lines" in console.get(url).content.decode()
    response = console.post(url, draft_change_form(draft, [("Setup", "10.00", True),
                                                           ("Training day", "800.00", False)]))
    assert response.status_code == 302, response.content.decode()[:3000]
    draft.refresh_from_db()
    assert list(draft.lines.values_list("description", "amount_cents")) == [("Training day", 80000)]
    assert draft.subtotal_cents == draft.total_cents == 80000
    assert AuditEvent.objects.filter(tenant=alice, action="invoice.draft_adjusted").exists()


def test_a_renewal_drafts_billing_lines_stay_fixed(console, alice):
    subscription = Subscription.objects.get(tenant=alice)
    from billing.decisions import LineDraft
    from billing.services.invoices import invoice_draft

    now = clock.now(alice)
    draft = invoice_draft(tenant=alice, subscription=subscription, reason="renewal", period_start=now,
                          period_end=now, lines=[LineDraft("plan", "Starter plan", 2900)])
    url = reverse("admin:billing_invoice_change", [draft.pk])
    data = draft_change_form(draft, [("Extra support", "5.00", False)], fixed_count=1)
    data["lines-0-id"] = draft.lines.get().pk
    data["lines-0-invoice"] = draft.pk
    data["lines-0-amount_cents"] = "1"  # not a field of the fixed lines: ignored
    response = console.post(url, data)
    assert response.status_code == 302, response.content.decode()[:3000]
    draft.refresh_from_db()
    assert sorted(draft.lines.values_list("kind", "amount_cents")) == [("adjustment", 500), ("plan", 2900)]
    assert draft.total_cents == 3400


def test_a_finalised_invoice_cannot_be_edited(console, alice):
    invoice = make_invoice(alice, 5000)
    url = reverse("admin:billing_invoice_change", [invoice.pk])
    html = console.get(url).content.decode()
    assert 'name="adjustments-0-amount"' not in html and "Consulting" in html
    response = console.post(url, draft_change_form(invoice, [("Free money", "-50.00", False)]))
    assert response.status_code == 403
    assert list(invoice.lines.values_list("amount_cents", flat=True)) == [5000]
    assert console.get(reverse("admin:billing_invoice_delete", [invoice.pk])).status_code == 403


def test_adjusting_a_draft_finalised_meanwhile_is_refused(console, alice):
    from aerolith.errors import Conflict
    from billing.services.invoices import invoice_adjustments_set, invoice_finalize

    draft = make_invoice(alice, 1000, finalize=False)
    invoice_finalize(invoice=draft, actor="test", collect=False)
    with pytest.raises(Conflict, match="only drafts can be adjusted"):
        invoice_adjustments_set(invoice=draft, adjustments=[], actor="test")
    assert InvoiceLine.objects.filter(invoice=draft).count() == 1


# --- money as staff type it ------------------------------------------------------------------

@pytest.mark.parametrize("text, cents", [
    ("12", 1200), ("12.3", 1230), ("12.34", 1234), ("$12.34", 1234), (" 0.01 ", 1),
    ("9999999999.99", 999999999999), ("0.10", 10),
])
def test_dollars_become_exact_cents(text, cents):
    assert dollars_to_cents(text) == cents


@pytest.mark.parametrize("text", ["12.345", "abc", "", "1,000", "1e3", "12.", ".5", "NaN", "Infinity",
                                  "10000000000", "--1", "١٢"])
def test_malformed_dollars_are_refused(text):
    from django import forms

    with pytest.raises(forms.ValidationError):
        dollars_to_cents(text)


def test_negative_dollars_only_where_allowed():
    from django import forms

    assert dollars_to_cents("-15.50", allow_negative=True) == -1550
    with pytest.raises(forms.ValidationError, match="positive"):
        dollars_to_cents("-15.50")


# --- pay from the balance (staff resolving late or partial crypto payments) ----------------

def _credit(tenant, cents):
    from billing.services.invoices import balance_move

    subscription = Subscription.objects.select_related("tenant").get(tenant=tenant)
    balance_move(subscription=subscription, kind=BalanceTransaction.Kind.STAFF_GRANT, amount_cents=cents,
                 description="late USDC payment credited", actor="test")


def test_pay_from_balance_uses_what_the_balance_holds_and_leaves_the_rest_due(console, alice):
    invoice = make_invoice(alice, 5000)
    _credit(alice, 1200)
    response = act(console, "pay_from_balance", invoice)
    invoice.refresh_from_db()
    assert (invoice.status, invoice.amount_paid_cents, invoice.amount_due_cents) == ("open", 1200, 3800)
    assert Subscription.objects.get(tenant=alice).balance_cents == 0
    assert f"{invoice.number}: balance applied; 38.00 USD still due." in messages_of(response)
    _credit(alice, 9000)
    act(console, "pay_from_balance", invoice)
    invoice.refresh_from_db()
    assert (invoice.status, invoice.amount_due_cents) == ("paid", 0)
    assert Subscription.objects.get(tenant=alice).balance_cents == 5200
    assert AuditEvent.objects.filter(action="invoice.paid_from_balance", target_id=str(invoice.pk)).count() == 2


def test_pay_from_balance_refuses_an_empty_balance_or_a_settled_invoice(console, alice):
    invoice = make_invoice(alice, 5000)
    before = snapshot(invoice)
    response = act(console, "pay_from_balance", invoice)
    assert f"{invoice.number}: The tenant's balance is empty: there is no credit to apply." in messages_of(response)
    assert snapshot(invoice) == before
    paid = make_paid_invoice(alice, 700)
    _credit(alice, 500)
    response = act(console, "pay_from_balance", paid)
    assert any("owes nothing" in m for m in messages_of(response))
    assert Subscription.objects.get(tenant=alice).balance_cents == 500
