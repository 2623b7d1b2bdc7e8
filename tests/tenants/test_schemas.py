"""Tenant schemas: the fast clone equals a schema built by migrations; signup takes a
pooled schema when one is ready and clones otherwise; stale pooled schemas are dropped."""
import pytest
from django.core.management import call_command
from django.db import connection
from django_tenants.utils import schema_exists, tenant_context

from tenants.models import ApiKey, PooledSchema, Tenant
from tenants.services.schemas import (
    BASE_SCHEMA,
    migration_fingerprint,
    schema_clone,
    schema_pool_refill,
    schema_pool_refresh,
    schema_provision,
)
from tenants.services.signup import tenant_signup
from tests.conftest import PASSWORD, make_key


def _structure(schema: str) -> dict:
    """Everything about a schema's tables that matters, with the schema name removed."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT table_name, column_name, data_type, is_nullable, is_identity, "
            "coalesce(column_default, '') FROM information_schema.columns "
            "WHERE table_schema = %s ORDER BY 1, 2", [schema])
        columns = cursor.fetchall()
        cursor.execute(
            "SELECT cl.relname, con.contype, pg_get_constraintdef(con.oid) FROM pg_constraint con "
            "JOIN pg_class cl ON cl.oid = con.conrelid JOIN pg_namespace n ON n.oid = cl.relnamespace "
            "WHERE n.nspname = %s ORDER BY 1, 2, 3", [schema])
        # A foreign key between tenant tables names its schema (the search path is public).
        constraints = [(t, k, d.replace(f"{schema}.", "S.")) for t, k, d in cursor.fetchall()]
        cursor.execute("SELECT tablename, indexdef FROM pg_indexes WHERE schemaname = %s ORDER BY 1, 2",
                       [schema])
        indexes = [(t, d.replace(f"{schema}.", "S.")) for t, d in cursor.fetchall()]
        cursor.execute("SELECT app, name FROM " + connection.ops.quote_name(schema)
                       + ".django_migrations ORDER BY app, name")
        migrations = cursor.fetchall()
    return {"columns": columns, "constraints": constraints, "indexes": sorted(indexes),
            "migrations": migrations}


@pytest.mark.django_db
def test_clone_has_the_same_structure_and_migration_state_as_the_base():
    schema_clone(BASE_SCHEMA, "clone_check")
    assert _structure("clone_check") == _structure(BASE_SCHEMA)


@pytest.mark.django_db
def test_foreign_keys_of_a_clone_point_into_the_clone():
    schema_clone(BASE_SCHEMA, "clone_fk_check")
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT con.confrelid::regclass::text FROM pg_constraint con "
            "JOIN pg_namespace n ON n.oid = con.connamespace "
            "WHERE n.nspname = 'clone_fk_check' AND con.contype = 'f'")
        targets = [row[0] for row in cursor.fetchall()]
    assert targets, "the tenant schema has foreign keys between its own tables"
    assert all(t.startswith("clone_fk_check.") for t in targets), targets


@pytest.mark.django_db
def test_base_schema_equals_a_schema_built_by_running_migrations():
    with connection.cursor() as cursor:
        cursor.execute("CREATE SCHEMA migrated_check")
    call_command("migrate_schemas", schema_name="migrated_check", tenant=True, verbosity=0,
                 interactive=False)
    connection.set_schema_to_public()
    built, base = _structure("migrated_check"), _structure(BASE_SCHEMA)
    assert built["columns"] == base["columns"]
    assert built["constraints"] == base["constraints"]
    assert built["indexes"] == base["indexes"]
    assert built["migrations"] == base["migrations"]


@pytest.mark.django_db
def test_a_cloned_schema_works_for_a_new_tenant_with_fresh_identity_values(alice):
    make_key(alice, ["read"])  # alice's schema already has a key
    result = tenant_signup(organization="Echo", slug="echo", email="o@echo.test",
                           password=PASSWORD, plan="starter", region="us-east")
    assert result.schema_source == "clone"
    make_key(result.tenant, ["read"])
    with tenant_context(result.tenant):
        assert list(ApiKey.objects.values_list("id", flat=True)) == [1]


@pytest.mark.django_db
def test_signup_takes_a_pooled_schema_and_falls_back_to_cloning():
    assert schema_pool_refill(target=1) == 1
    pooled = PooledSchema.objects.get()
    first = tenant_signup(organization="Fox", slug="fox", email="o@fox.test", password=PASSWORD,
                          plan="starter", region="us-east")
    assert first.schema_source == "pool"
    assert not schema_exists(pooled.schema_name) and schema_exists(first.tenant.schema_name)
    assert PooledSchema.objects.count() == 0
    second = tenant_signup(organization="Gnu", slug="gnu", email="o@gnu.test", password=PASSWORD,
                           plan="starter", region="us-east")
    assert second.schema_source == "clone"
    assert Tenant.objects.filter(slug__in=["fox", "gnu"]).count() == 2


@pytest.mark.django_db
def test_pooled_schemas_from_older_migrations_are_dropped_and_never_used():
    schema_pool_refill(target=1)
    stale = PooledSchema.objects.get()
    PooledSchema.objects.filter(pk=stale.pk).update(fingerprint="old")
    assert schema_provision("t_hotel") == "clone"  # the stale one is skipped
    assert schema_pool_refresh() == 1
    assert not schema_exists(stale.schema_name)
    assert not PooledSchema.objects.exists()
    assert len(migration_fingerprint()) == 64


@pytest.mark.django_db
def test_migrate_all_migrates_only_the_schemas_that_lack_a_migration(alice, bob):
    from io import StringIO

    from django.db.migrations.loader import MigrationLoader

    from tenants.services.schemas import schemas_behind

    app, name = sorted(MigrationLoader(None, ignore_no_migrations=True).graph.leaf_nodes())[0]
    with connection.cursor() as cursor:  # forget a migration nothing depends on
        cursor.execute(f"DELETE FROM {alice.schema_name}.django_migrations "
                       "WHERE app = %s AND name = %s", [app, name])
    assert schemas_behind([alice.schema_name, bob.schema_name]) == [alice.schema_name]
    out = StringIO()
    call_command("migrate_all", executor="standard", verbosity=0, stdout=out)
    assert "1 of 3 tenant schemas needed migrations" in out.getvalue()
    assert schemas_behind([alice.schema_name, bob.schema_name]) == []
