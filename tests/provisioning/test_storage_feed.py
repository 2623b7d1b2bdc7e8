"""Storage metering of customer databases (SPEC §5, §7): the hourly storage_gb reading of a
tenant is its schema plus its databases — pg_database_size for own databases, the schema's
relations for shared-schema ones — recorded once, through metering's storage sources."""
from decimal import Decimal

import pytest

from metering.models import GaugeReading
from metering.services import collectors
from metering.tasks import usage_storage_collect
from provisioning.models import Node
from provisioning.storage import customer_databases_size
from tests.provisioning.db_support import as_admin, as_role, create

pytestmark = pytest.mark.django_db
MICRO = 1_000_000


def _fill(uri: str, rows: int) -> None:
    with as_role(uri) as conn:
        conn.execute("CREATE TABLE blobs (id int, body text)")
        conn.execute("INSERT INTO blobs SELECT g, repeat('x', 500) FROM generate_series(1, %s) g",
                     [rows])


def _schema_size(cluster, schema: str) -> int:
    with as_admin(cluster, "aerolith_shared") as conn:
        return conn.execute(
            "SELECT sum(pg_total_relation_size(c.oid)) FROM pg_class c JOIN pg_namespace n "
            "ON n.oid = c.relnamespace WHERE n.nspname = %s AND c.relkind IN ('r', 'm')",
            [schema]).fetchone()[0]


def test_provisioning_registers_its_databases_as_a_storage_source():
    assert customer_databases_size in collectors.storage_sources


def test_a_tenant_without_databases_adds_nothing(charlie):
    assert customer_databases_size(charlie) == 0


def test_shared_schema_databases_count_their_schemas_relations(alice, shared_cluster):
    first, first_uri = create(alice, "first")
    second, second_uri = create(alice, "second")
    _fill(first_uri, 2000)
    _fill(second_uri, 10)
    expected = _schema_size(shared_cluster, first.schema_name) + _schema_size(
        shared_cluster, second.schema_name)
    assert customer_databases_size(alice) == expected > 1_000_000


def test_own_databases_count_pg_database_size(bob, shared_cluster):
    database, uri = create(bob, "own")
    _fill(uri, 100)
    with as_admin(shared_cluster) as conn:
        (size,) = conn.execute("SELECT pg_database_size(%s)", [database.db_name]).fetchone()
    assert customer_databases_size(bob) == size


def test_the_hourly_task_records_one_reading_with_schema_and_databases(alice, bob, charlie,
                                                                        shared_cluster):
    database, uri = create(alice, "metered")
    _fill(uri, 2000)
    databases_bytes = customer_databases_size(alice)
    total = collectors.tenant_data_size(alice)
    assert total > databases_bytes > 0  # the tenant schema is in there too

    usage_storage_collect()
    readings = list(GaugeReading.objects.filter(tenant_id=alice.pk).values_list(
        "quantity", flat=True))
    assert readings == [Decimal(total // 1000) / MICRO]
    # The tenants without databases are measured as before.
    (quantity,) = GaugeReading.objects.filter(tenant_id=charlie.pk).values_list(
        "quantity", flat=True)
    assert quantity == Decimal(collectors.tenant_data_size(charlie) // 1000) / MICRO


def test_an_unreachable_cluster_skips_the_tenant_rather_than_under_reporting(
        alice, charlie, shared_cluster, caplog):
    create(alice, "far")
    Node.objects.filter(cluster=shared_cluster, role="primary").update(port=9)
    count = usage_storage_collect()
    assert not GaugeReading.objects.filter(tenant_id=alice.pk).exists()
    assert GaugeReading.objects.filter(tenant_id=charlie.pk).exists()
    assert count >= 2 and "not measured" in caplog.text
