"""A real shared cluster for the region of the test tenants (eu-central), provisioned once
per session through the same services and local driver as production, and stopped with
its files removed at the end."""
import os

import pytest
from django.db import connection

from provisioning.drivers import driver_for
from provisioning.drivers.base import Step
from provisioning.models import Health
from provisioning.services.clusters import shared_cluster_ensure
from provisioning.services.operations import operation_run


@pytest.fixture(scope="session")
def clusters_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("clusters")
    previous = os.environ.get("AEROLITH_CLUSTERS_DIR")
    os.environ["AEROLITH_CLUSTERS_DIR"] = str(path)
    yield path
    if previous is None:
        os.environ.pop("AEROLITH_CLUSTERS_DIR", None)
    else:
        os.environ["AEROLITH_CLUSTERS_DIR"] = previous


@pytest.fixture(scope="session")
def shared_cluster(django_db_setup, django_db_blocker, clusters_dir):
    with django_db_blocker.unblock():
        cluster, operation = shared_cluster_ensure("eu-central")
        if operation is not None:
            operation_run(operation.pk)  # already run by the eager task; a no-op then
        cluster.refresh_from_db()
        assert cluster.health == Health.HEALTHY, (cluster.health, operation and operation.error)
        connection.set_schema_to_public()
    yield cluster
    driver_for(cluster.provider).apply(cluster.handle, Step("delete_cluster"), None)
