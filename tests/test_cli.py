"""The `aerolith` CLI as customers run it: a real process (`python -m aerolith_cli`) talking
HTTP to a real server (gunicorn on the test database), with its config in a temporary
home directory.

Why gunicorn and not pytest-django's `live_server`: live_server needs a transactional
database that is flushed after each test, which would wipe the session tenants every
other test relies on. Here everything the server must see is made by module fixtures,
outside any test transaction, so it is committed, in organisations of this module only
(clidemo, clicluster). The tests themselves are marked django_db only so that
pytest-django sets the test database up; they write nothing in-process.
"""
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from django.conf import settings
from django.db import connection

from aerolith_cli.client import EXIT_API, EXIT_AUTH, Api, error_for, normalise_url
from provisioning.models import Cluster, Operation, OperationState
from tenants.models import Tenant
from tenants.services.signup import tenant_signup
from tests.conftest import PASSWORD, child_database_url, free_port, live_gunicorn, make_key

ROOT = Path(__file__).resolve().parent.parent
pytestmark = [pytest.mark.django_db, pytest.mark.commits_data]  # commits_data: run last
FULL = ["read", "databases:write", "api_keys:write"]


@pytest.fixture(scope="module")
def port(shared_cluster, django_db_blocker, tmp_path_factory):
    """A gunicorn serving the test database; databases go to the session's shared cluster."""
    port = free_port()
    with django_db_blocker.unblock():
        env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.cli_server_settings",
               "DATABASE_URL": child_database_url(), "REDIS_URL": settings.REDIS_URL}
    yield from live_gunicorn(env, port, tmp_path_factory.mktemp("gunicorn"))


def _signup(django_db_blocker, slug: str, plan: str = "professional") -> Tenant:
    with django_db_blocker.unblock():
        tenant = Tenant.objects.filter(slug=slug).first()
        if tenant is None:
            tenant = tenant_signup(organization=f"{slug.title()} Ltd", slug=slug,
                                   email=f"owner@{slug}.test", password=PASSWORD, plan=plan,
                                   region="eu-central").tenant
        connection.set_schema_to_public()
    return tenant


@pytest.fixture(scope="module")
def demo(django_db_blocker):
    return _signup(django_db_blocker, "clidemo")


@pytest.fixture(scope="module")
def demo_key(demo, django_db_blocker):
    with django_db_blocker.unblock():
        return make_key(demo, FULL, name="cli test")


@pytest.fixture(scope="module")
def read_only_key(demo, django_db_blocker):
    with django_db_blocker.unblock():
        return make_key(demo, ["read"], name="read only")


@pytest.fixture(scope="module")
def invoice_number(demo, django_db_blocker):
    from tests.billing.api_support import open_invoice

    with django_db_blocker.unblock():
        number = open_invoice(demo, cents=4321).number
        connection.set_schema_to_public()
    return number


@pytest.fixture(scope="module")
def enterprise_cluster(django_db_blocker):
    """An Enterprise organisation's cluster whose create operation is marked done (no
    PostgreSQL is started); its operations are marked done again at the end, so that
    nothing later finds a pending operation."""
    from tests.provisioning.api_support import enterprise, make_cluster

    tenant = _signup(django_db_blocker, "clicluster")
    with pytest.MonkeyPatch.context() as patch, django_db_blocker.unblock():
        patch.setattr("provisioning.services.operations._enqueue", lambda operation_id: None)
        enterprise(tenant)
        key = make_key(tenant, FULL)
        cluster = make_cluster(tenant, name="cli-main", nodes=3)
        connection.set_schema_to_public()
    yield cluster, key
    with django_db_blocker.unblock():
        Operation.objects.filter(cluster=cluster).update(state=OperationState.SUCCEEDED)
        Cluster.objects.filter(pk=cluster.pk).update(node_count=3)


def url_of(slug: str, port: int) -> str:
    return f"http://{slug}.{settings.AEROLITH_BASE_DOMAIN}:{port}"


class Cli:
    def __init__(self, home: Path):
        self.home = home
        self.config_file = home / "config" / "aerolith" / "config.json"

    def __call__(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
        env = {k: v for k, v in os.environ.items() if not k.startswith("AEROLITH_")}
        env.update(HOME=str(self.home), XDG_CONFIG_HOME=str(self.home / "config"))
        return subprocess.run([sys.executable, "-m", "aerolith_cli", *args], cwd=self.home,
                              env=env, input=stdin, capture_output=True, text=True, timeout=120)

    def json(self, *args: str):
        result = self(*args, "--json")
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)


@pytest.fixture
def cli(tmp_path):
    return Cli(tmp_path)


@pytest.fixture
def logged_in(cli, port, demo_key):
    result = cli("login", "--url", url_of("clidemo", port), "--key", demo_key)
    assert result.returncode == 0, result.stderr
    return cli


# --- installation and session ---------------------------------------------------------

def test_the_console_script_is_installed_in_the_virtualenv():
    script = Path(sys.executable).parent / "aerolith"
    assert script.exists(), "run scripts/_bootstrap.py (pip install -e .) to install it"
    result = subprocess.run([str(script), "--help"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and "databases" in result.stdout


def test_login_checks_the_key_and_stores_it_readable_only_by_the_user(cli, port, demo_key):
    result = cli("login", "--url", url_of("clidemo", port), "--key", demo_key)
    assert result.returncode == 0, result.stderr
    assert "Logged in to Clidemo Ltd (clidemo" in result.stdout
    assert stat.S_IMODE(cli.config_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(cli.config_file.parent.stat().st_mode) == 0o700
    assert json.loads(cli.config_file.read_text())["key"] == demo_key
    assert demo_key not in result.stdout + result.stderr  # never echoed

    again = cli.json("login", "--url", url_of("clidemo", port), "--key", demo_key)
    assert again["slug"] == "clidemo"

    out = cli("logout")
    assert out.returncode == 0 and not cli.config_file.exists()
    assert cli("usage").returncode == EXIT_AUTH


def test_a_wrong_key_exits_3_with_a_friendly_message_and_stores_nothing(cli, port, demo):
    result = cli("login", "--url", url_of("clidemo", port), "--key", "ak_wrong_key_123")
    assert result.returncode == EXIT_AUTH
    assert "The API refused the key" in result.stderr and "aerolith login" in result.stderr
    assert "Traceback" not in result.stderr
    assert not cli.config_file.exists()


def test_commands_before_login_exit_3(cli):
    result = cli("databases", "list")
    assert result.returncode == EXIT_AUTH and "Not logged in" in result.stderr


def test_a_server_that_is_down_is_reported_plainly(cli):
    result = cli("login", "--url", url_of("clidemo", free_port()), "--key", "ak_whatever")
    assert result.returncode == EXIT_API
    assert "Cannot connect" in result.stderr and "connection refused" in result.stderr
    assert "Traceback" not in result.stderr


def test_wrong_usage_exits_2(cli):
    assert cli("databases", "delete", "not-an-id").returncode == 2
    assert cli("clusters", "scale", "1").returncode == 2
    assert cli("frobnicate").returncode == 2


# --- usage, invoices ------------------------------------------------------------------

def test_usage_as_a_table_and_as_json(logged_in):
    result = logged_in("usage")
    assert result.returncode == 0, result.stderr
    assert "Plan professional" in result.stdout and "Projected total" in result.stdout
    body = logged_in.json("usage")
    assert body["plan"] == "professional" and isinstance(body["meters"], list)


def test_invoices_list_and_pdf_download(logged_in, invoice_number):
    number = invoice_number
    result = logged_in("invoices")
    assert result.returncode == 0, result.stderr
    assert number in result.stdout and "43.21" in result.stdout
    assert number in [i["number"] for i in logged_in.json("invoices")]

    target = logged_in.home / "inv.pdf"
    saved = logged_in("invoices", "--pdf", number, "-o", str(target))
    assert saved.returncode == 0, saved.stderr
    assert target.read_bytes().startswith(b"%PDF")

    missing = logged_in("invoices", "--pdf", "INV-NOPE/../x")
    assert missing.returncode == EXIT_API and "Not found" in missing.stderr


# --- databases ------------------------------------------------------------------------

def test_databases_create_list_and_delete(logged_in):
    created = logged_in("databases", "create", "cli_orders")
    assert created.returncode == 0, created.stderr
    assert "shown only this once" in created.stdout
    uri = next(line.strip() for line in created.stdout.splitlines()
               if line.strip().startswith("postgresql://"))
    assert ":" in uri.split("@")[0].removeprefix("postgresql://")  # user:password@

    listed = logged_in.json("databases", "list")
    database = next(d for d in listed if d["name"] == "cli_orders")
    assert "@" in database["uri"] and uri != database["uri"]  # listing has no password
    assert "cli_orders" in logged_in("databases", "list").stdout

    # No terminal to confirm on: refused, nothing deleted.
    refused = logged_in("databases", "delete", str(database["id"]))
    assert refused.returncode == 2 and "--yes" in refused.stderr
    assert any(d["id"] == database["id"] for d in logged_in.json("databases", "list"))

    deleted = logged_in.json("databases", "delete", str(database["id"]), "--yes")
    assert deleted == {"deleted": database["id"], "name": "cli_orders"}
    assert all(d["id"] != database["id"] for d in logged_in.json("databases", "list"))

    bad = logged_in("databases", "create", "Bad Name!")
    assert bad.returncode == EXIT_API and "name" in bad.stderr

    gone = logged_in("databases", "delete", str(database["id"]), "--yes")
    assert gone.returncode == EXIT_API and "Not found" in gone.stderr


def test_a_key_without_the_scope_is_told_which_scope_it_lacks(cli, port, read_only_key):
    assert cli("login", "--url", url_of("clidemo", port), "--key", read_only_key).returncode == 0
    result = cli("databases", "create", "nope")
    assert result.returncode == EXIT_AUTH
    assert "Not allowed" in result.stderr and "databases:write" in result.stderr


# --- clusters -------------------------------------------------------------------------

def test_clusters_list_and_scale(cli, port, enterprise_cluster):
    """Scaling answers 202 with the operation pending: the server's tasks go to a broker
    nobody reads (tests/cli_server_settings.py)."""
    cluster, key = enterprise_cluster
    assert cli("login", "--url", url_of("clicluster", port), "--key", key).returncode == 0
    listed = cli("clusters", "list")
    assert listed.returncode == 0, listed.stderr
    assert "cli-main" in listed.stdout and "healthy" in listed.stdout
    assert [c["id"] for c in cli.json("clusters", "list")] == [cluster.pk]

    scaled = cli("clusters", "scale", str(cluster.pk), "4")
    assert scaled.returncode == 0, scaled.stderr
    assert "Scaling cluster cli-main to 4 nodes" in scaled.stdout
    operation = Operation.objects.filter(cluster=cluster, kind="scale").get()
    assert operation.target_nodes == 4 and operation.state == OperationState.PENDING

    busy = cli("clusters", "scale", str(cluster.pk), "5")
    assert busy.returncode == EXIT_API and "Traceback" not in busy.stderr


# --- API keys -------------------------------------------------------------------------

def test_keys_create_list_and_revoke(logged_in):
    created = logged_in.json("keys", "create", "ci deploy", "--scope", "read",
                             "--scope", "databases:write")
    assert created["secret"].startswith("ak_")
    assert sorted(created["scopes"]) == ["databases:write", "read"]
    table = logged_in("keys", "list")
    assert "ci deploy" in table.stdout and created["secret"] not in table.stdout

    revoked = logged_in("keys", "revoke", str(created["id"]))
    assert revoked.returncode == 0, revoked.stderr
    key = next(k for k in logged_in.json("keys", "list") if k["id"] == created["id"])
    assert key["active"] is False

    bad = logged_in("keys", "create", "x", "--scope", "root")
    assert bad.returncode == EXIT_API and "scopes" in bad.stderr


# --- the client without a server -------------------------------------------------------

def _problem(status: int, detail: str, **headers) -> httpx.Response:
    return httpx.Response(status, headers=headers, request=httpx.Request("GET", "http://x/api/v1/y"),
                          json={"type": "t", "title": "T", "status": status, "detail": detail})


def test_errors_become_friendly_messages_with_exit_codes():
    limited = error_for(_problem(429, "Rate limit of 10 requests per second.", **{"Retry-After": "7"}))
    assert limited.exit_code == EXIT_API and "Retry after 7 seconds" in limited.message
    failed = error_for(_problem(502, "x", **{"X-Request-ID": "req-9"}))
    assert "server failed (HTTP 502)" in failed.message and "req-9" in failed.message
    assert error_for(_problem(403, "No.")).exit_code == EXIT_AUTH
    assert error_for(_problem(404, "There is no such key.")).message == "Not found: There is no such key."


def test_lists_follow_next_and_localhost_names_go_to_127_0_0_1_with_the_host_header():
    seen = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append((request.url.host, request.headers["Host"], request.url.params.get("cursor")))
        if request.url.params.get("cursor") == "abc":
            return httpx.Response(200, json={"results": [{"id": 2}], "next": None})
        return httpx.Response(200, json={"results": [{"id": 1}], "next":
                                         "http://acme.aerolith.localhost:8000/api/v1/keys?cursor=abc"})

    with Api("acme.aerolith.localhost:8000/api/v1/", "ak_x",
             transport=httpx.MockTransport(handler)) as api:
        assert api.paginate("/keys") == [{"id": 1}, {"id": 2}]
    assert seen == [("127.0.0.1", "acme.aerolith.localhost:8000", None),
                    ("127.0.0.1", "acme.aerolith.localhost:8000", "abc")]
    assert normalise_url("https://api.example.com/api/v1") == "https://api.example.com"
