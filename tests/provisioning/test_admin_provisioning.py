"""Provisioning's staff console: clusters with their nodes, operations and scaling history
render for staff; nothing is reachable without staff rights; the actions (scale to N,
pause and resume autoscaling, replace a node) go through the services and report what they
did, refusals come back as messages or form errors with nothing changed; history is
read-only and the change forms save nothing.

Operations are not run: `_enqueue` is patched to a no-op and Node rows are written by hand.
"""
import pytest
from django.test import Client
from django.urls import reverse as _reverse

from aerolith import clock
from provisioning.models import Cluster, Operation, ScalingEvent
from tenants.models import AuditEvent, User
from tests.conftest import PASSWORD, PUBLIC_HOST, staff_client
from tests.provisioning.api_support import enterprise, make_cluster, snapshot


def reverse(name, args=()):
    return _reverse(name, args=args, urlconf="aerolith.urls_public")


@pytest.fixture(autouse=True)
def no_operations_run(monkeypatch):
    monkeypatch.setattr("provisioning.services.operations._enqueue", lambda operation_id: None)


@pytest.fixture
def console(db):
    return staff_client(User.objects.create_superuser("ops@aerolith.test", PASSWORD))


@pytest.fixture
def cluster(alice):
    cluster = make_cluster(enterprise(alice), "main", autoscale_enabled=True, min_nodes=2,
                           max_nodes=8)
    ScalingEvent.objects.create(cluster=cluster, at=clock.wall_now(), outcome="scale_up",
                                reason="scale_up", current_nodes=3, desired_nodes=4,
                                inputs={"cpu_mean": 91.0})
    return cluster


def messages_of(response) -> list[str]:
    return [str(m) for m in response.context["messages"]] if response.context else []


def action(console, model, name, ids):
    return console.post(f"/admin/provisioning/{model}/",
                        {"action": name, "_selected_action": ids}, follow=True)


def test_every_page_renders_for_staff(console, cluster):
    node = cluster.nodes.first()
    operation = Operation.objects.filter(cluster=cluster).first()
    event = ScalingEvent.objects.get(cluster=cluster)
    for page in ["/admin/provisioning/cluster/", "/admin/provisioning/node/",
                 "/admin/provisioning/operation/", "/admin/provisioning/scalingevent/",
                 reverse("admin:provisioning_cluster_change", [cluster.pk]),
                 reverse("admin:provisioning_node_change", [node.pk]),
                 reverse("admin:provisioning_operation_change", [operation.pk]),
                 reverse("admin:provisioning_scalingevent_change", [event.pk]),
                 reverse("admin:provisioning_cluster_scale", [cluster.pk]),
                 "/admin/provisioning/cluster/?autoscaling=paused",
                 "/admin/provisioning/cluster/?q=alice"]:
        response = console.get(page)
        assert response.status_code == 200, (page, response.status_code)


def test_cluster_list_shows_tenant_size_health_and_autoscaling(console, cluster):
    text = console.get("/admin/provisioning/cluster/").content.decode()
    assert "main" in text and "alice" in text and "on (2–8)" in text and "Healthy" in text
    page = console.get(reverse("admin:provisioning_cluster_change", [cluster.pk])).content.decode()
    assert cluster.nodes.first().name in page  # the node inline
    assert 'name="_save"' not in page  # nothing is saved from the form


def test_non_staff_cannot_reach_the_console(cluster):
    client = Client(HTTP_HOST=PUBLIC_HOST)
    client.force_login(User.objects.get(email="owner@alice.test"))
    for page in ["/admin/provisioning/cluster/", reverse("admin:provisioning_cluster_scale",
                                                         [cluster.pk])]:
        response = client.get(page)
        assert response.status_code == 302 and "/admin/login/" in response["Location"]


def test_scale_page_starts_a_scale_operation_and_says_so(console, cluster):
    response = console.post(reverse("admin:provisioning_cluster_scale", [cluster.pk]),
                            {"node_count": 6}, follow=True)
    assert any("scaling to 6 nodes" in m for m in messages_of(response))
    cluster.refresh_from_db()
    assert cluster.node_count == 6
    assert Operation.objects.filter(cluster=cluster, kind="scale", target_nodes=6).exists()
    audit = AuditEvent.objects.filter(action="cluster.scale").latest("occurred_at")
    assert "ops@aerolith.test" in audit.actor_label


@pytest.mark.parametrize("value, message", [
    ("three", "Enter a whole number"), ("0", "from 1 to 100"), ("101", "from 1 to 100"),
    ("9", "between 2 and 8"), ("", "This field is required"),
])
def test_scale_page_refuses_bad_counts_and_changes_nothing(console, cluster, value, message):
    before = snapshot()
    response = console.post(reverse("admin:provisioning_cluster_scale", [cluster.pk]),
                            {"node_count": value})
    assert response.status_code == 200 and message in response.content.decode()
    assert snapshot() == before


def test_scale_action_needs_exactly_one_cluster(console, cluster, bob):
    other = make_cluster(enterprise(bob), "other")
    response = action(console, "cluster", "scale_to", [cluster.pk, other.pk])
    assert any("exactly one" in m for m in messages_of(response))
    response = console.post("/admin/provisioning/cluster/",
                            {"action": "scale_to", "_selected_action": [cluster.pk]})
    assert response.status_code == 302
    assert response["Location"] == reverse("admin:provisioning_cluster_scale", [cluster.pk])


def test_scale_while_busy_is_reported_and_changes_nothing(console, cluster):
    Operation.objects.create(cluster=cluster, kind="scale", target_nodes=4,
                             idempotency_key="busy-test")
    before = snapshot()
    response = console.post(reverse("admin:provisioning_cluster_scale", [cluster.pk]),
                            {"node_count": 5}, follow=True)
    assert any("busy" in m for m in messages_of(response))
    assert snapshot() == before


def test_pause_and_resume_autoscaling_report_each_cluster(console, cluster):
    response = action(console, "cluster", "pause_autoscaling", [cluster.pk])
    assert any("autoscaling paused" in m for m in messages_of(response))
    cluster.refresh_from_db()
    assert cluster.autoscale_paused is True
    again = action(console, "cluster", "pause_autoscaling", [cluster.pk])
    assert any("already paused" in m for m in messages_of(again))
    assert "paused (2–8)" in console.get("/admin/provisioning/cluster/").content.decode()
    resumed = action(console, "cluster", "resume_autoscaling", [cluster.pk])
    assert any("autoscaling resumed" in m for m in messages_of(resumed))
    cluster.refresh_from_db()
    assert cluster.autoscale_paused is False
    assert AuditEvent.objects.filter(action="cluster.autoscale_paused").exists()
    assert AuditEvent.objects.filter(action="cluster.autoscale_resumed").exists()


def test_replace_node_action_starts_an_operation(console, cluster):
    node = cluster.nodes.order_by("name").last()
    response = action(console, "node", "replace", [node.pk])
    assert any("replacement started" in m for m in messages_of(response))
    assert Operation.objects.filter(cluster=cluster, kind="replace_node", node_name=node.name).exists()
    # A second replacement while the first is pending is refused with the reason.
    before = snapshot()
    refused = action(console, "node", "replace", [cluster.nodes.first().pk])
    assert any("busy" in m for m in messages_of(refused))
    assert snapshot() == before


def test_history_and_operations_are_read_only(console, cluster):
    event = ScalingEvent.objects.get(cluster=cluster)
    url = reverse("admin:provisioning_scalingevent_change", [event.pk])
    assert console.post(url, {"reason": "x"}).status_code == 403
    assert console.get("/admin/provisioning/scalingevent/add/").status_code == 403
    assert console.get(reverse("admin:provisioning_scalingevent_delete", [event.pk])).status_code == 403
    operation = Operation.objects.filter(cluster=cluster).first()
    assert console.get(reverse("admin:provisioning_operation_delete", [operation.pk])).status_code == 403
    assert console.get("/admin/provisioning/cluster/add/").status_code == 403
    assert console.get(reverse("admin:provisioning_cluster_delete", [cluster.pk])).status_code == 403


def test_posting_the_cluster_form_changes_nothing(console, cluster):
    before = snapshot()
    response = console.post(reverse("admin:provisioning_cluster_change", [cluster.pk]),
                            {"node_count": 50, "name": "renamed", "nodes-TOTAL_FORMS": 0,
                             "nodes-INITIAL_FORMS": 0})
    assert response.status_code in (200, 302)
    assert snapshot() == before
    assert Cluster.objects.get(pk=cluster.pk).name == "main"
