"""The clusters API (SPEC §7, §10): create (202 with its operation, idempotent), read with
nodes and policy, scale and policy changes, delete, scaling history, what the autoscaler
would do now, and sizing advice. Refusals are problem+json and change nothing; another
organisation's clusters, and the region's shared cluster, do not exist for a tenant.

Operations are not what these tests are about: `_enqueue` is patched to a no-op so no
PostgreSQL server starts, operations stay pending until a test settles them, and Node rows
are written by hand where a test needs nodes and metrics.
"""
from datetime import timedelta

import pytest

from aerolith import clock
from provisioning.models import Cluster, ClusterSample, Operation, ScalingEvent
from provisioning.services.clusters import cluster_scale
from tenants.models import Role, TenantStatus
from tests.conftest import add_member, api_client, assert_problem, jwt_for, make_key
from tests.provisioning.api_support import (
    enterprise,
    make_cluster,
    set_nodes,
    shared_cluster_row,
    snapshot,
)

WRITE = ["read", "databases:write"]


@pytest.fixture(autouse=True)
def no_operations_run(monkeypatch):
    monkeypatch.setattr("provisioning.services.operations._enqueue", lambda operation_id: None)


@pytest.fixture
def alice_ent(alice):
    return enterprise(alice)


@pytest.fixture
def owner(alice_ent):
    return api_client("alice", make_key(alice_ent, WRITE))


# --- create -------------------------------------------------------------------------------

@pytest.mark.django_db
def test_create_answers_202_with_the_cluster_and_its_operation(owner):
    response = owner.post("/api/v1/clusters", {
        "name": "analytics", "size": "medium", "node_count": 4, "region": "eu-central",
        "policy": {"autoscale_enabled": True, "min_nodes": 3, "max_nodes": 8}}, format="json")
    assert response.status_code == 202, response.content
    body = response.json()
    cluster = body["cluster"]
    assert cluster["name"] == "analytics" and cluster["size"] == "medium"
    assert cluster["node_count"] == 4 and cluster["provider"] == "local"
    assert cluster["health"] == "provisioning" and cluster["nodes"] == []
    assert cluster["policy"]["autoscale_enabled"] is True
    assert cluster["policy"]["min_nodes"] == 3 and cluster["policy"]["max_nodes"] == 8
    assert body["operation"]["kind"] == "create" and body["operation"]["state"] == "pending"
    assert cluster["operation"]["id"] == body["operation"]["id"]
    listed = owner.get("/api/v1/clusters").json()
    assert [c["name"] for c in listed["results"]] == ["analytics"]


@pytest.mark.django_db
def test_create_with_the_same_idempotency_key_answers_the_first_cluster(owner):
    payload = {"name": "retry-me", "node_count": 3}
    first = owner.post("/api/v1/clusters", payload, format="json", HTTP_IDEMPOTENCY_KEY="k-123")
    again = owner.post("/api/v1/clusters", payload, format="json", HTTP_IDEMPOTENCY_KEY="k-123")
    assert first.status_code == again.status_code == 202
    assert first.json()["cluster"]["id"] == again.json()["cluster"]["id"]
    assert first.json()["operation"]["id"] == again.json()["operation"]["id"]
    assert Cluster.objects.filter(name="retry-me").count() == 1
    operation = Operation.objects.get(pk=first.json()["operation"]["id"])
    assert operation.idempotency_key.startswith("api:") and operation.idempotency_key.endswith(":k-123")


@pytest.mark.django_db
@pytest.mark.parametrize("payload, field, code", [
    ({"name": "c1", "size": "huge"}, "size", "unknown_size"),
    ({"name": "c1", "node_count": 0}, "node_count", "out_of_range"),
    ({"name": "c1", "node_count": 101}, "node_count", "out_of_range"),
    ({"name": "c1", "node_count": "three"}, "node_count", "out_of_range"),
    ({"name": "c1", "node_count": 3.5}, "node_count", "out_of_range"),
    ({"name": "c1", "node_count": True}, "node_count", "out_of_range"),
    ({"name": "c1", "node_count": 10**30}, "node_count", "out_of_range"),
    ({"name": "Bad Name!"}, "name", "invalid"),
    ({"name": 7}, "name", "invalid"),
    ({}, "name", "required"),
    ({"name": "c1", "provider": "gcp"}, "provider", "unknown_provider"),
    ({"name": "c1", "region": "mars-1"}, "region", "unknown_region"),
    ({"name": "c1", "policy": {"turbo": True}}, "turbo", "unknown_field"),
    ({"name": "c1", "policy": {"min_nodes": 5, "max_nodes": 4}}, "min_nodes", "out_of_range"),
    ({"name": "c1", "policy": {"cpu_target_percent": 150}}, "cpu_target_percent", "out_of_range"),
    ({"name": "c1", "policy": {"autoscale_enabled": "yes"}}, "autoscale_enabled", "invalid"),
    ({"name": "c1", "policy": [1, 2]}, "policy", None),
    ({"name": "c1", "colour": "blue"}, "colour", "unknown_field"),
])
def test_create_refuses_bad_input_and_changes_nothing(owner, payload, field, code):
    before = snapshot()
    body = assert_problem(owner.post("/api/v1/clusters", payload, format="json"), 400)
    errors = {e["field"]: e["code"] for e in body["errors"]}
    assert field in errors, body
    if code:
        assert errors[field] == code, body
    assert snapshot() == before


@pytest.mark.django_db
def test_create_refuses_a_duplicate_name_with_409(owner, alice_ent):
    make_cluster(alice_ent, "main")
    before = snapshot()
    body = assert_problem(owner.post("/api/v1/clusters", {"name": "main"}, format="json"), 409,
                          "duplicate_name")
    assert "main" in body["detail"]
    assert snapshot() == before


@pytest.mark.django_db
@pytest.mark.parametrize("body", ["[1, 2]", "\"text\"", "{\"name\": "])
def test_create_refuses_a_body_that_is_not_an_object(owner, body):
    before = snapshot()
    assert_problem(owner.post("/api/v1/clusters", body, content_type="application/json"), 400)
    assert snapshot() == before


@pytest.mark.django_db
def test_bad_idempotency_key_is_refused(owner):
    before = snapshot()
    assert_problem(owner.post("/api/v1/clusters", {"name": "c1"}, format="json",
                              HTTP_IDEMPOTENCY_KEY="x" * 101), 400, "validation_error")
    assert snapshot() == before


@pytest.mark.django_db
def test_plan_without_dedicated_clusters_is_told_to_upgrade(alice):
    client = api_client("alice", make_key(alice, WRITE))  # alice is on Starter here
    before = snapshot()
    body = assert_problem(client.post("/api/v1/clusters", {"name": "c1"}, format="json"), 402,
                          "plan_upgrade_required")
    assert "Enterprise" in body["detail"]
    assert snapshot() == before


@pytest.mark.django_db
def test_suspended_organisation_cannot_create_but_can_read(alice_ent, owner):
    cluster = make_cluster(alice_ent)
    alice_ent.status = TenantStatus.SUSPENDED
    alice_ent.save(update_fields=["status"])
    before = snapshot()
    assert_problem(owner.post("/api/v1/clusters", {"name": "c2"}, format="json"), 402,
                   "account_suspended")
    assert_problem(owner.patch(f"/api/v1/clusters/{cluster.pk}", {"node_count": 4},
                               format="json"), 402, "account_suspended")
    assert_problem(owner.delete(f"/api/v1/clusters/{cluster.pk}"), 402, "account_suspended")
    assert snapshot() == before
    assert owner.get(f"/api/v1/clusters/{cluster.pk}").status_code == 200
    # Sizing advice writes nothing, so it stays open.
    assert owner.post("/api/v1/clusters/recommend",
                      {"qps": 100, "data_gb": 10, "read_percent": 80}, format="json"
                      ).status_code == 200


# --- roles --------------------------------------------------------------------------------

@pytest.mark.django_db
def test_viewer_and_read_only_key_can_read_but_not_write(alice_ent):
    cluster = make_cluster(alice_ent)
    add_member(alice_ent, "viewer@alice.test", Role.VIEWER)
    viewer = api_client("alice", jwt_for("alice", "viewer@alice.test"))
    reader = api_client("alice", make_key(alice_ent, ["read"]))
    before = snapshot()
    for client, code in ((viewer, "role_not_allowed"), (reader, "insufficient_scope")):
        assert client.get("/api/v1/clusters").status_code == 200
        assert client.get(f"/api/v1/clusters/{cluster.pk}").status_code == 200
        assert_problem(client.post("/api/v1/clusters", {"name": "c2"}, format="json"), 403, code)
        assert_problem(client.patch(f"/api/v1/clusters/{cluster.pk}", {"node_count": 4},
                                    format="json"), 403, code)
        assert_problem(client.delete(f"/api/v1/clusters/{cluster.pk}"), 403, code)
    assert snapshot() == before


@pytest.mark.django_db
def test_anonymous_requests_are_401(alice_ent):
    assert_problem(api_client("alice").get("/api/v1/clusters"), 401)


# --- isolation ----------------------------------------------------------------------------

@pytest.mark.django_db
def test_another_organisations_cluster_and_the_shared_cluster_do_not_exist(alice_ent, bob, charlie):
    enterprise(bob)
    cluster = make_cluster(alice_ent)
    shared = shared_cluster_row()
    before = snapshot()
    for tenant in (bob, charlie):
        client = api_client(tenant.slug, make_key(tenant, WRITE))
        assert client.get("/api/v1/clusters").json()["results"] == []
        for pk in (cluster.pk, shared.pk):
            base = f"/api/v1/clusters/{pk}"
            assert_problem(client.get(base), 404, "not_found")
            assert_problem(client.patch(base, {"node_count": 4}, format="json"), 404)
            assert_problem(client.delete(base), 404)
            assert_problem(client.get(f"{base}/scaling-events"), 404)
            assert_problem(client.get(f"{base}/recommendation"), 404)
    owner = api_client("alice", make_key(alice_ent, WRITE))
    assert [c["id"] for c in owner.get("/api/v1/clusters").json()["results"]] == [cluster.pk]
    assert_problem(owner.get(f"/api/v1/clusters/{shared.pk}"), 404)
    assert snapshot() == before


@pytest.mark.django_db
@pytest.mark.parametrize("raw", ["abc", "0", "-1", "99999999999999999999", "1e3"])
def test_ids_that_cannot_exist_are_404_problems(owner, raw):
    assert_problem(owner.get(f"/api/v1/clusters/{raw}"), 404)
    assert_problem(owner.get(f"/api/v1/clusters/{raw}/scaling-events"), 404)


# --- read -------------------------------------------------------------------------------

@pytest.mark.django_db
def test_cluster_shows_nodes_with_metrics_policy_and_no_operation_when_idle(owner, alice_ent):
    cluster = make_cluster(alice_ent, nodes=3)
    body = owner.get(f"/api/v1/clusters/{cluster.pk}").json()
    assert body["health"] == "healthy" and body["operation"] is None
    assert [n["role"] for n in body["nodes"]] == ["primary", "replica", "replica"]
    node = body["nodes"][0]
    assert set(node) == {"name", "role", "health", "host", "port", "cpu_percent", "memory_percent",
                         "connections", "replication_lag_bytes", "observed_at"}
    assert node["cpu_percent"] == 40.0 and node["port"] == 6000 and node["observed_at"]
    assert set(body["policy"]) >= {"autoscale_enabled", "autoscale_paused", "min_nodes",
                                   "max_nodes", "cpu_target_percent", "forecast_enabled"}


# --- patch ------------------------------------------------------------------------------

@pytest.mark.django_db
def test_patch_policy_changes_it_and_answers_200(owner, alice_ent):
    cluster = make_cluster(alice_ent)
    response = owner.patch(f"/api/v1/clusters/{cluster.pk}", {"policy": {
        "autoscale_enabled": True, "min_nodes": 2, "max_nodes": 6, "cpu_target_percent": 60}},
        format="json")
    assert response.status_code == 200, response.content
    assert response.json()["policy"]["cpu_target_percent"] == 60
    cluster.refresh_from_db()
    assert (cluster.autoscale_enabled, cluster.min_nodes, cluster.max_nodes) == (True, 2, 6)


@pytest.mark.django_db
def test_patch_node_count_starts_a_scale_operation_with_202(owner, alice_ent):
    cluster = make_cluster(alice_ent)
    response = owner.patch(f"/api/v1/clusters/{cluster.pk}", {"node_count": 5}, format="json")
    assert response.status_code == 202, response.content
    body = response.json()
    assert body["operation"]["kind"] == "scale" and body["operation"]["target_nodes"] == 5
    assert body["cluster"]["node_count"] == 5 and body["cluster"]["health"] == "scaling"
    assert body["cluster"]["operation"]["id"] == body["operation"]["id"]


@pytest.mark.django_db
@pytest.mark.parametrize("payload, field", [
    ({"node_count": 0}, "node_count"),
    ({"node_count": 101}, "node_count"),
    ({"node_count": "three"}, "node_count"),
    ({"policy": {"min_nodes": 5, "max_nodes": 4}}, "min_nodes"),
    ({"policy": {"bogus": 1}}, "bogus"),
    ({"policy": {"stabilization_seconds": 10**30}}, "stabilization_seconds"),
    ({"policy": "fast"}, "policy"),
    ({"policy": {"max_nodes": 2}}, "min_nodes"),  # below the current min of 3
    ({"size": "large"}, "size"),
    ({}, "node_count"),
])
def test_patch_refuses_bad_input_and_changes_nothing(owner, alice_ent, payload, field):
    cluster = make_cluster(alice_ent, min_nodes=3, max_nodes=8)
    before = snapshot()
    body = assert_problem(owner.patch(f"/api/v1/clusters/{cluster.pk}", payload, format="json"), 400)
    assert field in {e["field"] for e in body["errors"]}, body
    assert snapshot() == before


@pytest.mark.django_db
def test_patch_of_policy_and_a_refused_scale_keeps_the_old_policy(owner, alice_ent):
    cluster = make_cluster(alice_ent, autoscale_enabled=True, min_nodes=3, max_nodes=8)
    before = snapshot()
    assert_problem(owner.patch(f"/api/v1/clusters/{cluster.pk}", {
        "policy": {"cpu_target_percent": 55, "max_nodes": 6}, "node_count": 7}, format="json"), 400)
    assert snapshot() == before


@pytest.mark.django_db
def test_scaling_while_an_operation_runs_is_409(owner, alice_ent):
    cluster = make_cluster(alice_ent)
    assert owner.patch(f"/api/v1/clusters/{cluster.pk}", {"node_count": 4},
                       format="json").status_code == 202
    before = snapshot()
    assert_problem(owner.patch(f"/api/v1/clusters/{cluster.pk}", {"node_count": 6},
                               format="json"), 409, "operation_in_flight")
    assert snapshot() == before


# --- delete -------------------------------------------------------------------------------

@pytest.mark.django_db
def test_delete_answers_202_and_marks_the_cluster_deleting(owner, alice_ent):
    cluster = make_cluster(alice_ent)
    response = owner.delete(f"/api/v1/clusters/{cluster.pk}")
    assert response.status_code == 202, response.content
    assert response.json()["operation"]["kind"] == "delete"
    assert response.json()["cluster"]["health"] == "deleting"
    before = snapshot()
    assert_problem(owner.patch(f"/api/v1/clusters/{cluster.pk}", {"node_count": 4},
                               format="json"), 409)
    assert snapshot() == before


# --- history and advice -------------------------------------------------------------------

@pytest.mark.django_db
def test_scaling_events_are_paginated_newest_first(owner, alice_ent):
    cluster = make_cluster(alice_ent)
    start = clock.wall_now() - timedelta(hours=1)
    for minute in range(5):
        ScalingEvent.objects.create(cluster=cluster, at=start + timedelta(minutes=minute),
                                    outcome="hold", reason="desired_within_tolerance",
                                    current_nodes=3, desired_nodes=3, inputs={"cpu_mean": minute})
    first = owner.get(f"/api/v1/clusters/{cluster.pk}/scaling-events?limit=2").json()
    assert [e["inputs"]["cpu_mean"] for e in first["results"]] == [4, 3]
    assert first["results"][0]["explanation"]
    second = owner.get(first["next"]).json()
    assert [e["inputs"]["cpu_mean"] for e in second["results"]] == [2, 1]
    assert_problem(owner.get(f"/api/v1/clusters/{cluster.pk}/scaling-events?limit=0"), 400)
    assert_problem(owner.get(f"/api/v1/clusters/{cluster.pk}/scaling-events?cursor=zzz"), 400)


@pytest.mark.django_db
def test_recommendation_is_a_dry_run_of_the_autoscaler(owner, alice_ent):
    cluster = make_cluster(alice_ent, autoscale_enabled=True, min_nodes=3, max_nodes=10)
    set_nodes(cluster, 3, cpu=95.0, memory=50.0)
    before = snapshot()
    events = ScalingEvent.objects.count()
    body = owner.get(f"/api/v1/clusters/{cluster.pk}/recommendation").json()
    assert body["outcome"] == "scale_up" and body["current_nodes"] == 3
    assert body["desired_nodes"] == 5  # ceil(3 × 95/70) = 5
    assert body["inputs"]["cpu_mean"] == 95.0 and body["explanation"]
    assert body["autoscale_enabled"] is True and body["forecast"] is None
    assert snapshot() == before and ScalingEvent.objects.count() == events


@pytest.mark.django_db
def test_recommendation_holds_without_metrics(owner, alice_ent):
    cluster = make_cluster(alice_ent)
    cluster.nodes.update(cpu_percent=None, memory_percent=None, observed_at=None)
    body = owner.get(f"/api/v1/clusters/{cluster.pk}/recommendation").json()
    assert (body["outcome"], body["reason"]) == ("hold", "metrics_missing")


@pytest.mark.django_db
def test_sizing_advice_answers_size_nodes_and_reasoning(owner):
    body = owner.post("/api/v1/clusters/recommend",
                      {"qps": 5000, "data_gb": 100, "read_percent": 90}, format="json").json()
    assert body["size"] in {"small", "medium", "large", "xlarge"}
    assert body["node_count"] >= 3 and len(body["reasoning"]) >= 3
    same = owner.get("/api/v1/clusters/recommend?qps=5000&data_gb=100&read_percent=90").json()
    assert same == body


@pytest.mark.django_db
@pytest.mark.parametrize("payload", [
    {"qps": -1, "data_gb": 10, "read_percent": 50},
    {"qps": "many", "data_gb": 10, "read_percent": 50},
    {"qps": 10, "data_gb": 10, "read_percent": 150},
    {"qps": 10, "data_gb": 10},
    {"qps": 10, "data_gb": 1e12, "read_percent": 50},
    {"qps": 10, "data_gb": 10, "read_percent": 50, "extra": 1},
])
def test_sizing_advice_refuses_bad_workloads(alice_ent, payload):
    add_member(alice_ent, "viewer@alice.test", Role.VIEWER)
    viewer = api_client("alice", jwt_for("alice", "viewer@alice.test"))
    assert_problem(viewer.post("/api/v1/clusters/recommend", payload, format="json"), 400)


@pytest.mark.django_db
def test_recommendation_includes_the_forecast_when_forecast_mode_is_on(owner, alice_ent):
    cluster = make_cluster(alice_ent, autoscale_enabled=True, forecast_enabled=True,
                           min_nodes=3, max_nodes=10)
    now = clock.wall_now()
    week_ago = now - timedelta(days=7)
    for minutes in (5, 20, 40):  # last week's same hour ran 3 nodes at 90 % CPU
        ClusterSample.objects.create(cluster=cluster, at=week_ago + timedelta(minutes=minutes),
                                     nodes=3, cpu_percent=90.0, memory_percent=40.0)
    body = owner.get(f"/api/v1/clusters/{cluster.pk}/recommendation").json()
    assert body["forecast"]["cpu_load"] == pytest.approx(270.0)
    assert body["outcome"] == "scale_up" and body["reason"] == "forecast_scale_up"
    assert body["desired_nodes"] == 4  # ceil(270 / 70)


@pytest.mark.django_db
def test_the_list_asks_the_same_number_of_queries_for_one_cluster_or_five(owner, alice_ent):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    def count() -> int:
        with CaptureQueriesContext(connection) as queries:
            assert owner.get("/api/v1/clusters").status_code == 200
        return len(queries)

    make_cluster(alice_ent, name="one")
    count()  # the first call also records the key's last use
    single = count()
    for n in range(4):
        cluster = make_cluster(alice_ent, name=f"more-{n}")
        cluster_scale(cluster=cluster, node_count=4, actor="test")  # an operation in flight
    listed = owner.get("/api/v1/clusters").json()["results"]
    assert len(listed) == 5 and sum(c["operation"] is not None for c in listed) == 4
    assert count() == single
