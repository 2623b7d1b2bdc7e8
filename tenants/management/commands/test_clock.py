"""Attach or advance a tenant's test clock (test mode only).

    manage.py test_clock acme --days 30
    manage.py test_clock acme --to 2027-01-01T00:00:00Z
"""
from django.core.management import BaseCommand, CommandError
from django.utils.dateparse import parse_datetime

from aerolith.errors import DomainError
from tenants.models import Tenant
from tenants.services.clocks import tenant_clock_advance, tenant_clock_attach


class Command(BaseCommand):
    help = "Attach or advance a tenant's test clock, running its due work in order."

    def add_arguments(self, parser):
        parser.add_argument("slug")
        parser.add_argument("--seconds", type=int)
        parser.add_argument("--days", type=int)
        parser.add_argument("--to", help="ISO-8601 time with a zone, e.g. 2027-01-01T00:00:00Z")

    def handle(self, *args, slug, seconds, days, to, **options):
        tenant = Tenant.objects.filter(slug=slug).exclude(schema_name="public").first()
        if tenant is None:
            raise CommandError(f"No tenant with slug '{slug}'.")
        if days is not None:
            seconds = (seconds or 0) + days * 86400
        target = None
        if to is not None:
            try:
                target = parse_datetime(to)
            except ValueError:  # well formed but impossible, e.g. month 13
                target = None
            if target is None or target.tzinfo is None:
                raise CommandError("--to needs an ISO-8601 time with a zone, e.g. 2027-01-01T00:00:00Z.")
        try:
            if seconds is None and target is None:
                clock = tenant_clock_attach(tenant=tenant, actor="cli")
                self.stdout.write(f"{slug}: test clock at {clock.frozen_time.isoformat()}")
                return
            if seconds is not None and seconds <= 0:
                raise CommandError("--seconds/--days must be positive: clocks only move forward.")
            clock, ran = tenant_clock_advance(tenant=tenant, actor="cli", seconds=seconds, to=target)
        except DomainError as error:
            raise CommandError(error.explain()) from error
        self.stdout.write(f"{slug}: test clock now {clock.frozen_time.isoformat()}; {len(ran)} job(s) ran")
        for job in ran:
            self.stdout.write(f"  {job.due_at.isoformat()}  {job.kind}  {job.key}")
