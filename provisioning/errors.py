"""Domain errors of provisioning, each telling the user what to do next."""
from aerolith.errors import Conflict, DomainError


class OperationInFlight(Conflict):
    code = "operation_in_flight"


class ClusterUnavailable(DomainError):
    status = 503
    code = "cluster_unavailable"
    title = "Cluster unavailable"


class PlanNotAllowed(DomainError):
    status = 402
    code = "plan_upgrade_required"
    title = "Plan upgrade required"


class DatabaseLimitReached(DomainError):
    status = 409
    code = "database_limit_reached"
    title = "Database limit reached"


class DatabaseUnavailable(Conflict):
    """The database refuses connections (cancelled) or is otherwise not usable now."""

    code = "database_unavailable"


class SqlError(DomainError):
    """PostgreSQL refused the statement; `extra` carries its SQLSTATE for problem+json."""

    status = 400
    code = "sql_error"
    title = "SQL error"


class StatementTimeout(SqlError):
    code = "statement_timeout"
    title = "Statement timed out"
