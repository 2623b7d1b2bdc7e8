"""CloudNativePG on Kubernetes behind the driver interface (SPEC §7).

One Aerolith cluster is one CNPG `Cluster` (postgresql.cnpg.io/v1) named by its handle,
in the namespace AEROLITH_K8S_NAMESPACE. CNPG is declarative: we set `spec.instances`
and its operator adds or removes instances one at a time, so:
- `create_primary` creates the Cluster with `instances = spec.nodes` (plus the two
  basic-auth Secrets it references); the operator makes the primary, then the replicas.
- `add_replica` / `remove_replica` merge-patch `spec.instances` to `spec.nodes`. Patching
  to the wanted count, never "one more", keeps a repeated step harmless. On scale-in CNPG
  removes the replica with the highest serial and never the primary; the planner names
  that same node (see planning.py).
- `delete_cluster` deletes the Cluster and its Secrets.

`poll` reads the Cluster's status: `instanceNames`, `currentPrimary`, `instancesStatus`
(healthy / replicating / failed), `readyInstances` and `phase`, whose strings are CNPG's
(api/v1 cluster_types.go). Instances asked for but not made yet are reported as
`provisioning` nodes with the names the operator will give them (serials after
`latestGeneratedNode`), and instances beyond a lowered `spec.instances` as `deleting`, so
the plan is empty as soon as the patch is accepted and the health says `scaling` until the
operator is done.

Credentials: CNPG's superuser is always `postgres`; its Secret `<handle>-superuser` holds
the admin password and `enableSuperuserAccess` is on. The admin user is made the owner of
the bootstrap database and a managed superuser role, with the same password, in Secret
`<handle>-admin`.

`observe` reads the resource metrics API (metrics.k8s.io/v1beta1 PodMetrics, served by
metrics-server) for the Cluster's pods (label `cnpg.io/cluster=<handle>`) and divides each
pod's CPU and memory usage by the Cluster's `resources.limits` (the size's vCPUs and
memory). CNPG's own Prometheus exporter (port 9187) has richer numbers but needs a
Prometheus to scrape it; the metrics API needs nothing beyond metrics-server. Without it
(404) every value is None, which the autoscaler treats as a missing measurement.
"""
from __future__ import annotations

import os
from contextlib import contextmanager

from django.conf import settings
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from kubernetes.utils import parse_quantity

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

GROUP, VERSION, PLURAL = "postgresql.cnpg.io", "v1", "clusters"
SUPERUSER = "postgres"  # CNPG's superuser name is fixed
BOOTSTRAP_DATABASE = "aerolith"
PORT = 5432

# CNPG's Cluster status.phase strings (api/v1 cluster_types.go) -> our health words.
PHASE_HEALTH = {
    "Cluster in healthy state": HEALTHY,
    "Setting up primary": PROVISIONING,
    "Creating a new replica": SCALING,
    "Upgrading cluster": SCALING,
    "Waiting for the instances to become active": SCALING,
    "Online upgrade in progress": SCALING,
    "Applying configuration": SCALING,
    "Primary instance is being restarted in-place": SCALING,
    "Primary instance is being restarted without a switchover": SCALING,
    "Failing over": DEGRADED,
    "Switchover in progress": DEGRADED,
    "Waiting for user action": DEGRADED,
    "Cluster upgrade failed": FAILED,
    "Cluster is in an unrecoverable state, needs manual intervention": FAILED,
}
# status.instancesStatus keys (CNPG's utils.PodStatus) -> node health.
POD_STATUS_HEALTH = {"healthy": HEALTHY, "replicating": PROVISIONING, "failed": FAILED}


def phase_health(phase: str) -> str:
    """An empty phase is a Cluster the operator has not reconciled yet; a phase we do not
    know is degraded (something is going on, nothing says it failed)."""
    if not phase:
        return PROVISIONING
    return PHASE_HEALTH.get(phase, DEGRADED)


def secret_names(handle: str) -> tuple[str, str]:
    return f"{handle}-superuser", f"{handle}-admin"


def cluster_manifest(spec: ClusterSpec, namespace: str, *, image: str = "",
                     storage_size: str = "20Gi") -> dict:
    """The Cluster object for `spec` (pure: the tests validate it against the CRD subset
    in cnpg_schema.json)."""
    size = size_get(spec.size)
    superuser_secret, admin_secret = secret_names(spec.handle)
    resources = {"cpu": str(size.vcpus), "memory": f"{size.memory_gb}Gi"}
    body: dict = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Cluster",
        "metadata": {"name": spec.handle, "namespace": namespace, "labels": {
            "app.kubernetes.io/managed-by": "aerolith",
            "aerolith.io/size": spec.size,
            "aerolith.io/region": spec.region,
        }},
        "spec": {
            "instances": spec.nodes,
            "storage": {"size": storage_size},
            # requests = limits: the node gets the size's vCPUs and memory, no more, no less
            "resources": {"requests": dict(resources), "limits": dict(resources)},
            "enableSuperuserAccess": True,
            "superuserSecret": {"name": superuser_secret},
            "bootstrap": {"initdb": {"database": BOOTSTRAP_DATABASE}},
        },
    }
    if image:
        body["spec"]["imageName"] = image
    if spec.admin_user != SUPERUSER:
        body["spec"]["bootstrap"]["initdb"].update(
            owner=spec.admin_user, secret={"name": admin_secret})
        body["spec"]["managed"] = {"roles": [{
            "name": spec.admin_user, "ensure": "present", "login": True, "superuser": True,
            "passwordSecret": {"name": admin_secret}}]}
    return body


def _status_text(error: ApiException) -> str:
    return f"{error.status} {error.reason}: {(error.body or '')[:300]}"


class KubernetesDriver:
    name = "kubernetes"

    # -- connection --------------------------------------------------------------------

    @property
    def namespace(self) -> str:
        return settings.AEROLITH_K8S_NAMESPACE

    def _configuration(self) -> client.Configuration:
        configuration = client.Configuration()
        if settings.AEROLITH_K8S_HOST:
            configuration.host = settings.AEROLITH_K8S_HOST
            configuration.verify_ssl = settings.AEROLITH_K8S_VERIFY_SSL
            if settings.AEROLITH_K8S_TOKEN:
                configuration.api_key = {"BearerToken": settings.AEROLITH_K8S_TOKEN}
                configuration.api_key_prefix = {"BearerToken": "Bearer"}
        elif os.environ.get("KUBERNETES_SERVICE_HOST"):
            config.load_incluster_config(client_configuration=configuration)
        else:
            config.load_kube_config(config_file=settings.AEROLITH_K8S_KUBECONFIG or None,
                                    client_configuration=configuration)
        return configuration

    @contextmanager
    def _api(self, what: str):
        """An API client for one call of the driver; API and transport errors become
        DriverError saying what we were doing."""
        try:
            with client.ApiClient(self._configuration()) as api:
                yield api
        except ApiException as error:
            raise DriverError(f"Kubernetes refused to {what}: {_status_text(error)}") from error
        except (OSError, config.ConfigException) as error:
            raise DriverError(f"Could not reach Kubernetes to {what}: {error}") from error

    def _get_cluster(self, api, handle: str) -> dict | None:
        try:
            return client.CustomObjectsApi(api).get_namespaced_custom_object(
                GROUP, VERSION, self.namespace, PLURAL, handle)
        except ApiException as error:
            if error.status == 404:
                return None
            raise

    # -- the interface -------------------------------------------------------------------

    def poll(self, handle: str) -> ClusterState | None:
        with self._api(f"read cluster {handle!r}") as api:
            body = self._get_cluster(api, handle)
        if body is None:
            return None
        return self.state_of(handle, body)

    def state_of(self, handle: str, body: dict) -> ClusterState:
        spec, status = body.get("spec") or {}, body.get("status") or {}
        wanted = int(spec.get("instances") or 0)
        primary = status.get("currentPrimary") or ""
        pod_health = {name: POD_STATUS_HEALTH.get(key, DEGRADED)
                      for key, names in (status.get("instancesStatus") or {}).items()
                      for name in names or ()}
        names = list(status.get("instanceNames") or [])
        names += [n for n in pod_health if n not in names]
        names.sort(key=planning.serial_of)
        ns = self.namespace
        nodes = [self._node(handle, name, name == primary, pod_health.get(name, PROVISIONING))
                 for name in names]
        if len(nodes) < wanted:  # asked for, not made yet: the names the operator will use
            serial = max([int(status.get("latestGeneratedNode") or 0)]
                         + [planning.serial_of(n) for n in names])
            for _ in range(wanted - len(nodes)):
                serial += 1
                nodes.append(NodeState(
                    name=planning.node_name(handle, serial),
                    role=REPLICA if nodes else PRIMARY, health=PROVISIONING,
                    host=f"{handle}-ro.{ns}.svc" if nodes else f"{handle}-rw.{ns}.svc",
                    port=PORT, detail="requested; the operator has not created it yet"))
        elif len(nodes) > wanted:  # the operator will remove the highest-serial replicas
            leaving = sorted((n for n in nodes if n.role == REPLICA),
                             key=lambda n: planning.serial_of(n.name),
                             reverse=True)[:len(nodes) - wanted]
            gone = {n.name for n in leaving}
            nodes = [NodeState(n.name, n.role, DELETING, n.host, n.port,
                               "being removed by the operator") if n.name in gone else n
                     for n in nodes]
        phase = status.get("phase") or ""
        health = self._cluster_health(body, phase, wanted, len(names),
                                      int(status.get("readyInstances") or 0))
        return ClusterState(handle=handle, health=health, nodes=tuple(nodes),
                            detail=phase or "not reconciled yet")

    def _node(self, handle: str, name: str, is_primary: bool, health: str) -> NodeState:
        # CNPG has no per-instance Service: -rw follows the primary, -ro the replicas.
        service = "rw" if is_primary else "ro"
        return NodeState(name=name, role=PRIMARY if is_primary else REPLICA, health=health,
                         host=f"{handle}-{service}.{self.namespace}.svc", port=PORT)

    @staticmethod
    def _cluster_health(body: dict, phase: str, wanted: int, existing: int,
                        ready: int) -> str:
        if (body.get("metadata") or {}).get("deletionTimestamp"):
            return DELETING
        health = phase_health(phase)
        if health != HEALTHY:
            return health
        # The operator may report healthy before it has seen a new spec.instances.
        if existing != wanted:
            return SCALING
        return HEALTHY if ready >= wanted else DEGRADED

    def plan(self, current: ClusterState | None, spec: ClusterSpec | None) -> list[Step]:
        return planning.plan_steps(current, spec)

    def apply(self, handle: str, step: Step, spec: ClusterSpec | None) -> None:
        if step.action == "delete_cluster":
            return self._delete(handle)
        if spec is None:
            raise DriverError(f"Step {step.action!r} needs the cluster's spec.")
        if step.action == "create_primary":
            return self._create(handle, spec)
        if step.action in ("add_replica", "remove_replica"):
            return self._set_instances(handle, spec.nodes)
        raise DriverError(f"The Kubernetes driver cannot {step.action!r}; it supports "
                          "create_primary, add_replica, remove_replica and delete_cluster.")

    def _create(self, handle: str, spec: ClusterSpec) -> None:
        if not spec.admin_password:
            raise DriverError("The cluster needs an admin password for its Secrets.")
        manifest = cluster_manifest(spec, self.namespace, image=settings.AEROLITH_K8S_PG_IMAGE,
                                    storage_size=settings.AEROLITH_K8S_STORAGE_SIZE)
        superuser_secret, admin_secret = secret_names(handle)
        with self._api(f"create cluster {handle!r}") as api:
            self._ensure_secret(api, superuser_secret, SUPERUSER, spec.admin_password)
            if spec.admin_user != SUPERUSER:
                self._ensure_secret(api, admin_secret, spec.admin_user, spec.admin_password)
            try:
                client.CustomObjectsApi(api).create_namespaced_custom_object(
                    GROUP, VERSION, self.namespace, PLURAL, manifest)
            except ApiException as error:
                if error.status != 409:  # 409 AlreadyExists: an earlier apply made it
                    raise

    def _ensure_secret(self, api, name: str, username: str, password: str) -> None:
        secret = client.V1Secret(
            metadata=client.V1ObjectMeta(
                name=name, labels={"app.kubernetes.io/managed-by": "aerolith"}),
            type="kubernetes.io/basic-auth",
            string_data={"username": username, "password": password})
        try:
            client.CoreV1Api(api).create_namespaced_secret(self.namespace, secret)
        except ApiException as error:
            if error.status != 409:
                raise

    def _set_instances(self, handle: str, instances: int) -> None:
        with self._api(f"scale cluster {handle!r}") as api:
            body = self._get_cluster(api, handle)
            if body is None:
                raise DriverError(f"Cluster {handle!r} does not exist in namespace "
                                  f"{self.namespace!r}; create it before scaling.")
            if (body.get("spec") or {}).get("instances") == instances:
                return
            client.CustomObjectsApi(api).patch_namespaced_custom_object(
                GROUP, VERSION, self.namespace, PLURAL, handle,
                {"spec": {"instances": instances}},
                _content_type="application/merge-patch+json")

    def _delete(self, handle: str) -> None:
        with self._api(f"delete cluster {handle!r}") as api:
            try:
                client.CustomObjectsApi(api).delete_namespaced_custom_object(
                    GROUP, VERSION, self.namespace, PLURAL, handle)
            except ApiException as error:
                if error.status != 404:
                    raise
            for name in secret_names(handle):
                try:
                    client.CoreV1Api(api).delete_namespaced_secret(name, self.namespace)
                except ApiException as error:
                    if error.status != 404:
                        raise

    def observe(self, handle: str) -> list[NodeMetrics]:
        with self._api(f"read the metrics of {handle!r}") as api:
            body = self._get_cluster(api, handle)
            if body is None:
                return []
            try:
                pod_metrics = client.CustomObjectsApi(api).list_namespaced_custom_object(
                    "metrics.k8s.io", "v1beta1", self.namespace, "pods",
                    label_selector=f"cnpg.io/cluster={handle}").get("items", [])
            except ApiException as error:
                if error.status != 404:  # 404: no metrics-server in this cluster
                    raise
                pod_metrics = []
        limits = ((body.get("spec") or {}).get("resources") or {}).get("limits") or {}
        cpu_limit = parse_quantity(limits["cpu"]) if limits.get("cpu") else None
        memory_limit = parse_quantity(limits["memory"]) if limits.get("memory") else None
        usage = {}
        for item in pod_metrics:
            cpu = memory = 0
            for container in item.get("containers") or ():
                cpu += parse_quantity((container.get("usage") or {}).get("cpu", "0"))
                memory += parse_quantity((container.get("usage") or {}).get("memory", "0"))
            usage[(item.get("metadata") or {}).get("name")] = (cpu, memory)
        metrics = []
        for node in self.state_of(handle, body).nodes:
            if node.health == DELETING or node.detail.startswith("requested"):
                continue
            cpu = memory = None
            if node.name in usage:
                used_cpu, used_memory = usage[node.name]
                if cpu_limit:
                    cpu = float(min(100, used_cpu / cpu_limit * 100))
                if memory_limit:
                    memory = float(min(100, used_memory / memory_limit * 100))
            metrics.append(NodeMetrics(node=node.name, cpu_percent=cpu, memory_percent=memory,
                                       up=node.health in (HEALTHY, SCALING)))
        return metrics
