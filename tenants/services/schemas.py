"""Tenant schemas: a migrated base schema, a pool of clones made ahead of time, and the
hand-over of a pooled schema to a new tenant by renaming it.

Signup must be fast with thousands of tenants present (SPEC §2). Running migrations for a
new schema is slow and django-tenants' generic clone function is slower still here, so
schemas are copied with `schema_clone` (structure only, tens of milliseconds), and a few
are copied ahead of time: renaming a pooled schema is a catalogue update that takes a
millisecond. When the pool is empty, signup clones from the base schema itself.
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
from django_tenants.utils import schema_exists

from ..models import PooledSchema

BASE_SCHEMA = settings.TENANT_BASE_SCHEMA


@lru_cache(maxsize=1)
def migration_fingerprint() -> str:
    """A digest of the migrations on disk: equal fingerprints mean equal schemas."""
    return hashlib.sha256("\n".join(disk_migrations()).encode()).hexdigest()


def disk_migrations() -> list[str]:
    loader = MigrationLoader(None, ignore_no_migrations=True, load=True)
    return sorted(f"{app}.{name}" for app, name in loader.disk_migrations)


def schemas_behind(schema_names: list[str], chunk: int = 200) -> list[str]:
    """The schemas among `schema_names` that lack a migration on disk. One query per
    `chunk` schemas, so checking a thousand tenants takes about a second instead of the
    minute migrate_schemas spends finding that there is nothing to do."""
    wanted = disk_migrations()
    behind = []
    with connection.cursor() as cursor:
        for start in range(0, len(schema_names), chunk):
            names = schema_names[start:start + chunk]
            union = " UNION ALL ".join(
                f"SELECT %s, count(*) FROM {_quoted(name)}.django_migrations "  # nosec B608 - schema names are quote_name()d; values are parameters
                "WHERE app || '.' || name = ANY(%s)"
                for name in names
            )
            params = [value for name in names for value in (name, wanted)]
            cursor.execute(union, params)
            behind += [name for name, applied in cursor.fetchall() if applied < len(wanted)]
    return behind


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


def schema_clone(source: str, target: str) -> None:
    """Copy the structure of `source` into a new schema `target`, plus the rows of
    django_migrations so the copy knows it is fully migrated.

    Tenant schemas hold tables with their columns, defaults, identity columns,
    constraints and indexes. Columns come over with `CREATE TABLE ... (LIKE ...)`;
    constraints and indexes are re-created from their definitions under their own names,
    because later migrations drop and rename them by name. This runs in tens of
    milliseconds, where django-tenants' generic clone function takes over a second here.
    tests/tenants/test_schemas.py proves the copy equals a schema built by migrations, so a
    model that needs more (views, triggers) makes that test fail rather than signups.
    """
    src, dst = _quoted(source), _quoted(target)

    def retarget(definition: str) -> str:
        return definition.replace(f"{src}.", f"{dst}.").replace(f"{source}.", f"{dst}.")

    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(f"CREATE SCHEMA {dst}")
        # With only pg_catalog on the search path, definitions name their schema in full.
        cursor.execute("SET LOCAL search_path TO pg_catalog")
        cursor.execute(
            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = %s AND c.relkind IN ('r', 'p') ORDER BY c.relname",
            [source],
        )
        tables = [row[0] for row in cursor.fetchall()]
        for table in tables:
            cursor.execute(
                f"CREATE TABLE {dst}.{_quoted(table)} (LIKE {src}.{_quoted(table)} "
                "INCLUDING ALL EXCLUDING INDEXES EXCLUDING CONSTRAINTS)"
            )
        # Primary keys, unique, check and exclusion constraints first, foreign keys last.
        cursor.execute(
            "SELECT cl.relname, con.conname, pg_get_constraintdef(con.oid) "
            "FROM pg_constraint con JOIN pg_class cl ON cl.oid = con.conrelid "
            "JOIN pg_namespace n ON n.oid = cl.relnamespace "
            "WHERE n.nspname = %s AND con.contype IN ('p', 'u', 'c', 'x', 'f') "
            "ORDER BY con.contype = 'f', cl.relname, con.conname",
            [source],
        )
        for table, name, definition in cursor.fetchall():
            cursor.execute(f"ALTER TABLE {dst}.{_quoted(table)} ADD CONSTRAINT "
                           f"{_quoted(name)} {retarget(definition)}")
        cursor.execute(
            "SELECT pg_get_indexdef(i.indexrelid) FROM pg_index i "
            "JOIN pg_class cl ON cl.oid = i.indrelid JOIN pg_namespace n ON n.oid = cl.relnamespace "
            "WHERE n.nspname = %s AND NOT EXISTS "
            "(SELECT 1 FROM pg_constraint con WHERE con.conindid = i.indexrelid)",
            [source],
        )
        for (definition,) in cursor.fetchall():
            cursor.execute(retarget(definition))
        cursor.execute(f"INSERT INTO {dst}.django_migrations SELECT * FROM {src}.django_migrations")  # nosec B608 - schema names are quote_name()d
        cursor.execute(
            f"SELECT setval(pg_get_serial_sequence('{dst}.django_migrations', 'id'), "  # nosec B608 - schema names are quote_name()d
            f"(SELECT coalesce(max(id), 0) + 1 FROM {dst}.django_migrations), false)"
        )
    connection.set_schema_to_public()


def _clone_base_to(schema_name: str) -> None:
    if not schema_exists(BASE_SCHEMA):
        base_schema_migrate()
    schema_clone(BASE_SCHEMA, schema_name)


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
