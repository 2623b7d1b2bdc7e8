"""API conventions that hold for every endpoint (SPEC §10): problem+json errors, cursor
pagination, the OpenAPI document and its browser, the public plan list, request ids."""
import json
import re
from urllib.parse import urlsplit

import pytest
import yaml
from openapi_spec_validator import validate

from tests.conftest import add_member, api_client, assert_problem, jwt_for, make_key

PROBLEM_FIELDS = {"type", "title", "status", "detail", "code"}


def _problem_shape(response, status: int, code: str) -> dict:
    body = assert_problem(response, status, code)
    assert PROBLEM_FIELDS <= set(body), body
    assert body["type"].startswith("https://") and body["type"].endswith(f"/{code}")
    assert isinstance(body["detail"], str) and len(body["detail"]) > 10
    return body


# --- problem+json -------------------------------------------------------------------------

@pytest.mark.django_db
def test_400_is_problem_json_listing_each_bad_field():
    body = _problem_shape(api_client().post("/api/v1/signup", {"plan": "starter"}, format="json"),
                          400, "validation_error")
    assert {"organization", "slug", "email", "password"} <= {e["field"] for e in body["errors"]}
    assert all({"field", "code", "detail"} == set(e) for e in body["errors"])


@pytest.mark.django_db
def test_400_for_malformed_json_is_problem_json(alice):
    client = api_client("alice", jwt_for("alice", "owner@alice.test"))
    _problem_shape(client.post("/api/v1/api-keys", '{"name": ', content_type="application/json"),
                   400, "malformed_request")


@pytest.mark.django_db
@pytest.mark.parametrize("token", [None, "ak_badbadbadbad.secret", "not-a-jwt", "ak_short"])
def test_401_is_problem_json_with_a_www_authenticate_header(alice, token):
    response = api_client("alice", token).get("/api/v1/members")
    code = "not_authenticated" if token is None else "authentication_failed"
    _problem_shape(response, 401, code)
    assert response["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.django_db
def test_401_for_a_non_bearer_scheme_is_problem_json(alice):
    client = api_client("alice")
    client.credentials(HTTP_AUTHORIZATION="Basic b3duZXI6cGFzcw==")
    _problem_shape(client.get("/api/v1/members"), 401, "authentication_failed")


@pytest.mark.django_db
def test_403_is_problem_json_naming_what_is_missing(alice):
    response = api_client("alice", make_key(alice, ["read"])).post(
        "/api/v1/members", {"email": "x@alice.test", "role": "viewer"}, format="json")
    body = _problem_shape(response, 403, "insufficient_scope")
    assert "members:write" in body["detail"]
    add_member(alice, "viewer@alice.test", "viewer")
    response = api_client("alice", jwt_for("alice", "viewer@alice.test")).post(
        "/api/v1/api-keys", {"name": "x", "scopes": ["read"]}, format="json")
    assert "viewer" in _problem_shape(response, 403, "role_not_allowed")["detail"]


@pytest.mark.django_db
@pytest.mark.parametrize("slug, path", [
    ("alice", "/api/v1/no-such-endpoint"),
    ("alice", "/api/v1/members/999999"),
    ("alice", "/api/v1/members/abc"),
    ("alice", "/api/v1/members/99999999999999999999999999"),
    ("alice", "/api/v1/api-keys/abc"),
    ("alice", "/api/v1/api-keys/99999999999999999999999999"),
    ("alice", "/api/v1/plans"),  # the plan list lives on the public domain
    (None, "/api/v1/members"),  # tenant endpoints are not on the public domain
    (None, "/api/v1/no-such-endpoint"),
])
def test_404_is_problem_json(alice, slug, path):
    client = api_client(slug, jwt_for("alice", "owner@alice.test") if slug else None)
    _problem_shape(client.get(path), 404, "not_found")


@pytest.mark.django_db
def test_404_for_an_unknown_organisation_is_problem_json():
    body = _problem_shape(api_client("nosuchorg").get("/api/v1/members"), 404, "unknown_host")
    assert "nosuchorg" in body["detail"]


@pytest.mark.django_db
@pytest.mark.parametrize("method, path", [
    ("put", "/api/v1/members"),
    ("delete", "/api/v1/members"),
    ("patch", "/api/v1/api-keys/1"),
    ("get", "/api/v1/auth/token"),
])
def test_405_is_problem_json(alice, method, path):
    client = api_client("alice", jwt_for("alice", "owner@alice.test"))
    response = getattr(client, method)(path, {}, format="json")
    body = _problem_shape(response, 405, "method_not_allowed")
    assert method.upper() in body["detail"]


@pytest.mark.django_db
def test_405_on_the_public_plan_list_is_problem_json():
    _problem_shape(api_client().post("/api/v1/plans", {}, format="json"), 405, "method_not_allowed")


@pytest.mark.django_db
@pytest.mark.parametrize("content_type, payload", [
    ("application/x-www-form-urlencoded", "name=x&scopes=read"),
    ("multipart/form-data; boundary=xyz", "--xyz--"),
    ("text/plain", '{"name": "x", "scopes": ["read"]}'),
])
def test_415_is_problem_json(alice, content_type, payload):
    client = api_client("alice", jwt_for("alice", "owner@alice.test"))
    response = client.post("/api/v1/api-keys", payload, content_type=content_type)
    _problem_shape(response, 415, "unsupported_media_type")


# --- cursor pagination --------------------------------------------------------------------

@pytest.fixture
def alice_team(alice):
    for n, role in enumerate(["admin", "developer", "viewer"]):
        add_member(alice, f"member{n}@alice.test", role)
    return api_client("alice", make_key(alice, ["read"]))


@pytest.mark.django_db
def test_members_page_through_with_limit_and_next_links(alice, alice_team):
    first = alice_team.get("/api/v1/members?limit=1")
    assert first.status_code == 200, first.content
    body = first.json()
    assert set(body) >= {"next", "previous", "results"} and len(body["results"]) == 1
    assert body["previous"] is None
    assert urlsplit(body["next"]).netloc == "alice.aerolith.localhost"

    seen, url = [], "/api/v1/members?limit=1"
    while url:
        page = alice_team.get(url)
        assert page.status_code == 200, page.content
        seen += [m["email"] for m in page.json()["results"]]
        url = page.json()["next"]
    assert len(seen) == len(set(seen)) == 4
    assert set(seen) == {"owner@alice.test", "member0@alice.test", "member1@alice.test",
                         "member2@alice.test"}

    second = alice_team.get(body["next"]).json()
    back = alice_team.get(second["previous"]).json()
    assert back["results"] == body["results"]


@pytest.mark.django_db
def test_members_default_page_holds_everything_small(alice_team):
    body = alice_team.get("/api/v1/members").json()
    assert len(body["results"]) == 4 and body["next"] is None
    assert alice_team.get("/api/v1/members?limit=500").status_code == 200


@pytest.mark.django_db
@pytest.mark.parametrize("query, field", [
    ("limit=0", "limit"),
    ("limit=501", "limit"),
    ("limit=-1", "limit"),
    ("limit=abc", "limit"),
    ("limit=1.5", "limit"),
    ("limit=", "limit"),
    ("limit=99999999999999999999999", "limit"),
    ("cursor=garbage", "cursor"),
    ("cursor=cD0yMDI2", "cursor"),  # base64 of something that is not a cursor
    ("cursor=%00%ff", "cursor"),
])
def test_bad_limit_or_cursor_is_a_400_problem_not_a_500(alice_team, query, field):
    body = _problem_shape(alice_team.get(f"/api/v1/members?{query}"), 400, "validation_error")
    assert body["errors"][0]["field"] == field


@pytest.mark.django_db
@pytest.mark.parametrize("raw, status", [
    ("p=not-a-time", 400),  # decodes, but its position is not a time
    ("p=2026", 400),
    ("r=1&p=%00", 400),
    ("o=-5", 400),
    ("o=99999999999999999999", 200),  # DRF caps the offset: an empty page, not a crash
    ("p=2000-01-01T00:00:00Z", 200),  # a real position: the page after it
])
def test_a_hand_made_cursor_is_a_page_or_a_400_never_a_500(alice_team, raw, status):
    import base64

    cursor = base64.b64encode(raw.encode()).decode()
    response = alice_team.get("/api/v1/members", {"cursor": cursor})
    if status == 400:
        assert _problem_shape(response, 400, "validation_error")["errors"][0]["field"] == "cursor"
    else:
        assert response.status_code == 200, response.content


# --- the OpenAPI document -----------------------------------------------------------------

EXPECTED_PATHS = {"/api/v1/signup", "/api/v1/plans", "/api/v1/members", "/api/v1/api-keys",
                  "/api/v1/test-clock/advance", "/api/v1/auth/token", "/api/v1/audit-events",
                  "/api/v1/tenant", "/api/v1/subscription"}


@pytest.mark.django_db
@pytest.mark.parametrize("slug", [None, "alice"], ids=["public-domain", "tenant-domain"])
def test_openapi_schema_is_a_valid_openapi_3_document_with_every_endpoint(slug):
    response = api_client(slug).get("/api/schema/")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/vnd.oai.openapi")
    document = yaml.safe_load(response.content)
    assert document["openapi"].startswith("3.")
    assert EXPECTED_PATHS <= set(document["paths"]), sorted(document["paths"])
    validate(document)  # raises on a structurally invalid document

    as_json = api_client(slug).get("/api/schema/", {"format": "json"})
    assert as_json.status_code == 200 and json.loads(as_json.content) == document


@pytest.mark.django_db
def test_openapi_schema_documents_problem_responses_and_methods():
    document = yaml.safe_load(api_client().get("/api/schema/").content)
    assert "Problem" in document["components"]["schemas"]
    advance = document["paths"]["/api/v1/test-clock/advance"]["post"]
    assert {"400", "401", "403", "404"} <= set(advance["responses"])
    assert {"get", "post"} <= set(document["paths"]["/api/v1/members"])
    assert "delete" in document["paths"]["/api/v1/api-keys/{id}"]


@pytest.mark.django_db
def test_openapi_schema_says_how_to_authenticate():
    document = yaml.safe_load(api_client().get("/api/schema/").content)
    schemes = document["components"]["securitySchemes"]
    assert schemes["apiKey"]["scheme"] == schemes["jwt"]["scheme"] == "bearer"
    members = document["paths"]["/api/v1/members"]["get"]
    assert {"apiKey": []} in members["security"] and {"jwt": []} in members["security"]
    for public in ("/api/v1/plans", "/api/v1/signup", "/api/v1/auth/token"):
        operation = next(iter(document["paths"][public].values()))
        assert operation.get("security", [{}]) in ([{}], []), public


@pytest.mark.django_db
@pytest.mark.parametrize("slug", [None, "alice"])
def test_api_docs_page_is_html_pointing_at_the_schema(slug):
    response = api_client(slug).get("/api/docs/")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/html")
    assert "/api/schema/" in response.content.decode()


# --- the public plan list -----------------------------------------------------------------

PLANS = [
    {"code": "free", "name": "Free", "price": {"amount": "0.00", "currency": "USD"},
     "price_cents": 0, "support": "community", "overage_allowed": False, "api_rate_per_second": 5,
     "limits": {"databases": 1, "storage_gb": "0.5", "api_calls": "10000",
                "compute_hours": "10", "bandwidth_gb": "5"}},
    {"code": "starter", "name": "Starter", "price": {"amount": "29.00", "currency": "USD"},
     "price_cents": 2900, "support": "email", "overage_allowed": True, "api_rate_per_second": 20,
     "limits": {"databases": 3, "storage_gb": "5", "api_calls": "100000",
                "compute_hours": "100", "bandwidth_gb": "50"}},
    {"code": "professional", "name": "Professional",
     "price": {"amount": "99.00", "currency": "USD"}, "price_cents": 9900,
     "support": "priority", "overage_allowed": True, "api_rate_per_second": 100,
     "limits": {"databases": None, "storage_gb": "100", "api_calls": "5000000",
                "compute_hours": "750", "bandwidth_gb": "500"}},
    {"code": "enterprise", "name": "Enterprise",
     "price": {"amount": "499.00", "currency": "USD"}, "price_cents": 49900,
     "support": "24/7 phone", "overage_allowed": True, "api_rate_per_second": 500,
     "limits": {"databases": None, "storage_gb": "1000", "api_calls": None,
                "compute_hours": "5000", "bandwidth_gb": "5000"}},
]


@pytest.mark.django_db
def test_plans_list_the_spec_plans_with_exact_prices_and_limits_without_auth():
    response = api_client().get("/api/v1/plans")
    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    plans = response.json()
    assert [p["code"] for p in plans] == ["free", "starter", "professional", "enterprise"]
    for got, want in zip(plans, PLANS, strict=True):
        assert {k: got[k] for k in want} == want
        assert got["is_custom"] is False


@pytest.mark.django_db
def test_plans_ignore_credentials_even_bad_ones():
    response = api_client(token="ak_not-a-real-key").get("/api/v1/plans")
    assert response.status_code == 200 and len(response.json()) == 4


# --- request ids --------------------------------------------------------------------------

@pytest.mark.django_db
def test_x_request_id_is_echoed_on_success_and_on_errors(alice):
    ok = api_client().get("/api/v1/plans", HTTP_X_REQUEST_ID="test-req-1")
    assert ok.status_code == 200 and ok["X-Request-ID"] == "test-req-1"
    failed = api_client("alice").get("/api/v1/members", HTTP_X_REQUEST_ID="test-req-2")
    assert failed.status_code == 401 and failed["X-Request-ID"] == "test-req-2"
    missing = api_client("alice").get("/api/v1/nowhere", HTTP_X_REQUEST_ID="test-req-3")
    assert missing.status_code == 404 and missing["X-Request-ID"] == "test-req-3"


@pytest.mark.django_db
def test_x_request_id_is_generated_when_absent_or_unsafe():
    ids = set()
    for header in (None, "", "has spaces", "x" * 65, "newline\nid", "<script>"):
        extra = {} if header is None else {"HTTP_X_REQUEST_ID": header}
        response = api_client().get("/api/v1/plans", **extra)
        assert re.fullmatch(r"[0-9a-f]{32}", response["X-Request-ID"]), response["X-Request-ID"]
        ids.add(response["X-Request-ID"])
    assert len(ids) == 6  # a fresh id for every request


@pytest.mark.django_db
def test_x_request_id_is_on_portal_pages_too():
    from django.test import Client

    response = Client(HTTP_HOST="aerolith.localhost").get("/", HTTP_X_REQUEST_ID="portal-1")
    assert response.status_code == 200 and response["X-Request-ID"] == "portal-1"
