"""Browser tests: Debian's Chromium, headless, driven by Playwright (sync API) against a real
gunicorn on the test database, everything on loopback.

The server is started the way tests/test_cli.py starts it (and for the same reason:
pytest-django's live_server would flush the database after each test): the data it must
see is made by module fixtures outside any test transaction, so it is committed, in
organisations of these tests only. The tests are marked django_db only so that pytest-django
sets the test database up; what a test must commit while it runs (beat's crypto scan) runs
in a process of its own with the server's settings (`run_task`).

Chromium is Debian's package (/usr/bin/chromium): Playwright never downloads a browser
here. scripts/test.py installs it when it is missing and it can; otherwise these tests
fail, saying how to install it, rather than being skipped.
"""
import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection

from tenants.models import Tenant
from tenants.services.signup import tenant_signup
from tests.conftest import PASSWORD, child_database_url, free_port, live_gunicorn

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "docs" / "screenshots"
CHROMIUM = os.environ.get("AEROLITH_CHROMIUM", "/usr/bin/chromium")
INSTALL_HINT = ("Install Debian's Chromium: `apt-get install -y --no-install-recommends chromium` "
                "(as root; `python3 scripts/test.py` does it when it runs as root on Debian), or set "
                "AEROLITH_CHROMIUM to a Chromium binary. Playwright must never download a browser "
                "here (no `playwright install`).")
WIDTH, HEIGHT = 1280, 800


@pytest.fixture(scope="session")
def chromium_path() -> str:
    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        pytest.fail(f"The browser tests need Chromium at {CHROMIUM}, which is missing. {INSTALL_HINT}",
                    pytrace=False)
    return CHROMIUM


@pytest.fixture(scope="module")
def browser(chromium_path):
    """Playwright's sync API keeps an asyncio loop on this thread (driven through greenlets),
    which makes Django refuse ORM calls as if they came from a coroutine; they do not, so the
    check is off while the browser runs, and only then (the server never gets the variable)."""
    from playwright.sync_api import sync_playwright

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=chromium_path, headless=True,
                                                 args=["--no-sandbox", "--disable-dev-shm-usage"])
            yield browser
            browser.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": WIDTH, "height": HEIGHT}, accept_downloads=True)
    context.set_default_timeout(15_000)
    page = context.new_page()
    yield page
    context.close()


def screenshot(page, name: str) -> Path:
    """The whole page, 1280 px wide, as docs/screenshots/<name>.png (the README shows them)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True, animations="disabled")
    return path


# --- the chain fake and the server --------------------------------------------------------

@pytest.fixture(scope="module")
def solana():
    """The LiteSVM Solana RPC fake with its funded test wallet (/wallet page), as
    `python -m tests.fakes.solana_rpc` serves it for a person trying test mode."""
    from tests.fakes.solana_rpc import SolanaRpcServer, fund_test_wallet

    server = SolanaRpcServer()
    fund_test_wallet(server.ledger, settings.AEROLITH_SOLANA_MERCHANT)
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def server_env(shared_cluster, solana, django_db_blocker) -> dict:
    """The environment of the server and of `run_task`: the test database, the session's
    shared cluster (AEROLITH_CLUSTERS_DIR), the Solana fake, and the server's port, which
    the links it makes to other hosts carry (the sign-in hand-over, card setup return)."""
    with django_db_blocker.unblock():
        return {**{k: v for k, v in os.environ.items() if k != "DJANGO_ALLOW_ASYNC_UNSAFE"},
                "DJANGO_SETTINGS_MODULE": "tests.browser.server_settings",
                "DATABASE_URL": child_database_url(), "REDIS_URL": settings.REDIS_URL,
                "AEROLITH_BROWSER_SOLANA_RPC_URL": solana.url, "AEROLITH_URL_PORT": str(free_port())}


def run_task(env: dict, task: str):
    """Run the Celery task `task` ("app.tasks.name") once, as a worker would, in its own
    process with the server's settings (so what it writes is committed); its result."""
    code = ("import django, json; django.setup(); from django.utils.module_loading import import_string; "
            f"print(json.dumps(import_string({task!r})()))")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def server_port(server_env, tmp_path_factory):
    """A gunicorn serving the test database (databases go to the session's shared cluster),
    talking to the Solana fake; its port."""
    env = server_env
    port = int(env["AEROLITH_URL_PORT"])
    yield from live_gunicorn(env, port, tmp_path_factory.mktemp("browser-server"), threads=8)


@pytest.fixture(scope="module")
def public_url(server_port) -> str:
    return f"http://{settings.AEROLITH_BASE_DOMAIN}:{server_port}"


def portal_url(slug: str, port: int) -> str:
    """`<slug>.aerolith.localhost` resolves to loopback in Chromium by itself."""
    return f"http://{slug}.{settings.AEROLITH_BASE_DOMAIN}:{port}"


def free_slug(base: str) -> str:
    """`base` on a fresh test database; with a reused one, `base-<hex>` (committed tenants of
    an earlier run stay)."""
    if not Tenant.objects.filter(slug=base).exists():
        return base
    return f"{base}-{secrets.token_hex(2)}"


def committed_tenant(django_db_blocker, base: str, name: str, plan: str = "professional",
                     prepare=None) -> Tenant:
    """A new organisation (owner owner@<slug>.test, PASSWORD) in eu-central, committed;
    `prepare(tenant)` runs next, committed too."""
    with django_db_blocker.unblock():
        slug = free_slug(base)
        tenant = tenant_signup(organization=name, slug=slug, email=f"owner@{slug}.test",
                               password=PASSWORD, plan=plan, region="eu-central").tenant
        if prepare is not None:
            prepare(tenant)
        connection.set_schema_to_public()
    return tenant


def sign_in(page, port: int, tenant: Tenant) -> None:
    page.goto(f"{portal_url(tenant.slug, port)}/login")
    page.get_by_label("Email").fill(f"owner@{tenant.slug}.test")
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_load_state()
    assert "/login" not in page.url, page.content()[:2000]
