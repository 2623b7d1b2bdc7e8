#!/usr/bin/env python3
"""Signup benchmark (issue 2, SPEC §2): signup-to-ready with 1,000 tenants present.

    python3 bench/signup.py                  # 1,000 tenants, then 50 measured signups
    python3 bench/signup.py --tenants 200    # a quicker look

Creates a fresh database `aerolith_bench` on the PostgreSQL of DATABASE_URL (or an
embedded one, as the README commands do), fills it with --tenants tenants, then measures
--measure signups through the whole HTTP stack (Django's WSGI handler, JSON, validation,
Argon2id, schema, rows, audit), twice: with the schema pool warm (the steady state: the
pool is refilled in the background by Celery) and with the pool empty (every signup
copies the base schema). "Ready" means the new organisation's domain has answered its
owner's first authenticated API call. In the same run it times the baselines: one schema
made by running migrations, one by django-tenants' clone function, and migrate_schemas over
every tenant with nothing to migrate (parallel executor, then the standard one).
"""
import argparse
import os
import platform
import subprocess
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

BENCH_DB = "aerolith_bench"
PASSWORD = "bench-password-that-is-long"



def report(label, seconds):
    ms = [s * 1000 for s in seconds]
    print(f"  {label:<44} n={len(ms):<4} p50={percentile(ms, 50):7.1f} ms  "
          f"p95={percentile(ms, 95):7.1f} ms  max={max(ms):7.1f} ms", flush=True)




def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tenants", type=int, default=1000)
    parser.add_argument("--measure", type=int, default=50)
    parser.add_argument("--skip-standard-migrate", action="store_true",
                        help="Skip the (slow) sequential migrate_schemas baseline.")
    args = parser.parse_args()

    with running_services() as env:
        url = recreate_database(env["DATABASE_URL"], BENCH_DB)
        os.environ.update(DATABASE_URL=url, REDIS_URL=env["REDIS_URL"],
                          DJANGO_SETTINGS_MODULE="aerolith.settings.base",
                          AEROLITH_SCHEMA_POOL_SIZE="0", LOG_LEVEL="ERROR",
                          DJANGO_ALLOWED_HOSTS="*")
        import django

        django.setup()
        run(args)


def run(args):
    from django.conf import settings
    from django.core.management import call_command
    from django.db import connection
    from django.test import Client

    from tenants.services.schemas import base_schema_migrate, schema_pool_refill
    from tenants.services.signup import tenant_signup

    with connection.cursor() as cursor:
        cursor.execute("SHOW server_version")
        pg_version = cursor.fetchone()[0]
    print(f"Machine: {os.cpu_count()} cores, {platform.processor() or platform.machine()}, "
          f"Python {platform.python_version()}, PostgreSQL {pg_version}")
    print(f"Database: {settings.DATABASES['default']['NAME']} (fresh)\n", flush=True)

    call_command("migrate_schemas", shared=True, interactive=False, verbosity=0)
    base_schema_migrate()

    started = time.perf_counter()
    for i in range(args.tenants):
        tenant_signup(organization=f"Filler {i}", slug=f"filler-{i}", email=f"o{i}@filler.test",
                      password=PASSWORD, plan="starter", region="us-east")
        if (i + 1) % 250 == 0:
            print(f"  ... {i + 1} tenants created ({time.perf_counter() - started:.0f} s)", flush=True)
    print(f"Created {args.tenants} tenants in {time.perf_counter() - started:.1f} s\n", flush=True)

    public = Client(HTTP_HOST=settings.AEROLITH_BASE_DOMAIN)

    def one_signup(slug):
        t0 = time.perf_counter()
        response = public.post("/api/v1/signup", {
            "organization": slug.title(), "slug": slug, "email": f"owner@{slug}.test",
            "password": PASSWORD, "plan": "professional", "region": "eu-central"},
            content_type="application/json")
        t_signup = time.perf_counter()
        assert response.status_code == 201, response.content
        tenant_host = response.json()["domain"]
        client = Client(HTTP_HOST=tenant_host)
        token = client.post("/api/v1/auth/token", {"email": f"owner@{slug}.test", "password": PASSWORD},
                            content_type="application/json").json()["access"]
        ready = client.get("/api/v1/tenant", HTTP_AUTHORIZATION=f"Bearer {token}")
        assert ready.status_code == 200, ready.content
        return t_signup - t0, time.perf_counter() - t0

    print(f"Signups measured with {args.tenants} tenants present:")
    schema_pool_refill(target=args.measure)
    warm = [one_signup(f"warm-{i}") for i in range(args.measure)]
    report("POST /api/v1/signup, pool warm", [w[0] for w in warm])
    report("signup-to-ready, pool warm", [w[1] for w in warm])
    cold = [one_signup(f"cold-{i}") for i in range(args.measure)]
    report("POST /api/v1/signup, pool empty (clone)", [c[0] for c in cold])
    report("signup-to-ready, pool empty (clone)", [c[1] for c in cold])

    print("\nBaselines, same database, same run:")
    from django_tenants.clone import CloneSchema

    from tenants.services.schemas import BASE_SCHEMA, schema_clone

    def timed(fn, n):
        out = []
        for i in range(n):
            t0 = time.perf_counter()
            fn(i)
            out.append(time.perf_counter() - t0)
        return out

    def by_migrations(i):
        with connection.cursor() as cursor:
            cursor.execute(f"CREATE SCHEMA bench_migrated_{i}")
        call_command("migrate_schemas", schema_name=f"bench_migrated_{i}", tenant=True,
                     interactive=False, verbosity=0)
        connection.set_schema_to_public()

    report("one schema by running migrations", timed(by_migrations, 3))
    report("one schema by django-tenants clone_schema()",
           timed(lambda i: CloneSchema().clone_schema(BASE_SCHEMA, f"bench_dt_clone_{i}", "DATA"), 3))
    report("one schema by schema_clone() (ours)",
           timed(lambda i: schema_clone(BASE_SCHEMA, f"bench_clone_{i}"), 10))

    total = args.tenants + 2 * args.measure
    print(f"\nMigrating {total} tenant schemas with nothing to migrate:", flush=True)
    runs = [("migrate_all (ours: skips up-to-date schemas)", ["migrate_all", "--no-pool"]),
            ("migrate_schemas --executor=multiprocessing", ["migrate_schemas", "--tenant",
                                                            "--executor=multiprocessing"])]
    if not args.skip_standard_migrate:
        runs.append(("migrate_schemas --executor=standard", ["migrate_schemas", "--tenant"]))
    for label, command in runs:
        t0 = time.perf_counter()
        subprocess.run([sys.executable, str(ROOT / "manage.py"), *command, "--verbosity=0"],
                       check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
        print(f"  {label:<44} {time.perf_counter() - t0:7.1f} s", flush=True)
    print(f"  (multiprocessing uses {settings.TENANT_MULTIPROCESSING_MAX_PROCESSES} processes)")
    print("\nTarget (SPEC §2): signup-to-ready p50 under 500 ms with 1,000 tenants present.")


if __name__ == "__main__":
    main()
