"""Running one customer statement for SQL over HTTP (SPEC §7) and shaping its result as JSON.

One statement only: psycopg sends a query with the simple protocol when it has no
parameters, and the simple protocol runs `select 1; drop table t` as two statements.
`Cursor.stream()` always uses the extended protocol, where PostgreSQL itself refuses a
second command ("cannot insert multiple commands into a prepared statement", 42601).
Streaming (single-row mode) also means a huge result is never held in memory: we stop
reading at the row cap and psycopg cancels the rest.

Placeholders are PostgreSQL's own `$1, $2, …` (psycopg's RawCursor), so `%` in the SQL
needs no escaping.
"""
import base64
import datetime as dt
import ipaddress
import math
import time
import uuid
from dataclasses import dataclass
from decimal import Decimal

import psycopg
from psycopg.generators import fetch
from psycopg.pq import ExecStatus
from psycopg.types.datetime import DateLoader, TimestampLoader, TimestamptzLoader

from aerolith.errors import ValidationFailed

from ..errors import DatabaseUnavailable, SqlError, StatementTimeout

MAX_SQL_BYTES = 100 * 1024
MAX_PARAMS = 1000
MULTIPLE_COMMANDS = "cannot insert multiple commands"


@dataclass(frozen=True)
class QueryResult:
    columns: list[dict]  # [{"name": ..., "type": ...}]
    rows: list[list]
    row_count: int  # rows returned, or rows affected by a statement returning none
    truncated: bool  # more rows existed than the plan's row cap
    duration_ms: int
    command: str  # PostgreSQL's command tag, e.g. "INSERT 0 1"


class _StreamCursor(psycopg.RawCursor):
    """stream() that also accepts statements returning no rows (INSERT, CREATE …) and
    keeps the final result, so its description and command tag stay readable.
    Overrides one private generator of psycopg 3.3; tests cover every branch."""

    def _stream_fetchone_gen(self, first):
        res = yield from fetch(self._pgconn)
        if res is None:
            return None
        if res.status in (ExecStatus.SINGLE_TUPLE, ExecStatus.TUPLES_CHUNK):
            self.pgresult = res
            self._tx.set_pgresult(res, set_loaders=first)
            if first:
                self._make_row = self._make_row_maker()
            return res
        if res.status in (ExecStatus.TUPLES_OK, ExecStatus.COMMAND_OK):
            self.pgresult = res
            while (yield from fetch(self._pgconn)):
                pass
            return None
        return self._raise_for_result(res)


def _lenient(base):
    class Lenient(base):
        """Values Python's types cannot hold ('infinity', years beyond 9999 or BC) come
        back as PostgreSQL's text instead of failing the whole result."""

        def load(self, data):
            try:
                return super().load(data)
            except psycopg.DataError:
                return bytes(data).decode()

    return Lenient


LENIENT_LOADERS = {"date": _lenient(DateLoader), "timestamp": _lenient(TimestampLoader),
                   "timestamptz": _lenient(TimestamptzLoader)}


def query_validate(sql, params) -> list:
    """Refuse what PostgreSQL should never see; returns the params as a list."""
    errors = {}
    if not isinstance(sql, str) or not sql.strip():
        errors["sql"] = [("required", "Send the statement to run as a non-empty string.")]
    elif len(sql.encode()) > MAX_SQL_BYTES:
        errors["sql"] = [("too_long", f"The statement is longer than {MAX_SQL_BYTES // 1024} KB; "
                                      "send a shorter one.")]
    elif "\x00" in sql:
        errors["sql"] = [("invalid", "The statement contains a NUL character.")]
    if params is None:
        params = []
    if not isinstance(params, list):
        errors["params"] = [("invalid", "params must be a list of values for $1, $2, ….")]
    elif len(params) > MAX_PARAMS:
        errors["params"] = [("too_many", f"At most {MAX_PARAMS} parameters.")]
    elif not all(_is_json_param(p) for p in params):
        errors["params"] = [("invalid", "Each parameter must be a string, number, boolean, null "
                                        "or an array of those.")]
    if errors:
        raise ValidationFailed(errors)
    return params


def _is_json_param(value, depth: int = 0) -> bool:
    if value is None or isinstance(value, (str, bool, int)):
        return not isinstance(value, str) or "\x00" not in value
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, list) and depth < 3:
        return all(_is_json_param(v, depth + 1) for v in value)
    return False


def statement_run(conninfo: str, sql: str, params: list, max_rows: int) -> QueryResult:
    """Run one statement in its own connection (autocommit) and return at most `max_rows`
    rows. PostgreSQL errors become SqlError/StatementTimeout with the SQLSTATE."""
    started = time.monotonic()
    try:
        conn = psycopg.connect(conninfo, autocommit=True)
    except psycopg.OperationalError as exc:
        raise DatabaseUnavailable(
            "The database refuses connections right now (it may be locked because the "
            "subscription was cancelled, or its server is unreachable); try again later.") from exc
    rows: list[list] = []
    truncated = False
    try:
        for name, loader in LENIENT_LOADERS.items():
            conn.adapters.register_loader(name, loader)
        cursor = _StreamCursor(conn)
        try:
            for row in cursor.stream(sql, params or None):
                if len(rows) == max_rows:
                    truncated = True
                    break
                rows.append([json_value(v) for v in row])
        except psycopg.Error as exc:
            raise _domain_error(exc) from None
        columns = [{"name": d.name, "type": _type_name(conn, d.type_code)}
                   for d in (cursor.description or [])]
        result = cursor.pgresult
        command = (result.command_status or b"").decode() if result is not None and not truncated else ""
        affected = result.command_tuples if result is not None and not truncated else None
    finally:
        conn.close()
    row_count = len(rows) if columns else (affected or 0)
    return QueryResult(columns=columns, rows=rows, row_count=row_count, truncated=truncated,
                       duration_ms=int((time.monotonic() - started) * 1000), command=command)


def _type_name(conn, oid: int) -> str:
    info = conn.adapters.types.get(oid)
    return info.name if info else str(oid)


def _domain_error(exc: psycopg.Error) -> SqlError:
    sqlstate = exc.sqlstate
    diag = exc.diag
    message = (diag.message_primary if sqlstate else None) or str(exc).strip()
    extra = {"sqlstate": sqlstate}
    if sqlstate == "42601" and MULTIPLE_COMMANDS in message:
        return SqlError("Send one statement per request; this one contains several.",
                        code="multiple_statements", extra=extra)
    if sqlstate is None and "EMPTY_QUERY" in message:
        return SqlError("The statement is empty; send one SQL statement.", extra=extra)
    if sqlstate is None and "COPY" in message:
        return SqlError("COPY is not available over HTTP; use INSERT or SELECT, or connect "
                        "with the database's URI for bulk loads.", extra=extra)
    if sqlstate == "57014":
        return StatementTimeout(
            "The statement ran longer than your plan's time limit and was cancelled; make it "
            "faster (an index, a narrower query) or upgrade for a longer limit.", extra=extra)
    if diag.message_hint:
        extra["hint"] = diag.message_hint
    if diag.statement_position:
        extra["position"] = int(diag.statement_position)
    if sqlstate is None:  # raised by the client while reading the result
        return SqlError(f"The result could not be read: {message}", extra=extra)
    return SqlError(f"PostgreSQL refused the statement: {message}", extra=extra)


def json_value(value):
    """A value PostgreSQL returned, as something json.dumps accepts without losing it."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return str(value.total_seconds())
    if isinstance(value, (bytes, bytearray, memoryview)):
        return base64.b64encode(bytes(value)).decode()
    if isinstance(value, (list, tuple)):
        return [json_value(v) for v in value]
    if isinstance(value, dict):  # json / jsonb
        return {str(k): json_value(v) for k, v in value.items()}
    if isinstance(value, (uuid.UUID, ipaddress._BaseAddress, ipaddress._BaseNetwork)):
        return str(value)
    return str(value)
