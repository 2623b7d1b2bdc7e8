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
