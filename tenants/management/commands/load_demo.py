"""Demo data for a new user: a staff login and a few organisations whose billing history
was lived through the real services on a test clock — acme (active, months of paid
invoices with overage), globex (past due: its card started declining), umbrella (suspended
after grace), vandelay (cancelled after months of declines), initech (in its trial, no
card yet) and hooli (Enterprise, whose dedicated cluster `load_demo_provisioning` makes).
Safe to run again: organisations that exist are left as they are. Histories need test mode (the run command sets it)."""
from datetime import timedelta

from dateutil.relativedelta import relativedelta
from django.conf import settings
from django.core.management import BaseCommand
from django.db import transaction

from aerolith import clock
from tenants.models import ScheduledJob, Tenant, User
from tenants.selectors import tenant_url
from tenants.services.signup import tenant_signup

STAFF_EMAIL = "staff@aerolith.localhost"
STAFF_PASSWORD = "staff-demo-password"  # nosec B105 - published demo login (README)
OWNER_EMAIL = "owner@acme.test"
OWNER_PASSWORD = "acme-demo-password"  # nosec B105 - published demo login (README)
# slug, name, plan, how long ago it signed up, its card, a card swapped in later (20 days
# ago, or (card, days ago))
DEMO_TENANTS = [
    ("acme", "Acme Corp", "professional", relativedelta(months=4), "pm_card_visa", None),
    ("globex", "Globex", "starter", relativedelta(months=1, days=16), "pm_card_visa",
     "pm_card_chargeDeclined"),
    ("umbrella", "Umbrella Inc", "starter", relativedelta(months=1, days=25), "pm_card_visa",
     "pm_card_chargeDeclinedInsufficientFunds"),
    ("initech", "Initech", "starter", relativedelta(days=5), None, None),
    ("hooli", "Hooli", "enterprise", relativedelta(months=2), "pm_card_visa", None),
    # Declined for so long that dunning suspended it and, 30 days later, cancelled it.
    ("vandelay", "Vandelay Industries", "starter", relativedelta(months=3, days=16),
     "pm_card_visa", ("pm_card_chargeDeclined", 80)),
]


class Command(BaseCommand):
    help = __doc__

    def _usage(self, tenant, key: str, scale: int = 1):
        """Usage at the tenant's clock (ids make it happen once)."""
        from metering.services.ingest import usage_ingest

        usage_ingest(tenant=tenant, enforce_limits=False, events=[
            {"id": f"demo-api-calls-{key}", "meter": "api_calls", "quantity": 1_234_567 * scale},
            {"id": f"demo-compute-{key}", "meter": "compute_hours", "quantity": 212.5 * scale},
            {"id": f"demo-bandwidth-{key}", "meter": "bandwidth_gb", "quantity": 175 * scale},
            {"id": f"demo-storage-{key}", "meter": "storage_gb", "quantity": 3.2 * scale},
        ])

    def _history(self, tenant, ago: relativedelta, card: str | None, later_card):
        """Replay the tenant's life from `ago` until now on a test clock, then detach it."""
        from billing.models import Subscription
        from billing.services.collection import payment_method_attach
        from billing.services.subscriptions import schedule_trial
        from tenants.services.clocks import (
            tenant_clock_advance,
            tenant_clock_attach,
            tenant_clock_detach,
        )

        now = clock.wall_now()
        start = now - ago
        later_card, swap_days = later_card if isinstance(later_card, tuple) else (later_card, 20)
        with transaction.atomic():
            tenant_clock_attach(tenant=tenant, actor="demo", at=start)
            ScheduledJob.objects.filter(tenant=tenant, kind__startswith="billing.").delete()
            subscription = Subscription.objects.select_related("tenant").get(tenant=tenant)
            trial_end = start + timedelta(days=14)
            Subscription.objects.filter(pk=subscription.pk).update(
                created_at=start, current_period_start=start, current_period_end=trial_end,
                trial_end=trial_end)
            subscription.refresh_from_db()
            schedule_trial(subscription)
        if card:
            payment_method_attach(tenant=tenant, gateway_id=card, actor="demo")
        step = start
        while step < now:
            step = min(step + timedelta(days=10), now)
            if later_card and step >= now - timedelta(days=swap_days):
                payment_method_attach(tenant=tenant, gateway_id=later_card, actor="demo")
                later_card = None
            tenant_clock_advance(tenant=tenant, actor="demo", to=step)
            if step > start + timedelta(days=20):
                self._usage(tenant, step.strftime("%Y%m%d"))
        tenant_clock_detach(tenant=tenant, actor="demo")

    def handle(self, *args, **options):
        with transaction.atomic():
            if not User.objects.filter(email=STAFF_EMAIL).exists():
                User.objects.create_superuser(STAFF_EMAIL, STAFF_PASSWORD, full_name="Demo Staff")
        for slug, name, plan, ago, card, later_card in DEMO_TENANTS:
            if Tenant.objects.filter(slug=slug).exists():
                continue
            email = OWNER_EMAIL if slug == "acme" else f"owner@{slug}.test"
            password = OWNER_PASSWORD if slug == "acme" else f"{slug}-demo-password"
            result = tenant_signup(organization=name, slug=slug, email=email, password=password,
                                   plan=plan, region="eu-central", full_name="Ada Owner")
            if settings.AEROLITH_TEST_MODE:
                self._history(result.tenant, ago, card, later_card)
        acme = Tenant.objects.get(slug="acme")
        public = Tenant.objects.get(schema_name="public")
        self.stdout.write(
            "\n".join([
                "",
                "Aerolith Cloud is running:",
                f"  Public site and signup : {tenant_url(public, '/')}",
                f"  Staff console          : {tenant_url(public, '/admin/')}",
                f"      login {STAFF_EMAIL} / {STAFF_PASSWORD} (first sign-in: enrol two-factor "
                "authentication by scanning the QR code with an authenticator app)",
                f"  Acme portal            : {tenant_url(acme, '/')}",
                f"      login {OWNER_EMAIL} / {OWNER_PASSWORD}",
                "  Also: globex (past due), umbrella (suspended), initech (trial), hooli "
                "(Enterprise, dedicated cluster), vandelay (cancelled); owners "
                "owner@<slug>.test / <slug>-demo-password",
                f"  API documentation      : {tenant_url(public, '/api/docs/')}",
                f"  Health                 : {tenant_url(public, '/readyz')}",
                *([f"  Metrics (Prometheus)   : {tenant_url(public, '/metrics')}",
                   f"      Authorization: Bearer {settings.AEROLITH_METRICS_TOKEN}"]
                  if settings.AEROLITH_METRICS_TOKEN and settings.AEROLITH_TEST_MODE else []),
                *([f"  SOL / USDC test wallet : {settings.AEROLITH_SOLANA_RPC_URL.rstrip('/')}/wallet",
                   f"  TRX / USDT test wallet : {settings.AEROLITH_TRONGRID_URL.rstrip('/')}/wallet"]
                  if settings.AEROLITH_TEST_MODE else []),
                "",
            ])
        )
