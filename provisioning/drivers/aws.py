"""Amazon Aurora PostgreSQL behind the driver interface (SPEC §7).

One Aerolith cluster is one Aurora DB cluster named by its handle; its nodes are the DB
instances in it. The first instance made in a cluster is its writer (the primary), every
later one a reader (a replica). A reader goes with `delete_db_instance`; the writer is
never removed, and which instance is the writer is read from `DBClusterMembers`
(`IsClusterWriter`) each time, because Aurora may fail over to a reader on its own.

Regions: Aerolith's region codes map to AWS regions (`REGIONS`). `poll`, `observe` and a
delete are given only the handle, and the driver keeps no state, so it finds the cluster
by asking each mapped region in turn (at most four describe calls).

Sizes: Aurora PostgreSQL runs only burstable (t) and memory-optimised (r) instance
classes, so a size maps to the class with the same vCPUs and at least its memory:
    small  (2 vCPU /  4 GB) -> db.t4g.medium   (2 vCPU /   4 GiB)
    medium (4 vCPU / 16 GB) -> db.r6g.xlarge   (4 vCPU /  32 GiB)
    large  (8 vCPU / 32 GB) -> db.r6g.2xlarge  (8 vCPU /  64 GiB)
    xlarge (16 vCPU / 64 GB) -> db.r6g.4xlarge (16 vCPU / 128 GiB)
Matching vCPUs first keeps the autoscaler's CPU target meaning the same on every provider.

Metrics: `observe` reads CloudWatch's AWS/RDS `CPUUtilization` and `FreeableMemory` for
each instance (the newest one-minute average of the last ten minutes); memory percent is
what is not freeable, of the instance class's memory. No datapoint means None, which the
autoscaler treats as a missing measurement.

Credentials come from boto3's usual chain (environment, shared config, instance role).
"""
from __future__ import annotations

from datetime import timedelta

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from aerolith import clock
from provisioning.sizes import size_get

from . import planning
from .base import (
    DEGRADED,
    DELETING,
    FAILED,
    HEALTHY,
    PRIMARY,
    PROVISIONING,
    REPLICA,
    SCALING,
    ClusterSpec,
    ClusterState,
    DriverError,
    NodeMetrics,
    NodeState,
    Step,
)

ENGINE = "aurora-postgresql"

REGIONS = {
    "us-east": "us-east-1",
    "us-west": "us-west-2",
    "eu-central": "eu-central-1",
    "ap-southeast": "ap-southeast-1",
}

# size code -> (instance class, its memory in GiB)
INSTANCE_CLASSES = {
    "small": ("db.t4g.medium", 4),
    "medium": ("db.r6g.xlarge", 32),
    "large": ("db.r6g.2xlarge", 64),
    "xlarge": ("db.r6g.4xlarge", 128),
}
CLASS_MEMORY_GIB = dict(INSTANCE_CLASSES.values())

# RDS status strings (cluster and instance share most of them) -> our health words.
_STATUS_HEALTH = {
    "available": HEALTHY,
    "backing-up": HEALTHY,
    "creating": PROVISIONING,
    "starting": PROVISIONING,
    "modifying": SCALING,
    "scaling": SCALING,
    "scaling-compute": SCALING,
    "scaling-capacity": SCALING,
    "rebooting": SCALING,
    "renaming": SCALING,
    "upgrading": SCALING,
    "configuring-enhanced-monitoring": SCALING,
    "configuring-iam-database-auth": SCALING,
    "configuring-log-exports": SCALING,
    "maintenance": SCALING,
    "migrating": SCALING,
    "promoting": DEGRADED,
    "failing-over": DEGRADED,
    "stopping": DEGRADED,
    "stopped": DEGRADED,
    "storage-optimization": HEALTHY,
    "deleting": DELETING,
    "failed": FAILED,
    "inaccessible-encryption-credentials": FAILED,
    "inaccessible-encryption-credentials-recoverable": FAILED,
    "incompatible-network": FAILED,
    "incompatible-option-group": FAILED,
    "incompatible-parameters": FAILED,
    "incompatible-restore": FAILED,
    "insufficient-capacity": FAILED,
    "restore-error": FAILED,
    "storage-full": FAILED,
}

_NOT_FOUND = {"DBClusterNotFoundFault", "DBInstanceNotFound", "DBInstanceNotFoundFault"}


def status_health(status: str) -> str:
    """Unknown statuses count as degraded: something is off, but nothing says it failed."""
    return _STATUS_HEALTH.get((status or "").lower(), DEGRADED)


def aws_region(region: str) -> str:
    try:
        return REGIONS[region]
    except KeyError:
        raise LookupError(f"Region {region!r} has no AWS region mapped; choose one of "
                          f"{', '.join(REGIONS)}.") from None


def instance_class(size: str) -> str:
    size_get(size)  # the same "unknown size" message everywhere
    try:
        return INSTANCE_CLASSES[size][0]
    except KeyError:
        raise LookupError(f"Size {size!r} has no Aurora instance class mapped; choose one of "
                          f"{', '.join(INSTANCE_CLASSES)}.") from None


def _code(error: ClientError) -> str:
    return error.response.get("Error", {}).get("Code", "")


def _refused(what: str, error: Exception) -> DriverError:
    if isinstance(error, ClientError):
        message = error.response.get("Error", {}).get("Message", "")
        return DriverError(f"AWS refused to {what}: {_code(error)}: {message}")
    return DriverError(f"Could not reach AWS to {what}: {error}")


class AwsDriver:
    name = "aws"

    # -- clients and look-ups ---------------------------------------------------------

    def _client(self, service: str, region: str):
        return boto3.client(service, region_name=region)

    def _describe_cluster(self, rds, handle: str) -> dict | None:
        try:
            found = rds.describe_db_clusters(DBClusterIdentifier=handle)["DBClusters"]
        except ClientError as error:
            if _code(error) in _NOT_FOUND:
                return None
            raise
        return found[0] if found else None

    def _locate(self, handle: str) -> tuple[str, dict] | None:
        """The AWS region holding the cluster and its description, or None."""
        try:
            for region in REGIONS.values():
                found = self._describe_cluster(self._client("rds", region), handle)
                if found is not None:
                    return region, found
        except (ClientError, BotoCoreError) as error:
            raise _refused(f"look up cluster {handle!r}", error) from error
        return None

    def _instances(self, rds, handle: str) -> list[dict]:
        return rds.describe_db_instances(
            Filters=[{"Name": "db-cluster-id", "Values": [handle]}])["DBInstances"]

    # -- the interface ------------------------------------------------------------------

    def poll(self, handle: str) -> ClusterState | None:
        located = self._locate(handle)
        if located is None:
            return None
        region, cluster = located
        try:
            instances = self._instances(self._client("rds", region), handle)
        except (ClientError, BotoCoreError) as error:
            raise _refused(f"list the instances of {handle!r}", error) from error
        writers = {m["DBInstanceIdentifier"] for m in cluster.get("DBClusterMembers", [])
                   if m.get("IsClusterWriter")}
        nodes = []
        for instance in sorted(instances, key=lambda i: planning.serial_of(
                i["DBInstanceIdentifier"])):
            endpoint = instance.get("Endpoint") or {}
            name = instance["DBInstanceIdentifier"]
            nodes.append(NodeState(
                name=name, role=PRIMARY if name in writers else REPLICA,
                health=status_health(instance.get("DBInstanceStatus", "")),
                host=endpoint.get("Address", ""), port=endpoint.get("Port"),
                detail=f"{instance.get('DBInstanceClass', '')} {instance.get('DBInstanceStatus', '')}"
                .strip()))
        status = cluster.get("Status", "")
        return ClusterState(handle=handle, health=self._cluster_health(status, nodes),
                            nodes=tuple(nodes), detail=f"{region} {status}")

    @staticmethod
    def _cluster_health(status: str, nodes: list[NodeState]) -> str:
        health = status_health(status)
        if health != HEALTHY:
            return health
        if not nodes:
            return PROVISIONING
        healths = {n.health for n in nodes}
        if healths == {HEALTHY}:
            return HEALTHY
        if healths & {PROVISIONING, SCALING, DELETING}:
            return SCALING
        return DEGRADED

    def plan(self, current: ClusterState | None, spec: ClusterSpec | None) -> list[Step]:
        return planning.plan_steps(current, spec)

    def apply(self, handle: str, step: Step, spec: ClusterSpec | None) -> None:
        if step.action == "delete_cluster":
            return self._delete_cluster(handle)
        if spec is None:
            raise DriverError(f"Step {step.action!r} needs the cluster's spec.")
        region = aws_region(spec.region)
        db_class = instance_class(spec.size)
        rds = self._client("rds", region)
        try:
            if step.action == "create_primary":
                self._ensure_cluster(rds, handle, spec)
                if not [i for i in self._instances(rds, handle)
                        if i.get("DBInstanceStatus") != "deleting"]:
                    self._ensure_instance(rds, handle, step.node or planning.node_name(
                        handle, 1), db_class, promotion_tier=0)
            elif step.action == "add_replica":
                if self._describe_cluster(rds, handle) is None:
                    raise DriverError(f"Cluster {handle!r} does not exist in {region}; "
                                      "create it before adding replicas.")
                if not step.node:
                    raise DriverError("add_replica needs the new node's name.")
                self._ensure_instance(rds, handle, step.node, db_class, promotion_tier=1)
            elif step.action == "remove_replica":
                self._remove_reader(rds, handle, step.node)
            else:
                raise DriverError(f"The AWS driver cannot {step.action!r}; it supports "
                                  "create_primary, add_replica, remove_replica and "
                                  "delete_cluster.")
        except (ClientError, BotoCoreError) as error:
            raise _refused(f"{step.action.replace('_', ' ')} on {handle!r}", error) from error

    def _ensure_cluster(self, rds, handle: str, spec: ClusterSpec) -> None:
        if self._describe_cluster(rds, handle) is not None:
            return
        if len(spec.admin_password) < 8:
            raise DriverError("Aurora needs an admin password of at least 8 characters.")
        try:
            rds.create_db_cluster(
                DBClusterIdentifier=handle, Engine=ENGINE,
                MasterUsername=spec.admin_user, MasterUserPassword=spec.admin_password,
                Tags=[{"Key": "aerolith:handle", "Value": handle}])
        except ClientError as error:
            if _code(error) != "DBClusterAlreadyExistsFault":  # a racing apply made it
                raise

    def _ensure_instance(self, rds, handle: str, name: str, db_class: str, *,
                         promotion_tier: int) -> None:
        try:
            rds.describe_db_instances(DBInstanceIdentifier=name)
            return
        except ClientError as error:
            if _code(error) not in _NOT_FOUND:
                raise
        try:
            rds.create_db_instance(
                DBInstanceIdentifier=name, DBClusterIdentifier=handle, Engine=ENGINE,
                DBInstanceClass=db_class, PromotionTier=promotion_tier)
        except ClientError as error:
            if _code(error) != "DBInstanceAlreadyExists":
                raise

    def _remove_reader(self, rds, handle: str, name: str) -> None:
        cluster = self._describe_cluster(rds, handle)
        if cluster is None:
            return
        member = next((m for m in cluster.get("DBClusterMembers", [])
                       if m["DBInstanceIdentifier"] == name), None)
        if member is None:
            return  # already gone
        if member.get("IsClusterWriter"):
            raise DriverError(f"{name} is the writer of {handle}; the primary is never removed.")
        try:
            instance = rds.describe_db_instances(DBInstanceIdentifier=name)["DBInstances"][0]
        except ClientError as error:
            if _code(error) in _NOT_FOUND:
                return
            raise
        if instance.get("DBInstanceStatus") == "deleting":
            return
        rds.delete_db_instance(DBInstanceIdentifier=name)

    def _delete_cluster(self, handle: str) -> None:
        located = self._locate(handle)
        if located is None:
            return
        region, cluster = located
        rds = self._client("rds", region)
        try:
            # Aurora refuses to delete a cluster that still has instances not being deleted.
            for instance in self._instances(rds, handle):
                if instance.get("DBInstanceStatus") != "deleting":
                    try:
                        rds.delete_db_instance(
                            DBInstanceIdentifier=instance["DBInstanceIdentifier"])
                    except ClientError as error:
                        if _code(error) not in _NOT_FOUND:
                            raise
            if cluster.get("Status") != "deleting":
                try:
                    rds.delete_db_cluster(DBClusterIdentifier=handle, SkipFinalSnapshot=True)
                except ClientError as error:
                    if _code(error) not in _NOT_FOUND:
                        raise
        except (ClientError, BotoCoreError) as error:
            raise _refused(f"delete cluster {handle!r}", error) from error

    def observe(self, handle: str) -> list[NodeMetrics]:
        located = self._locate(handle)
        if located is None:
            return []
        region, _ = located
        try:
            instances = self._instances(self._client("rds", region), handle)
            cloudwatch = self._client("cloudwatch", region)
            metrics = []
            for instance in instances:
                name = instance["DBInstanceIdentifier"]
                status = instance.get("DBInstanceStatus", "")
                if status == "deleting":
                    continue
                cpu = self._latest(cloudwatch, name, "CPUUtilization")
                freeable = self._latest(cloudwatch, name, "FreeableMemory")
                connections = self._latest(cloudwatch, name, "DatabaseConnections")
                total_gib = CLASS_MEMORY_GIB.get(instance.get("DBInstanceClass", ""))
                memory = None
                if freeable is not None and total_gib:
                    total = total_gib * 1024 ** 3
                    memory = max(0.0, min(100.0, (total - freeable) / total * 100))
                metrics.append(NodeMetrics(
                    node=name, cpu_percent=cpu, memory_percent=memory,
                    connections=int(connections) if connections is not None else None,
                    up=status_health(status) in (HEALTHY, SCALING)))
            return metrics
        except (ClientError, BotoCoreError) as error:
            raise _refused(f"read the metrics of {handle!r}", error) from error

    @staticmethod
    def _latest(cloudwatch, instance: str, metric: str) -> float | None:
        end = clock.wall_now()
        points = cloudwatch.get_metric_statistics(
            Namespace="AWS/RDS", MetricName=metric,
            Dimensions=[{"Name": "DBInstanceIdentifier", "Value": instance}],
            StartTime=end - timedelta(minutes=10), EndTime=end, Period=60,
            Statistics=["Average"])["Datapoints"]
        if not points:
            return None
        return float(max(points, key=lambda p: p["Timestamp"])["Average"])
