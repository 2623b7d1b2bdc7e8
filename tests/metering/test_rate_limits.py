"""API rate limits per plan (SPEC §8): 429 problem+json with Retry-After, per organisation
(every key and user together), shared by every process through Redis, following plan
changes, never billing a refused request.

The limiter's clock is frozen (metering.ratelimits.frozen_clock), so nothing here depends
on how fast the machine is; one test checks the unfrozen path reads Redis's own clock."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from billing.models import Plan, Subscription
from metering import ratelimits
from metering.quantities import MICRO
from metering.ratelimits import RateLimited, frozen_clock, gcra_args, rate_key
from metering.services.collectors import BUFFER_KEY
from metering.services.counters import client, counters_read
from tests.conftest import api_client, assert_problem, make_key

ROOT = Path(__file__).resolve().parents[2]
T0 = 1_800_000_000 * ratelimits.MICROS  # an arbitrary instant (2027), in µs


def _wipe_rate_keys():
    keys = list(client().scan_iter("aerolith:rate:*", count=1000))
    if keys:
        client().delete(*keys)


@pytest.fixture(autouse=True)
def limits_on(settings):
    settings.AEROLITH_RATE_LIMITS = True
    _wipe_rate_keys()
    with frozen_clock(T0):
        yield
    _wipe_rate_keys()


def set_rate(plan_code: str, per_second: int | None) -> Plan:
    Plan.objects.filter(code=plan_code).update(api_rate_per_second=per_second)
    return Plan.objects.get(code=plan_code)


def reader(tenant, name="reader"):
    return api_client(tenant.slug, make_key(tenant, ["read"], name=name))


def statuses(client_, n: int) -> list[int]:
    return [client_.get("/api/v1/tenant").status_code for _ in range(n)]


def api_calls(tenant) -> int:
    period_start = Subscription.objects.get(tenant=tenant).current_period_start
    return counters_read(tenant.pk, period_start).get("api_calls", 0) // MICRO


# --- the pure parts --------------------------------------------------------------------------

def test_gcra_arguments_give_one_request_per_interval_and_a_one_second_burst():
    assert gcra_args(None) == (0, 0)
    assert gcra_args(5) == (200_000, 1_000_000)
    assert gcra_args(500) == (2_000, 1_000_000)
    interval, tolerance = gcra_args(3)  # 1/3 s rounds up: never more than the plan allows
    assert interval == 333_334 and tolerance == 3 * interval


def test_spec_defaults_per_plan(db):
    rates = dict(Plan.objects.filter(for_tenant__isnull=True)
                 .values_list("code", "api_rate_per_second"))
    assert rates == {"free": 5, "starter": 20, "professional": 100, "enterprise": 500,
                     "custom": None}


# --- through the API -----------------------------------------------------------------------

@pytest.mark.django_db
def test_a_burst_over_the_limit_gets_429_problem_with_retry_after_and_is_not_billed(alice):
    set_rate("starter", 2)
    client_ = reader(alice)
    before = api_calls(alice)
    assert statuses(client_, 2) == [200, 200]
    response = client_.get("/api/v1/tenant")
    body = assert_problem(response, 429, "rate_limited")
    assert response["Retry-After"] == "1"  # RFC 9110 delay-seconds, whole and at least 1
    assert body["retry_after"] == 1
    assert body["limit_per_second"] == 2 and body["plan"] == "Starter"
    assert "2 API requests per second" in body["detail"] and "Starter" in body["detail"]
    assert "Retry after 1 second" in body["detail"] and "upgrade" in body["detail"]
    # Only the two admitted requests are counted, in real time and in the flush buffer.
    assert api_calls(alice) == before + 2
    assert int(client().hget(BUFFER_KEY, f"{alice.pk}:api_calls") or 0) == 2


@pytest.mark.django_db
def test_the_limit_is_per_organisation_not_per_key_and_other_tenants_are_untouched(
        alice, bob, charlie):
    set_rate("starter", 2)
    set_rate("professional", 1)
    set_rate("free", 1)
    first, second = reader(alice, "first"), reader(alice, "second")
    assert statuses(first, 1) + statuses(second, 1) == [200, 200]
    assert statuses(first, 1) == [429] and statuses(second, 1) == [429]
    # Alice being limited takes nothing from bob or charlie, who have their own windows.
    assert statuses(reader(bob), 2) == [200, 429]
    assert statuses(reader(charlie), 2) == [200, 429]


@pytest.mark.django_db
def test_the_window_recovers_one_request_per_interval_and_a_full_burst_after_a_second(alice):
    set_rate("starter", 2)
    client_ = reader(alice)
    assert statuses(client_, 3) == [200, 200, 429]
    ratelimits.advance(0.25)  # half an interval: still refused, and refusals cost nothing
    assert statuses(client_, 1) == [429]
    ratelimits.advance(0.25)
    assert statuses(client_, 2) == [200, 429]
    ratelimits.advance(1.0)
    assert statuses(client_, 3) == [200, 200, 429]


@pytest.mark.django_db
def test_a_plan_change_or_a_staff_edit_applies_to_the_next_request(alice):
    set_rate("starter", 1)
    set_rate("professional", 3)
    client_ = reader(alice)
    assert statuses(client_, 2) == [200, 429]
    Subscription.objects.filter(tenant=alice).update(plan=Plan.objects.get(code="professional"))
    assert statuses(client_, 4) == [200, 200, 200, 429]
    set_rate("professional", 5)  # staff raise the plan's rate: a fresh window at 5/s
    assert statuses(client_, 6) == [200] * 5 + [429]


@pytest.mark.django_db
def test_an_unlimited_plan_is_never_rate_limited(alice):
    set_rate("starter", None)
    assert statuses(reader(alice), 25) == [200] * 25
    assert not list(client().scan_iter("aerolith:rate:*"))


@pytest.mark.django_db
def test_rate_limits_can_be_switched_off_by_setting(alice, settings):
    set_rate("starter", 1)
    settings.AEROLITH_RATE_LIMITS = False
    assert statuses(reader(alice), 3) == [200, 200, 200]


@pytest.mark.django_db
def test_the_window_is_shared_with_another_process_through_redis(alice):
    """Another process (like a second gunicorn worker) takes two requests of alice's three
    per second with its own Redis connection; this process gets the third only."""
    plan = set_rate("starter", 3)
    subscription = Subscription.objects.get(tenant=alice)
    client_ = reader(alice)
    before = api_calls(alice)
    outcomes = _admit_in_subprocess(alice.pk, plan.pk, 3, subscription, n=2)
    assert outcomes == ["ok", "ok"]
    assert statuses(client_, 2) == [200, 429]
    assert api_calls(alice) == before + 3  # both processes counted into the same hash


def test_without_a_frozen_clock_the_window_is_on_redis_time(db, alice):
    set_rate("starter", 4)
    client_ = reader(alice)
    saved = ratelimits._frozen_us[:]
    ratelimits._frozen_us.clear()  # unfreeze what the fixture froze
    try:
        before = _redis_now_us()
        assert statuses(client_, 1) == [200]
        after = _redis_now_us()
    finally:
        ratelimits._frozen_us[:] = saved
    tat = int(client().get(rate_key(alice.pk, 4)))
    interval, _ = gcra_args(4)
    assert before + interval <= tat <= after + interval
    ttl_ms = client().pttl(rate_key(alice.pk, 4))
    assert 0 < ttl_ms <= 2_000  # the key goes away once the window is idle


def test_refusal_exception_rounds_the_wait_up_to_whole_seconds():
    assert RateLimited(wait_us=1, per_second=5, plan_name="Free").wait == 1
    assert RateLimited(wait_us=1_000_001, per_second=1, plan_name="Free").wait == 2


# --- helpers --------------------------------------------------------------------------------

def _redis_now_us() -> int:
    seconds, micros = client().time()
    return seconds * ratelimits.MICROS + micros


_SUBPROCESS = """
import json, sys
from datetime import datetime
import django
django.setup()
from django.conf import settings
settings.AEROLITH_RATE_LIMITS = True
from billing.models import Plan, Subscription
from metering.ratelimits import RateLimited, frozen_clock
from metering.throttles import api_call_admit
from tenants.models import Tenant
tenant_id, plan_id, rate, start, end, at_us, n = sys.argv[1:]
plan = Plan.objects.get(pk=plan_id)
plan.api_rate_per_second = int(rate)  # the test's own edit is not committed
subscription = Subscription(tenant_id=int(tenant_id), plan=plan,
                            current_period_start=datetime.fromisoformat(start),
                            current_period_end=datetime.fromisoformat(end))
out = []
with frozen_clock(int(at_us)):
    for _ in range(int(n)):
        try:
            api_call_admit(Tenant(pk=int(tenant_id)), subscription)
            out.append("ok")
        except RateLimited:
            out.append("limited")
print(json.dumps(out))
"""


def _admit_in_subprocess(tenant_id, plan_id, rate, subscription, n) -> list[str]:
    from tests.conftest import child_database_url

    env = dict(os.environ, DJANGO_SETTINGS_MODULE=os.environ.get(
        "DJANGO_SETTINGS_MODULE", "aerolith.settings.test"), DATABASE_URL=child_database_url())
    done = subprocess.run(
        [sys.executable, "-c", _SUBPROCESS, str(tenant_id), str(plan_id), str(rate),
         subscription.current_period_start.isoformat(),
         subscription.current_period_end.isoformat(), str(ratelimits._frozen_us[-1]), str(n)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])
