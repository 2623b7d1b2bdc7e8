"""Creating, scaling, re-configuring and deleting clusters (SPEC §7). Each service records
what is wanted and starts an operation; workers make the provider match it."""
import re
import secrets

from django.conf import settings
from django.db import IntegrityError, transaction

from aerolith import crypto
from aerolith.errors import Conflict, ValidationFailed
from tenants.models import Region, Tenant, TenantStatus
from tenants.services.audit import actor_label, audit_record

from ..drivers import DRIVERS
from ..errors import PlanNotAllowed
from ..models import Cluster, Health, Node, Operation, OperationKind, Provider
from ..selectors import databases_on_cluster, operation_in_flight
from ..sizes import SIZES
from .operations import operation_start

NAME_RE = re.compile(r"^[a-z][a-z0-9-]{0,62}$")
POLICY_FIELDS = ("autoscale_enabled", "min_nodes", "max_nodes", "cpu_target_percent",
                 "memory_target_percent", "scale_up_step", "scale_down_step",
                 "stabilization_seconds", "forecast_enabled")
DEDICATED = "dedicated"


def _max_nodes() -> int:
    return settings.AEROLITH_CLUSTER_MAX_NODES


def validate_node_count(value, errors: dict, field: str = "node_count") -> None:
    limit = _max_nodes()
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= limit:
        errors.setdefault(field, []).append((
            "out_of_range", f"Choose a whole number of nodes from 1 to {limit} (one primary, the "
                            "rest replicas)."))


def _policy_errors(policy: dict) -> dict:
    errors: dict = {}
    unknown = sorted(set(policy) - set(POLICY_FIELDS))
    for field in unknown:
        errors[field] = [("unknown_field", f"'{field}' is not a policy setting; use "
                                           f"{', '.join(POLICY_FIELDS)}.")]
    for field in ("autoscale_enabled", "forecast_enabled"):
        if field in policy and not isinstance(policy[field], bool):
            errors[field] = [("invalid", "Send true or false.")]
    for field in ("min_nodes", "max_nodes"):
        if field in policy:
            validate_node_count(policy[field], errors, field)
    ranges = {"cpu_target_percent": (10, 95), "memory_target_percent": (10, 95),
              "scale_up_step": (1, 100), "scale_down_step": (1, 100),
              "stabilization_seconds": (0, 3600)}
    for field, (low, high) in ranges.items():
        value = policy.get(field)
        if field in policy and (isinstance(value, bool) or not isinstance(value, int)
                                or not low <= value <= high):
            errors[field] = [("out_of_range", f"Choose a whole number from {low} to {high}.")]
    return errors


def _check_bounds(min_nodes: int, max_nodes: int) -> None:
    if min_nodes > max_nodes:
        raise ValidationFailed({"min_nodes": [(
            "out_of_range", f"min_nodes ({min_nodes}) is above max_nodes ({max_nodes}).")]})


def _plan_allows_dedicated(tenant: Tenant) -> None:
    from billing.selectors import subscription_of

    subscription = subscription_of(tenant)
    plan = subscription.plan if subscription else None
    if plan is None or getattr(plan, "database_placement", DEDICATED) != DEDICATED:
        name = plan.name if plan else "current"
        raise PlanNotAllowed(
            f"Dedicated clusters come with the Enterprise and Custom plans; your {name} plan uses "
            "the shared tier. Upgrade the plan to create a cluster.")


def cluster_create(*, tenant: Tenant, actor, name: str, size: str = "small", node_count: int = 3,
                   provider: str = Provider.LOCAL, region: str | None = None,
                   policy: dict | None = None, idempotency_key: str | None = None
                   ) -> tuple[Cluster, Operation]:
    """A dedicated cluster for `tenant`, provisioned asynchronously (health `provisioning`
    until the provider reports it healthy). Refuses bad values with ValidationFailed, a
    name in use with Conflict, a plan without dedicated clusters with PlanNotAllowed."""
    errors: dict = {}
    if not isinstance(name, str) or not NAME_RE.match(name):
        errors["name"] = [("invalid", "Use 1–63 lowercase letters, digits or hyphens, starting "
                                      "with a letter.")]
    if size not in SIZES:
        errors["size"] = [("unknown_size", f"Unknown size {size!r}; choose one of "
                                           f"{', '.join(SIZES)}.")]
    validate_node_count(node_count, errors)
    if provider not in DRIVERS:
        errors["provider"] = [("unknown_provider", f"Choose one of {', '.join(DRIVERS)}.")]
    region = region or tenant.region
    if region not in Region.values:
        errors["region"] = [("unknown_region", f"Choose one of {', '.join(Region.values)}.")]
    policy = dict(policy or {})
    errors.update(_policy_errors(policy))
    if errors:
        raise ValidationFailed(errors)
    if tenant.status in (TenantStatus.SUSPENDED, TenantStatus.CANCELLED):
        raise PlanNotAllowed("This organisation is suspended; pay the open invoices to create "
                             "clusters again.", code="account_suspended")
    _plan_allows_dedicated(tenant)
    policy.setdefault("min_nodes", min(node_count, Cluster._meta.get_field("min_nodes").default))
    policy.setdefault("max_nodes", max(node_count, Cluster._meta.get_field("max_nodes").default))
    _check_bounds(policy["min_nodes"], policy["max_nodes"])
    return _create(tenant=tenant, actor=actor, name=name, size=size, node_count=node_count,
                   provider=provider, region=region, shared=False, policy=policy,
                   idempotency_key=idempotency_key)


def _create(*, tenant, actor, name, size, node_count, provider, region, shared, policy,
            idempotency_key) -> tuple[Cluster, Operation]:
    if idempotency_key:
        done = Operation.objects.filter(idempotency_key=idempotency_key).select_related("cluster").first()
        if done is not None:
            return done.cluster, done
    handle = f"{'shared' if shared else 'c'}-{region}-{secrets.token_hex(4)}"
    try:
        with transaction.atomic():
            cluster = Cluster.objects.create(
                tenant=tenant, name=name, handle=handle, shared=shared, provider=provider,
                region=region, size=size, node_count=node_count, health=Health.PROVISIONING,
                admin_password_sealed=crypto.encrypt(secrets.token_urlsafe(24),
                                                     context=f"cluster:{handle}"),
                **policy)
            operation = operation_start(cluster=cluster, kind=OperationKind.CREATE,
                                        target_nodes=node_count, idempotency_key=idempotency_key,
                                        requested_by=actor_label(actor))
            audit_record(action="cluster.create", tenant=tenant, actor=actor, target=cluster,
                         after={"name": name, "size": size, "nodes": node_count,
                                "provider": provider, "region": region})
    except IntegrityError:
        raise Conflict(f"A cluster named {name!r} exists already; choose another name.",
                       code="duplicate_name", field="name") from None
    return cluster, operation


def shared_cluster_ensure(region: str, *, provider: str = Provider.LOCAL) -> tuple[Cluster, Operation | None]:
    """The region's shared cluster (one primary), created when missing. Idempotent."""
    existing = Cluster.objects.filter(shared=True, region=region, deleted_at__isnull=True).first()
    if existing is not None:
        return existing, operation_in_flight(existing)
    try:
        return _create(tenant=None, actor="system", name=f"shared-{region}", size="medium",
                       node_count=1, provider=provider, region=region, shared=True,
                       policy={"min_nodes": 1, "max_nodes": 1},
                       idempotency_key=f"shared-cluster:{region}")
    except Conflict:
        cluster = Cluster.objects.get(shared=True, region=region, deleted_at__isnull=True)
        return cluster, operation_in_flight(cluster)


def _require_live(cluster: Cluster) -> None:
    if cluster.deleted_at is not None or cluster.health in (Health.DELETING, Health.DELETED):
        raise Conflict(f"Cluster {cluster.name} is being deleted; nothing more can change.",
                       code="cluster_deleting")


def cluster_scale(*, cluster: Cluster, node_count: int, actor, idempotency_key: str | None = None
                  ) -> Operation:
    """Scale to `node_count` nodes (one primary, the rest replicas; scale-in removes
    replicas only). Manual scaling stays within the policy's bounds when autoscaling is on,
    so the autoscaler does not undo it at once."""
    errors: dict = {}
    validate_node_count(node_count, errors)
    if errors:
        raise ValidationFailed(errors)
    _require_live(cluster)
    if cluster.autoscale_enabled and not cluster.min_nodes <= node_count <= cluster.max_nodes:
        raise ValidationFailed({"node_count": [(
            "out_of_range", f"Autoscaling keeps this cluster between {cluster.min_nodes} and "
                            f"{cluster.max_nodes} nodes; change the policy first.")]})
    with transaction.atomic():
        locked = Cluster.objects.select_for_update().get(pk=cluster.pk)
        before = locked.node_count
        operation = operation_start(cluster=locked, kind=OperationKind.SCALE, target_nodes=node_count,
                                    idempotency_key=idempotency_key, requested_by=actor_label(actor))
        if operation.target_nodes == node_count and operation.cluster_id == locked.pk:
            Cluster.objects.filter(pk=locked.pk).update(node_count=node_count, health=Health.SCALING)
            cluster.node_count, cluster.health = node_count, Health.SCALING
        audit_record(action="cluster.scale", tenant=cluster.tenant, actor=actor, target=cluster,
                     before={"nodes": before}, after={"nodes": node_count})
    return operation


def cluster_policy_update(*, cluster: Cluster, actor, changes: dict) -> Cluster:
    """Change the autoscaling policy; refuses unknown fields and out-of-range values."""
    if not isinstance(changes, dict):
        raise ValidationFailed({"policy": [("invalid", "Send an object of policy settings.")]})
    errors = _policy_errors(changes)
    if errors:
        raise ValidationFailed(errors)
    _require_live(cluster)
    with transaction.atomic():
        locked = Cluster.objects.select_for_update().get(pk=cluster.pk)
        before = {f: getattr(locked, f) for f in changes}
        merged = {f: changes.get(f, getattr(locked, f)) for f in POLICY_FIELDS}
        _check_bounds(merged["min_nodes"], merged["max_nodes"])
        for field, value in changes.items():
            setattr(locked, field, value)
        locked.save(update_fields=list(changes) or ["autoscale_enabled"])
        audit_record(action="cluster.policy", tenant=cluster.tenant, actor=actor, target=locked,
                     before=before, after=changes)
    return locked


def cluster_autoscale_pause(*, cluster: Cluster, actor, paused: bool) -> Cluster:
    """Staff pause (or resume) autoscaling of one cluster."""
    with transaction.atomic():
        Cluster.objects.filter(pk=cluster.pk).update(autoscale_paused=paused)
        cluster.autoscale_paused = paused
        audit_record(action="cluster.autoscale_paused" if paused else "cluster.autoscale_resumed",
                     tenant=cluster.tenant, actor=actor, target=cluster)
    return cluster


def cluster_delete(*, cluster: Cluster, actor, idempotency_key: str | None = None) -> Operation:
    """Stop every node and remove the cluster's data; refuses while databases live on it."""
    if cluster.deleted_at is not None:
        raise Conflict(f"Cluster {cluster.name} is deleted already.", code="cluster_deleted")
    in_use = databases_on_cluster(cluster)
    if in_use:
        raise Conflict(f"Cluster {cluster.name} still holds {in_use} database(s); delete them "
                       "first.", code="cluster_in_use")
    with transaction.atomic():
        operation = operation_start(cluster=cluster, kind=OperationKind.DELETE,
                                    idempotency_key=idempotency_key, requested_by=actor_label(actor))
        Cluster.objects.filter(pk=cluster.pk).update(health=Health.DELETING, autoscale_enabled=False)
        cluster.health = Health.DELETING
        audit_record(action="cluster.delete", tenant=cluster.tenant, actor=actor, target=cluster)
    return operation


def node_replace(*, node: Node, actor) -> Operation:
    """Replace one node with a fresh one (a replica is rebuilt; a primary hands over to its
    most up-to-date replica first)."""
    cluster = node.cluster
    _require_live(cluster)
    with transaction.atomic():
        operation = operation_start(cluster=cluster, kind=OperationKind.REPLACE_NODE,
                                    target_nodes=cluster.node_count, node_name=node.name,
                                    requested_by=actor_label(actor))
        audit_record(action="cluster.replace_node", tenant=cluster.tenant, actor=actor,
                     target=cluster, after={"node": node.name, "role": node.role})
    return operation

