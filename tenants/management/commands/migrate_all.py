"""Bring every schema up to date: public, the base schema, then — in parallel — only the
tenant schemas that lack a migration; then drop pooled schemas made from older migrations
and refill the pool. Takes migrate_schemas' options (--executor defaults to
multiprocessing here)."""
from django_tenants.management.commands import SyncCommon
from django_tenants.management.commands.migrate_schemas import (
    GET_EXECUTOR_FUNCTION,
    MigrateSchemasCommand,
)
from django_tenants.utils import get_public_schema_name

from tenants.models import Tenant
from tenants.services.schemas import (
    base_schema_migrate,
    schema_pool_refill,
    schema_pool_refresh,
    schemas_behind,
)


class Command(MigrateSchemasCommand):
    help = __doc__

    def add_arguments(self, parser):
        super().add_arguments(parser)
        parser.add_argument("--no-pool", action="store_true", help="Do not refill the schema pool.")
        parser.set_defaults(executor="multiprocessing", interactive=False)

    def handle(self, *args, **options):
        no_pool = options.pop("no_pool")
        SyncCommon.handle(self, *args, **options)  # parses the shared options into self.*
        executor = GET_EXECUTOR_FUNCTION(codename=self.executor)(self.args, self.options)
        executor.run_migrations(tenants=[get_public_schema_name()])
        base_schema_migrate(verbosity=self.options["verbosity"])
        # Erased tenants have no schema any more (tenants.services.erasure).
        tenants = list(Tenant.objects.exclude(schema_name=get_public_schema_name())
                       .filter(erased_at__isnull=True).values_list("schema_name", flat=True))
        # migrate_schemas spends ~50 ms a schema finding nothing to do; one query per 200
        # schemas tells which ones need the executor at all.
        behind = schemas_behind(tenants)
        if behind:
            executor.run_migrations(tenants=behind)
        dropped = schema_pool_refresh()
        made = 0 if no_pool else schema_pool_refill()
        self.stdout.write(f"{len(behind)} of {len(tenants)} tenant schemas needed migrations; "
                          f"schema pool: {dropped} stale dropped, {made} added.")
