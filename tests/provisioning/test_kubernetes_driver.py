"""The CloudNativePG driver, through the real kubernetes client, against a fake API server."""
import base64
import copy
import json

import jsonschema
import pytest

from provisioning.drivers.base import (
    DEGRADED,
    DELETING,
    FAILED,
    HEALTHY,
    PRIMARY,
    PROVISIONING,
    REPLICA,
    SCALING,
    ClusterSpec,
    DriverError,
    Step,
)
from provisioning.drivers.kubernetes import KubernetesDriver, cluster_manifest, phase_health
from tests.fakes.kube_api import SCHEMA, KubeApiServer

from .drivers_support import converge

HANDLE = "aer-k8s-1"
NS = "aerolith"


@pytest.fixture
def kube(settings):
    server = KubeApiServer().start()
    settings.AEROLITH_K8S_HOST = server.url
    settings.AEROLITH_K8S_NAMESPACE = NS
    settings.AEROLITH_K8S_TOKEN = "test-token"
    yield server
    server.stop()


def spec(nodes: int, **overrides) -> ClusterSpec:
    values = dict(handle=HANDLE, size="small", nodes=nodes, region="eu-central",
                  admin_user="aerolith_admin", admin_password="a-long-admin-password")
    values.update(overrides)
    return ClusterSpec(**values)


def test_create_poll_scale_delete_lifecycle(kube):
    driver = KubernetesDriver()
    assert driver.poll(HANDLE) is None

    assert converge(driver, HANDLE, spec(3)) == [f"create_primary:{HANDLE}-1"]
    state = driver.poll(HANDLE)
    assert state.health == PROVISIONING
    assert [n.health for n in state.nodes] == [PROVISIONING] * 3
    assert [n.name for n in state.nodes] == [f"{HANDLE}-1", f"{HANDLE}-2", f"{HANDLE}-3"]

    created = kube.clusters[(NS, HANDLE)]
    assert created["spec"]["instances"] == 3
    assert created["spec"]["resources"]["limits"] == {"cpu": "2", "memory": "4Gi"}
    assert created["spec"]["superuserSecret"] == {"name": f"{HANDLE}-superuser"}
    superuser = kube.secrets[(NS, f"{HANDLE}-superuser")]
    assert superuser["type"] == "kubernetes.io/basic-auth"
    assert base64.b64decode(superuser["data"]["username"]) == b"postgres"
    assert base64.b64decode(superuser["data"]["password"]) == b"a-long-admin-password"
    admin = kube.secrets[(NS, f"{HANDLE}-admin")]
    assert base64.b64decode(admin["data"]["username"]) == b"aerolith_admin"

    kube.set_status(HANDLE, phase="Setting up primary")
    assert driver.poll(HANDLE).health == PROVISIONING
    kube.reconcile(HANDLE)
    state = driver.poll(HANDLE)
    assert state.health == HEALTHY
    assert state.primary.name == f"{HANDLE}-1"
    assert state.primary.host == f"{HANDLE}-rw.{NS}.svc" and state.primary.port == 5432
    assert [(n.role, n.health) for n in state.nodes] == [
        (PRIMARY, HEALTHY), (REPLICA, HEALTHY), (REPLICA, HEALTHY)]

    kube.requests.clear()
    assert converge(driver, HANDLE, spec(5)) == [f"add_replica:{HANDLE}-4"]
    patches = [r for r in kube.requests if r[0] == "PATCH"]
    assert len(patches) == 1 and patches[0][2] == "application/merge-patch+json"
    assert kube.clusters[(NS, HANDLE)]["spec"]["instances"] == 5
    state = driver.poll(HANDLE)
    assert state.health == SCALING
    assert [n.name for n in state.nodes if n.health == PROVISIONING] == [
        f"{HANDLE}-4", f"{HANDLE}-5"]
    kube.reconcile(HANDLE)
    assert driver.poll(HANDLE).health == HEALTHY
    assert len(driver.poll(HANDLE).nodes) == 5

    # scale in: CNPG drops the highest serials, never the primary, and the plan says so
    assert converge(driver, HANDLE, spec(2)) == [f"remove_replica:{HANDLE}-5"]
    assert kube.clusters[(NS, HANDLE)]["spec"]["instances"] == 2
    leaving = [n.name for n in driver.poll(HANDLE).nodes if n.health == DELETING]
    assert leaving == [f"{HANDLE}-3", f"{HANDLE}-4", f"{HANDLE}-5"]
    kube.reconcile(HANDLE)
    assert [n.name for n in driver.poll(HANDLE).nodes] == [f"{HANDLE}-1", f"{HANDLE}-2"]

    assert converge(driver, HANDLE, None) == ["delete_cluster:"]
    assert driver.poll(HANDLE) is None
    assert kube.secrets == {}
    driver.apply(HANDLE, Step("delete_cluster"), None)  # already gone: nothing to do


def test_apply_create_twice_makes_one_object(kube):
    driver = KubernetesDriver()
    driver.apply(HANDLE, Step("create_primary", f"{HANDLE}-1"), spec(1))
    driver.apply(HANDLE, Step("create_primary", f"{HANDLE}-1"), spec(1))
    assert list(kube.clusters) == [(NS, HANDLE)]
    assert len(kube.secrets) == 2
    kube.reconcile(HANDLE)
    kube.requests.clear()
    driver.apply(HANDLE, Step("add_replica", f"{HANDLE}-2"), spec(2))
    driver.apply(HANDLE, Step("add_replica", f"{HANDLE}-2"), spec(2))
    assert kube.clusters[(NS, HANDLE)]["spec"]["instances"] == 2
    assert [r[0] for r in kube.requests].count("PATCH") == 1


def test_scaling_a_missing_cluster_is_refused(kube):
    with pytest.raises(DriverError, match="does not exist"):
        KubernetesDriver().apply(HANDLE, Step("add_replica", f"{HANDLE}-2"), spec(2))


def test_api_errors_become_driver_errors(kube):
    with pytest.raises(DriverError, match="422"):
        KubernetesDriver().apply("Not_A_DNS_Name", Step("create_primary"),
                                 spec(1, handle="Not_A_DNS_Name"))


@pytest.mark.parametrize("phase,health", [
    ("Cluster in healthy state", HEALTHY),
    ("Setting up primary", PROVISIONING),
    ("Creating a new replica", SCALING),
    ("Upgrading cluster", SCALING),
    ("Waiting for the instances to become active", SCALING),
    ("Failing over", DEGRADED),
    ("Switchover in progress", DEGRADED),
    ("Cluster is in an unrecoverable state, needs manual intervention", FAILED),
    ("Something CNPG invents next year", DEGRADED),
    ("", PROVISIONING),
])
def test_phase_maps_to_health(phase, health):
    assert phase_health(phase) == health


def test_healthy_phase_with_too_few_ready_instances_is_degraded(kube):
    driver = KubernetesDriver()
    driver.apply(HANDLE, Step("create_primary"), spec(3))
    kube.reconcile(HANDLE)
    kube.set_status(HANDLE, readyInstances=2,
                    instancesStatus={"healthy": [f"{HANDLE}-1", f"{HANDLE}-2"],
                                     "failed": [f"{HANDLE}-3"]})
    state = driver.poll(HANDLE)
    assert state.health == DEGRADED
    assert state.nodes[2].health == FAILED
    kube.set_status(HANDLE, phase="Failing over")
    assert driver.poll(HANDLE).health == DEGRADED


def test_observe_divides_pod_usage_by_the_size_limits(kube):
    driver = KubernetesDriver()
    driver.apply(HANDLE, Step("create_primary"), spec(2, size="medium"))  # 4 vCPU / 16 GiB
    kube.reconcile(HANDLE)
    kube.pod_usage = {f"{HANDLE}-1": ("1", "8Gi"), "other-cluster-1": ("4", "16Gi")}
    metrics = {m.node: m for m in driver.observe(HANDLE)}
    assert set(metrics) == {f"{HANDLE}-1", f"{HANDLE}-2"}
    assert metrics[f"{HANDLE}-1"].cpu_percent == pytest.approx(25.0)
    assert metrics[f"{HANDLE}-1"].memory_percent == pytest.approx(50.0)
    assert metrics[f"{HANDLE}-2"].cpu_percent is None  # no sample yet
    kube.metrics_available = False  # no metrics-server: every value missing, no error
    assert all(m.cpu_percent is None for m in driver.observe(HANDLE))
    assert driver.observe("never-made") == []


@pytest.mark.parametrize("admin_user", ["aerolith_admin", "postgres"])
@pytest.mark.parametrize("size", ["small", "medium", "large", "xlarge"])
def test_manifest_matches_the_cnpg_crd_fields(admin_user, size):
    manifest = cluster_manifest(spec(3, size=size, admin_user=admin_user), NS,
                                image="ghcr.io/cloudnative-pg/postgresql:17")
    jsonschema.validate(manifest, SCHEMA)
    assert manifest["spec"]["imageName"] == "ghcr.io/cloudnative-pg/postgresql:17"
    assert manifest["spec"]["enableSuperuserAccess"] is True


@pytest.mark.parametrize("path", [
    ("spec", "instance"), ("spec", "storage", "sizes"), ("spec", "bootstrap", "initDB"),
    ("spec", "resources", "limits", "gpu"), ("spec", "superuserSecret", "key"),
    ("spec", "managed", "roles", 0, "superUser"), ("metadata", "label"),
])
def test_a_misspelt_field_fails_the_schema(path):
    manifest = copy.deepcopy(cluster_manifest(spec(3), NS))
    target = manifest
    for part in path[:-1]:
        target = target[part]
    target[path[-1]] = json.loads('"x"') if path[-1] != "instance" else 3
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(manifest, SCHEMA)
