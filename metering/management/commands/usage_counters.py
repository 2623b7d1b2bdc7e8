"""Rebuild the real-time usage counters in Redis from PostgreSQL, or check them for drift.

    manage.py usage_counters rebuild                  # every tenant with a subscription
    manage.py usage_counters rebuild --tenant acme
    manage.py usage_counters check [--tenant acme] [--repair]
"""
from django.core.management import BaseCommand, CommandError
from django.db import connection
from django_tenants.utils import tenant_context
from redis import RedisError

from metering.quantities import micro_to_decimal
from metering.services.rebuild import counters_drift, counters_rebuild
from tenants.models import Tenant


def _text(micro: int) -> str:
    return format(micro_to_decimal(micro).normalize(), "f")


class Command(BaseCommand):
    help = ("Make the Redis usage counters exact again from PostgreSQL (rebuild), or report "
            "where they differ from it (check).")

    def add_arguments(self, parser):
        actions = parser.add_subparsers(dest="action", required=True, metavar="{rebuild,check}")
        rebuild = actions.add_parser("rebuild", help="Overwrite the counters with the truth.")
        rebuild.add_argument("--tenant", metavar="SLUG", help="Only this organisation.")
        check = actions.add_parser("check", help="Report counters that differ from the truth.")
        check.add_argument("--tenant", metavar="SLUG", help="Only this organisation.")
        check.add_argument("--repair", action="store_true",
                           help="Rebuild the counters of the organisations found adrift.")

    def handle(self, *args, action, tenant=None, repair=False, **options):
        tenants = Tenant.objects.exclude(schema_name="public").filter(subscription__isnull=False,
                                                                      erased_at__isnull=True)
        if tenant is not None:
            tenants = tenants.filter(slug=tenant)
            if not tenants.exists():
                raise CommandError(f"No organisation with slug '{tenant}' and a subscription.")
        adrift = 0
        for org in tenants.order_by("slug"):
            try:
                with tenant_context(org):
                    if action == "rebuild":
                        values = counters_rebuild(org)
                        self.stdout.write(f"{org.slug}: rebuilt {len(values)} counter(s)")
                        continue
                    drift = counters_drift(org)
                    for code, (live, truth) in sorted(drift.items()):
                        self.stdout.write(f"{org.slug}: {code} is {_text(live)} in Redis, "
                                          f"{_text(truth)} in PostgreSQL")
                    if drift:
                        adrift += 1
                        if repair:
                            counters_rebuild(org)
                            self.stdout.write(f"{org.slug}: repaired")
            except RedisError as exc:
                raise CommandError(f"Redis is not reachable ({exc}); nothing was changed "
                                   f"from {org.slug} on.") from exc
            finally:
                connection.set_schema_to_public()
        if action == "check":
            repaired = ", repaired" if repair and adrift else ""
            self.stdout.write(f"{adrift} organisation(s) adrift{repaired}")
