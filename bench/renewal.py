#!/usr/bin/env python3
"""Renewal benchmark (issue 4): renew 10,000 subscriptions, each with overage lines,
through the real beat task path, and print invoices per second.

    python3 bench/renewal.py                  # 10,000 subscriptions, 2 worker processes
    python3 bench/renewal.py --tenants 2000 --concurrency 2

Creates a fresh database `aerolith_bench_renewal` on the PostgreSQL of DATABASE_URL (or an
embedded one, as the README commands do) and migrates it. Then:

1. Loads --tenants organisations, each with an owner (the billing contact), a Starter
   subscription whose period ends a minute ago at an odd time of day (so the period's
   usage is read from raw edges, hourly and daily aggregates like in real life), a
   pm_card_visa card on file, its renewal job due, and usage above the Starter allowance
   on three meters (API calls, compute, bandwidth), so every invoice has three overage
   lines besides the plan fee. Tenants are rows only: renewal touches the public schema
   alone, so their (empty) schemas are not cloned.
2. Baseline, same run: --baseline of those subscriptions renewed in this process one
   tenant at a time through `due_work_run` (the test clock's path: every job its own
   transaction; no Celery, no broker, one core).
3. The real path: a Celery worker (prefork, --concurrency processes) on the Redis broker;
   `tenants.tasks.dispatch_due_work` is called as beat calls it and sends the tenants in
   chunks (AEROLITH_DUE_WORK_CHUNK, default 50); each task renews its chunk's due
   subscriptions together (closing the periods, the overage from metering, invoices with
   gapless numbers, the next renewals scheduled — a few statements for the chunk) and then
   runs each tenant's charge through the test-mode card gateway, with its receipt email,
   one transaction per charge. The clock stops when every invoice is paid.
4. Checks: one renewal invoice per subscription, all paid, totals equal to the sum of the
   lines, numbers gapless.
"""
import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
import _bootstrap  # noqa: E402

_bootstrap.reexec_in_virtualenv(__file__)
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from _common import recreate_database  # noqa: E402

from aerolith.devservices import running_services  # noqa: E402

BENCH_DB = "aerolith_bench_renewal"
TARGET_SECONDS = 60


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tenants", type=int, default=10_000)
    parser.add_argument("--baseline", type=int, default=300,
                        help="Subscriptions renewed in-process first, as the baseline.")
    parser.add_argument("--concurrency", type=int, default=os.cpu_count() or 2)
    args = parser.parse_args()

    with running_services() as env, tempfile.TemporaryDirectory() as mail_dir:
        url = recreate_database(env["DATABASE_URL"], BENCH_DB)
        os.environ.update(DATABASE_URL=url, REDIS_URL=env["REDIS_URL"],
                          DJANGO_SETTINGS_MODULE="aerolith.settings.base", AEROLITH_TEST_MODE="0",
                          AEROLITH_SCHEMA_POOL_SIZE="0", LOG_LEVEL="ERROR",
                          EMAIL_FILE_PATH=mail_dir)
        import django

        django.setup()
        run(args, env)


def load(n: int):
    """n tenants with an owner, a Starter subscription ending a minute ago, a card, the
    renewal job and usage above the allowances. Returns the period end."""
    from datetime import timedelta

    from dateutil.relativedelta import relativedelta
    from django.db import connection

    from aerolith import clock
    from billing.models import PaymentMethod, Plan, Subscription
    from metering.models import Meter
    from tenants.models import Domain, Membership, ScheduledJob, Tenant, User

    end = (clock.wall_now() - timedelta(minutes=1)).replace(microsecond=0)
    end = end.replace(second=17)  # an odd time of day: raw edges and hours are read too
    start = end - relativedelta(months=1)
    starter = Plan.objects.get(code="starter")
    t0 = time.perf_counter()
    tenants = Tenant.objects.bulk_create(
        [Tenant(name=f"Bench {i}", slug=f"bench-{i}", schema_name=f"t_bench_{i}", status="active")
         for i in range(n)], batch_size=2000)
    Domain.objects.bulk_create([Domain(domain=f"bench-{i}.aerolith.localhost", tenant=t, is_primary=True)
                                for i, t in enumerate(tenants)], batch_size=2000)
    users = User.objects.bulk_create([User(email=f"owner@bench-{i}.test", password="!")
                                      for i in range(n)], batch_size=2000)
    Membership.objects.bulk_create([Membership(user=u, tenant=t, role="owner", accepted_at=start)
                                    for u, t in zip(users, tenants, strict=True)], batch_size=2000)
    cards = PaymentMethod.objects.bulk_create(
        [PaymentMethod(tenant=t, gateway_id="pm_card_visa", brand="visa", last4="4242",
                       exp_month=12, exp_year=2034) for t in tenants], batch_size=2000)
    Subscription.objects.bulk_create(
        [Subscription(tenant=t, plan=starter, status="active", billing_anchor=start,
                      current_period_start=start, current_period_end=end, default_payment_method=c)
         for t, c in zip(tenants, cards, strict=True)], batch_size=2000)
    ScheduledJob.objects.bulk_create(
        [ScheduledJob(tenant=t, kind="billing.renewal", key=end.isoformat(), due_at=end,
                      payload={"period_end": end.isoformat()}) for t in tenants], batch_size=2000)
    meters = {m.code: m.pk for m in Meter.objects.all()}
    first, last = tenants[0].pk, tenants[-1].pk
    with connection.cursor() as cursor:
        # Per tenant: daily aggregates on three days, an hourly one and a raw event at
        # each edge, all above Starter's allowance in total.
        for code, per_day in (("api_calls", 40_000), ("compute_hours", 40), ("bandwidth_gb", 20)):
            cursor.execute(
                "INSERT INTO metering_usageaggregate (tenant_id, meter_id, granularity, bucket, shard,"
                " event_count, total, maximum, latest_at, latest_value)"
                " SELECT t, %s, 'day', date_trunc('day', %s::timestamptz) + d * interval '1 day', 0,"
                " 1, %s, %s, date_trunc('day', %s::timestamptz) + d * interval '1 day', %s"
                " FROM generate_series(%s::int, %s::int) t, generate_series(3, 5) d",
                [meters[code], start, per_day, per_day, start, per_day, first, last])
            cursor.execute(
                "INSERT INTO metering_usageaggregate (tenant_id, meter_id, granularity, bucket, shard,"
                " event_count, total, maximum, latest_at, latest_value)"
                " SELECT t, %s, 'hour', date_trunc('hour', %s::timestamptz) + interval '2 hours', 0,"
                " 1, 1, 1, date_trunc('hour', %s::timestamptz) + interval '2 hours', 1"
                " FROM generate_series(%s::int, %s::int) t", [meters[code], start, start, first, last])
        cursor.execute("ANALYZE")
    print(f"Loaded {n} subscriptions with cards, renewal jobs and usage in "
          f"{time.perf_counter() - t0:.1f} s (period ends {end.isoformat()})\n", flush=True)
    return end


def wait_paid(expected: int, since: float, timeout: float = 900.0) -> float:
    from billing.models import Invoice

    while True:
        paid = Invoice.objects.filter(reason="renewal", status="paid").count()
        if paid >= expected:
            return time.perf_counter() - since
        if time.perf_counter() - since > timeout:
            raise SystemExit(f"Timed out: {paid} of {expected} invoices paid")
        time.sleep(0.25)


def run(args, env):
    from django.conf import settings
    from django.core.management import call_command
    from django.db import connection

    from billing.models import Invoice, InvoiceLine
    from tenants.models import ScheduledJob, Tenant
    from tenants.services.scheduling import due_work_run

    with connection.cursor() as cursor:
        cursor.execute("SHOW server_version")
        pg_version = cursor.fetchone()[0]
    print(f"Machine: {os.cpu_count()} cores, {platform.processor() or platform.machine()}, "
          f"Python {platform.python_version()}, PostgreSQL {pg_version}")
    print(f"Database: {settings.DATABASES['default']['NAME']} (fresh)\n", flush=True)
    call_command("migrate_schemas", shared=True, interactive=False, verbosity=0)

    total = args.tenants + args.baseline
    load(total)
    tenant_ids = list(Tenant.objects.filter(slug__startswith="bench-").order_by("id").values_list("id", flat=True))

    print(f"Baseline: {args.baseline} renewals in this process, one tenant at a time (due_work_run):")
    t0 = time.perf_counter()
    for tenant in Tenant.objects.filter(pk__in=tenant_ids[:args.baseline]):
        due_work_run(tenant=tenant)
    base = time.perf_counter() - t0
    print(f"  {args.baseline / base:8.1f} invoices/s  ({base:.1f} s, one process, no broker)\n", flush=True)
    connection.close()

    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "aerolith", "worker", "--loglevel", "WARNING",
         "--concurrency", str(args.concurrency), "--hostname", "bench@%h", "--without-gossip",
         "--without-mingle", "--without-heartbeat"],
        cwd=ROOT, env=os.environ.copy())
    try:
        from aerolith.celery import app

        deadline = time.time() + 60
        while not app.control.ping(timeout=0.5):
            if time.time() > deadline:
                raise SystemExit("The Celery worker did not start")
        print(f"Celery path: dispatch_due_work -> {args.tenants} tenant tasks on a worker with "
              f"{args.concurrency} processes:", flush=True)
        t0 = time.perf_counter()
        dispatched = app.send_task("tenants.tasks.dispatch_due_work").get(timeout=300)
        elapsed = wait_paid(total, t0)
        rate = args.tenants / elapsed
        print(f"  dispatched {dispatched} tenants; {args.tenants} invoices issued, charged and paid "
              f"in {elapsed:.1f} s = {rate:.1f} invoices/s")
        verdict = "met" if elapsed < TARGET_SECONDS else "NOT met"
        print(f"  target: all {args.tenants} in under {TARGET_SECONDS} s: {verdict}; "
              f"vs the in-process baseline: {rate / (args.baseline / base):.2f}x\n")
    finally:
        worker.terminate()
        worker.wait(30)

    invoices = Invoice.objects.filter(reason="renewal")
    numbers = sorted(int(n.rsplit("-", 1)[1]) for n in invoices.values_list("number", flat=True))
    per_invoice = InvoiceLine.objects.filter(invoice__reason="renewal", kind="overage").count() / max(1, len(numbers))
    mismatched = Invoice.objects.raw(
        "SELECT i.id FROM billing_invoice i JOIN billing_invoiceline l ON l.invoice_id = i.id "
        "GROUP BY i.id HAVING sum(l.amount_cents) <> i.total_cents")
    print("Checks:")
    print(f"  renewal invoices: {len(numbers)} for {total} subscriptions; "
          f"overage lines per invoice: {per_invoice:.1f}")
    print(f"  numbers gapless: {numbers == list(range(1, len(numbers) + 1))}; "
          f"totals equal lines: {len(list(mismatched)) == 0}; "
          f"pending jobs left: {ScheduledJob.objects.filter(status='pending', due_at__lte=time_now()).count()}")


def time_now():
    from aerolith import clock

    return clock.wall_now()


if __name__ == "__main__":
    main()
