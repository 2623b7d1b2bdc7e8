"""Shared fixtures: three tenants made once per session (alice, bob and charlie, who must
see nothing), clients bound to their domains, and helpers to act as their members."""
import pytest
from django.conf import settings
from django.db import connection
from django_tenants.utils import tenant_context
from rest_framework.test import APIClient

from tenants.models import Role, Tenant
from tenants.permissions import Principal, member_principal
from tenants.services.api_keys import api_key_create
from tenants.services.schemas import base_schema_migrate
from tenants.services.signup import tenant_signup

PASSWORD = "a-long-test-password-42"
PUBLIC_HOST = settings.AEROLITH_BASE_DOMAIN


def host_of(slug: str) -> str:
    return f"{slug}.{settings.AEROLITH_BASE_DOMAIN}"


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
