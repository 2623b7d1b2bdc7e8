#!/usr/bin/env python3
"""Staff console benchmark (issue 7, SPEC §11): the tenant pages with 10,000 tenants.

    python3 bench/console.py                     # 100 tenants (baseline), then 10,000
    python3 bench/console.py --tenants 2000      # a quicker look

Creates a fresh database `aerolith_bench_console` on the PostgreSQL of DATABASE_URL (or an
embedded one), signs up one real tenant (the detail page enters its schema), then
bulk-inserts filler tenants, each with an owner, a domain and a subscription (their
schemas are not made: the list never enters a tenant's schema). A staff member who passed
two-factor authentication then opens, through Django's test client (the whole middleware
stack, templates included), the tenant list, a search by email, a filtered list and the
real tenant's detail page, --repeat times each: first with --baseline tenants, then with
--tenants. Prints median and p95 milliseconds and the number of SQL queries per page.
"""
import argparse
import base64
import os
import platform
import secrets
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
import _bootstrap  # noqa: E402

_bootstrap.reexec_in_virtualenv(__file__)
sys.path.insert(0, str(ROOT))

from _common import percentile, recreate_database  # noqa: E402

from aerolith.devservices import running_services  # noqa: E402

BENCH_DB = "aerolith_bench_console"
PASSWORD = "bench-password-that-is-long"
BATCH = 2000


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tenants", type=int, default=10_000)
    parser.add_argument("--baseline", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=30)
    args = parser.parse_args()

    with running_services() as env:
        url = recreate_database(env["DATABASE_URL"], BENCH_DB)
        os.environ.update(DATABASE_URL=url, REDIS_URL=env["REDIS_URL"],
                          DJANGO_SETTINGS_MODULE="aerolith.settings.base",
                          AEROLITH_SCHEMA_POOL_SIZE="0", LOG_LEVEL="ERROR",
                          DJANGO_ALLOWED_HOSTS="*")
        # The staff member's authenticator key is sealed; a throwaway key for this run.
        os.environ.setdefault("AEROLITH_SECRET_KEYS", base64.b64encode(secrets.token_bytes(32)).decode())
        import django

        django.setup()
        run(args)


def fill(start: int, stop: int) -> None:
    """Tenants start..stop-1: rows only, in a few bulk inserts per BATCH."""
    from datetime import timedelta

    from django.conf import settings

    from aerolith import clock
    from billing.models import Plan, Subscription
    from tenants.models import Domain, Membership, Role, Tenant, User

    now = clock.wall_now()
    plans = list(Plan.objects.filter(is_public=True, for_tenant__isnull=True).order_by("price_cents"))
    statuses = ["active", "active", "active", "trialing", "past_due", "suspended", "cancelled"]
    for first in range(start, stop, BATCH):
        numbers = range(first, min(first + BATCH, stop))
        tenants = Tenant.objects.bulk_create([
            Tenant(name=f"Filler {i}", slug=f"filler-{i}", schema_name=f"filler_{i}",
                   status=statuses[i % len(statuses)], region="us-east") for i in numbers])
        Domain.objects.bulk_create([Domain(tenant=t, domain=f"{t.slug}.{settings.AEROLITH_BASE_DOMAIN}",
                                           is_primary=True) for t in tenants])
        users = User.objects.bulk_create([User(email=f"owner@{t.slug}.test", password="!")
                                          for t in tenants])
        Membership.objects.bulk_create([Membership(user=u, tenant=t, role=Role.OWNER, accepted_at=now)
                                        for u, t in zip(users, tenants, strict=True)])
        Subscription.objects.bulk_create([
            Subscription(tenant=t, plan=plans[i % len(plans)], status=t.status,
                         current_period_start=now, current_period_end=now + timedelta(days=30),
                         trial_end=now + timedelta(days=7) if t.status == "trialing" else None)
            for i, t in zip(numbers, tenants, strict=True)])


def run(args):
    from django.conf import settings
    from django.core.management import call_command
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext
    from django_otp import DEVICE_ID_SESSION_KEY

    from billing.models import Plan
    from tenants.models import Tenant, TotpDevice, User
    from tenants.services.schemas import base_schema_migrate
    from tenants.services.signup import tenant_signup

    with connection.cursor() as cursor:
        cursor.execute("SHOW server_version")
        pg_version = cursor.fetchone()[0]
    print(f"Machine: {os.cpu_count()} cores, {platform.processor() or platform.machine()}, "
          f"Python {platform.python_version()}, PostgreSQL {pg_version}")
    print(f"Database: {settings.DATABASES['default']['NAME']} (fresh)\n", flush=True)

    call_command("migrate_schemas", shared=True, interactive=False, verbosity=0)
    base_schema_migrate()
    tenant_signup(organization="Real Ltd", slug="real", email="owner@real.test", password=PASSWORD,
                  plan="starter", region="us-east")
    real = Tenant.objects.get(slug="real")
    staff = User.objects.create_superuser("ops@aerolith.test", PASSWORD)
    client = Client(HTTP_HOST=settings.AEROLITH_BASE_DOMAIN)
    client.force_login(staff)
    device = TotpDevice.objects.create_for(staff, name="Bench", confirmed=True)
    session = client.session
    session[DEVICE_ID_SESSION_KEY] = device.persistent_id
    session.save()
    plan = Plan.objects.get(code="professional")

    def pages(count):
        last = count - 1
        return [
            ("tenant list", "/admin/tenants/tenant/"),
            ("search by owner email", f"/admin/tenants/tenant/?q=owner%40filler-{last}.test"),
            ("filtered: past due on Professional",
             f"/admin/tenants/tenant/?status__exact=past_due&subscription__plan__id__exact={plan.pk}"),
            ("list sorted by MRR", "/admin/tenants/tenant/?o=5"),
            ("tenant detail (real tenant)", f"/admin/tenants/tenant/{real.pk}/change/"),
        ]

    def measure(count):
        results = {}
        for label, url in pages(count):
            response = client.get(url)  # warm: templates and caches
            assert response.status_code == 200, (url, response.status_code)
            times = []
            for _ in range(args.repeat):
                with CaptureQueriesContext(connection) as captured:
                    t0 = time.perf_counter()
                    response = client.get(url)
                    times.append((time.perf_counter() - t0) * 1000)
                assert response.status_code == 200, (url, response.status_code)
            results[label] = (statistics.median(times), percentile(times, 95), len(captured))
        return results

    started = time.perf_counter()
    fill(0, args.baseline)
    baseline = measure(args.baseline)
    fill(args.baseline, args.tenants)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
    print(f"Filled {args.tenants} tenants (+ the real one) in {time.perf_counter() - started:.1f} s "
          f"(including the baseline run)\n", flush=True)
    full = measure(args.tenants)

    print(f"{'page':<38} {'at ' + str(args.baseline) + ' tenants':>30}   {'at ' + str(args.tenants) + ' tenants':>30}")
    print(f"{'':<38} {'p50 ms':>9} {'p95 ms':>9} {'queries':>9}   {'p50 ms':>9} {'p95 ms':>9} {'queries':>9}")
    for label in baseline:
        b, f = baseline[label], full[label]
        print(f"{label:<38} {b[0]:9.1f} {b[1]:9.1f} {b[2]:9d}   {f[0]:9.1f} {f[1]:9.1f} {f[2]:9d}")
    print(f"\n{args.repeat} requests per page after one warm-up; Django test client, DEBUG off.")


if __name__ == "__main__":
    main()
