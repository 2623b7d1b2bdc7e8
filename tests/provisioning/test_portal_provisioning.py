"""Portal pages for databases and clusters (SPEC §11): a new database's URI with its password
shown once and never again, delete through a confirmation page; clusters with sizing
advice, nodes, a chart of nodes and CPU with scaling events, policy and scale forms,
history, delete. Every refused form says what is wrong and changes nothing; roles decide
who sees and posts what; another organisation's items do not exist.

Cluster operations are not what these tests are about: `_enqueue` is patched to a no-op
(no PostgreSQL server starts) and Node, sample and event rows are written by hand. The
database pages use the real shared cluster of eu-central.
"""
from datetime import timedelta

import pytest
from django.test import Client
from django_tenants.utils import tenant_context

from aerolith import clock
from provisioning.models import Cluster, ClusterSample, Database, ScalingEvent
from tenants.models import Role, TenantStatus
from tests.conftest import host_of
from tests.conftest import portal_member as member
from tests.conftest import portal_user as portal
from tests.provisioning.api_support import (
    enterprise,
    make_cluster,
    set_nodes,
    shared_cluster_row,
    snapshot,
)


@pytest.fixture(autouse=True)
def no_operations_run(monkeypatch):
    monkeypatch.setattr("provisioning.services.operations._enqueue", lambda operation_id: None)


def html(response) -> str:
    return response.content.decode()


def databases(tenant):
    with tenant_context(tenant):
        return list(Database.objects.order_by("pk").values_list("pk", "name"))


def create_database(client, name="orders"):
    response = client.post("/databases/new", {"name": name})
    assert response.status_code == 201, html(response)
    return response


# --- databases ----------------------------------------------------------------------------

@pytest.mark.django_db
def test_navigation_links_to_databases_and_clusters(alice):
    text = html(portal(alice).get("/"))
    assert 'href="/databases"' in text and 'href="/clusters"' in text


@pytest.mark.django_db
def test_new_database_shows_its_uri_with_password_once(alice, shared_cluster):
    client = portal(alice)
    page = client.get("/databases")
    assert page.status_code == 200 and "No databases yet" in html(page)
    assert 'name="name"' in html(page) and 'for="db_name"' in html(page)
    assert "csrfmiddlewaretoken" in html(page)
    created = create_database(client)
    text = html(created)
    assert "only this once" in text and 'id="copy-uri"' in text
    assert "no-store" in created["Cache-Control"]
    uri = text.split('<code id="database-uri">')[1].split("</code>")[0]
    password = uri.split(":")[2].split("@")[0]
    assert len(password) > 16
    listing = html(client.get("/databases"))
    assert "orders" in listing and password not in listing
    (pk, _), = databases(alice)
    assert password not in html(client.get(f"/databases/{pk}/delete"))


@pytest.mark.django_db
@pytest.mark.parametrize("name, message", [
    ("Bad Name", "lowercase"), ("", "This field is required"), ("x" * 64, "at most 63"),
])
def test_bad_database_name_is_refused_on_the_form(alice, shared_cluster, name, message):
    before = databases(alice)
    response = portal(alice).post("/databases/new", {"name": name})
    assert response.status_code == 400 and message in html(response)
    assert databases(alice) == before


@pytest.mark.django_db
def test_duplicate_database_name_is_refused_on_the_form(alice, shared_cluster):
    client = portal(alice)
    create_database(client)
    before = databases(alice)
    response = client.post("/databases/new", {"name": "orders"})
    assert response.status_code == 400 and "already have a database named orders" in html(response)
    assert databases(alice) == before


@pytest.mark.django_db
def test_delete_asks_for_confirmation_then_deletes(alice, shared_cluster):
    client = portal(alice)
    create_database(client)
    (pk, _), = databases(alice)
    confirm = client.get(f"/databases/{pk}/delete")
    assert confirm.status_code == 200 and "cannot be undone" in html(confirm)
    assert databases(alice) != []
    done = client.post(f"/databases/{pk}/delete")
    assert done.status_code == 302 and done["Location"] == "/databases"
    assert databases(alice) == []
    assert client.get(f"/databases/{pk}/delete").status_code == 404


@pytest.mark.django_db
def test_viewer_sees_databases_but_cannot_create_or_delete(alice, shared_cluster):
    create_database(portal(alice))
    (pk, _), = databases(alice)
    viewer = member(alice, Role.VIEWER)
    page = html(viewer.get("/databases"))
    assert "orders" in page and "Create a database" not in page and "Delete…" not in page
    assert viewer.post("/databases/new", {"name": "mine"}).status_code == 403
    assert viewer.get(f"/databases/{pk}/delete").status_code == 403
    assert viewer.post(f"/databases/{pk}/delete").status_code == 403
    assert databases(alice) == [(pk, "orders")]


@pytest.mark.django_db
def test_other_organisations_do_not_see_or_delete_a_database(alice, bob, charlie, shared_cluster):
    create_database(portal(alice))
    (pk, _), = databases(alice)
    for tenant in (bob, charlie):
        client = portal(tenant)
        assert "orders" not in html(client.get("/databases"))
        assert client.get(f"/databases/{pk}/delete").status_code == 404
        assert client.post(f"/databases/{pk}/delete").status_code == 404
    assert databases(alice) == [(pk, "orders")]


@pytest.mark.django_db
def test_forms_need_the_csrf_token(alice):
    client = Client(HTTP_HOST=host_of("alice"), enforce_csrf_checks=True)
    client.force_login(alice.memberships.get(role=Role.OWNER).user)
    assert client.post("/databases/new", {"name": "sneaky"}).status_code == 403
    assert databases(alice) == []


@pytest.mark.django_db
def test_suspended_organisation_is_told_why_nothing_is_created(alice, shared_cluster):
    alice.status = TenantStatus.SUSPENDED
    alice.save(update_fields=["status"])
    response = portal(alice).post("/databases/new", {"name": "orders"})
    assert response.status_code == 400 and "suspended" in html(response)
    assert databases(alice) == []


@pytest.mark.django_db
@pytest.mark.parametrize("path", ["/databases/99999999999999999999/delete",
                                  "/clusters/99999999999999999999", "/clusters/0"])
def test_impossible_ids_are_404(alice, path):
    assert portal(alice).get(path).status_code == 404


# --- clusters -----------------------------------------------------------------------------

@pytest.fixture
def alice_ent(alice):
    return enterprise(alice)


@pytest.mark.django_db
def test_cluster_list_and_the_plan_hint(alice, alice_ent):
    client = portal(alice_ent)
    assert "No clusters yet" in html(client.get("/clusters"))
    cluster = make_cluster(alice_ent, "main")
    text = html(client.get("/clusters"))
    assert f'href="/clusters/{cluster.pk}"' in text and "3 / 3" in text


@pytest.mark.django_db
def test_sizing_advice_prefills_the_create_form_and_shows_reasoning(alice_ent):
    page = portal(alice_ent).get("/clusters/new?qps=5000&data_gb=100&read_percent=90")
    assert page.status_code == 200
    text = html(page)
    assert 'id="advice"' in text and "Recommended:" in text and "replica" in text
    assert 'for="wl_qps"' in text and 'for="cl_node_count"' in text


@pytest.mark.django_db
@pytest.mark.parametrize("query", ["qps=-1&data_gb=1&read_percent=50",
                                   "qps=many&data_gb=1&read_percent=50",
                                   "qps=1&data_gb=1&read_percent=150",
                                   "qps=1&data_gb=1e12&read_percent=50"])
def test_bad_workload_is_refused_on_the_form(alice_ent, query):
    page = portal(alice_ent).get(f"/clusters/new?{query}")
    assert page.status_code == 400 and "errorlist" in html(page)


@pytest.mark.django_db
def test_create_cluster_redirects_to_its_page(alice_ent):
    client = portal(alice_ent)
    response = client.post("/clusters/new", {"name": "analytics", "size": "medium", "node_count": 3,
                                             "provider": "local", "region": "eu-central"})
    assert response.status_code == 302, html(response)
    cluster = Cluster.objects.get(tenant=alice_ent, name="analytics")
    assert response["Location"] == f"/clusters/{cluster.pk}"
    page = html(client.get(response["Location"]))
    assert "is being created" in page and "Create to 3 nodes is pending" in page


@pytest.mark.django_db
@pytest.mark.parametrize("changes, message", [
    ({"size": "huge"}, "Select a valid choice"),
    ({"node_count": "three"}, "Enter a whole number"),
    ({"node_count": 0}, "from 1 to 100"),
    ({"node_count": 101}, "from 1 to 100"),
    ({"autoscale_enabled": "on", "min_nodes": 5, "max_nodes": 4}, "above max_nodes"),
    ({"name": "Bad!"}, "lowercase"),
])
def test_create_cluster_refuses_bad_input(alice_ent, changes, message):
    before = snapshot()
    data = {"name": "c1", "size": "small", "node_count": 3, "provider": "local",
            "region": "eu-central", **changes}
    response = portal(alice_ent).post("/clusters/new", data)
    assert response.status_code == 400 and message in html(response), html(response)
    assert snapshot() == before


@pytest.mark.django_db
def test_create_cluster_on_a_shared_plan_says_to_upgrade(alice):
    response = portal(alice).post("/clusters/new", {"name": "c1", "size": "small", "node_count": 3,
                                                    "provider": "local", "region": "eu-central"})
    assert response.status_code == 400 and "Enterprise" in html(response)
    assert not Cluster.objects.filter(tenant=alice).exists()


@pytest.mark.django_db
def test_cluster_page_shows_nodes_chart_with_events_policy_and_history(alice_ent):
    cluster = make_cluster(alice_ent, autoscale_enabled=True, min_nodes=3, max_nodes=8)
    set_nodes(cluster, 3, cpu=91.5, memory=40.0)
    now = clock.wall_now()
    for minutes, nodes, cpu in ((60, 3, 50.0), (40, 3, 85.0), (20, 4, 70.0), (5, 4, 60.0)):
        ClusterSample.objects.create(cluster=cluster, at=now - timedelta(minutes=minutes),
                                     nodes=nodes, cpu_percent=cpu, memory_percent=40.0)
    ScalingEvent.objects.create(cluster=cluster, at=now - timedelta(minutes=30), outcome="scale_up",
                                reason="scale_up", current_nodes=3, desired_nodes=4, inputs={})
    text = html(portal(alice_ent).get(f"/clusters/{cluster.pk}"))
    assert 'id="nodes"' in text and "91.5 %" in text and "Primary" in text
    assert "<svg" in text and 'class="nodes"' in text and 'class="cpu"' in text
    assert 'class="marker"' in text and "scale up 3 → 4" in text
    assert "CPU %" in text and "Time (UTC)" in text
    assert 'id="history"' in text and "Utilisation is above the target" in text
    assert 'id="advice"' in text and "Scale up from 3 to 4 nodes" in text
    assert f'action="/clusters/{cluster.pk}/policy"' in text
    assert 'for="policy_cpu_target_percent"' in text and 'for="scale_node_count"' in text


@pytest.mark.django_db
def test_cluster_page_without_samples_says_so(alice_ent):
    cluster = make_cluster(alice_ent)
    assert "No samples yet" in html(portal(alice_ent).get(f"/clusters/{cluster.pk}?hours=6"))


def policy_data(**changes):
    data = {"autoscale_enabled": "on", "min_nodes": 2, "max_nodes": 6, "cpu_target_percent": 60,
            "memory_target_percent": 80, "scale_up_step": 2, "scale_down_step": 1,
            "stabilization_seconds": 300}
    data.update(changes)
    return {k: v for k, v in data.items() if v is not None}


@pytest.mark.django_db
def test_policy_form_saves_the_policy(alice_ent):
    cluster = make_cluster(alice_ent)
    response = portal(alice_ent).post(f"/clusters/{cluster.pk}/policy", policy_data())
    assert response.status_code == 302
    cluster.refresh_from_db()
    assert (cluster.autoscale_enabled, cluster.min_nodes, cluster.max_nodes,
            cluster.cpu_target_percent, cluster.forecast_enabled) == (True, 2, 6, 60, False)


@pytest.mark.django_db
@pytest.mark.parametrize("changes, message", [
    ({"min_nodes": 7}, "above max_nodes"),
    ({"cpu_target_percent": 150}, "from 10 to 95"),
    ({"max_nodes": "lots"}, "Enter a whole number"),
    ({"max_nodes": 101}, "from 1 to 100"),
    ({"scale_down_step": 10**30}, "from 1 to 100"),
    ({"scale_up_step": None}, "This field is required"),
])
def test_policy_form_refuses_bad_values(alice_ent, changes, message):
    cluster = make_cluster(alice_ent)
    before = snapshot()
    response = portal(alice_ent).post(f"/clusters/{cluster.pk}/policy", policy_data(**changes))
    assert response.status_code == 400 and message in html(response), html(response)
    assert snapshot() == before


@pytest.mark.django_db
def test_scale_form_starts_a_scale(alice_ent):
    cluster = make_cluster(alice_ent)
    client = portal(alice_ent)
    response = client.post(f"/clusters/{cluster.pk}/scale", {"node_count": 5})
    assert response.status_code == 302
    cluster.refresh_from_db()
    assert cluster.node_count == 5 and cluster.health == "scaling"
    assert "Scale to 5 nodes is pending" in html(client.get(f"/clusters/{cluster.pk}"))


@pytest.mark.django_db
@pytest.mark.parametrize("value, message", [
    ("three", "Enter a whole number"), ("0", "from 1 to 100"), ("101", "from 1 to 100"),
    ("", "This field is required"),
])
def test_scale_form_refuses_bad_counts(alice_ent, value, message):
    cluster = make_cluster(alice_ent)
    before = snapshot()
    response = portal(alice_ent).post(f"/clusters/{cluster.pk}/scale", {"node_count": value})
    assert response.status_code == 400 and message in html(response)
    assert snapshot() == before


@pytest.mark.django_db
def test_delete_cluster_through_its_confirmation_page(alice_ent):
    cluster = make_cluster(alice_ent)
    client = portal(alice_ent)
    assert "Delete cluster" in html(client.get(f"/clusters/{cluster.pk}/delete"))
    response = client.post(f"/clusters/{cluster.pk}/delete")
    assert response.status_code == 302 and response["Location"] == "/clusters"
    cluster.refresh_from_db()
    assert cluster.health == "deleting"


@pytest.mark.django_db
def test_viewer_sees_a_cluster_but_has_no_forms(alice_ent):
    cluster = make_cluster(alice_ent)
    viewer = member(alice_ent, Role.VIEWER)
    text = html(viewer.get(f"/clusters/{cluster.pk}"))
    assert 'id="nodes"' in text and "Save policy" not in text and "Delete cluster" not in text
    before = snapshot()
    assert viewer.get("/clusters/new").status_code == 403
    assert viewer.post(f"/clusters/{cluster.pk}/scale", {"node_count": 4}).status_code == 403
    assert viewer.post(f"/clusters/{cluster.pk}/policy", policy_data()).status_code == 403
    assert viewer.post(f"/clusters/{cluster.pk}/delete").status_code == 403
    assert snapshot() == before


@pytest.mark.django_db
def test_other_organisations_and_the_shared_cluster_are_404(alice_ent, bob, charlie):
    enterprise(bob)
    cluster = make_cluster(alice_ent)
    shared = shared_cluster_row()
    before = snapshot()
    for tenant in (bob, charlie):
        client = portal(tenant)
        assert f'href="/clusters/{cluster.pk}"' not in html(client.get("/clusters"))
        for pk in (cluster.pk, shared.pk):
            assert client.get(f"/clusters/{pk}").status_code == 404
            assert client.post(f"/clusters/{pk}/scale", {"node_count": 4}).status_code == 404
            assert client.post(f"/clusters/{pk}/policy", policy_data()).status_code == 404
            assert client.post(f"/clusters/{pk}/delete").status_code == 404
    assert portal(alice_ent).get(f"/clusters/{shared.pk}").status_code == 404
    assert snapshot() == before
