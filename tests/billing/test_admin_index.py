"""The staff index page (templates/admin/index.html, billing.templatetags.billing_admin)
renders each figure of billing.metrics right, from known data: MRR, ARR, tenants by
status, trial conversion, churn, past-due money, failed payments and revenue per month."""
import re
from datetime import timedelta

from django.db.models import F

from aerolith import clock
from billing import metrics
from billing.models import Invoice, Payment, Plan, Subscription
from tenants.models import Tenant, User
from tests.conftest import PASSWORD, staff_client

from .test_admin import make_invoice, make_paid_invoice

DAY = timedelta(days=1)
S = Subscription.Status


def subscription(slug, plan_code, status, *, created_days_ago, trial_end_days_ago=None, outcome="",
                 cancelled_days_ago=None):
    now = clock.wall_now()
    tenant = Tenant.objects.create(name=slug.title(), slug=slug, schema_name=f"index_{slug}", status=status)
    start = now - created_days_ago * DAY
    return Subscription.objects.create(
        tenant=tenant, plan=Plan.objects.get(code=plan_code), status=status, created_at=start,
        trial_end=None if trial_end_days_ago is None else now - trial_end_days_ago * DAY,
        trial_outcome=outcome, current_period_start=start, current_period_end=now + 10 * DAY,
        cancelled_at=None if cancelled_days_ago is None else now - cancelled_days_ago * DAY)


def kpi(html: str, name: str) -> str:
    match = re.search(rf'id="kpi-{name}">(?:<a [^>]*>)?([^<]*)<', html)
    assert match, name
    return match.group(1).strip()


def test_index_page_shows_hand_computed_figures(alice, bob, charlie):
    # The session's tenants: alice and bob trialing (no MRR), charlie active on Free ($0).
    subscription("i1", "starter", S.ACTIVE, created_days_ago=100, trial_end_days_ago=40, outcome="converted")
    subscription("i2", "professional", S.PAST_DUE, created_days_ago=200)
    subscription("i3", "free", S.ACTIVE, created_days_ago=50, trial_end_days_ago=5, outcome="fell_back")
    subscription("i4", "starter", S.CANCELLED, created_days_ago=100, cancelled_days_ago=10)
    subscription("i5", "enterprise", S.SUSPENDED, created_days_ago=10)
    overdue = make_invoice(alice, 5000)  # open and due at once: past due
    Payment.objects.create(tenant=alice, invoice=overdue, method="card", status="failed", amount_cents=5000)
    paid_now = make_paid_invoice(bob, 9900)
    earlier = make_paid_invoice(charlie, 2950)
    Invoice.objects.filter(pk=earlier.pk).update(paid_at=F("paid_at") - 62 * DAY)

    html = staff_client(User.objects.create_superuser("ops@aerolith.test", PASSWORD)).get("/admin/") \
        .content.decode()

    # MRR: i1 starter $29 + i2 professional $99 (past due still pays); trials, Free,
    # suspended and cancelled pay nothing.
    assert kpi(html, "mrr") == "$128.00"
    assert kpi(html, "arr") == "$1,536.00"
    # Trials ended in 90 days: i1 converted, i3 fell back.
    assert kpi(html, "trial-conversion") == "50.0%"
    # Cancelled in 30 days: i4, of i1 (past its trial 30 days ago), i2 and i4 active then.
    assert kpi(html, "churn") == "33.3%"
    assert kpi(html, "past-due") == "$50.00"
    assert kpi(html, "failed") == "1"
    counts = dict(re.findall(r'data-status="(\w+)">(\d+)<', html))
    assert counts == {"trialing": "2", "active": "3", "past_due": "1", "suspended": "1", "cancelled": "1"}

    # The revenue chart: 12 month labels, oldest first, the unit, and each month's total.
    months = metrics.month_starts(clock.wall_now())
    chart = html[html.index('aria-label="Revenue: paid invoices per month"'):]
    chart = chart[:chart.index("</svg>")]
    assert "Revenue: paid invoices per month (USD)" in chart
    labels = re.findall(r'class="axis" text-anchor="middle">([^<]+)<', chart)
    assert labels == [f"{m:%b %y}" for m in months]
    paid_month = paid_now.paid_at.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    earlier_month = (earlier.paid_at - 62 * DAY).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    assert f"<title>{paid_month:%b %y}: 99 USD</title>" in chart
    assert f"<title>{earlier_month:%b %y}: 29.5 USD</title>" in chart
    assert chart.count(": 0 USD</title>") == 12 - len({paid_month, earlier_month})


def test_index_page_without_customers_shows_dashes_not_errors(db):
    Subscription.objects.all().delete()
    html = staff_client(User.objects.create_superuser("ops@aerolith.test", PASSWORD)).get("/admin/") \
        .content.decode()
    assert kpi(html, "mrr") == "$0.00" and kpi(html, "trial-conversion") == "—"
    assert kpi(html, "churn") == "—"
