import pytest
from django.db import connection
from django_tenants.utils import schema_exists

from billing.models import Subscription
from tenants.models import AuditEvent, Domain, Membership, Tenant, User
from tests.conftest import PASSWORD, api_client, assert_problem

GOOD = {
    "organization": "Delta Corp", "slug": "delta", "email": "Founder@Delta.test",
    "password": PASSWORD, "plan": "starter", "region": "us-west",
}


def _counts():
    return (Tenant.objects.count(), Domain.objects.count(), User.objects.count(),
            Membership.objects.count(), Subscription.objects.count())


@pytest.mark.django_db
def test_signup_creates_tenant_schema_domain_owner_and_trial():
    response = api_client().post("/api/v1/signup", GOOD, format="json")
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["domain"] == "delta.aerolith.localhost"
    assert body["owner"]["email"] == "founder@delta.test"
    assert body["subscription"]["status"] == "trialing"
    tenant = Tenant.objects.get(slug="delta")
    assert tenant.status == "trialing" and tenant.region == "us-west"
    assert schema_exists(tenant.schema_name)
    membership = Membership.objects.get(tenant=tenant)
    assert membership.role == "owner" and membership.accepted_at is not None
    sub = tenant.subscription
    assert (sub.trial_end - sub.current_period_start).days == 14
    assert AuditEvent.objects.filter(tenant=tenant, action="tenant.signed_up").exists()
    # the new schema has the tenant-private tables and is usable at once
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM information_schema.tables "
                       "WHERE table_schema = %s AND table_name = 'tenants_apikey'", [tenant.schema_name])
        assert cursor.fetchone()[0] == 1


@pytest.mark.django_db
def test_signup_on_free_plan_starts_active_without_trial():
    response = api_client().post("/api/v1/signup", {**GOOD, "plan": "free"}, format="json")
    assert response.status_code == 201
    assert response.json()["subscription"] == {"plan": "free", "status": "active", "trial_end": None}


@pytest.mark.django_db
@pytest.mark.parametrize("change, field, code", [
    ({"slug": "alice"}, "slug", "slug_taken"),
    ({"slug": "www"}, "slug", "reserved_slug"),
    ({"slug": "admin"}, "slug", "reserved_slug"),
    ({"slug": "Bad_Slug!"}, "slug", "invalid_slug"),
    ({"slug": "ab"}, "slug", "invalid_slug"),
    ({"slug": "-lead"}, "slug", "invalid_slug"),
    ({"email": "not-an-email"}, "email", "invalid_email"),
    ({"email": "owner@alice.test"}, "email", "email_taken"),
    ({"password": "short"}, "password", "password_too_short"),
    ({"password": "password123456"}, "password", "password_too_common"),
    ({"plan": "platinum"}, "plan", "unknown_plan"),
    ({"plan": "custom"}, "plan", "unknown_plan"),
    ({"region": "mars"}, "region", "invalid_choice"),
    ({"organization": ""}, "organization", "required"),
])
def test_signup_refusals_name_the_field_and_create_nothing(change, field, code):
    before = _counts()
    response = api_client().post("/api/v1/signup", {**GOOD, **change}, format="json")
    body = assert_problem(response, 400, "validation_error")
    assert {"field": field, "code": code} in [
        {"field": e["field"], "code": e["code"]} for e in body["errors"]
    ], body
    assert _counts() == before


@pytest.mark.django_db
def test_signup_reports_every_bad_field_at_once():
    body = assert_problem(api_client().post(
        "/api/v1/signup", {**GOOD, "slug": "www", "email": "x", "password": "1"}, format="json"), 400)
    assert {"slug", "email", "password"} <= {e["field"] for e in body["errors"]}


@pytest.mark.django_db
@pytest.mark.parametrize("missing", ["organization", "slug", "email", "password", "plan"])
def test_signup_missing_field_is_a_field_error(missing):
    before = _counts()
    data = {k: v for k, v in GOOD.items() if k != missing}
    body = assert_problem(api_client().post("/api/v1/signup", data, format="json"), 400)
    assert {"field": missing, "code": "required"} in [
        {"field": e["field"], "code": e["code"]} for e in body["errors"]]
    assert _counts() == before


@pytest.mark.django_db
def test_signup_wrong_content_type_and_malformed_json_are_refused():
    before = _counts()
    client = api_client()
    assert_problem(client.post("/api/v1/signup", "slug=delta", content_type="application/x-www-form-urlencoded"),
                   415, "unsupported_media_type")
    assert_problem(client.post("/api/v1/signup", "{not json", content_type="application/json"),
                   400, "malformed_request")
    assert_problem(client.post("/api/v1/signup", "[1, 2]", content_type="application/json"), 400)
    assert _counts() == before


@pytest.mark.django_db
def test_signup_only_lives_on_the_public_domain():
    assert_problem(api_client("alice").post("/api/v1/signup", GOOD, format="json"), 404)
