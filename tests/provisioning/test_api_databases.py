"""The databases API (SPEC §7, §10) against the real shared cluster of eu-central: create
(the URI with its password only in that answer), list, read, delete, and SQL over HTTP
with PostgreSQL's errors as problem+json carrying their SQLSTATE. Refusals change nothing;
another organisation's databases do not exist for a tenant; roles and scopes decide who
writes."""
import psycopg
import pytest
from django_tenants.utils import tenant_context

from provisioning.models import Database
from tenants.models import Role, TenantStatus
from tests.conftest import add_member, api_client, assert_problem, jwt_for, make_key

WRITE = ["read", "databases:write"]


@pytest.fixture
def owner(alice, shared_cluster):
    return api_client("alice", make_key(alice, WRITE))


def rows(tenant):
    with tenant_context(tenant):
        return list(Database.objects.order_by("pk").values_list("pk", "name", "role_name"))


def create(client, name="orders"):
    response = client.post("/api/v1/databases", {"name": name}, format="json")
    assert response.status_code == 201, response.content
    return response.json()


# --- create, read, list -----------------------------------------------------------------

@pytest.mark.django_db
def test_create_answers_the_uri_with_password_once_and_never_again(owner, alice):
    body = create(owner)
    assert body["name"] == "orders" and body["placement"] == "shared_schema"
    assert body["state"] == "ready" and body["restrictions"] == [] and body["created_at"]
    uri = body["uri"]
    role = rows(alice)[0][2]
    assert uri.startswith(f"postgresql://{role}:") and "@" in uri
    with psycopg.connect(uri, connect_timeout=5) as conn:  # the URI really connects
        assert conn.execute("select 1").fetchone() == (1,)
    detail = owner.get(f"/api/v1/databases/{body['id']}").json()
    assert detail["uri"].startswith(f"postgresql://{role}@")
    password = uri.split(":")[2].split("@")[0]
    assert password not in detail["uri"]
    listed = owner.get("/api/v1/databases").json()["results"]
    assert [d["name"] for d in listed] == ["orders"]
    assert password not in str(listed)


@pytest.mark.django_db
def test_duplicate_name_is_409_and_changes_nothing(owner, alice):
    create(owner)
    before = rows(alice)
    assert_problem(owner.post("/api/v1/databases", {"name": "orders"}, format="json"), 409,
                   "duplicate_name")
    assert rows(alice) == before


@pytest.mark.django_db
@pytest.mark.parametrize("payload, field", [
    ({"name": "Bad Name"}, "name"),
    ({"name": ""}, "name"),
    ({"name": 5}, "name"),
    ({}, "name"),
    ({"name": "x" * 64}, "name"),
    ({"name": "ok", "cluster_id": "one"}, "cluster_id"),
    ({"name": "ok", "cluster_id": 0}, "cluster_id"),
    ({"name": "ok", "cluster_id": 12}, "cluster_id"),  # shared placement: no cluster to choose
])
def test_create_refuses_bad_input_and_changes_nothing(owner, alice, payload, field):
    before = rows(alice)
    body = assert_problem(owner.post("/api/v1/databases", payload, format="json"), 400)
    assert field in {e["field"] for e in body["errors"]}, body
    assert rows(alice) == before


@pytest.mark.django_db
def test_plan_limit_is_409_with_the_limit(owner, alice):
    for name in ("a1", "a2", "a3"):  # Starter allows three
        create(owner, name)
    before = rows(alice)
    body = assert_problem(owner.post("/api/v1/databases", {"name": "a4"}, format="json"), 409,
                          "database_limit_reached")
    assert body["limit"] == 3
    assert rows(alice) == before


# --- delete -------------------------------------------------------------------------------

@pytest.mark.django_db
def test_delete_removes_the_database_and_its_role(owner, alice):
    body = create(owner)
    response = owner.delete(f"/api/v1/databases/{body['id']}")
    assert response.status_code == 204, response.content
    assert rows(alice) == []
    assert_problem(owner.get(f"/api/v1/databases/{body['id']}"), 404)
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(body["uri"], connect_timeout=5)


# --- SQL over HTTP ------------------------------------------------------------------------

@pytest.mark.django_db
def test_query_runs_one_statement_with_params(owner):
    db = create(owner)["id"]
    url = f"/api/v1/databases/{db}/query"
    assert owner.post(url, {"sql": "create table t (id int, label text)"},
                      format="json").status_code == 200
    inserted = owner.post(url, {"sql": "insert into t values ($1, $2), ($3, $4)",
                                "params": [1, "one", 2, "two"]}, format="json").json()
    assert inserted["row_count"] == 2
    body = owner.post(url, {"sql": "select id, label from t where id >= $1 order by id",
                            "params": [1]}, format="json").json()
    assert [c["name"] for c in body["columns"]] == ["id", "label"]
    assert body["rows"] == [[1, "one"], [2, "two"]]
    assert body["row_count"] == 2 and body["truncated"] is False
    assert isinstance(body["duration_ms"], int)


@pytest.mark.django_db
@pytest.mark.parametrize("sql, sqlstate", [
    ("select * from missing_table", "42P01"),
    ("selec 1", "42601"),
    ("select 1/0", "22012"),
])
def test_sql_errors_are_problems_with_their_sqlstate(owner, sql, sqlstate):
    db = create(owner)["id"]
    body = assert_problem(owner.post(f"/api/v1/databases/{db}/query", {"sql": sql},
                                     format="json"), 400)
    assert body["sqlstate"] == sqlstate and body["code"] == "sql_error"


@pytest.mark.django_db
def test_two_statements_are_refused_and_neither_runs(owner):
    db = create(owner)["id"]
    url = f"/api/v1/databases/{db}/query"
    owner.post(url, {"sql": "create table keep (id int)"}, format="json")
    body = assert_problem(owner.post(url, {"sql": "select 1; drop table keep"}, format="json"), 400)
    assert body["sqlstate"] == "42601"
    assert owner.post(url, {"sql": "select count(*) from keep"}, format="json").status_code == 200


@pytest.mark.django_db
def test_a_slow_statement_times_out_as_a_problem(owner, settings):
    settings.AEROLITH_SQL_LIMITS = {**settings.AEROLITH_SQL_LIMITS,
                                    "starter": {"timeout_ms": 200, "max_rows": 1000}}
    db = create(owner)["id"]
    body = assert_problem(owner.post(f"/api/v1/databases/{db}/query",
                                     {"sql": "select pg_sleep(5)"}, format="json"), 400,
                          "statement_timeout")
    assert body["sqlstate"] == "57014"


@pytest.mark.django_db
@pytest.mark.parametrize("payload", [
    {}, {"sql": ""}, {"sql": 42}, {"sql": "select 1", "params": "1"},
    {"sql": "select $1", "params": [{"a": 1}]}, {"sql": "select 1", "timeout": 5},
    ["select 1"],
])
def test_query_refuses_malformed_requests(owner, payload):
    db = create(owner)["id"]
    assert_problem(owner.post(f"/api/v1/databases/{db}/query", payload, format="json"), 400)


# --- isolation, roles, suspension ---------------------------------------------------------

@pytest.mark.django_db
def test_another_organisations_database_does_not_exist(owner, alice, bob, charlie):
    db = create(owner)["id"]
    before = rows(alice)
    for tenant in (bob, charlie):
        client = api_client(tenant.slug, make_key(tenant, WRITE))
        assert client.get("/api/v1/databases").json()["results"] == []
        assert_problem(client.get(f"/api/v1/databases/{db}"), 404)
        assert_problem(client.delete(f"/api/v1/databases/{db}"), 404)
        assert_problem(client.post(f"/api/v1/databases/{db}/query", {"sql": "select 1"},
                                   format="json"), 404)
    assert rows(alice) == before


@pytest.mark.django_db
def test_viewer_and_key_without_write_scope_can_read_only(owner, alice):
    db = create(owner)["id"]
    add_member(alice, "viewer@alice.test", Role.VIEWER)
    viewer = api_client("alice", jwt_for("alice", "viewer@alice.test"))
    reader = api_client("alice", make_key(alice, ["read"]))
    before = rows(alice)
    for client, code in ((viewer, "role_not_allowed"), (reader, "insufficient_scope")):
        assert client.get("/api/v1/databases").status_code == 200
        assert client.get(f"/api/v1/databases/{db}").status_code == 200
        assert_problem(client.post("/api/v1/databases", {"name": "x1"}, format="json"), 403, code)
        assert_problem(client.delete(f"/api/v1/databases/{db}"), 403, code)
        assert_problem(client.post(f"/api/v1/databases/{db}/query", {"sql": "select 1"},
                                   format="json"), 403, code)
    assert rows(alice) == before


@pytest.mark.django_db
def test_suspended_organisation_cannot_create_or_delete(owner, alice):
    db = create(owner)["id"]
    alice.status = TenantStatus.SUSPENDED
    alice.save(update_fields=["status"])
    before = rows(alice)
    assert_problem(owner.post("/api/v1/databases", {"name": "x1"}, format="json"), 402,
                   "account_suspended")
    assert_problem(owner.delete(f"/api/v1/databases/{db}"), 402, "account_suspended")
    assert owner.get("/api/v1/databases").status_code == 200
    assert rows(alice) == before


@pytest.mark.django_db
@pytest.mark.parametrize("raw", ["abc", "0", "99999999999999999999"])
def test_ids_that_cannot_exist_are_404_problems(owner, raw):
    assert_problem(owner.get(f"/api/v1/databases/{raw}"), 404)
    assert_problem(owner.post(f"/api/v1/databases/{raw}/query", {"sql": "select 1"},
                              format="json"), 404)


# --- metering ---------------------------------------------------------------------------

@pytest.mark.django_db
def test_each_query_counts_as_an_api_call_and_its_bytes_as_bandwidth(owner, alice):
    from billing.models import Subscription
    from metering.services.collectors import BUFFER_KEY
    from metering.services.counters import client, counters_read
    from tests.metering.conftest import redis_wipe

    database = create(owner)
    redis_wipe()
    sent = 0
    for n in range(3):
        body = {"sql": "select generate_series(1, $1) as n", "params": [n + 1]}
        response = owner.post(f"/api/v1/databases/{database['id']}/query", body, format="json")
        assert response.status_code == 200, response.content
        assert response.json()["row_count"] == n + 1
        sent += len(response.content)
    buffered = {k.decode(): int(v) for k, v in client().hgetall(BUFFER_KEY).items()}
    assert buffered[f"{alice.pk}:api_calls"] == 3
    # Request and response bodies are both counted; the responses alone set a floor.
    assert buffered[f"{alice.pk}:bandwidth_bytes"] >= sent > 0
    period = Subscription.objects.get(tenant=alice).current_period_start
    assert counters_read(alice.pk, period)["api_calls"] == 3 * 1_000_000
    redis_wipe()
