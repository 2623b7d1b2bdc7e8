"""Clusters, their nodes, operations and scaling history (public schema, so staff and the
autoscaler see every tenant's at once), and customer databases (tenant-private, SPEC §2).

A cluster is either *shared* (owned by the platform, one per region, holding the shared
tier's databases) or *dedicated* (owned by one tenant). What a provider actually runs is
the driver's business; these rows are what we last observed and what we want.
"""
from django.contrib.postgres.fields import ArrayField
from django.db import models
from django.db.models import Q

from aerolith import clock


class Health(models.TextChoices):
    PROVISIONING = "provisioning", "Provisioning"
    HEALTHY = "healthy", "Healthy"
    DEGRADED = "degraded", "Degraded"
    SCALING = "scaling", "Scaling"
    FAILED = "failed", "Failed"
    DELETING = "deleting", "Deleting"
    DELETED = "deleted", "Deleted"


class Provider(models.TextChoices):
    LOCAL = "local", "Local (PostgreSQL processes on this host)"
    KUBERNETES = "kubernetes", "Kubernetes (CloudNativePG)"
    AWS = "aws", "AWS (Aurora PostgreSQL)"


class NodeRole(models.TextChoices):
    PRIMARY = "primary", "Primary"
    REPLICA = "replica", "Replica"


class Cluster(models.Model):
    tenant = models.ForeignKey("tenants.Tenant", null=True, blank=True, on_delete=models.PROTECT,
                               related_name="clusters",
                               help_text="Empty for a region's shared cluster.")
    name = models.CharField(max_length=63)
    handle = models.SlugField(max_length=63, unique=True,
                              help_text="The name the provider knows the cluster by.")
    shared = models.BooleanField(default=False)
    provider = models.CharField(max_length=20, choices=Provider.choices, default=Provider.LOCAL)
    region = models.CharField(max_length=20)
    size = models.CharField(max_length=20, default="small")
    node_count = models.PositiveIntegerField(default=3, help_text="Desired nodes, primary included.")
    health = models.CharField(max_length=20, choices=Health.choices, default=Health.PROVISIONING)
    # The platform's superuser on the cluster (its password sealed by aerolith.crypto).
    admin_user = models.CharField(max_length=63, default="aerolith_admin")
    admin_password_sealed = models.TextField(blank=True)
    # Autoscaling policy (SPEC §7); the autoscaler reads these as a Policy value.
    autoscale_enabled = models.BooleanField(default=False)
    autoscale_paused = models.BooleanField(default=False, help_text="Paused by staff.")
    min_nodes = models.PositiveIntegerField(default=1)
    max_nodes = models.PositiveIntegerField(default=10)
    cpu_target_percent = models.PositiveSmallIntegerField(default=70)
    memory_target_percent = models.PositiveSmallIntegerField(default=80)
    scale_up_step = models.PositiveIntegerField(default=4, help_text="Most nodes added at once.")
    scale_down_step = models.PositiveIntegerField(default=1, help_text="Most nodes removed at once.")
    stabilization_seconds = models.PositiveIntegerField(default=300)
    forecast_enabled = models.BooleanField(default=False)
    # The compact state the stabilisation window needs: [[epoch seconds, desired], ...]
    # for the last window, plus the previous evaluation's outcome and reason, rewritten in
    # place each minute (history rows are written only when something changes).
    recent_recommendations = models.JSONField(default=list, blank=True)
    last_outcome = models.CharField(max_length=20, blank=True)
    last_reason = models.CharField(max_length=40, blank=True)
    last_evaluated_at = models.DateTimeField(null=True, blank=True)
    # Compute hours are accrued up to here (metering feed).
    compute_accrued_until = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=clock.wall_now)
    deleted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["tenant", "name"], condition=Q(deleted_at__isnull=True),
                                    name="cluster_name_unique_per_tenant"),
            models.UniqueConstraint(fields=["region"], condition=Q(shared=True, deleted_at__isnull=True),
                                    name="one_shared_cluster_per_region"),
            models.CheckConstraint(condition=Q(min_nodes__gte=1) & Q(max_nodes__gte=models.F("min_nodes")),
                                   name="cluster_node_bounds"),
        ]
        indexes = [models.Index(fields=["autoscale_enabled", "health"])]

    def __str__(self):
        return self.name


class Node(models.Model):
    cluster = models.ForeignKey(Cluster, on_delete=models.CASCADE, related_name="nodes")
    name = models.CharField(max_length=80, help_text="The provider's name for the node.")
    role = models.CharField(max_length=10, choices=NodeRole.choices)
    health = models.CharField(max_length=20, choices=Health.choices, default=Health.PROVISIONING)
    host = models.CharField(max_length=255, blank=True)
    port = models.PositiveIntegerField(null=True, blank=True)
    # The latest observation (SPEC §7 health check and metrics).
    cpu_percent = models.FloatField(null=True, blank=True)
    memory_percent = models.FloatField(null=True, blank=True)
    connections = models.PositiveIntegerField(null=True, blank=True)
    replication_lag_bytes = models.BigIntegerField(null=True, blank=True)
    observed_at = models.DateTimeField(null=True, blank=True)
    failures = models.PositiveSmallIntegerField(default=0, help_text="Failed health checks in a row.")
    started_at = models.DateTimeField(default=clock.wall_now)

    class Meta:
        ordering = ["cluster", "role", "name"]
        constraints = [
            models.UniqueConstraint(fields=["cluster", "name"], name="node_name_unique_per_cluster"),
            models.UniqueConstraint(fields=["cluster"], condition=Q(role="primary"),
                                    name="one_primary_per_cluster"),
        ]

    def __str__(self):
        return self.name


class OperationKind(models.TextChoices):
    CREATE = "create", "Create"
    SCALE = "scale", "Scale"
    REPLACE_NODE = "replace_node", "Replace node"
    DELETE = "delete", "Delete"


class OperationState(models.TextChoices):
    PENDING = "pending", "Pending"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"


class Operation(models.Model):
    """One asynchronous change to a cluster. The idempotency key makes a retried request
    (or a retried task) find the same operation; progress is re-derived from what the
    provider reports, so a worker that died mid-way is simply run again."""

    cluster = models.ForeignKey(Cluster, on_delete=models.CASCADE, related_name="operations")
    kind = models.CharField(max_length=20, choices=OperationKind.choices)
    idempotency_key = models.CharField(max_length=200, unique=True)
    target_nodes = models.PositiveIntegerField(null=True, blank=True)
    node_name = models.CharField(max_length=80, blank=True, help_text="For replace_node.")
    state = models.CharField(max_length=20, choices=OperationState.choices,
                             default=OperationState.PENDING)
    requested_by = models.CharField(max_length=200, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True)
    log = models.JSONField(default=list, blank=True, help_text="Steps applied, in order.")
    created_at = models.DateTimeField(default=clock.wall_now)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["cluster"], condition=Q(state__in=["pending", "running"]),
                                    name="one_operation_in_flight_per_cluster"),
        ]

    def __str__(self):
        return f"{self.kind} {self.cluster_id} ({self.state})"

    @property
    def in_flight(self) -> bool:
        return self.state in (OperationState.PENDING, OperationState.RUNNING)


class ScalingEvent(models.Model):
    """Append-only scaling history: each evaluation that acted, or whose outcome or reason
    differs from the previous one, with its inputs (SPEC §7)."""

    cluster = models.ForeignKey(Cluster, on_delete=models.CASCADE, related_name="scaling_events")
    at = models.DateTimeField()
    outcome = models.CharField(max_length=20)  # scale_up, scale_down, hold
    reason = models.CharField(max_length=40)
    current_nodes = models.PositiveIntegerField()
    desired_nodes = models.PositiveIntegerField()
    inputs = models.JSONField(default=dict)
    operation = models.ForeignKey(Operation, null=True, blank=True, on_delete=models.SET_NULL,
                                  related_name="+")

    class Meta:
        ordering = ["-at", "-id"]
        indexes = [models.Index(fields=["cluster", "-at"])]

    def __str__(self):
        return f"{self.cluster_id} {self.outcome} {self.reason}"


class ClusterSample(models.Model):
    """Node count and mean utilisation of a cluster, every few minutes: the chart's data
    and what the forecast mode reads (same hour last week)."""

    cluster = models.ForeignKey(Cluster, on_delete=models.CASCADE, related_name="samples")
    at = models.DateTimeField()
    nodes = models.PositiveIntegerField()
    cpu_percent = models.FloatField(null=True)
    memory_percent = models.FloatField(null=True)

    class Meta:
        ordering = ["cluster", "at"]
        indexes = [models.Index(fields=["cluster", "at"])]


class Placement(models.TextChoices):
    SHARED_SCHEMA = "shared_schema", "Schema in the shared database"
    SHARED_DATABASE = "shared_database", "Own database on the shared cluster"
    DEDICATED = "dedicated", "Dedicated cluster"


class DatabaseState(models.TextChoices):
    READY = "ready", "Ready"
    READ_ONLY = "read_only", "Read-only"
    LOCKED = "locked", "Connections refused"


class Database(models.Model):
    """A customer database: a real PostgreSQL database or schema with its own role."""

    tenant_private = True

    name = models.CharField(max_length=63)
    placement = models.CharField(max_length=20, choices=Placement.choices)
    cluster_id = models.BigIntegerField(help_text="provisioning.Cluster in the public schema.")
    db_name = models.CharField(max_length=63, help_text="The PostgreSQL database it lives in.")
    schema_name = models.CharField(max_length=63, blank=True)
    role_name = models.CharField(max_length=63, unique=True)
    password_sealed = models.TextField()
    state = models.CharField(max_length=20, choices=DatabaseState.choices, default=DatabaseState.READY)
    # Why it is not fully writable: the enforcement reasons in force (suspended,
    # over_plan_limit, cancelled). Empty means full service.
    restrictions = ArrayField(models.CharField(max_length=30), default=list, blank=True)
    created_at = models.DateTimeField(default=clock.wall_now)
    created_by = models.CharField(max_length=200, blank=True)

    class Meta:
        ordering = ["created_at", "id"]
        constraints = [models.UniqueConstraint(fields=["name"], name="database_name_unique")]

    def __str__(self):
        return self.name
