"""The invoice API (SPEC §10): the list, one invoice with lines and totals, its PDF."""
import pytest

from billing.decisions import LineDraft
from billing.models import Invoice
from billing.services.invoices import invoice_draft

from ..conftest import assert_problem, host_of
from .api_support import advance, client_as, convert, grant_credit, open_invoice, subscription

FIELDS = {"number", "status", "reason", "currency", "period_start", "period_end", "subtotal_cents",
          "credit_applied_cents", "total_cents", "amount_paid_cents", "amount_due_cents",
          "amount_refunded_cents", "finalized_at", "due_at", "paid_at", "closed_at", "lines", "pdf_url"}
LINE_FIELDS = {"kind", "description", "meter", "quantity", "unit_amount", "amount_cents", "period_start",
               "period_end"}


def _draft(tenant) -> Invoice:
    sub = subscription(tenant)
    return invoice_draft(tenant=tenant, subscription=sub, reason=Invoice.Reason.MANUAL,
                         period_start=sub.current_period_start, period_end=sub.current_period_end,
                         lines=[LineDraft("adjustment", "Not final yet", 999)])


@pytest.mark.django_db
def test_invoices_are_listed_newest_first_without_drafts(alice):
    convert(alice)
    first = Invoice.objects.get(tenant=alice)
    advance(alice, days=1)
    second = open_invoice(alice)
    _draft(alice)
    client = client_as(alice)
    rows = client.get("/api/v1/invoices").json()["results"]
    assert [row["number"] for row in rows] == [second.number, first.number]
    page = client.get("/api/v1/invoices?limit=1").json()
    assert [row["number"] for row in page["results"]] == [second.number]
    rest = client.get(page["next"]).json()
    assert [row["number"] for row in rest["results"]] == [first.number] and rest["next"] is None
    assert_problem(client.get("/api/v1/invoices?limit=0"), 400, "validation_error")
    assert_problem(client.get("/api/v1/invoices?cursor=bogus"), 400, "validation_error")


@pytest.mark.django_db
def test_an_invoice_shows_its_lines_and_totals(alice):
    sub = convert(alice)
    invoice = Invoice.objects.get(tenant=alice)
    body = client_as(alice).get(f"/api/v1/invoices/{invoice.number}").json()
    assert set(body) == FIELDS
    assert body["status"] == "paid" and body["reason"] == "trial_conversion" and body["currency"] == "USD"
    assert (body["subtotal_cents"], body["total_cents"], body["amount_paid_cents"],
            body["amount_due_cents"]) == (2900, 2900, 2900, 0)
    (line,) = body["lines"]
    assert set(line) == LINE_FIELDS
    assert line["kind"] == "plan" and line["quantity"] == "1" and line["unit_amount"] == "2900"
    assert line["amount_cents"] == 2900 and "Starter plan" in line["description"]
    assert sum(line["amount_cents"] for line in body["lines"]) == body["total_cents"]
    assert body["period_start"].startswith(sub.current_period_start.date().isoformat())
    assert body["finalized_at"] and body["paid_at"] and body["closed_at"] is None
    assert body["pdf_url"] == f"http://{host_of('alice')}/api/v1/invoices/{invoice.number}/pdf"


@pytest.mark.django_db
def test_an_invoice_paid_partly_from_the_balance_shows_the_credit_line(alice):
    grant_credit(alice, 500)
    invoice = open_invoice(alice, cents=1500)
    body = client_as(alice).get(f"/api/v1/invoices/{invoice.number}").json()
    assert [(line["kind"], line["amount_cents"]) for line in body["lines"]] == [
        ("adjustment", 1500), ("credit", -500)]
    assert (body["subtotal_cents"], body["credit_applied_cents"], body["total_cents"],
            body["amount_due_cents"]) == (1500, 500, 1000, 1000)
    assert body["lines"][1]["unit_amount"] is None


@pytest.mark.django_db
def test_the_pdf_is_a_pdf(alice):
    invoice = open_invoice(alice)
    client = client_as(alice)
    for accept in ("*/*", "application/pdf", "application/json"):
        response = client.get(f"/api/v1/invoices/{invoice.number}/pdf", HTTP_ACCEPT=accept)
        assert response.status_code == 200, response.content
        assert response["Content-Type"] == "application/pdf"
        assert response.content.startswith(b"%PDF")
        assert invoice.number in response["Content-Disposition"]


@pytest.mark.django_db
@pytest.mark.parametrize("suffix", ["", "/pdf"])
@pytest.mark.parametrize("number", ["AER-2020-999999", "nope", "AER-2020-%20", "1", "x" * 300])
def test_unknown_invoice_numbers_are_not_found(alice, number, suffix):
    accept = "application/pdf" if suffix else "application/json"
    response = client_as(alice).get(f"/api/v1/invoices/{number}{suffix}", HTTP_ACCEPT=accept)
    assert_problem(response, 404)


@pytest.mark.django_db
def test_a_draft_cannot_be_read_through_the_api(alice):
    draft = _draft(alice)
    client = client_as(alice)
    assert client.get("/api/v1/invoices").json()["results"] == []
    assert_problem(client.get(f"/api/v1/invoices/{draft.pk}"), 404, "invoice_not_found")
    assert_problem(client.get("/api/v1/invoices/None"), 404, "invoice_not_found")


@pytest.mark.django_db
def test_each_tenant_sees_only_its_own_invoices(alice, bob, charlie):
    mine = open_invoice(charlie, description="charlie's line")
    theirs = [open_invoice(alice, description="alice-secret-line"), open_invoice(bob)]
    client = client_as(charlie)
    rows = client.get("/api/v1/invoices").json()["results"]
    assert [row["number"] for row in rows] == [mine.number]
    assert "alice-secret-line" not in str(rows)
    for invoice in theirs:
        assert_problem(client.get(f"/api/v1/invoices/{invoice.number}"), 404, "invoice_not_found")
        assert_problem(client.get(f"/api/v1/invoices/{invoice.number}/pdf"), 404, "invoice_not_found")


@pytest.mark.django_db
def test_every_role_can_read_invoices(alice):
    invoice = open_invoice(alice)
    for role in ("viewer", "developer", "billing"):
        client = client_as(alice, role)
        assert client.get("/api/v1/invoices").status_code == 200
        assert client.get(f"/api/v1/invoices/{invoice.number}").status_code == 200
        assert client.get(f"/api/v1/invoices/{invoice.number}/pdf").status_code == 200
