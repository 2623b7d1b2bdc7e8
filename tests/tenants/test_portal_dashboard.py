"""The portal dashboard (usage gauges and charts, projected bill, resource counts, a banner
per account state with the link that resolves it), the htmx partials (crypto quote
status, a cluster's nodes while an operation runs) that still work without JavaScript,
and accessibility basics: every field of the main pages has a label, a skip link, lang."""
import re
from decimal import Decimal
from html.parser import HTMLParser

import pytest
from django.conf import settings
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from aerolith import clock
from billing.models import Subscription
from metering.analytics import usage_summary
from metering.services.ingest import usage_ingest
from provisioning.models import Operation, OperationState
from provisioning.services.clusters import cluster_create
from tenants.models import Role, Tenant
from tests.billing.api_support import open_invoice
from tests.billing.crypto_support import chain_fixture  # noqa: F401 - fixture
from tests.conftest import (
    PUBLIC_HOST,
    add_member,
    host_of,
    owner_principal,
    portal_member,
    portal_user,
)
from tests.provisioning.api_support import enterprise, make_cluster

pytestmark = pytest.mark.django_db


def html(response) -> str:
    return response.content.decode()


def record(tenant, meter, quantity, event_id):
    result = usage_ingest(tenant=tenant, events=[{
        "id": event_id, "meter": meter, "quantity": quantity,
        "timestamp": clock.now(tenant).isoformat()}])
    assert result.accepted == 1


def set_status(tenant, status, **subscription_fields):
    Tenant.objects.filter(pk=tenant.pk).update(status=status)
    Subscription.objects.filter(tenant=tenant).update(status=status, **subscription_fields)


@pytest.fixture(autouse=True)
def no_operations_run(monkeypatch):
    monkeypatch.setattr("provisioning.services.operations._enqueue", lambda operation_id: None)


# --- dashboard ------------------------------------------------------------------------------

def test_the_dashboard_shows_gauges_charts_and_the_projected_bill(alice):
    record(alice, "compute_hours", 42, "dash-1")
    page = html(portal_user(alice).get("/"))
    assert "42 of 100 hours (42%)" in page  # starter: 100 compute hours included
    assert page.count("<svg") == 4 and "Compute per day" in page  # a chart per meter
    # The projection moves with the clock: check that the bill adds up, not its figure.
    bill = page.split('id="projected-bill"')[1].split("period ends")[0]
    total = re.search(r'<div class="stat">\$([\d,.]+)</div>', bill).group(1)
    plan, overage = re.search(r"\$([\d,.]+) plan \+ \$([\d,.]+) projected overage", bill).groups()
    cents = [int(Decimal(v.replace(",", "")) * 100) for v in (total, plan, overage)]
    assert cents[1] == 2900 and cents[0] == cents[1] + cents[2] and cents[2] > 0
    assert usage_summary(alice)["projected_total_cents"] > 2900
    assert 'href="/usage"' in page


def test_the_dashboard_counts_databases_clusters_and_members_with_links(alice):
    enterprise(alice)
    make_cluster(alice, "main")
    make_cluster(alice, "analytics")
    add_member(alice, "dev@alice.test", Role.DEVELOPER)
    page = html(portal_user(alice).get("/"))
    clusters = page.split('id="clusters-count"')[1].split("</a>")[0]
    assert '<div class="stat">2</div>' in clusters
    members = page.split('id="members-count"')[1].split("</a>")[0]
    assert '<div class="stat">2</div>' in members
    assert 'href="/databases" id="databases-count"' in page
    assert 'href="/clusters" id="clusters-count"' in page


def test_the_dashboard_makes_a_bounded_number_of_queries(alice):
    client = portal_user(alice)
    client.get("/")
    with CaptureQueriesContext(connection) as few:
        client.get("/")
    enterprise(alice)
    for name in ("a", "b", "c"):
        make_cluster(alice, name)
    for role in (Role.DEVELOPER, Role.VIEWER, Role.BILLING):
        add_member(alice, f"{role}@alice.test", role)
    open_invoice(alice, 1000)
    set_status(alice, "past_due", past_due_since=clock.now(alice))
    with CaptureQueriesContext(connection) as many:
        client.get("/")
    # A past-due account adds the open-invoice queries; nothing grows with the rows.
    assert len(many) <= len(few) + 4, [q["sql"] for q in many.captured_queries]


def test_a_trial_banner_says_how_long_and_links_to_add_a_card(alice):
    page = html(portal_user(alice).get("/"))
    banner = page.split('id="status-banner"')[1].split("</div>")[0]
    assert "ends in 14 days" in banner
    assert 'href="/billing#payment-methods"' in banner and "Add a card" in banner
    viewer = html(portal_member(alice, Role.VIEWER).get("/"))
    banner = viewer.split('id="status-banner"')[1].split("</div>")[0]
    assert "Add a card" not in banner and "ask an owner" in banner


def test_a_past_due_banner_shows_the_amount_and_a_pay_now_button(alice):
    invoice = open_invoice(alice, 1500)
    set_status(alice, "past_due", past_due_since=clock.now(alice))
    page = html(portal_user(alice).get("/"))
    banner = page.split('id="status-banner"')[1].split("</div>")[0]
    assert "A payment failed: <strong>$15.00</strong> is due" in banner
    assert f'id="pay-now" href="/invoices/{invoice.number}">Pay now</a>' in banner
    viewer = html(portal_member(alice, Role.VIEWER).get("/"))
    assert 'id="pay-now"' not in viewer and invoice.number in viewer


def test_a_suspended_banner_says_what_happened_and_links_to_pay(alice):
    invoice = open_invoice(alice, 2500)
    set_status(alice, "suspended", suspended_at=clock.now(alice))
    page = html(portal_user(alice).get("/"))
    banner = page.split('id="status-banner"')[1].split("</div>")[0]
    assert "suspended for non-payment" in banner and "read-only" in banner and "$25.00" in banner
    assert f'href="/invoices/{invoice.number}">Pay invoice {invoice.number} now</a>' in banner
    assert "cancelled on" in banner


def test_the_dashboard_shows_nothing_of_other_organisations(alice, bob):
    record(alice, "compute_hours", 77, "dash-iso")
    open_invoice(alice, 4321)
    set_status(alice, "past_due", past_due_since=clock.now(alice))
    page = html(portal_user(bob).get("/"))
    assert "77 of" not in page and "$43.21" not in page and "Alice Ltd" not in page
    assert portal_user(alice, "owner@bob.test").get("/").status_code == 404


# --- htmx -----------------------------------------------------------------------------------

def test_htmx_is_vendored_and_loaded_by_the_layout(alice):
    root = settings.BASE_DIR / "static" / "vendor"
    assert (root / "htmx.min.js").stat().st_size > 10_000 and (root / "htmx.LICENSE").exists()
    page = html(portal_user(alice).get("/"))
    assert '<script src="/static/vendor/htmx.min.js" defer></script>' in page


def test_the_crypto_status_partial_polls_while_open_and_the_page_works_without_js(alice, chain):
    from billing.models import CryptoQuote

    invoice = open_invoice(alice, 1500)
    client = portal_user(alice)
    client.post(f"/invoices/{invoice.number}/pay/crypto", {"currency": "usdc"})
    quote = CryptoQuote.objects.get(invoice=invoice)
    page = html(client.get(f"/billing/crypto/{quote.pk}"))
    # Without JavaScript: the status is in the page and a meta refresh reloads it.
    assert "Expires in" in page and '<noscript><meta http-equiv="refresh"' in page
    assert f'hx-get="/billing/crypto/{quote.pk}/status" hx-trigger="every 3s"' in page
    fragment = html(client.get(f"/billing/crypto/{quote.pk}/status"))
    assert fragment.startswith('<div class="crypto-state"') and "<html" not in fragment
    assert 'hx-trigger="every 3s" hx-swap="outerHTML"' in fragment
    CryptoQuote.objects.filter(pk=quote.pk).update(status="expired")
    done = html(client.get(f"/billing/crypto/{quote.pk}/status"))
    assert "hx-trigger" not in done and "expired" in done  # polling stops
    assert portal_user(alice, "owner@bob.test").get(f"/billing/crypto/{quote.pk}/status").status_code == 404


def test_the_cluster_nodes_partial_refreshes_while_an_operation_runs(alice, bob):
    enterprise(alice)
    cluster, operation = cluster_create(tenant=alice, actor=owner_principal(alice), name="live",
                                        size="small", node_count=2, provider="local",
                                        region="eu-central", policy=None)
    client = portal_user(alice)
    page = html(client.get(f"/clusters/{cluster.pk}"))
    assert f'hx-get="/clusters/{cluster.pk}/nodes" hx-trigger="every 3s"' in page
    assert 'id="operation"' in page and "reload to follow it" in page  # works without JS
    fragment = client.get(f"/clusters/{cluster.pk}/nodes")
    assert fragment.status_code == 200
    text = html(fragment)
    assert text.startswith('<div id="cluster-live"') and "<html" not in text and "Nodes" in text
    Operation.objects.filter(pk=operation.pk).update(state=OperationState.SUCCEEDED,
                                                     finished_at=clock.wall_now())
    settled = html(client.get(f"/clusters/{cluster.pk}/nodes"))
    assert "hx-trigger" not in settled and 'id="operation"' not in settled
    viewer = portal_member(alice, Role.VIEWER)
    assert viewer.get(f"/clusters/{cluster.pk}/nodes").status_code == 200
    enterprise(bob)
    assert portal_user(bob).get(f"/clusters/{cluster.pk}/nodes").status_code == 404
    assert portal_user(alice, "owner@bob.test").get(f"/clusters/{cluster.pk}/nodes").status_code == 404


# --- accessibility --------------------------------------------------------------------------

class FieldAudit(HTMLParser):
    """Collects form fields, which need a label (by `for`, by nesting, or aria-label), and
    the page's landmarks."""

    SKIP_TYPES = {"hidden", "submit", "button", "reset", "image"}

    def __init__(self):
        super().__init__()
        self.fields, self.label_for, self.open_labels = [], set(), 0
        self.html_lang = None
        self.links = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "html":
            self.html_lang = attrs.get("lang")
        if tag == "a":
            self.links.append(attrs)
        if tag == "label":
            self.open_labels += 1
            if attrs.get("for"):
                self.label_for.add(attrs["for"])
        if tag in ("input", "select", "textarea"):
            if tag == "input" and attrs.get("type", "text") in self.SKIP_TYPES:
                return
            self.fields.append((tag, attrs, self.open_labels > 0))

    def handle_endtag(self, tag):
        if tag == "label":
            self.open_labels = max(0, self.open_labels - 1)

    def unlabelled(self) -> list:
        return [(tag, attrs) for tag, attrs, nested in self.fields
                if not nested and attrs.get("id") not in self.label_for
                and not attrs.get("aria-label") and not attrs.get("aria-labelledby")]


def audit(response) -> FieldAudit:
    parser = FieldAudit()
    parser.feed(html(response))
    return parser


TENANT_PAGES = ["/", "/usage", "/databases", "/clusters", "/clusters/new", "/billing",
                "/invoices", "/webhooks", "/security", "/security/sso", "/organization",
                "/api-keys", "/team", "/audit"]


def test_every_field_of_the_main_portal_pages_has_a_label(alice):
    enterprise(alice)
    cluster = make_cluster(alice, "main")
    add_member(alice, "dev@alice.test", Role.DEVELOPER)
    invoice = open_invoice(alice, 1000)
    client = portal_user(alice)
    checked = 0
    for path in TENANT_PAGES + [f"/clusters/{cluster.pk}", f"/invoices/{invoice.number}"]:
        response = client.get(path)
        assert response.status_code == 200, path
        page = audit(response)
        assert page.unlabelled() == [], (path, page.unlabelled())
        assert page.html_lang == "en", path
        assert any(link.get("class") == "skip-link" and link.get("href") == "#content"
                   for link in page.links), path
        checked += len(page.fields)
    assert checked > 20  # the pages do have forms
    for path in ("/login",):
        page = audit(Client(HTTP_HOST=host_of("alice")).get(path))
        assert page.fields and page.unlabelled() == [], path
    for path in ("/", "/signup", "/login"):
        page = audit(Client(HTTP_HOST=PUBLIC_HOST).get(path))
        assert page.unlabelled() == [], path


def test_the_nav_marks_the_current_page_and_groups_settings(alice):
    page = html(portal_user(alice).get("/webhooks"))
    assert 'href="/webhooks" aria-current="page"' in page
    assert page.count('aria-current="page"') == 1
    nav = page.split("<nav")[1].split("</nav>")[0]
    settings_group = nav.split("<details")[1].split("</details>")[0]
    for path in ("/api-keys", "/team", "/webhooks", "/security", "/organization", "/audit"):
        assert f'href="{path}"' in settings_group
    assert "<summary" in settings_group and 'class="current"' in settings_group
    viewer = html(portal_member(alice, Role.VIEWER).get("/"))
    assert 'href="/audit"' not in viewer and 'href="/organization"' not in viewer


def test_error_pages_use_the_layout_and_say_what_to_do(alice):
    client = portal_user(alice)
    missing = client.get("/no-such-page")
    assert missing.status_code == 404
    assert "What to do" in html(missing) and 'class="skip-link"' in html(missing)
    forbidden = portal_member(alice, Role.VIEWER).get("/organization")
    assert forbidden.status_code == 403 and "Your role (viewer) cannot" in html(forbidden)
    assert "What to do" in html(forbidden) and 'href="/"' in html(forbidden)
    from django.template.loader import render_to_string
    server_error = render_to_string("errors/500.html")
    assert 'lang="en"' in server_error and "What to do" in server_error
