#!/usr/bin/env python3
"""Ingestion benchmark (SPEC §5): usage events per second through the HTTP API.

    python3 bench/ingest.py                      # 20 s through HTTP, 20 s bare, then reads
    python3 bench/ingest.py --seconds 60 --connections 8

Creates a fresh database `aerolith_bench_ingest` on the PostgreSQL of DATABASE_URL (or an
embedded one, as the README commands do), migrates it with `manage.py migrate_all`, signs
up one Enterprise organisation and gives it an API key with the `usage:write` scope. Then:

1. HTTP: the app is served by gunicorn (sync workers, as many as cores) and a separate
   load-generator process sends `POST /api/v1/usage/events` over --connections concurrent
   connections, batches of --batch events of which 10% repeat ids sent earlier (so they are
   duplicates), for --seconds. The request bodies are made with orjson before the clock
   starts. Every response must be 202; accepted and duplicate counts are summed from them.
2. Bare storage path, same run, same database: the same rows stored directly with psycopg
   the cheapest way we know (no Django, no HTTP, aggregates computed beforehand) — the
   idempotency-key INSERT ... ON CONFLICT DO NOTHING RETURNING, a COPY of the fresh events
   and the aggregate upsert, one transaction per batch (the service does the same in one
   statement, see _STORE_SQL) — over the same number of
   concurrent connections (one process each). HTTP / bare is the overhead of everything
   else: HTTP, Django, DRF, authentication, validation, Redis counters.
3. Real-time reads: counters_read() (what the usage API and hard limits use) and a bare
   Redis HGETALL, 2,000 times each, idle; counters_read() is also sampled every 10 ms
   while the HTTP load runs.
4. Checks: raw rows, hourly aggregates and Redis counters of the tenant agree with what
   the responses acknowledged.

Each timed phase starts from a CHECKPOINT (--no-checkpoint to skip it) and prints its CPU
split (gunicorn, PostgreSQL backends of this database, Redis, the generator, the rest),
the WAL it wrote and its rate per 5 s. CPU is shared with whatever else runs on the
machine (the load generator too), so run it twice when the figures look noisy.
"""
import argparse
import math
import os
import platform
import random
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

from _common import percentile, recreate_database  # noqa: E402

from aerolith.devservices import free_port, running_services  # noqa: E402

BENCH_DB = "aerolith_bench_ingest"
PASSWORD = "bench-password-that-is-long"
SLUG = "ingest-bench"
PLAN = "enterprise"
DUPLICATE_FRACTION = 0.10
ENDPOINT = "/api/v1/usage/events"
# Bodies are made ahead for up to this rate; beyond it a connection makes them as it goes
# (reported: that cost then counts against the generator).
PREGEN_RATE = 100_000
BARE_PREGEN_RATE = 120_000
# meter code, weight, quantity in micro-units (low, high), whether sent as a JSON integer.
# Small quantities keep the Enterprise allowances far away (no threshold notices queued).
METERS = [("api_calls", 6, (1, 3), True),
          ("compute_hours", 2, (100, 900), False),
          ("bandwidth_gb", 2, (1, 999), False)]
BARE_TENANT_ID = 0  # no organisation has id 0: the bare path's rows stay apart
MICRO = 1_000_000

EVENTKEY_SQL = ("INSERT INTO metering_eventkey (key, received_at) "
                "SELECT unnest(%s::uuid[]), %s ON CONFLICT DO NOTHING RETURNING key")
COPY_SQL = ("COPY metering_usageevent (tenant_id, meter_id, event_id, quantity, \"timestamp\", "
            "properties, received_at) FROM STDIN")
# The aggregate upsert the service runs (metering/services/ingest.py, _STORE_SQL), with
# the buckets computed beforehand.
AGGREGATE_SQL = """
        INSERT INTO metering_usageaggregate AS a (tenant_id, meter_id, granularity, bucket, shard,
            event_count, total, maximum, latest_at, latest_value)
        SELECT %s, m, g, b, %s, c, t, x, la, lv
        FROM unnest(%s::int[], %s::text[], %s::timestamptz[], %s::bigint[], %s::numeric[],
                    %s::numeric[], %s::timestamptz[], %s::numeric[]) AS u(m, g, b, c, t, x, la, lv)
        ON CONFLICT (tenant_id, meter_id, granularity, bucket, shard) DO UPDATE SET
            event_count = a.event_count + excluded.event_count,
            total = a.total + excluded.total,
            maximum = GREATEST(a.maximum, excluded.maximum),
            latest_value = CASE WHEN (excluded.latest_at, excluded.latest_value)
                                     > (a.latest_at, a.latest_value)
                                THEN excluded.latest_value ELSE a.latest_value END,
            latest_at = GREATEST(a.latest_at, excluded.latest_at)
        """


# --------------------------------------------------------------------------- helpers




def micro_text(micro: int) -> str:
    return f"{micro // MICRO}.{micro % MICRO:06d}"


def _meter_picker(rng):
    """A function giving (meter code, JSON quantity, micro-units) for one random event."""
    table = []
    for code, weight, (low, high), as_int in METERS:
        table += [(code, low, high - low + 1, as_int)] * weight
    n, random_ = len(table), rng.random

    def pick():
        code, low, span, as_int = table[int(random_() * n)]
        micro = low + int(random_() * span)
        if as_int:
            return code, micro, micro * MICRO
        return code, micro / MICRO, micro  # repr() of micro/1e6 has at most six decimals
    return pick


def _iso_stamps(floor: float, n: int = 1000) -> list[str]:
    """`n` ISO-8601 instants spread over the last 30 s (never before `floor`)."""
    from datetime import datetime, timezone

    now = time.time()
    low = max(floor, now - 30)
    return [datetime.fromtimestamp(low + (now - low) * i / (n - 1), timezone.utc).isoformat()
            for i in range(n)]


# ------------------------------------------------------------------ HTTP load generator

class _BodyMaker:
    """Request bodies of one connection: fresh ids plus 10% repeats of ids this connection
    sent in an earlier batch (so they are duplicates whatever the other connections do),
    encoded with orjson. A repeat has the same content as its first sending, like a retry."""

    def __init__(self, conn_index, prefix, batch, stamps, seed):
        import orjson

        self.dumps = orjson.dumps
        self.conn_index, self.prefix, self.batch, self.stamps = conn_index, prefix, batch, stamps
        self.rng = random.Random(seed)
        self.pick = _meter_picker(self.rng)
        self.recent: list[dict] = []
        self.k = 0

    def make(self, duplicates=True):
        """(body, fresh count, duplicate count, {meter: micro of the fresh events})."""
        n_dup = min(round(self.batch * DUPLICATE_FRACTION), len(self.recent)) if duplicates else 0
        n_fresh = self.batch - n_dup
        sums = {}
        stamps, pick, n_stamps = self.stamps, self.pick, len(self.stamps)
        prefix = f"{self.prefix}{self.conn_index}-{self.k}-"
        fresh = []
        for i in range(n_fresh):
            code, quantity, micro = pick()
            sums[code] = sums.get(code, 0) + micro
            fresh.append({"id": f"{prefix}{i}", "meter": code, "quantity": quantity,
                          "timestamp": stamps[i % n_stamps]})
        events = fresh + self.rng.sample(self.recent, n_dup)  # repeats: same content, as a retry
        self.rng.shuffle(events)
        self.recent.extend(fresh)
        if len(self.recent) > 200_000:
            del self.recent[:100_000]
        self.k += 1
        return self.dumps(events), n_fresh, n_dup, sums


def http_load(cfg, pipe):
    """Runs in its own process: pre-make the bodies, warm up every connection with one
    batch, then send batches over cfg['connections'] threads for cfg['seconds']."""
    import http.client
    import threading

    import orjson

    conns, batch, seconds = cfg["connections"], cfg["batch"], cfg["seconds"]
    stamps = _iso_stamps(cfg["ts_floor"])
    per_conn = math.ceil(PREGEN_RATE * seconds / batch / conns) + 2
    makers = [_BodyMaker(c, cfg["prefix"], batch, stamps, seed=c) for c in range(conns)]
    t0 = time.perf_counter()
    warmups = [m.make(duplicates=False) for m in makers]
    bodies = [[m.make() for _ in range(per_conn)] for m in makers]
    made = (conns * per_conn, time.perf_counter() - t0)
    headers = {"Host": cfg["host"], "Authorization": f"Bearer {cfg['token']}",
               "Content-Type": "application/json", "Accept": "application/json"}

    def post(http, body):
        started = time.perf_counter()
        http.request("POST", ENDPOINT, body, headers)
        response = http.getresponse()
        data = response.read()
        return response.status, data, time.perf_counter() - started

    results = [dict(latencies=[], accepted=0, duplicates=0, rejected=0, requests=0, errors=[],
                    fresh_sent=0, dup_sent=0, sums={}, made_during_run=0, end=0.0, timeline=[],
                    warm_accepted=0, warm_sums={}) for _ in range(conns)]
    https = [http.client.HTTPConnection("127.0.0.1", cfg["port"], timeout=120) for _ in range(conns)]

    def warm(c):
        body, n_fresh, _, sums = warmups[c]
        status, data, _ = post(https[c], body)
        if status != 202:
            results[c]["errors"].append((status, data[:500].decode(errors="replace")))
            return
        results[c]["warm_accepted"] = orjson.loads(data)["accepted"]
        results[c]["warm_sums"] = sums

    threads = [threading.Thread(target=warm, args=(c,)) for c in range(conns)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    pipe.send(("ready", *made))
    assert pipe.recv() == "go"

    start_barrier = threading.Barrier(conns + 1)
    state = {}

    def run(c):
        out, http, queue = results[c], https[c], bodies[c]
        start_barrier.wait()
        deadline = state["deadline"]
        i = 0
        while time.perf_counter() < deadline:
            if i < len(queue):
                body, n_fresh, n_dup, sums = queue[i]
                queue[i] = None  # free it
            else:
                body, n_fresh, n_dup, sums = makers[c].make()
                out["made_during_run"] += 1
            i += 1
            try:
                status, data, seconds_taken = post(http, body)
            except Exception as exc:  # noqa: BLE001 - report, reconnect, go on
                out["errors"].append(("exception", repr(exc)))
                http.close()
                continue
            out["requests"] += 1
            if status != 202:
                out["errors"].append((status, data[:500].decode(errors="replace")))
                continue
            answer = orjson.loads(data)
            out["latencies"].append(seconds_taken)
            out["accepted"] += answer["accepted"]
            out["timeline"].append((time.perf_counter() - state["start"], answer["accepted"]))
            out["duplicates"] += answer["duplicates"]
            out["rejected"] += len(answer["rejected"])
            out["fresh_sent"] += n_fresh
            out["dup_sent"] += n_dup
            for code, micro in sums.items():
                out["sums"][code] = out["sums"].get(code, 0) + micro
        out["end"] = time.perf_counter()

    threads = [threading.Thread(target=run, args=(c,)) for c in range(conns)]
    for t in threads:
        t.start()
    state["start"] = time.perf_counter()
    state["deadline"] = state["start"] + seconds
    pipe.send(("started",))
    start_barrier.wait()
    for t in threads:
        t.join()
    elapsed = max(r["end"] for r in results) - state["start"]
    pipe.send(("done", results, elapsed))


# ------------------------------------------------------------------------- bare path

def _bare_batches(index, n_batches, batch, received, stamps_dt, meter_ids, seed):
    """Pre-made batches for the bare path: keys, the fresh events' COPY rows and the
    aggregate upsert's arrays (computed here, so only PostgreSQL work is timed)."""
    import uuid

    rng = random.Random(1000 + seed)
    pick = _meter_picker(rng)
    recent_keys: list = []
    out = []
    for k in range(n_batches + 1):  # +1: the warm-up batch, without duplicates
        n_dup = min(round(batch * DUPLICATE_FRACTION), len(recent_keys)) if k else 0
        n_fresh = batch - n_dup
        raw = os.urandom(16 * n_fresh)
        keys = [uuid.UUID(bytes=raw[16 * i:16 * i + 16]) for i in range(n_fresh)]
        rows = []
        buckets = {}
        for i in range(n_fresh):
            code, _, micro = pick()
            ts = stamps_dt[i % len(stamps_dt)]
            meter_id = meter_ids[code]
            rows.append((BARE_TENANT_ID, meter_id, f"bare{index}-{k}-{i}", micro_text(micro), ts,
                         "{}", received))
            hour = ts.replace(minute=0, second=0, microsecond=0)
            for granularity, bucket in (("hour", hour), ("day", hour.replace(hour=0))):
                slot = buckets.get((meter_id, granularity, bucket))
                if slot is None:
                    buckets[(meter_id, granularity, bucket)] = [1, micro, micro, ts, micro]
                else:
                    slot[0] += 1
                    slot[1] += micro
                    slot[2] = max(slot[2], micro)
                    if (ts, micro) > (slot[3], slot[4]):
                        slot[3], slot[4] = ts, micro
        columns = list(zip(*[(m, g, b, c, micro_text(t), micro_text(x), la, micro_text(lv))
                             for (m, g, b), (c, t, x, la, lv) in buckets.items()], strict=True))
        all_keys = sorted(keys + rng.sample(recent_keys, n_dup))  # the service sorts them too
        recent_keys.extend(keys)
        if len(recent_keys) > 200_000:
            del recent_keys[:100_000]
        out.append((all_keys, n_fresh, rows, [list(col) for col in columns]))
    return out


def bare_worker(cfg, index, barrier, queue, finished):
    """One connection of the bare path, in its own process."""
    from datetime import datetime, timezone

    import psycopg

    stamps_dt = [datetime.fromisoformat(s) for s in _iso_stamps(cfg["ts_floor"])]
    received = datetime.now(timezone.utc)
    n_batches = math.ceil(BARE_PREGEN_RATE * cfg["seconds"] / cfg["batch"] / cfg["connections"]) + 2
    batches = _bare_batches(index, n_batches, cfg["batch"], received, stamps_dt,
                             cfg["meter_ids"], seed=index)
    shard = 100 + index
    conn = psycopg.connect(cfg["url"], autocommit=True)

    def one(keys, n_fresh, rows, columns):
        with conn.transaction(), conn.cursor() as cur:
            cur.execute(EVENTKEY_SQL, [keys, datetime.now(timezone.utc)])
            inserted = len(cur.fetchall())
            if inserted != n_fresh:
                raise RuntimeError(f"expected {n_fresh} fresh keys, got {inserted}")
            with cur.copy(COPY_SQL) as copy:
                for row in rows:
                    copy.write_row(row)
            cur.execute(AGGREGATE_SQL, [BARE_TENANT_ID, shard, *columns])
        return inserted

    warm_accepted = one(*batches[0])
    barrier.wait()
    start = time.monotonic()
    deadline = start + cfg["seconds"]
    accepted = duplicates = done = 0
    latencies, timeline = [], []
    for keys, n_fresh, rows, columns in batches[1:]:
        if time.monotonic() >= deadline:
            break
        t0 = time.perf_counter()
        inserted = one(keys, n_fresh, rows, columns)
        accepted += inserted
        latencies.append(time.perf_counter() - t0)
        timeline.append((time.monotonic() - start, inserted))
        duplicates += len(keys) - n_fresh
        done += 1
    exhausted = done == n_batches and time.monotonic() < deadline
    queue.put(dict(index=index, accepted=accepted, duplicates=duplicates, warm=warm_accepted,
                   latencies=latencies, timeline=timeline, start=start, end=time.monotonic(),
                   exhausted=exhausted))
    finished.wait(timeout=600)  # keep the backend until the CPU it used has been read
    conn.close()


# ---------------------------------------------------------------------- CPU accounting

class CpuSplit:
    """CPU seconds used by groups of processes between start() and stop()."""

    def __init__(self, groups):
        self.groups = groups  # name -> callable returning psutil.Process objects

    def _snapshot(self):
        import psutil

        snap = {}
        for name, finder in self.groups.items():
            for proc in finder():
                try:
                    t = proc.cpu_times()
                    snap[(name, proc.pid)] = t.user + t.system
                except psutil.Error:
                    pass
        t = psutil.cpu_times()
        busy = t.user + t.nice + t.system + getattr(t, "irq", 0) + getattr(t, "softirq", 0)
        return snap, (busy, getattr(t, "steal", 0.0))

    def start(self):
        self.before, self.busy_before = self._snapshot()
        self.t0 = time.monotonic()

    def stop(self):
        after, busy_after = self._snapshot()
        wall = time.monotonic() - self.t0
        used = {name: 0.0 for name in self.groups}
        for (name, pid), seconds in after.items():
            used[name] += seconds - self.before.get((name, pid), 0.0)
        busy = busy_after[0] - self.busy_before[0]
        steal = busy_after[1] - self.busy_before[1]
        return wall, busy, steal, used


def _print_cpu(wall, busy, steal, used):
    cores = os.cpu_count()
    split = ", ".join(f"{name} {100 * s / wall:.0f}%" for name, s in used.items())
    other = max(0.0, busy - sum(used.values()))  # (per-process and machine clocks differ a little)
    print(f"  CPU during the run ({cores} cores = {cores * 100}%): busy {100 * busy / wall:.0f}%: "
          f"{split}, everything else (kernel, other users) {100 * other / wall:.0f}%; "
          f"stolen by the hypervisor {100 * steal / wall:.0f}%", flush=True)


def _procs_named(*names):
    import psutil

    def find():
        return [p for p in psutil.process_iter(["name"]) if p.info["name"] in names]
    return find


def _bench_postgres(url):
    """The local PostgreSQL processes working for the bench database, plus the server's
    background writers (other databases' backends count as "everything else")."""
    import psutil
    import psycopg

    def find():
        try:
            with psycopg.connect(url, autocommit=True) as conn:
                pids = [row[0] for row in conn.execute(
                    "SELECT pid FROM pg_stat_activity WHERE (datname = current_database() "
                    "AND pid <> pg_backend_pid()) OR datname IS NULL")]
        except psycopg.Error:
            return []
        procs = []
        for pid in pids:
            try:
                procs.append(psutil.Process(pid))
            except psutil.Error:  # not on this machine
                pass
        return procs
    return find


def _tree(pid_fn):
    import psutil

    def find():
        try:
            parent = psutil.Process(pid_fn())
            return [parent, *parent.children(recursive=True)]
        except psutil.Error:
            return []
    return find


# ----------------------------------------------------------------------------- main

def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="length of each timed run")
    parser.add_argument("--connections", type=int, default=4,
                        help="concurrent HTTP connections (and bare-path connections)")
    parser.add_argument("--batch", type=int, default=1000, help="events per request")
    parser.add_argument("--threads", type=int, default=1,
                        help="gunicorn threads per worker (default 1: sync workers)")
    parser.add_argument("--workers", type=int, default=os.cpu_count(),
                        help="gunicorn sync workers (default: one per core)")
    parser.add_argument("--no-checkpoint", action="store_true",
                        help="do not issue CHECKPOINT before each timed phase")
    args = parser.parse_args()

    with running_services() as env:
        url = recreate_database(env["DATABASE_URL"], BENCH_DB)
        os.environ.update(DATABASE_URL=url, REDIS_URL=env["REDIS_URL"],
                          DJANGO_SETTINGS_MODULE="aerolith.settings.base",
                          AEROLITH_SCHEMA_POOL_SIZE="0", LOG_LEVEL="ERROR",
                          DJANGO_ALLOWED_HOSTS="*", AEROLITH_TEST_MODE="0")
        subprocess.run([sys.executable, str(ROOT / "manage.py"), "migrate_all", "--no-pool",
                        "--verbosity=0"], check=True, cwd=ROOT, stdout=subprocess.DEVNULL,
                       env=os.environ.copy())
        import django

        django.setup()
        run(args, url)


def run(args, url):
    from datetime import date

    from django.conf import settings
    from django.db import connection, connections
    from django_tenants.utils import tenant_context

    from billing.selectors import subscription_of
    from metering.services.counters import client as redis_client
    from metering.services.counters import counter_key, counters_read
    from metering.services.partitions import partitions_ensure
    from tenants.models import Role
    from tenants.permissions import member_principal
    from tenants.services.api_keys import api_key_create
    from tenants.services.signup import tenant_signup

    with connection.cursor() as cursor:
        cursor.execute("SHOW server_version")
        pg_version = cursor.fetchone()[0]
    print(f"Machine: {os.cpu_count()} cores, {platform.processor() or platform.machine()}, "
          f"Python {platform.python_version()}, PostgreSQL {pg_version}, "
          f"load average {os.getloadavg()[0]:.2f} at start")
    print(f"Database: {settings.DATABASES['default']['NAME']} (fresh); "
          f"Redis: {settings.REDIS_URL.rsplit('@', 1)[-1]}\n", flush=True)

    partitions_ensure(date.today(), back=2, ahead=7)  # as the hourly Celery task does
    result = tenant_signup(organization="Ingest Bench", slug=SLUG, email=f"owner@{SLUG}.test",
                           password=PASSWORD, plan=PLAN, region="us-east")
    tenant = result.tenant
    with tenant_context(tenant):
        owner = tenant.memberships.get(role=Role.OWNER).user
        _, token = api_key_create(principal=member_principal(tenant, owner), name="bench",
                                  scopes=["read", "usage:write"])
    connection.set_schema_to_public()
    subscription = subscription_of(tenant)
    period_start = subscription.current_period_start
    host = f"{SLUG}.{settings.AEROLITH_BASE_DOMAIN}"
    connections.close_all()

    port = free_port()
    log = tempfile.NamedTemporaryFile(prefix="bench-ingest-gunicorn-", suffix=".log", delete=False)
    gunicorn = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "aerolith.wsgi", "--bind", f"127.0.0.1:{port}",
         "--workers", str(args.workers), "--threads", str(args.threads), "--log-level", "error"],
        cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "aerolith.settings.base",
             "DATABASE_URL": url, "REDIS_URL": settings.REDIS_URL, "LOG_LEVEL": "ERROR",
             "DJANGO_ALLOWED_HOSTS": "*", "AEROLITH_TEST_MODE": "0"})
    try:
        _wait_healthy(port, gunicorn, log.name)
        http = _http_phase(args, url, port, host, token, period_start, tenant, gunicorn, log.name)
    finally:
        gunicorn.terminate()
        try:
            gunicorn.wait(timeout=20)
        except subprocess.TimeoutExpired:
            gunicorn.kill()
        log.close()
        os.unlink(log.name)

    bare = _bare_phase(args, url, period_start)

    print(f"\nHTTP / bare storage path: {http['rate'] / bare['rate']:.2f} "
          f"({http['rate']:,.0f} / {bare['rate']:,.0f} accepted events/s)", flush=True)

    # Real-time reads, idle.
    r = redis_client()
    key = counter_key(tenant.pk, period_start)
    for _ in range(50):
        counters_read(tenant.pk, period_start)
    print("\nReal-time usage read, idle (2,000 each):")
    _report_ms("counters_read(tenant, period_start)",
               _timed(lambda: counters_read(tenant.pk, period_start), 2000))
    _report_ms("Redis HGETALL of the same hash", _timed(lambda: r.hgetall(key), 2000))
    _report_ms("counters_read() while the HTTP load ran", http["reads"])

    _checks(tenant, period_start, http, bare)
    # Leave the shared Redis as we found it (the database is a bench database).
    from metering.services.collectors import BUFFER_KEY

    r.delete(key)
    r.hdel(BUFFER_KEY, f"{tenant.pk}:api_calls", f"{tenant.pk}:bandwidth_bytes")
    print("\nTarget (SPEC §5): at least 50,000 events/s through HTTP on 2 cores; "
          "real-time read p99 under 5 ms.")


def checkpoint(url: str) -> None:
    """Start a timed phase from a fresh checkpoint, so that a checkpoint (and the full-page
    writes after it) does not fall inside one phase and not the other by chance."""
    import psycopg

    try:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("CHECKPOINT")
    except psycopg.Error as exc:
        print(f"  (no CHECKPOINT before the phase: {exc})")


def wal_stats(url: str):
    """(WAL bytes, full-page images) so far, server-wide (PostgreSQL 14+), or None."""
    import psycopg

    try:
        with psycopg.connect(url, autocommit=True) as conn:
            return conn.execute("SELECT wal_bytes, wal_fpi FROM pg_stat_wal").fetchone()
    except psycopg.Error:
        return None


def _print_timeline(timelines, elapsed, step=5):
    windows = {}
    for timeline in timelines:
        for at, n in timeline:
            windows[int(at // step)] = windows.get(int(at // step), 0) + n
    print(f"  accepted events/s per {step} s: " + ", ".join(
        f"{windows.get(w, 0) / step:,.0f}" for w in range(int(elapsed // step))), flush=True)


def _print_wal(before, after, events):
    if before is None or after is None or not events:
        return
    size, fpi = after[0] - before[0], after[1] - before[1]
    print(f"  WAL written meanwhile (whole server): {size / 2**20:,.0f} MiB, {fpi:,} full-page "
          f"images; {size / events:,.0f} bytes per stored event", flush=True)


def _wait_healthy(port, process, log_name, timeout=60.0):
    import http.client

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"gunicorn exited with {process.returncode}:\n"
                               f"{Path(log_name).read_text()[-3000:]}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/healthz", headers={"Host": "127.0.0.1"})
            if conn.getresponse().status == 200:
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"gunicorn did not answer /healthz within {timeout} s")


def _timed(fn, n):
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def _report_ms(label, seconds):
    if not seconds:
        print(f"  {label:<44} (no samples)")
        return
    ms = [s * 1000 for s in seconds]
    print(f"  {label:<44} n={len(ms):<5} p50={percentile(ms, 50):6.3f} ms  "
          f"p99={percentile(ms, 99):6.3f} ms  max={max(ms):7.3f} ms", flush=True)


def _http_phase(args, url, port, host, token, period_start, tenant, gunicorn, log_name):
    import multiprocessing as mp

    import psutil

    from metering.services.counters import counters_read

    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    cfg = dict(port=port, host=host, token=token, seconds=args.seconds, connections=args.connections,
               batch=args.batch, prefix=f"r{int(time.time())}-", ts_floor=period_start.timestamp() + 1)
    generator = ctx.Process(target=http_load, args=(cfg, child), daemon=True)
    generator.start()
    import gunicorn as gunicorn_package

    print(f"HTTP: gunicorn {gunicorn_package.__version__}, {args.workers} workers × {args.threads} thread(s); "
          f"load generator: 1 process, "
          f"{args.connections} connections (threads, http.client), {args.batch} events a batch, "
          f"{DUPLICATE_FRACTION:.0%} repeated ids, {args.seconds:g} s", flush=True)
    message = parent.recv()
    print(f"  ({message[1]} bodies made with orjson in {message[2]:.1f} s, before the clock)", flush=True)
    if not args.no_checkpoint:
        checkpoint(url)
    parent.send("go")
    cpu = CpuSplit({"gunicorn (Django)": _tree(lambda: gunicorn.pid),
                    "PostgreSQL (bench database)": _bench_postgres(url),
                    "Redis": _procs_named("redis-server"),
                    "load generator": _tree(lambda: generator.pid),
                    "this script (reads)": lambda: [psutil.Process()]})
    message = parent.recv()
    assert message[0] == "started", message
    wal_before = wal_stats(url)
    cpu.start()
    reads = []
    while not parent.poll(0.01):  # sample the real-time read every 10 ms during the load
        t0 = time.perf_counter()
        counters_read(tenant.pk, period_start)
        reads.append(time.perf_counter() - t0)
    wall, busy, steal, used = cpu.stop()
    wal_after = wal_stats(url)
    _, results, elapsed = parent.recv()
    generator.join()

    errors = [e for r in results for e in r["errors"]]
    latencies = [x for r in results for x in r["latencies"]]
    accepted = sum(r["accepted"] for r in results)
    duplicates = sum(r["duplicates"] for r in results)
    rejected = sum(r["rejected"] for r in results)
    fresh_sent = sum(r["fresh_sent"] for r in results)
    dup_sent = sum(r["dup_sent"] for r in results)
    made = sum(r["made_during_run"] for r in results)
    requests = sum(r["requests"] for r in results)
    rate = accepted / elapsed
    print(f"  {len(latencies)} batches 202 in {elapsed:.2f} s; {len(errors)} errors; "
          f"{rejected} events rejected")
    for error in errors[:5]:
        print(f"    error: {error}")
    if made:
        print(f"  ({made} batches had to be made during the run)")
    print(f"  accepted:   {accepted:>10,} events  {rate:>10,.0f} events/s   "
          f"(sent fresh: {fresh_sent:,})")
    print(f"  duplicates: {duplicates:>10,} events  {duplicates / elapsed:>10,.0f} events/s   "
          f"(sent repeated: {dup_sent:,})")
    print(f"  total:      {accepted + duplicates:>10,} events  "
          f"{(accepted + duplicates) / elapsed:>10,.0f} events/s")
    if latencies:
        ms = [x * 1000 for x in latencies]
        print(f"  batch latency: p50={percentile(ms, 50):.1f} ms  p99={percentile(ms, 99):.1f} ms  "
              f"max={max(ms):.1f} ms")
    _print_cpu(wall, busy, steal, used)
    _print_wal(wal_before, wal_after, accepted)
    _print_timeline([r["timeline"] for r in results], elapsed)
    warm_accepted = sum(r["warm_accepted"] for r in results)
    sums = {}
    for r in results:
        for part in (r["sums"], r["warm_sums"]):
            for code, micro in part.items():
                sums[code] = sums.get(code, 0) + micro
    return dict(rate=rate, accepted=accepted, warm_accepted=warm_accepted, duplicates=duplicates,
                fresh_sent=fresh_sent, dup_sent=dup_sent, errors=errors, sums=sums,
                requests=requests + len(results), reads=reads)


def _bare_phase(args, url, period_start):
    import multiprocessing as mp

    import psutil
    import psycopg

    from metering.models import Meter

    ctx = mp.get_context("spawn")
    n = args.connections
    barrier = ctx.Barrier(n + 1)
    queue, finished = ctx.Queue(), ctx.Event()
    cfg = dict(url=url, seconds=args.seconds, batch=args.batch, connections=n,
               ts_floor=period_start.timestamp() + 1,
               meter_ids=dict(Meter.objects.values_list("code", "pk")))
    print(f"\nBare storage path (psycopg, no Django/HTTP): {n} connections (one process each), "
          f"{args.batch} events a batch, {DUPLICATE_FRACTION:.0%} repeated keys, "
          f"{args.seconds:g} s; per batch, one transaction: key INSERT ... RETURNING, COPY, "
          "aggregate upsert", flush=True)
    t0 = time.monotonic()
    workers = [ctx.Process(target=bare_worker, args=(cfg, i, barrier, queue, finished),
                           daemon=True) for i in range(n)]
    for w in workers:
        w.start()
    cpu = CpuSplit({"bare-path processes": lambda: [psutil.Process(w.pid) for w in workers],
                    "PostgreSQL (bench database)": _bench_postgres(url)})
    while barrier.n_waiting < n:  # the workers make their batches and warm up
        if not all(w.is_alive() for w in workers):
            raise RuntimeError("a bare-path worker died before the start")
        time.sleep(0.1)
    if not args.no_checkpoint:
        checkpoint(url)
    barrier.wait(timeout=600)
    print(f"  (batches made in {time.monotonic() - t0:.1f} s, before the clock)", flush=True)
    start = time.monotonic()
    wal_before = wal_stats(url)
    cpu.start()
    results = [queue.get(timeout=args.seconds + 600) for _ in workers]
    wall, busy, steal, used = cpu.stop()
    wal_after = wal_stats(url)
    finished.set()
    for w in workers:
        w.join()
    elapsed = max(r["end"] for r in results) - start
    accepted = sum(r["accepted"] for r in results)
    duplicates = sum(r["duplicates"] for r in results)
    latencies = [x * 1000 for r in results for x in r["latencies"]]
    rate = accepted / elapsed
    if any(r["exhausted"] for r in results):
        print("  (pre-made batches ran out before the end: raise BARE_PREGEN_RATE)")
    print(f"  accepted:   {accepted:>10,} events  {rate:>10,.0f} events/s")
    print(f"  duplicates: {duplicates:>10,} events  {duplicates / elapsed:>10,.0f} events/s")
    print(f"  total:      {accepted + duplicates:>10,} events  "
          f"{(accepted + duplicates) / elapsed:>10,.0f} events/s")
    print(f"  batch latency: p50={percentile(latencies, 50):.1f} ms  "
          f"p99={percentile(latencies, 99):.1f} ms  max={max(latencies):.1f} ms", flush=True)
    _print_cpu(wall, busy, steal, used)
    _print_wal(wal_before, wal_after, accepted)
    _print_timeline([r["timeline"] for r in results], elapsed)
    with psycopg.connect(url) as conn:
        stored = conn.execute("SELECT count(*) FROM metering_usageevent WHERE tenant_id = %s",
                              [BARE_TENANT_ID]).fetchone()[0]
    return dict(rate=rate, accepted=accepted, warm=sum(r["warm"] for r in results), stored=stored)


def _checks(tenant, period_start, http, bare):
    from django.db import connection

    from metering.services.counters import counters_read

    print("\nChecks:")
    expected = http["accepted"] + http["warm_accepted"]
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM metering_usageevent WHERE tenant_id = %s", [tenant.pk])
        rows = cursor.fetchone()[0]
        cursor.execute("SELECT coalesce(sum(event_count), 0) FROM metering_usageaggregate "
                       "WHERE tenant_id = %s AND granularity = 'hour'", [tenant.pk])
        aggregated = cursor.fetchone()[0]

    def line(label, got, want):
        print(f"  {label:<58} {got:>12,} {'OK' if got == want else f'MISMATCH (expected {want:,})'}")

    line("HTTP: raw event rows of the tenant = accepted (incl. warm-up)", rows, expected)
    line("HTTP: hourly aggregate event_count = accepted", int(aggregated), expected)
    line("HTTP: accepted = fresh ids sent (timed part)", http["accepted"], http["fresh_sent"])
    line("HTTP: duplicates = repeated ids sent", http["duplicates"], http["dup_sent"])
    counters = counters_read(tenant.pk, period_start)
    for code, micro in sorted(http["sums"].items()):
        want = micro + (http["requests"] * MICRO if code == "api_calls" else 0)
        note = " (+1 per request)" if code == "api_calls" else ""
        line(f"Redis counter {code}{note}, micro-units", counters.get(code, 0), want)
    line("bare: raw event rows = accepted (incl. warm-up)", bare["stored"], bare["accepted"] + bare["warm"])


if __name__ == "__main__":
    main()
