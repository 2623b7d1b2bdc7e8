"""Shared fixtures: three tenants made once per session (alice, bob and charlie, who must
see nothing), clients bound to their domains, and helpers to act as their members."""
import pytest
from django.conf import settings
from django.db import connection
from django_tenants.utils import tenant_context
from rest_framework.test import APIClient

from aerolith.devservices import free_port  # noqa: F401 - shared with test modules
from tenants.models import Role, Tenant
from tenants.permissions import Principal, member_principal
from tenants.services.api_keys import api_key_create
from tenants.services.schemas import base_schema_migrate
from tenants.services.signup import tenant_signup

PASSWORD = "a-long-test-password-42"
PUBLIC_HOST = settings.AEROLITH_BASE_DOMAIN


def child_database_url() -> str:
    """A URL for the test database that a child process can use (a unix socket with the
    embedded PostgreSQL, host and port otherwise)."""
    from urllib.parse import quote

    s = connection.settings_dict
    socket_dir = (s.get("OPTIONS") or {}).get("host")
    auth = s["USER"] + (f":{quote(s['PASSWORD'])}" if s.get("PASSWORD") else "")
    if socket_dir:
        return f"postgresql://{auth}@/{s['NAME']}?host={quote(socket_dir)}"
    return f"postgresql://{auth}@{s.get('HOST') or '127.0.0.1'}:{s.get('PORT') or 5432}/{s['NAME']}"


def live_gunicorn(env: dict, port: int, log_dir, threads: int = 4):
    """A real gunicorn serving the test database on `port` (for tests that drive the
    product over HTTP from another process: the CLI, the browser); yields once it answers
    /healthz, and stops it afterwards. Use from a module fixture with `yield from`."""
    import subprocess
    import sys
    import time
    from pathlib import Path

    import httpx

    log = Path(log_dir) / "server.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "aerolith.wsgi:application", "--bind",
             f"127.0.0.1:{port}", "--workers", "1", "--threads", str(threads), "--timeout", "120"],
            cwd=Path(__file__).resolve().parent.parent, env=env, stdout=out,
            stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while True:
        if process.poll() is not None:
            pytest.fail(f"gunicorn exited: {log.read_text()[-3000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"gunicorn did not answer within 60 s: {log.read_text()[-3000:]}")
        time.sleep(0.2)
    try:
        yield port
    finally:
        process.terminate()
        process.wait(timeout=30)


def host_of(slug: str) -> str:
    return f"{slug}.{settings.AEROLITH_BASE_DOMAIN}"


def pytest_collection_modifyitems(config, items):
    """Modules that commit data for a real server (browser journeys, the CLI) run last, in
    their order: what they leave behind (organisations, staff devices, test clocks) is
    then never seen by a test that counts or rotates such rows."""
    late = [item for item in items if item.get_closest_marker("commits_data")]
    if late:
        items[:] = [item for item in items if not item.get_closest_marker("commits_data")] + late


@pytest.fixture(scope="session")
def django_db_setup(django_db_setup, django_db_blocker):
    """After the test database is migrated: the base schema and three tenants."""
    with django_db_blocker.unblock():
        base_schema_migrate()
        for slug, plan in (("alice", "starter"), ("bob", "professional"), ("charlie", "free")):
            tenant_signup(organization=f"{slug.title()} Ltd", slug=slug,
                          email=f"owner@{slug}.test", password=PASSWORD, plan=plan,
                          region="eu-central")
        connection.set_schema_to_public()


@pytest.fixture(autouse=True)
def _public_schema_after_each_test():
    yield
    connection.set_schema_to_public()


@pytest.fixture
def alice(db):
    return Tenant.objects.get(slug="alice")


@pytest.fixture
def bob(db):
    return Tenant.objects.get(slug="bob")


@pytest.fixture
def charlie(db):
    return Tenant.objects.get(slug="charlie")


def api_client(slug: str | None = None, token: str | None = None) -> APIClient:
    client = APIClient(HTTP_HOST=host_of(slug) if slug else PUBLIC_HOST)
    if token:
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client


def owner_principal(tenant: Tenant) -> Principal:
    owner = tenant.memberships.get(role=Role.OWNER).user
    return member_principal(tenant, owner)


def make_key(tenant: Tenant, scopes: list[str], name: str = "test key") -> str:
    with tenant_context(tenant):
        _, secret = api_key_create(principal=owner_principal(tenant), name=name, scopes=scopes)
    connection.set_schema_to_public()
    return secret


def jwt_for(slug: str, email: str, password: str = PASSWORD) -> str:
    response = api_client(slug).post("/api/v1/auth/token", {"email": email, "password": password},
                                     format="json")
    assert response.status_code == 200, response.content
    return response.json()["access"]


def add_member(tenant: Tenant, email: str, role: str, password: str = PASSWORD):
    """A member with an accepted invitation, made through the services."""
    from tenants.services.members import invitation_accept, member_invite

    membership, token = member_invite(principal=owner_principal(tenant), email=email, role=role)
    return invitation_accept(tenant=tenant, token=token, password=password)


def assert_problem(response, status: int, code: str | None = None) -> dict:
    assert response.status_code == status, response.content
    assert response["Content-Type"].startswith("application/problem+json"), response["Content-Type"]
    body = response.json()
    assert body["status"] == status and body["title"] and body["detail"] and body["type"]
    if code is not None:
        assert body["code"] == code, body
    return body


def portal_user(tenant: Tenant, email: str | None = None):
    """A portal client on `tenant`'s domain, logged in as `email` (default: its owner)."""
    from django.test import Client

    from tenants.models import User

    client = Client(HTTP_HOST=host_of(tenant.slug))
    client.force_login(User.objects.get(email=email or f"owner@{tenant.slug}.test"))
    return client


def portal_member(tenant: Tenant, role: str):
    """A portal client of a new member of `tenant` with `role`."""
    email = f"{role}@{tenant.slug}.test"
    add_member(tenant, email, role)
    return portal_user(tenant, email)


# --- two-factor authentication and sign-in throttling (SPEC §8) ---------------------------

def otp_verify(client, user):
    """Mark `client`'s signed-in session as having passed two-factor authentication for
    `user`, the way django_otp.login does after a right code: the user gets a confirmed
    authenticator device if they have none. Returns the device."""
    from django_otp import DEVICE_ID_SESSION_KEY

    from tenants.models import TotpDevice

    device = (TotpDevice.objects.filter(user=user, confirmed=True).first()
              or TotpDevice.objects.create_for(user, name="Test app", confirmed=True))
    session = client.session
    session[DEVICE_ID_SESSION_KEY] = device.persistent_id
    session.save()
    return device


def staff_client(user=None):
    """A client on the public domain signed in as staff (default: a new superuser
    ops@aerolith.test) who passed two-factor authentication, so the admin opens."""
    from django.test import Client

    from tenants.models import User

    user = user or User.objects.create_superuser("ops@aerolith.test", PASSWORD)
    client = Client(HTTP_HOST=PUBLIC_HOST)
    client.force_login(user)
    otp_verify(client, user)
    return client


@pytest.fixture(autouse=True)
def _axes_reset(request, django_db_blocker):
    """Failed sign-ins (django-axes) never carry over from one test to the next: they are
    rows rolled back with each test's transaction, and this also clears any a transactional
    or live-server test committed, so a later test is never locked out by an earlier one."""
    yield
    if "_django_db_helper" not in request.fixturenames:
        return
    from django.db import connection

    if connection.in_atomic_block:
        return  # the test's transaction is rolled back, attempts with it
    from axes.models import AccessAttempt

    with django_db_blocker.unblock():
        if AccessAttempt.objects.exists():
            AccessAttempt.objects.all().delete()


# --- a real shared cluster (moved here from tests/provisioning/conftest.py so that tests
# outside provisioning, e.g. the CLI's, can create databases) ----------------------------

def server_tmpdir(prefix: str):
    """A directory the PostgreSQL servers' own user can reach for as long as the test
    needs it. Not under pytest's tmp_path: every new pytest session (another checkout's,
    a helper's) resets /tmp/pytest-of-<user> to mode 0700, locking the servers out."""
    import shutil
    import tempfile
    from pathlib import Path

    path = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def clusters_dir():
    import os

    for path in server_tmpdir("aerolith-test-clusters-"):
        previous = os.environ.get("AEROLITH_CLUSTERS_DIR")
        os.environ["AEROLITH_CLUSTERS_DIR"] = str(path)
        yield path
        if previous is None:
            os.environ.pop("AEROLITH_CLUSTERS_DIR", None)
        else:
            os.environ["AEROLITH_CLUSTERS_DIR"] = previous


@pytest.fixture(scope="session")
def shared_cluster(django_db_setup, django_db_blocker, clusters_dir):
    """The region eu-central's shared cluster, provisioned once per session through the same
    services and local driver as production; stopped with its files removed at the end."""
    from provisioning.drivers import driver_for
    from provisioning.drivers.base import Step
    from provisioning.models import Health
    from provisioning.services.clusters import shared_cluster_ensure
    from provisioning.services.operations import operation_run

    with django_db_blocker.unblock():
        cluster, operation = shared_cluster_ensure("eu-central")
        if operation is not None:
            operation_run(operation.pk)  # already run by the eager task; a no-op then
        cluster.refresh_from_db()
        assert cluster.health == Health.HEALTHY, (cluster.health, operation and operation.error)
        connection.set_schema_to_public()
    yield cluster
    driver_for(cluster.provider).apply(cluster.handle, Step("delete_cluster"), None)
