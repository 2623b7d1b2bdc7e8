"""The staff console's tenant pages (SPEC §11): a list with plan, status and MRR that stays
at a fixed number of queries however many tenants there are, a detail page with the
tenant's whole standing, and actions that call the services and say what they did."""
from datetime import timedelta

import pytest
from django.contrib.messages import get_messages
from django.core import mail
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from aerolith import clock
from billing.models import Payment, Plan, Subscription
from tenants.models import AuditEvent, Membership, Role, Tenant, User
from tests.billing.test_admin import make_invoice
from tests.conftest import PASSWORD, PUBLIC_HOST, host_of, staff_client

LIST = "/admin/tenants/tenant/"


@pytest.fixture
def staff(db):
    return User.objects.create_superuser("ops@aerolith.test", PASSWORD)


@pytest.fixture
def console(staff):
    return staff_client(staff)


def filler_tenants(count: int, *, start: int = 0) -> list[Tenant]:
    """`count` tenant rows with an owner and a subscription, made in three bulk inserts.
    Their schemas do not exist: the list never enters a tenant's schema."""
    now = clock.wall_now()
    starter = Plan.objects.get(code="starter")
    tenants = Tenant.objects.bulk_create([
        Tenant(name=f"Filler {i}", slug=f"filler-{i}", schema_name=f"filler_{i}", status="active")
        for i in range(start, start + count)])
    users = User.objects.bulk_create([User(email=f"owner{t.pk}@filler.test", password="!")
                                      for t in tenants])
    Membership.objects.bulk_create([Membership(user=u, tenant=t, role=Role.OWNER, accepted_at=now)
                                    for u, t in zip(users, tenants, strict=True)])
    Subscription.objects.bulk_create([
        Subscription(tenant=t, plan=starter, status="active", current_period_start=now,
                     current_period_end=now + timedelta(days=30)) for t in tenants])
    return tenants


def messages_of(response) -> list[str]:
    return [str(m) for m in get_messages(response.wsgi_request)]


# --- the list ------------------------------------------------------------------------------

def test_list_shows_plan_status_mrr_and_owner(console, alice, charlie):
    filler_tenants(1)
    html = console.get(LIST).content.decode()
    assert "Alice Ltd" in html and "Starter" in html and "owner@alice.test" in html
    assert "Filler 0" in html and "$29.00" in html  # an active Starter pays its price
    assert "Charlie Ltd" in html and "$0.00" in html  # Free, and trials, bring no MRR


def test_list_queries_do_not_grow_with_tenants(console, db):
    def queries(url):
        with CaptureQueriesContext(connection) as captured:
            assert console.get(url).status_code == 200
        return len(captured)

    filler_tenants(5)
    few = queries(LIST), queries(LIST + "?q=filler"), queries(LIST + "?status__exact=active")
    filler_tenants(45, start=5)
    many = queries(LIST), queries(LIST + "?q=filler"), queries(LIST + "?status__exact=active")
    assert many == few, (few, many)


def compute_usage(tenant, hours: str, included: str = "10") -> None:
    """`hours` of compute used this period (which began when the session signed the
    tenant up), against `included` on Starter."""
    from decimal import Decimal

    from billing.models import PlanMeter
    from metering.models import Meter, UsageEvent

    meter = Meter.objects.get(code="compute_hours")
    PlanMeter.objects.filter(plan__code="starter", meter=meter).update(included=Decimal(included))
    now = clock.now(tenant)
    start = Subscription.objects.get(tenant=tenant).current_period_start
    UsageEvent.objects.create(tenant_id=tenant.pk, meter_id=meter.pk, event_id="console-1",
                              quantity=Decimal(hours), timestamp=start + (now - start) / 2,
                              received_at=now)


def test_list_shows_usage_against_the_allowance(console, alice, bob):
    compute_usage(alice, "8.5")
    html = console.get(LIST).content.decode()
    assert '<span class="usage-near">Compute: 85%</span>' in html


@pytest.mark.parametrize("query", ["alice", "Alice Ltd", "owner@alice.test", host_of("alice")])
def test_search_finds_a_tenant_by_slug_name_email_or_domain(console, alice, bob, query):
    html = console.get(LIST, {"q": query}).content.decode()
    assert "Alice Ltd" in html and "Bob Ltd" not in html


# --- the detail page -----------------------------------------------------------------------

def test_detail_page_gathers_the_tenants_standing(console, alice, bob):
    invoice = make_invoice(alice, 5000)
    Payment.objects.create(tenant=alice, invoice=invoice, method="card", status="failed",
                           amount_cents=5000, decline_code="card_declined")
    make_invoice(bob, 7700)  # bob's invoice must not show on alice's page
    response = console.get(f"{LIST}{alice.pk}/change/")
    html = response.content.decode()
    assert response.status_code == 200
    assert 'id="overview-plan">Starter ($29.00/month)' in html
    assert "Trialing, trial ends" in html
    assert 'id="overview-mrr">$0.00' in html  # a trial pays nothing yet
    assert 'id="overview-databases">0 of' in html
    for meter in response.context["usage"]:
        assert f'data-meter="{meter["meter"].code}"' in html
    assert f'/admin/billing/invoice/{invoice.pk}/change/' in html and invoice.number in html
    assert "$77.00" not in html
    assert "card_declined" in html
    assert f"/admin/tenants/auditevent/?tenant__id__exact={alice.pk}" in html
    assert f"/admin/provisioning/cluster/?tenant__id__exact={alice.pk}" in html
    shown = [e.pk for e in response.context["audit"]]
    assert shown == list(AuditEvent.objects.filter(tenant=alice).order_by("-occurred_at", "-id")
                         .values_list("pk", flat=True)[:20])
    assert 'name="name"' in html  # the form is still there


def test_detail_page_shows_usage_against_the_plan(console, alice):
    compute_usage(alice, "12")
    html = console.get(f"{LIST}{alice.pk}/change/").content.decode()
    row = html[html.index('data-meter="compute_hours"'):]
    row = row[:row.index("</tr>")]
    assert "12 of 10 hours (120%)" in row and 'class="gauge bad"' in row
    assert "2 hours" in row  # the overage


@pytest.mark.parametrize("changelist", ["/admin/tenants/auditevent/", "/admin/billing/invoice/",
                                        "/admin/billing/payment/", "/admin/provisioning/cluster/"])
def test_the_detail_pages_links_list_only_that_tenants_rows(console, alice, bob, changelist):
    invoice = make_invoice(alice, 1000)
    make_invoice(bob, 2000)
    Payment.objects.create(tenant=alice, invoice=invoice, method="card", status="failed", amount_cents=1000)
    response = console.get(f"{changelist}?tenant__id__exact={alice.pk}")
    assert response.status_code == 200  # not the admin's "?e=1" refusal of an unknown filter
    assert {row.tenant_id for row in response.context["cl"].result_list} <= {alice.pk}
    if "cluster" not in changelist:
        assert response.context["cl"].result_list


def test_detail_page_reads_a_fixed_number_of_queries(console, alice):
    def queries():
        with CaptureQueriesContext(connection) as captured:
            assert console.get(f"{LIST}{alice.pk}/change/").status_code == 200
        return len(captured)

    before = queries()
    for cents in range(1000, 13000, 1000):
        make_invoice(alice, cents)
    assert queries() == before


def test_members_of_a_tenant_cannot_open_the_tenant_console(alice):
    client = Client(HTTP_HOST=PUBLIC_HOST)
    client.force_login(User.objects.get(email="owner@alice.test"))
    response = client.get(f"{LIST}{alice.pk}/change/")
    assert response.status_code == 302 and "/admin/login/" in response["Location"]


# --- actions -------------------------------------------------------------------------------

def act(console, action, *tenants, **data):
    return console.post(LIST, {"action": action, "_selected_action": [t.pk for t in tenants], **data},
                        follow=True)


def test_suspend_and_reactivate_report_each_tenant(console, alice, bob,
                                                   django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        response = act(console, "suspend", alice, bob)
    assert "Staff suspended 2 tenant(s): alice; bob" in messages_of(response)
    assert set(Subscription.objects.filter(tenant__in=[alice, bob]).values_list("status", flat=True)) \
        == {"suspended"}
    assert Tenant.objects.get(pk=alice.pk).status == "suspended"
    assert AuditEvent.objects.filter(tenant=alice, action="subscription.suspended_by_staff",
                                     actor_label="staff:ops@aerolith.test").exists()
    assert any("suspended" in m.subject and "owner@alice.test" in m.to for m in mail.outbox)

    again = act(console, "suspend", alice)
    assert any(m.startswith("alice: The subscription is suspended") for m in messages_of(again))

    restored = act(console, "reactivate", alice)
    assert "Staff reactivated 1 tenant(s): alice: now active" in messages_of(restored)
    assert Subscription.objects.get(tenant=alice).status == "active"


def test_reactivating_a_tenant_that_is_not_suspended_says_why(console, alice):
    response = act(console, "reactivate", alice)
    assert messages_of(response) == ["alice: The subscription is trialing, not suspended."]
    assert Subscription.objects.get(tenant=alice).status == "trialing"


def test_extend_trial_asks_for_days_then_moves_the_trial_end(console, alice):
    before = Subscription.objects.get(tenant=alice).trial_end
    page = console.post(LIST, {"action": "extend_trial", "_selected_action": [alice.pk]})
    assert page.status_code == 200 and "Extend by (days)" in page.content.decode()
    assert Subscription.objects.get(tenant=alice).trial_end == before

    response = act(console, "extend_trial", alice, days="10", apply="1")
    after = Subscription.objects.get(tenant=alice)
    assert after.trial_end == before + timedelta(days=10) == after.current_period_end
    assert messages_of(response) == [
        f"Staff extended by 10 day(s) the trial of 1 tenant(s): alice: trial ends "
        f"{after.trial_end:%Y-%m-%d %H:%M} UTC"]
    assert AuditEvent.objects.filter(tenant=alice, action="subscription.trial_extended").exists()


@pytest.mark.parametrize("days, error", [("0", "greater than or equal to 1"),
                                         ("91", "less than or equal to 90"),
                                         ("x", "Enter a whole number"), ("", "This field is required")])
def test_bad_trial_extension_is_refused_and_nothing_changes(console, alice, days, error):
    before = Subscription.objects.get(tenant=alice).trial_end
    response = act(console, "extend_trial", alice, days=days, apply="1")
    assert response.status_code == 200 and error in response.content.decode()
    assert Subscription.objects.get(tenant=alice).trial_end == before


def test_extending_a_trial_of_an_active_tenant_says_why(console, charlie):
    response = act(console, "extend_trial", charlie, days="5", apply="1")
    assert messages_of(response) == ["charlie: The subscription is active, not in a trial."]


def test_change_plan_reports_the_outcome_per_tenant(console, alice, bob):
    response = act(console, "change_plan", alice, bob, plan="professional", when="", apply="1")
    texts = messages_of(response)
    assert "Staff changed the plan of 1 tenant(s): alice: now on Professional" in texts
    assert "bob: You are already on Professional." in texts
    assert Subscription.objects.get(tenant=alice).plan.code == "professional"


def test_change_plan_to_an_unknown_plan_is_refused(console, alice):
    response = act(console, "change_plan", alice, plan="platinum", when="", apply="1")
    assert response.status_code == 200 and "Select a valid choice" in response.content.decode()
    assert Subscription.objects.get(tenant=alice).plan.code == "starter"


def test_actions_need_the_csrf_token(staff, alice):
    client = staff_client(staff)
    client.handler.enforce_csrf_checks = True
    response = client.post(LIST, {"action": "suspend", "_selected_action": [alice.pk]})
    assert response.status_code == 403
    assert Subscription.objects.get(tenant=alice).status == "trialing"
