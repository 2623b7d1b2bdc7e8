"""Tenant schemas: a migrated base schema, a pool of clones made ahead of time, and the
hand-over of a pooled schema to a new tenant by renaming it.

Signup must be fast with thousands of tenants present (SPEC §2). Cloning a schema with
django-tenants' clone function slows as the catalogue grows, and running migrations is
slower still; renaming a schema that was cloned in the background is a catalogue update
that takes milliseconds. When the pool is empty, signup clones from the base schema itself.
A pooled schema remembers the migration state it was cloned at, and is used only while
that is still the code's state; `schema_pool_refresh` drops stale ones after a deploy.
"""
import hashlib
import uuid
from functools import lru_cache

from django.conf import settings
from django.core.management import call_command
from django.db import connection, transaction
from django.db.migrations.loader import MigrationLoader
from django_tenants.clone import CloneSchema
from django_tenants.utils import schema_exists

from ..models import PooledSchema

BASE_SCHEMA = settings.TENANT_BASE_SCHEMA


@lru_cache(maxsize=1)
def migration_fingerprint() -> str:
    """A digest of the migrations on disk: equal fingerprints mean equal schemas."""
    loader = MigrationLoader(None, ignore_no_migrations=True, load=True)
    nodes = sorted(f"{app}.{name}" for app, name in loader.disk_migrations)
    return hashlib.sha256("\n".join(nodes).encode()).hexdigest()


def _quoted(name: str) -> str:
    return connection.ops.quote_name(name)


def base_schema_migrate(verbosity: int = 0) -> None:
    """Create the base schema if missing and bring it up to date with the migrations."""
    connection.set_schema_to_public()
    if not schema_exists(BASE_SCHEMA):
        with connection.cursor() as cursor:
            cursor.execute(f"CREATE SCHEMA {_quoted(BASE_SCHEMA)}")
    call_command("migrate_schemas", schema_name=BASE_SCHEMA, tenant=True,
                 interactive=False, verbosity=verbosity)
    connection.set_schema_to_public()


def _clone_base_to(schema_name: str) -> None:
    if not schema_exists(BASE_SCHEMA):
        base_schema_migrate()
    # DATA mode copies django_migrations too, so the clone knows it is fully migrated.
    CloneSchema().clone_schema(BASE_SCHEMA, schema_name, "DATA")
    connection.set_schema_to_public()


def schema_provision(schema_name: str) -> str:
    """Give `schema_name` a ready schema; returns "pool" or "clone" (how it was made).
    Runs inside the caller's transaction: a failed signup leaves the pool as it was."""
    fingerprint = migration_fingerprint()
    pooled = (
        PooledSchema.objects.select_for_update(skip_locked=True)
        .filter(fingerprint=fingerprint)
        .order_by("id")
        .first()
    )
    if pooled is not None:
        with connection.cursor() as cursor:
            cursor.execute(
                f"ALTER SCHEMA {_quoted(pooled.schema_name)} RENAME TO {_quoted(schema_name)}"
            )
        pooled.delete()
        return "pool"
    _clone_base_to(schema_name)
    return "clone"


def schema_pool_refill(target: int | None = None) -> int:
    """Clone schemas until the pool holds `target` current ones; returns how many were
    made. Safe to run concurrently: each clone commits on its own."""
    target = settings.AEROLITH_SCHEMA_POOL_SIZE if target is None else target
    fingerprint = migration_fingerprint()
    made = 0
    while PooledSchema.objects.filter(fingerprint=fingerprint).count() < target:
        name = f"pool_{uuid.uuid4().hex[:16]}"
        with transaction.atomic():
            _clone_base_to(name)
            PooledSchema.objects.create(schema_name=name, fingerprint=fingerprint)
        made += 1
    return made


def schema_pool_refresh() -> int:
    """Drop pooled schemas built from an older migration state; returns how many."""
    stale = PooledSchema.objects.exclude(fingerprint=migration_fingerprint())
    dropped = 0
    for pooled in stale:
        with transaction.atomic():
            with connection.cursor() as cursor:
                cursor.execute(f"DROP SCHEMA IF EXISTS {_quoted(pooled.schema_name)} CASCADE")
            pooled.delete()
        dropped += 1
    return dropped
