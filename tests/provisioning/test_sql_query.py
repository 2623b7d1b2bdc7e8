"""SQL over HTTP, the service (SPEC §7): one statement as the database's own role, with the
plan's statement timeout and row cap, JSON-safe values, and PostgreSQL's errors carrying
their SQLSTATE into problem+json."""
import json

import pytest
from django_tenants.utils import tenant_context

from aerolith.api.errors import problem_exception_handler
from aerolith.errors import ValidationFailed
from billing.models import Plan
from provisioning.errors import DatabaseUnavailable, SqlError, StatementTimeout
from provisioning.models import Database, DatabaseState
from provisioning.services.databases import database_query, sql_limits_for
from tests.provisioning.db_support import as_role, create

pytestmark = pytest.mark.django_db


def query(tenant, database, sql, params=None):
    return database_query(tenant=tenant, database=database, sql=sql, params=params)


@pytest.fixture
def shop(alice, shared_cluster):
    database, uri = create(alice, "shop")
    return database


def test_a_statement_runs_as_the_databases_own_role_in_its_schema(alice, shop):
    result = query(alice, shop, "SELECT current_user AS who, current_schema() AS schema")
    assert result.rows == [[shop.role_name, shop.schema_name]]
    assert [c["name"] for c in result.columns] == ["who", "schema"]
    assert result.row_count == 1 and not result.truncated and result.duration_ms >= 0


def test_params_use_native_placeholders_and_percent_needs_no_escaping(alice, shop):
    result = query(alice, shop, "SELECT $1::int + $2::int AS n, 'a%' LIKE $3 AS ok",
                   [40, 2, "a%"])
    assert result.rows == [[42, True]]
    assert query(alice, shop, "SELECT '100%' AS p").rows == [["100%"]]
    assert query(alice, shop, "SELECT $1::text[] AS a", [["x", None]]).rows == [[["x", None]]]


def test_writes_report_affected_rows_and_the_command_tag(alice, shop):
    created = query(alice, shop, "CREATE TABLE items (id serial, name text)")
    assert created.command == "CREATE TABLE" and created.columns == [] and created.row_count == 0
    inserted = query(alice, shop, "INSERT INTO items (name) VALUES ($1), ($2)", ["a", "b"])
    assert inserted.command == "INSERT 0 2" and inserted.row_count == 2 and inserted.rows == []
    returned = query(alice, shop, "INSERT INTO items (name) VALUES ('c') RETURNING id, name")
    assert returned.rows == [[3, "c"]] and returned.row_count == 1
    empty = query(alice, shop, "SELECT id FROM items WHERE false")
    assert empty.rows == [] and empty.row_count == 0 and [c["name"] for c in empty.columns] == ["id"]


def test_values_come_back_json_safe(alice, shop):
    result = query(alice, shop, """
        SELECT 1.50::numeric AS price, DATE '2026-11-28' AS day,
               TIMESTAMPTZ '2026-11-28 10:00:00+00' AS at, '\\x0102'::bytea AS raw,
               '{"a": [1, 2.5]}'::jsonb AS doc, 'NaN'::float8 AS nan,
               '8c1f0a3e-6f6e-4b8e-9d8e-0a1b2c3d4e5f'::uuid AS id, interval '90 seconds' AS wait,
               '10.0.0.1'::inet AS ip, ARRAY[1.5, 2]::numeric[] AS nums, NULL AS nothing
    """)
    row = dict(zip([c["name"] for c in result.columns], result.rows[0], strict=True))
    assert row == {
        "price": "1.50", "day": "2026-11-28", "at": "2026-11-28T10:00:00+00:00", "raw": "AQI=",
        "doc": {"a": [1, 2.5]}, "nan": "nan", "id": "8c1f0a3e-6f6e-4b8e-9d8e-0a1b2c3d4e5f",
        "wait": "90.0", "ip": "10.0.0.1", "nums": ["1.5", "2"], "nothing": None}
    json.dumps(result.rows, allow_nan=False)
    assert {c["name"]: c["type"] for c in result.columns}["price"] == "numeric"


def test_values_python_cannot_hold_come_back_as_postgresqls_text(alice, shop):
    result = query(alice, shop, "SELECT 'infinity'::timestamptz AS a, '-infinity'::date AS b, "
                                "'0044-03-15 BC'::date AS c")
    assert result.rows == [["infinity", "-infinity", "0044-03-15 BC"]]


@pytest.mark.parametrize("sql, words", [
    (";", "empty"), ("-- only a comment", "empty"),
    ("COPY (SELECT 1) TO STDOUT", "COPY is not available"),
    ("SELECT pg_terminate_backend(pg_backend_pid())", "terminating connection"),
])
def test_statements_http_cannot_serve_are_clear_sql_errors(alice, shop, sql, words):
    with pytest.raises(SqlError) as caught:
        query(alice, shop, sql)
    assert words in caught.value.detail


def test_too_many_rows_are_cut_at_the_plans_row_cap(charlie, shared_cluster):
    database, _ = create(charlie, "big")
    cap = sql_limits_for(Plan.objects.get(code="free"))["max_rows"]
    assert cap == 100  # Free
    result = query(charlie, database, "SELECT generate_series(1, 1000000) AS n")
    assert result.truncated and result.row_count == cap and len(result.rows) == cap
    assert result.rows[-1] == [cap]
    exact = query(charlie, database, "SELECT generate_series(1, 100) AS n")
    assert not exact.truncated and exact.row_count == 100


def test_a_syntax_error_comes_back_with_its_sqlstate(alice, shop):
    with pytest.raises(SqlError) as caught:
        query(alice, shop, "SELEC 1")
    error = caught.value
    assert error.code == "sql_error" and error.extra["sqlstate"] == "42601"
    assert "syntax error" in error.detail and error.extra["position"] == 1
    body = problem_exception_handler(error, {}).data  # what the API answers
    assert body["status"] == 400 and body["code"] == "sql_error" and body["sqlstate"] == "42601"


def test_a_missing_table_is_an_sql_error_not_a_crash(alice, shop):
    with pytest.raises(SqlError) as caught:
        query(alice, shop, "SELECT * FROM nowhere")
    assert caught.value.extra["sqlstate"] == "42P01"


def test_a_slow_statement_is_cancelled_at_the_plans_timeout(alice, shop, settings):
    settings.AEROLITH_SQL_LIMITS = {**settings.AEROLITH_SQL_LIMITS,
                                    "starter": {"timeout_ms": 300, "max_rows": 1000}}
    with pytest.raises(StatementTimeout) as caught:
        query(alice, shop, "SELECT pg_sleep(5)")
    assert caught.value.code == "statement_timeout" and caught.value.extra["sqlstate"] == "57014"
    # Changing the timeout inside the statement does not escape it.
    with pytest.raises(StatementTimeout):
        query(alice, shop, "SELECT set_config('statement_timeout', '0', false), pg_sleep(5)")


def test_two_statements_are_refused_and_neither_runs(alice, shop):
    for sql in ("CREATE TABLE one (id int); CREATE TABLE two (id int)",
                "SELECT 1; SELECT 2"):
        with pytest.raises(SqlError) as caught:
            query(alice, shop, sql)
        assert caught.value.code == "multiple_statements"
        assert caught.value.extra["sqlstate"] == "42601"
    with pytest.raises(SqlError) as caught:
        query(alice, shop, "SELECT * FROM one")
    assert caught.value.extra["sqlstate"] == "42P01"
    assert query(alice, shop, "SELECT 1;").rows == [[1]]  # a trailing semicolon is one


@pytest.mark.parametrize("sql, params, field", [
    ("", None, "sql"), ("   ", None, "sql"), (None, None, "sql"), (42, None, "sql"),
    ("x" * (100 * 1024 + 1), None, "sql"), ("SELECT 1\x00", None, "sql"),
    ("SELECT $1", {"a": 1}, "params"), ("SELECT $1", "x", "params"),
    ("SELECT $1", [{"a": 1}], "params"), ("SELECT $1", [float("inf")], "params"),
    ("SELECT $1", [[[[["deep"]]]]], "params"),
])
def test_bad_input_is_refused_before_postgresql_sees_it(alice, shop, sql, params, field):
    with pytest.raises(ValidationFailed) as caught:
        query(alice, shop, sql, params)
    assert field in caught.value.errors


def test_wrongly_typed_params_are_an_sql_error(alice, shop):
    with pytest.raises(SqlError) as caught:
        query(alice, shop, "SELECT $1::int", ["not a number"])
    assert caught.value.extra["sqlstate"] == "22P02"
    with pytest.raises(SqlError):
        query(alice, shop, "SELECT $1, $2", [1])


def test_a_locked_database_is_refused(alice, shop):
    with tenant_context(alice):
        Database.objects.filter(pk=shop.pk).update(state=DatabaseState.LOCKED)
        shop.refresh_from_db()
    with pytest.raises(DatabaseUnavailable):
        query(alice, shop, "SELECT 1")


def test_the_statement_cannot_leave_a_transaction_open_or_reach_other_tenants(
        alice, charlie, shop, shared_cluster):
    other, other_uri = create(charlie, "other")
    with as_role(other_uri) as conn:
        conn.execute("CREATE TABLE secrets (v text); INSERT INTO secrets VALUES ('c')")
    with pytest.raises(SqlError) as caught:
        query(alice, shop, f"SELECT * FROM {other.schema_name}.secrets")
    assert caught.value.extra["sqlstate"] == "42501"
    assert query(alice, shop, "BEGIN").command == "BEGIN"  # its connection is then closed
    left_open = query(alice, shop, "SELECT count(*) FROM pg_stat_activity WHERE usename = "
                                   "current_user AND state LIKE 'idle in transaction%'")
    assert left_open.rows == [[0]]
