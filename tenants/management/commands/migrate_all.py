"""Bring every schema up to date: public, the base schema, then every tenant in parallel;
then drop pooled schemas made from older migrations and refill the pool."""
from django.conf import settings
from django.core.management import BaseCommand, call_command

from tenants.services.schemas import (base_schema_migrate, schema_pool_refill,
                                      schema_pool_refresh)


class Command(BaseCommand):
    help = __doc__

    def add_arguments(self, parser):
        parser.add_argument("--processes", type=int, default=settings.TENANT_MULTIPROCESSING_MAX_PROCESSES,
                            help="Tenant schemas migrated at once (default: %(default)s).")
        parser.add_argument("--no-pool", action="store_true", help="Do not refill the schema pool.")

    def handle(self, *args, processes, no_pool, verbosity, **options):
        call_command("migrate_schemas", shared=True, interactive=False, verbosity=verbosity)
        base_schema_migrate(verbosity=verbosity)
        settings.TENANT_MULTIPROCESSING_MAX_PROCESSES = max(1, processes)
        call_command("migrate_schemas", tenant=True, executor="multiprocessing",
                     interactive=False, verbosity=verbosity)
        dropped = schema_pool_refresh()
        made = 0 if no_pool else schema_pool_refill()
        self.stdout.write(f"Schemas migrated; pool: {dropped} stale dropped, {made} added.")
