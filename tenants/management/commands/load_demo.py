"""Demo data for a new user: a staff login and the organisation `acme` with an owner.
Safe to run again: what exists is left as it is."""
from django.core.management import BaseCommand
from django.db import transaction

from tenants.models import Tenant, User
from tenants.selectors import tenant_url
from tenants.services.signup import tenant_signup

STAFF_EMAIL = "staff@aerolith.localhost"
STAFF_PASSWORD = "staff-demo-password"
OWNER_EMAIL = "owner@acme.test"
OWNER_PASSWORD = "acme-demo-password"


class Command(BaseCommand):
    help = __doc__

    def _usage(self, tenant):
        """A little usage so the usage page has something to show (ids make it run once)."""
        from metering.services.ingest import usage_ingest

        usage_ingest(tenant=tenant, enforce_limits=False, events=[
            {"id": "demo-api-calls", "meter": "api_calls", "quantity": 12_345},
            {"id": "demo-compute", "meter": "compute_hours", "quantity": 12.5},
            {"id": "demo-bandwidth", "meter": "bandwidth_gb", "quantity": 1.75},
            {"id": "demo-storage", "meter": "storage_gb", "quantity": 3.2},
        ])

    def handle(self, *args, **options):
        with transaction.atomic():
            if not User.objects.filter(email=STAFF_EMAIL).exists():
                User.objects.create_superuser(STAFF_EMAIL, STAFF_PASSWORD, full_name="Demo Staff")
        if not Tenant.objects.filter(slug="acme").exists():
            tenant_signup(organization="Acme Corp", slug="acme", email=OWNER_EMAIL,
                          password=OWNER_PASSWORD, plan="professional", region="eu-central",
                          full_name="Ada Owner")
        acme = Tenant.objects.get(slug="acme")
        self._usage(acme)
        public = Tenant.objects.get(schema_name="public")
        self.stdout.write(
            "\n".join([
                "",
                "Aerolith Cloud is running:",
                f"  Public site and signup : {tenant_url(public, '/')}",
                f"  Staff console          : {tenant_url(public, '/admin/')}",
                f"      login {STAFF_EMAIL} / {STAFF_PASSWORD}",
                f"  Acme portal            : {tenant_url(acme, '/')}",
                f"      login {OWNER_EMAIL} / {OWNER_PASSWORD}",
                f"  API documentation      : {tenant_url(public, '/api/docs/')}",
                f"  Health                 : {tenant_url(public, '/readyz')}",
                "",
            ])
        )
