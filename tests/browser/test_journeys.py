"""What a customer and a staff member do, end to end in a real browser (headless Chromium on
loopback, see conftest.py), each journey leaving a full-page screenshot in docs/screenshots/.

Selectors are roles and labels (get_by_role, get_by_label): a field without a label or a
button without a name fails here, so these double as an accessibility check."""
import re
from urllib.parse import urlsplit

import pytest
from django.conf import settings

from tenants.models import Tenant
from tests.conftest import PASSWORD

from .conftest import committed_tenant, free_slug, portal_url, run_task, screenshot, sign_in

# django_db only so that pytest-django sets the test database up; commits_data: run last
pytestmark = [pytest.mark.django_db, pytest.mark.commits_data]


@pytest.fixture(scope="module")
def upgrading(django_db_blocker):
    """Starter, its trial converted with a card: active, ready to upgrade."""
    from tests.billing.api_support import convert

    return committed_tenant(django_db_blocker, "orbit", "Orbit Analytics", plan="starter", prepare=convert)


@pytest.fixture(scope="module")
def card_payer(django_db_blocker):
    """In its trial, no card on file, one open invoice."""
    from tests.billing.api_support import open_invoice

    holder = {}
    tenant = committed_tenant(django_db_blocker, "comet", "Comet Retail",
                              prepare=lambda t: holder.update(invoice=open_invoice(t, 4321).number))
    return tenant, holder["invoice"]


@pytest.fixture(scope="module")
def crypto_payer(django_db_blocker):
    from tests.billing.api_support import open_invoice

    holder = {}
    tenant = committed_tenant(django_db_blocker, "quasar", "Quasar Pay",
                              prepare=lambda t: holder.update(invoice=open_invoice(t, 1500).number))
    return tenant, holder["invoice"]


@pytest.fixture(scope="module")
def database_owner(django_db_blocker):
    return committed_tenant(django_db_blocker, "vega", "Vega Data")


@pytest.fixture(scope="module")
def suspended_later(django_db_blocker):
    return committed_tenant(django_db_blocker, "halley", "Halley Systems")


@pytest.fixture(scope="module")
def signup_slug(django_db_blocker):
    with django_db_blocker.unblock():
        return free_slug("nimbus")


@pytest.fixture(scope="module")
def staff_user(django_db_blocker):
    """A superuser with a confirmed authenticator app (TOTP), committed."""
    from tenants.models import TotpDevice, User

    with django_db_blocker.unblock():
        email = "ops-browser@aerolith.test"
        user = User.objects.filter(email=email).first() or User.objects.create_superuser(email, PASSWORD)
        device = (TotpDevice.objects.filter(user=user, confirmed=True).first()
                  or TotpDevice.objects.create_for(user, name="Browser test app", confirmed=True))
    return user, device


def _totp_code(device, django_db_blocker) -> str:
    from django_otp.oath import totp

    with django_db_blocker.unblock():
        device.refresh_from_db()
        key = device.bin_key
    return f"{totp(key, device.step, device.t0, device.digits):0{device.digits}d}"


# --- a. sign up -----------------------------------------------------------------------------

def test_sign_up_lands_in_the_new_organisations_dashboard_with_its_trial(page, public_url, signup_slug):
    slug = signup_slug
    page.goto(f"{public_url}/signup")
    page.get_by_label("Organisation name").fill("Nimbus Labs")
    page.get_by_label("Address").fill(slug)
    page.get_by_label("Work email").fill(f"founder@{slug}.test")
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_label("Plan").select_option("professional")
    page.get_by_label("Region").select_option("eu-central")
    screenshot(page, "signup")
    page.get_by_role("button", name="Create organisation").click()
    page.wait_for_load_state()

    assert urlsplit(page.url).hostname == f"{slug}.{settings.AEROLITH_BASE_DOMAIN}", page.url
    banner = page.get_by_text(re.compile(r"Your trial of\s+Professional\s+ends in 14 days"))
    banner.wait_for()
    screenshot(page, "dashboard")
    assert Tenant.objects.get(slug=slug).region == "eu-central"


# --- b. change plan -------------------------------------------------------------------------

def test_plan_change_shows_the_proration_preview_then_confirms(page, server_port, upgrading):
    sign_in(page, server_port, upgrading)
    page.goto(f"{portal_url(upgrading.slug, server_port)}/billing")
    change = page.locator("#change-plan")
    change.get_by_label("Plan").select_option("professional")
    change.get_by_role("button", name="Preview the change").click()

    page.get_by_role("heading", name=re.compile(r"Starter → Professional")).wait_for()
    due = page.locator("#amount-due-now").first.inner_text()
    assert due.startswith("$") and due != "$0.00", due
    screenshot(page, "plan_preview")
    page.get_by_role("button", name=re.compile(r"^Confirm")).click()
    page.wait_for_load_state()
    page.get_by_text("You are now on Professional.").wait_for()


# --- c. card ----------------------------------------------------------------------------------

def test_add_a_card_pay_an_invoice_by_card_and_download_its_pdf(page, server_port, card_payer):
    tenant, number = card_payer
    sign_in(page, server_port, tenant)
    base = portal_url(tenant.slug, server_port)
    page.goto(f"{base}/billing")
    # Test mode's gateway completes the hosted card page at once with Stripe's pm_card_visa.
    page.get_by_role("button", name="Add a card", exact=True).click()
    page.wait_for_load_state()
    page.get_by_text(re.compile(r"Added visa ···· 4242")).wait_for()

    page.goto(f"{base}/invoices/{number}")
    page.get_by_role("button", name="Pay by card").click()
    page.wait_for_load_state()
    page.get_by_text(re.compile(rf"Paid \$43\.21 for invoice {re.escape(number)}")).wait_for()
    screenshot(page, "invoice_paid")

    with page.expect_download() as info:
        page.get_by_role("link", name="Download PDF").click()
    download = info.value
    assert download.suggested_filename == f"{number}.pdf"
    with open(download.path(), "rb") as pdf:
        assert pdf.read(5) == b"%PDF-"


# --- d. crypto --------------------------------------------------------------------------------

def test_pay_an_invoice_with_usdc_and_see_it_settle(page, server_port, server_env, crypto_payer):
    tenant, number = crypto_payer
    sign_in(page, server_port, tenant)
    page.goto(f"{portal_url(tenant.slug, server_port)}/invoices/{number}")
    page.get_by_role("button", name="Pay with USDC").click()
    page.get_by_role("heading", name=f"Pay invoice {number} with USDC").wait_for()
    assert page.get_by_role("img", name="Solana Pay QR code").count() == 1
    assert page.locator("#crypto-amount").inner_text().startswith("15 USDC")
    quote_page = page.url

    # The test wallet page of the chain fake (linked from the quote page in test mode).
    with page.context.expect_page() as opened:
        page.get_by_role("link", name="Pay with the test wallet").click()
    wallet = opened.value
    wallet.wait_for_load_state()
    wallet.get_by_role("button", name="Pay").click()
    wallet.get_by_text(re.compile(r"Sent \w+ \(confirmed\)")).wait_for()
    wallet.get_by_role("button", name="Finalize").click()
    wallet.get_by_text("All slots so far are finalized.").wait_for()
    wallet.close()

    # Beat's scan (every 15 s in production), run once as a worker would, against the fake.
    assert run_task(server_env, "billing.tasks.crypto_quotes_scan")["refreshed"] >= 1

    # The status box refreshes itself every 5 s.
    assert page.url == quote_page
    page.locator("#crypto-state").filter(has_text="Settled").wait_for(timeout=20_000)
    screenshot(page, "crypto_settled")


# --- e. databases ----------------------------------------------------------------------------

def test_create_a_database_and_see_its_uri_once(page, server_port, database_owner):
    tenant = database_owner
    sign_in(page, server_port, tenant)
    base = portal_url(tenant.slug, server_port)
    page.goto(f"{base}/databases")
    page.get_by_label("Name").fill("orders")
    page.get_by_role("button", name="Create database").click()
    page.get_by_role("heading", name="Database orders is ready").wait_for()
    uri = page.locator("#database-uri").inner_text()
    assert uri.startswith("postgresql://") and urlsplit(uri).password, uri
    screenshot(page, "database_created")

    page.goto(f"{base}/databases")
    page.get_by_role("cell", name="orders", exact=True).wait_for()
    password = urlsplit(uri).password
    assert password and password not in page.content()  # shown once, never again


# --- f. staff console ----------------------------------------------------------------------------

def test_staff_sign_in_with_2fa_suspend_and_reactivate_a_tenant(page, public_url, staff_user,
                                                               suspended_later, django_db_blocker):
    user, device = staff_user
    tenant = suspended_later
    page.goto(f"{public_url}/admin/")
    page.get_by_label(re.compile(r"^Email", re.I)).fill(user.email)
    page.get_by_label(re.compile(r"^Password", re.I)).fill(PASSWORD)
    page.get_by_role("button", name=re.compile(r"Log in|Sign in")).click()
    page.get_by_role("heading", name="Enter your two-factor code").wait_for()
    page.get_by_label("Code").fill(_totp_code(device, django_db_blocker))
    page.get_by_role("button", name="Verify").click()
    page.wait_for_load_state()
    assert "/admin/" in page.url and "2fa" not in page.url, page.url

    page.goto(f"{public_url}/admin/tenants/tenant/?q={tenant.slug}")
    page.get_by_role("link", name="Halley Systems").click()
    page.get_by_role("heading", name=re.compile("Halley Systems")).first.wait_for()
    _admin_action(page, tenant, "suspend")
    page.get_by_text(re.compile(r"suspended 1 tenant")).wait_for()
    assert Tenant.objects.get(pk=tenant.pk).status == "suspended"
    screenshot(page, "staff_suspend")

    _admin_action(page, tenant, "reactivate")
    page.get_by_text(re.compile(r"reactivated 1 tenant")).wait_for()
    assert Tenant.objects.get(pk=tenant.pk).status == "active"


def _admin_action(page, tenant, action: str) -> None:
    """Run the TenantAdmin action `action` on `tenant` from the change list (select the row,
    choose the action, Go), confirming on an intermediate page if the action has one."""
    page.goto(page.url.split("/admin/")[0] + f"/admin/tenants/tenant/?q={tenant.slug}")
    page.get_by_role("checkbox", name=re.compile(rf"Select this object.*{re.escape(tenant.name)}")).check()
    page.get_by_role("combobox", name=re.compile(r"^Action")).select_option(action)
    page.get_by_role("button", name=re.compile(r"Run the selected action|Go")).click()
    page.wait_for_load_state()
    confirm = page.get_by_role("button", name=re.compile(r"^(Yes|Confirm|Suspend|Reactivate)", re.I))
    if confirm.count():
        reason = page.get_by_label(re.compile(r"Reason", re.I))
        if reason.count():
            reason.fill("Browser test")
        confirm.first.click()
        page.wait_for_load_state()
