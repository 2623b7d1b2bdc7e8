"""Billing's staff console: every page renders for staff with data present, nothing is
reachable without staff rights, subscriptions are read-only with the dunning state shown,
the billing schedule is one validated row, and the index page carries the figures."""
import pytest
from django.test import Client
from django.urls import reverse as _reverse

from aerolith import clock
from billing.decisions import LineDraft
from billing.models import (
    BalanceTransaction,
    BillingSettings,
    Invoice,
    Payment,
    PaymentMethod,
    Subscription,
)
from billing.services.collection import payment_method_attach, payment_record_manual
from billing.services.invoices import invoice_draft, invoice_finalize, invoice_refund_to_balance
from tenants.models import AuditEvent, User
from tenants.services.clocks import tenant_clock_advance, tenant_clock_attach
from tests.conftest import PASSWORD, PUBLIC_HOST, owner_principal, staff_client


def reverse(name, args=()):
    return _reverse(name, args=args, urlconf="aerolith.urls_public")


def staff_user() -> User:
    return User.objects.create_superuser("ops@aerolith.test", PASSWORD)


def console_for(user) -> Client:
    return staff_client(user)  # signed in and past two-factor authentication


@pytest.fixture
def staff(db):
    return staff_user()


@pytest.fixture
def console(staff):
    return console_for(staff)


def make_invoice(tenant, cents=5000, *, finalize=True, description="Consulting") -> Invoice:
    """A manual invoice of one adjustment line, finalised (open) unless told otherwise."""
    subscription = Subscription.objects.get(tenant=tenant)
    now = clock.now(tenant)
    invoice = invoice_draft(tenant=tenant, subscription=subscription, reason=Invoice.Reason.MANUAL,
                            period_start=now, period_end=now,
                            lines=[LineDraft("adjustment", description, cents)])
    return invoice_finalize(invoice=invoice, actor="test", collect=False) if finalize else invoice


def make_paid_invoice(tenant, cents=5000) -> Invoice:
    invoice = make_invoice(tenant, cents)
    if invoice.amount_due_cents:  # the tenant's balance may have paid part of it
        payment_record_manual(invoice=invoice, amount_cents=invoice.amount_due_cents, reference="BANK-1",
                              received_on=clock.now(tenant).date(), actor="test")
    invoice.refresh_from_db()
    return invoice


@pytest.fixture
def billing_data(alice, bob):
    """Something on every billing page: open, paid and draft invoices, a failed card
    payment, a card on file and a balance movement."""
    open_invoice = make_invoice(alice, 5000)
    paid = make_paid_invoice(bob, 9900)
    draft = make_invoice(alice, 1200, finalize=False, description="Setup")
    invoice_refund_to_balance(invoice=paid, amount_cents=900, actor="test", reason="goodwill")
    method = payment_method_attach(tenant=alice, gateway_id="pm_card_visa", actor=owner_principal(alice))
    failed = Payment.objects.create(tenant=alice, invoice=open_invoice, method="card", status="failed",
                                    amount_cents=5000, decline_code="card_declined",
                                    failure_message="Your card was declined.", payment_method=method)
    return {"open": open_invoice, "paid": paid, "draft": draft, "method": method, "failed": failed,
            "ledger": BalanceTransaction.objects.get(invoice=paid)}


def billing_pages(data):
    subscription = Subscription.objects.get(tenant=data["open"].tenant)
    return [
        "/admin/", "/admin/billing/",
        "/admin/billing/subscription/", "/admin/billing/subscription/?q=alice",
        "/admin/billing/subscription/?status__exact=trialing",
        reverse("admin:billing_subscription_change", [subscription.pk]),
        "/admin/billing/invoice/", "/admin/billing/invoice/?q=alice", "/admin/billing/invoice/?status__exact=open",
        "/admin/billing/invoice/?reason__exact=manual", f"/admin/billing/invoice/?q={data['paid'].number}",
        reverse("admin:billing_invoice_add"),
        reverse("admin:billing_invoice_change", [data["open"].pk]),
        reverse("admin:billing_invoice_change", [data["paid"].pk]),
        reverse("admin:billing_invoice_change", [data["draft"].pk]),
        reverse("admin:billing_invoice_record_transfer", [data["open"].pk]),
        reverse("admin:billing_invoice_refund", [data["paid"].pk]),
        reverse("admin:billing_invoice_finalise", [data["draft"].pk]),
        "/admin/billing/payment/", "/admin/billing/payment/?status__exact=failed",
        "/admin/billing/payment/?decline_code=card_declined", "/admin/billing/payment/?method__exact=bank_transfer",
        reverse("admin:billing_payment_change", [data["failed"].pk]),
        "/admin/billing/paymentmethod/", reverse("admin:billing_paymentmethod_change", [data["method"].pk]),
        "/admin/billing/balancetransaction/",
        reverse("admin:billing_balancetransaction_change", [data["ledger"].pk]),
        "/admin/billing/plan/", "/admin/billing/billingsettings/1/change/",
    ]


def test_every_billing_page_renders_for_staff_with_data(console, billing_data):
    for page in billing_pages(billing_data):
        response = console.get(page)
        assert response.status_code == 200, (page, response.status_code)


def test_lists_show_the_rows(console, billing_data):
    invoices = console.get("/admin/billing/invoice/").content.decode()
    assert billing_data["open"].number in invoices and billing_data["paid"].number in invoices
    assert f"Draft #{billing_data['draft'].pk}" in invoices
    assert "card_declined" in invoices  # the open invoice's last decline
    payments = console.get("/admin/billing/payment/?decline_code=card_declined").content.decode()
    assert "card_declined" in payments and "BANK-1" not in payments
    ledger = console.get("/admin/billing/balancetransaction/").content.decode()
    assert "9.00 USD" in ledger and "goodwill" in ledger


def test_invoice_page_shows_lines_and_payments(console, billing_data):
    html = console.get(reverse("admin:billing_invoice_change", [billing_data["paid"].pk])).content.decode()
    assert "Consulting" in html and "99.00 USD" in html and "BANK-1" in html
    assert "Refund to balance" in html and "Download PDF" in html
    assert "Record bank transfer" not in html  # paid: nothing due


def test_billing_settings_list_opens_the_single_row(console, db):
    response = console.get("/admin/billing/billingsettings/")
    assert response.status_code == 302 and response["Location"].endswith("/billingsettings/1/change/")
    assert console.get("/admin/billing/billingsettings/add/").status_code == 403
    assert console.get("/admin/billing/billingsettings/1/delete/").status_code == 403


def test_non_staff_cannot_reach_the_billing_console(billing_data):
    member = User.objects.get(email="owner@alice.test")
    client = Client(HTTP_HOST=PUBLIC_HOST)
    client.force_login(member)
    invoice = billing_data["open"]
    for page in ["/admin/", "/admin/billing/invoice/", "/admin/billing/subscription/",
                 reverse("admin:billing_invoice_record_transfer", [invoice.pk]),
                 reverse("admin:billing_invoice_pdf", [invoice.pk])]:
        response = client.get(page)
        assert response.status_code == 302 and "/admin/login/" in response["Location"], page
    response = client.post("/admin/billing/invoice/", {"action": "void", "_selected_action": [invoice.pk]})
    assert response.status_code == 302 and "/admin/login/" in response["Location"]
    response = client.post(reverse("admin:billing_invoice_record_transfer", [invoice.pk]), {
        "amount": "50.00", "reference": "X", "received_on": clock.wall_now().date().isoformat()})
    assert response.status_code == 302 and "/admin/login/" in response["Location"]
    invoice.refresh_from_db()
    assert invoice.status == "open" and invoice.amount_paid_cents == 0


def test_anonymous_visitors_are_sent_to_login(billing_data):
    response = Client(HTTP_HOST=PUBLIC_HOST).get("/admin/billing/invoice/")
    assert response.status_code == 302 and "/admin/login/" in response["Location"]


def test_subscriptions_are_read_only(console, alice):
    subscription = Subscription.objects.get(tenant=alice)
    url = reverse("admin:billing_subscription_change", [subscription.pk])
    assert console.post(url, {"status": "active"}).status_code == 403
    assert console.get("/admin/billing/subscription/add/").status_code == 403
    assert console.get(reverse("admin:billing_subscription_delete", [subscription.pk])).status_code == 403
    subscription.refresh_from_db()
    assert subscription.status == "trialing"


def test_subscription_list_shows_dunning_columns(console, billing_data):
    html = console.get("/admin/billing/subscription/?q=alice").content.decode()
    assert "50.00 USD" in html  # owing on the open invoice
    assert "Starter" in html


def test_dunning_panel_shows_overdue_invoice_next_jobs_and_last_decline(console, alice):
    tenant_clock_attach(tenant=alice, actor="test")
    payment_method_attach(tenant=alice, gateway_id="pm_card_chargeDeclined", actor=owner_principal(alice))
    tenant_clock_advance(tenant=alice, actor="test", seconds=14 * 86400 + 3600)
    subscription = Subscription.objects.get(tenant=alice)
    assert subscription.status == "past_due"
    invoice = Invoice.objects.get(tenant=alice, reason="trial_conversion")
    html = console.get(reverse("admin:billing_subscription_change", [subscription.pk])).content.decode()
    assert "Unpaid invoices" in html and invoice.number in html and "overdue" in html
    assert "billing.invoice_charge" in html and "billing.grace_end" in html
    assert "generic_decline" in html and "Your card was declined." in html
    assert "(test clock)" in html


def test_dunning_panel_of_a_settled_tenant_says_so(console, charlie):
    subscription = Subscription.objects.get(tenant=charlie)
    html = console.get(reverse("admin:billing_subscription_change", [subscription.pk])).content.decode()
    assert "None: nothing is owed." in html and "Last failed payment" in html
    assert "billing.renewal" in html  # Free renews too


def settings_form(**changes):
    data = {"trial_days": "14", "trial_reminder_days": "3,1", "retry_days": "1,3,5,7", "grace_days": "7",
            "suspension_days": "30", "retention_days": "30"}
    return {**data, **changes}


def test_billing_settings_change_is_saved_and_audited(console, db):
    url = "/admin/billing/billingsettings/1/change/"
    console.get("/admin/billing/billingsettings/")  # the row exists from the first visit
    response = console.post(url, settings_form(retry_days="2,4,8", grace_days="10"))
    assert response.status_code == 302, response.content.decode()[:3000]
    row = BillingSettings.objects.get(pk=1)
    assert row.retry_days == [2, 4, 8] and row.grace_days == 10
    event = AuditEvent.objects.get(action="billing_settings.updated")
    assert event.after == {"retry_days": [2, 4, 8], "grace_days": 10}


@pytest.mark.parametrize("changes, message", [
    ({"retry_days": "3,1"}, "increasing order"),
    ({"retry_days": "1,1,3"}, "Give each retry day once."),
    ({"retry_days": "1,400"}, "between 0 and 365"),
    ({"retry_days": "1,x"}, "Item 2 in the array did not validate"),
    ({"grace_days": "-1"}, "greater than or equal to 0"),
    ({"grace_days": "366"}, "less than or equal to 365"),
    ({"trial_reminder_days": "14"}, "would come before it starts"),
])
def test_bad_billing_settings_are_refused_and_nothing_changes(console, db, changes, message):
    console.get("/admin/billing/billingsettings/")
    before = list(BillingSettings.objects.values().get(pk=1).items())
    response = console.post("/admin/billing/billingsettings/1/change/", settings_form(**changes))
    assert response.status_code == 200
    assert message in response.content.decode()
    assert list(BillingSettings.objects.values().get(pk=1).items()) == before


def test_index_page_shows_billing_figures_and_charts(console, billing_data):
    html = console.get("/admin/").content.decode()
    assert 'id="billing-dashboard"' in html
    for label in ["MRR", "ARR", "Trial conversion", "Churn", "Past due", "Failed payments",
                  "Tenants by status"]:
        assert label in html
    assert 'id="kpi-past-due"' in html and "$50.00" in html  # the open invoice, past its due time
    assert '<svg class="chart"' in html and "Revenue: paid invoices per month" in html
    assert "Site administration" in html or "app-billing" in html  # Django's app list stays


def test_payment_methods_are_read_only(console, billing_data):
    method = billing_data["method"]
    url = reverse("admin:billing_paymentmethod_change", [method.pk])
    assert console.post(url, {"last4": "0000"}).status_code == 403
    assert PaymentMethod.objects.get(pk=method.pk).last4 == "4242"


@pytest.mark.parametrize("page", ["/admin/billing/invoice/", "/admin/billing/payment/",
                                  "/admin/billing/subscription/", "/admin/billing/balancetransaction/"])
def test_list_queries_do_not_grow_with_rows(console, alice, bob, page):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    def queries():
        with CaptureQueriesContext(connection) as captured:
            assert console.get(page).status_code == 200
        return len(captured)

    make_paid_invoice(alice, 1000)
    few = queries()
    for tenant in (alice, bob) * 5:
        invoice = make_paid_invoice(tenant, 1000)
        invoice_refund_to_balance(invoice=invoice, amount_cents=100, actor="test", reason="x")
    assert queries() == few


def test_capped_paginator_counts_at_most_its_cap(alice):
    from aerolith.admin import CappedPaginator

    for cents in (100, 200, 300):
        make_invoice(alice, cents)

    class Small(CappedPaginator):
        cap = 2

    assert Small(Invoice.objects.order_by("pk"), 1).count == 2
    assert CappedPaginator(Invoice.objects.order_by("pk"), 1).count == 3
    assert Small([1, 2, 3], 1).count == 2


def test_a_manual_invoice_cannot_be_for_the_public_schema(console, db):
    from tenants.models import Tenant

    public = Tenant.objects.get(schema_name="public")
    now = clock.wall_now()
    response = console.post(reverse("admin:billing_invoice_add"), {
        "tenant": public.pk, "period_start_0": f"{now:%Y-%m-%d}", "period_start_1": "00:00:00",
        "period_end_0": f"{now:%Y-%m-%d}", "period_end_1": "00:00:00",
        "adjustments-TOTAL_FORMS": "1", "adjustments-INITIAL_FORMS": "0", "adjustments-MIN_NUM_FORMS": "1",
        "adjustments-MAX_NUM_FORMS": "1000", "adjustments-0-description": "x", "adjustments-0-amount": "1"})
    assert response.status_code == 200 and "Select a valid choice" in response.content.decode()
    assert not Invoice.objects.exists()
