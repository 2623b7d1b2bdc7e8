"""The region's shared cluster: made once by the services, reached over TCP with SCRAM."""
import psycopg
import pytest

from provisioning.models import Cluster, Node
from provisioning.selectors import cluster_dsn, shared_cluster_for
from provisioning.services.clusters import shared_cluster_ensure


def test_the_shared_cluster_runs_and_asks_for_a_password(shared_cluster, db):
    with psycopg.connect(cluster_dsn(shared_cluster)) as conn:
        assert conn.execute("select 1").fetchone() == (1,)
    node = Node.objects.get(cluster=shared_cluster, role="primary")
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(host="127.0.0.1", port=node.port, dbname="postgres",
                        user=shared_cluster.admin_user, password="wrong", connect_timeout=5)


def test_ensuring_the_shared_cluster_again_makes_nothing_new(shared_cluster, db):
    again, _ = shared_cluster_ensure("eu-central")
    assert again.pk == shared_cluster.pk
    assert Cluster.objects.filter(shared=True, region="eu-central").count() == 1
    assert shared_cluster_for("eu-central").pk == shared_cluster.pk
