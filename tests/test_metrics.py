"""Prometheus /metrics (SPEC §8): only on the public domain, only with the scrape token or
for signed-in staff; requests by route pattern and status, usage ingestion, Celery task
outcomes, database figures read at scrape time; every scrape parses as Prometheus text;
several processes add up in multiprocess mode."""
import subprocess
import sys
import uuid
from datetime import timedelta
from pathlib import Path

import orjson
import pytest
from django.test import Client
from prometheus_client.parser import text_string_to_metric_families

from aerolith import clock
from aerolith.celery import app as celery_app
from aerolith.metrics import exposition
from billing.models import Invoice, Payment
from metering.services.counters import client as redis_client
from provisioning.models import Cluster, Health
from tenants.models import User
from tests.conftest import PUBLIC_HOST, api_client, host_of, make_key

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "test-scrape-token-0123456789"


@pytest.fixture(autouse=True)
def scrape_token(settings):
    settings.AEROLITH_METRICS_TOKEN = TOKEN


def scrape(host=PUBLIC_HOST, token=TOKEN, client=None):
    client = client or Client(HTTP_HOST=host)
    headers = {"HTTP_AUTHORIZATION": f"Bearer {token}"} if token else {}
    return client.get("/metrics", **headers)


def samples(response=None) -> dict:
    """(name, frozenset(labels)) -> value, parsed with prometheus_client's own parser."""
    response = response or scrape()
    assert response.status_code == 200, response.content[:300]
    assert response["Content-Type"].startswith("text/plain; version=")
    out = {}
    for family in text_string_to_metric_families(response.content.decode()):
        for sample in family.samples:
            out[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return out


def value(data: dict, name: str, **labels) -> float:
    return data.get((name, frozenset(labels.items())), 0.0)


# --- who may scrape ------------------------------------------------------------------------

@pytest.mark.django_db
def test_scrape_needs_the_token_on_the_public_domain_and_is_a_404_otherwise(alice):
    assert scrape(token=None).status_code == 404
    assert scrape(token="wrong").status_code == 404
    no_scheme = Client(HTTP_HOST=PUBLIC_HOST).get("/metrics", HTTP_AUTHORIZATION=TOKEN)
    assert no_scheme.status_code == 404
    assert scrape().status_code == 200
    # A tenant's domain has no /metrics at all, token or not.
    assert scrape(host=host_of("alice")).status_code == 404
    assert scrape(host=host_of("charlie"), token=None).status_code == 404


@pytest.mark.django_db
def test_without_a_configured_token_no_bearer_is_accepted(settings):
    settings.AEROLITH_METRICS_TOKEN = ""
    assert scrape(token="").status_code == 404
    assert scrape(token=" ").status_code == 404


@pytest.mark.django_db
def test_signed_in_staff_may_scrape_customers_may_not(alice):
    customer = Client(HTTP_HOST=PUBLIC_HOST)
    customer.force_login(User.objects.get(email="owner@alice.test"))
    assert scrape(token=None, client=customer).status_code == 404
    staff_user = User.objects.create_user("ops@aerolith.test", "a-long-staff-password",
                                          is_staff=True)
    staff = Client(HTTP_HOST=PUBLIC_HOST)
    staff.force_login(staff_user)
    if hasattr(staff_user, "totpdevice_set"):  # django-otp: staff must have passed 2FA
        assert scrape(token=None, client=staff).status_code == 404
        _verify_otp(staff, staff_user)
    assert scrape(token=None, client=staff).status_code == 200


def _verify_otp(client, user):
    from django_otp import DEVICE_ID_SESSION_KEY

    from tenants.models import TotpDevice

    device = TotpDevice.objects.create_for(user, name="ops phone", confirmed=True)
    session = client.session
    session[DEVICE_ID_SESSION_KEY] = device.persistent_id
    session.save()


# --- requests --------------------------------------------------------------------------------

@pytest.mark.django_db
def test_requests_are_counted_by_route_pattern_and_status_never_by_raw_path(alice, charlie):
    before = samples()
    reader = api_client("alice", make_key(alice, ["read"]))
    assert reader.get("/api/v1/tenant").status_code == 200
    assert reader.get("/api/v1/tenant").status_code == 200
    assert reader.get("/api/v1/invoices/NO-SUCH-1").status_code == 404
    assert reader.get("/api/v1/invoices/NO-SUCH-2").status_code == 404
    assert api_client("charlie").get("/api/v1/tenant").status_code == 401
    assert Client(HTTP_HOST=PUBLIC_HOST).get("/no/such/page/123").status_code == 404
    assert Client(HTTP_HOST=PUBLIC_HOST).get("/healthz").status_code == 200
    after = samples()

    def moved(route, status, method="GET"):
        name = "aerolith_http_requests_total"
        labels = dict(method=method, route=route, status=status)
        return value(after, name, **labels) - value(before, name, **labels)

    assert moved("/api/v1/tenant", "200") == 2
    assert moved("/api/v1/tenant", "401") == 1
    # Counters live for the whole process: only routes this test moved count here.
    invoice_routes = {dict(labels)["route"] for name, labels in after
                      if name == "aerolith_http_requests_total"
                      and dict(labels)["route"].startswith("/api/v1/invoices/")
                      and moved(dict(labels)["route"], dict(labels)["status"],
                                dict(labels)["method"]) > 0}
    assert len(invoice_routes) == 1 and "NO-SUCH" not in next(iter(invoice_routes))
    assert moved(next(iter(invoice_routes)), "404") == 2
    assert moved("<unmatched>", "404") == 1
    assert moved("/healthz", "200") == 1
    assert not any("123" in dict(labels).get("route", "") for _, labels in after)
    count = value(after, "aerolith_http_request_duration_seconds_count", method="GET",
                  route="/api/v1/tenant")
    assert count - value(before, "aerolith_http_request_duration_seconds_count", method="GET",
                         route="/api/v1/tenant") == 3


# --- ingestion -------------------------------------------------------------------------------

@pytest.mark.django_db
def test_ingestion_counts_accepted_duplicate_and_rejected_events(alice):
    writer = api_client("alice", make_key(alice, ["usage:write"]))
    first, second = f"m-{uuid.uuid4()}", f"m-{uuid.uuid4()}"

    def post(events):
        response = writer.generic("POST", "/api/v1/usage/events", orjson.dumps(events),
                                  content_type="application/json")
        assert response.status_code == 202, response.content
        return response.json()

    before = samples()
    try:
        assert post([{"id": first, "meter": "compute_hours", "quantity": 1}])["accepted"] == 1
        result = post([{"id": first, "meter": "compute_hours", "quantity": 1},
                       {"id": second, "meter": "compute_hours", "quantity": 2},
                       {"id": "bad", "meter": "no_such_meter"}])
        assert (result["accepted"], result["duplicates"], len(result["rejected"])) == (1, 1, 1)
    finally:
        keys = list(redis_client().scan_iter("aerolith:usage*"))
        if keys:
            redis_client().delete(*keys)
    after = samples()
    for outcome, n in (("accepted", 2), ("duplicate", 1), ("rejected", 1)):
        labels = dict(outcome=outcome, source="api")
        assert (value(after, "aerolith_usage_events_total", **labels)
                - value(before, "aerolith_usage_events_total", **labels)) == n


# --- Celery ----------------------------------------------------------------------------------

@celery_app.task(name="tests.metrics.works")
def works():
    return 1


@celery_app.task(name="tests.metrics.fails")
def fails():
    raise ValueError("this task always fails")


@celery_app.task(name="tests.metrics.retries", bind=True, max_retries=1, default_retry_delay=0)
def retries(self):
    if self.request.retries == 0:
        raise self.retry()
    return "second time"


@pytest.mark.django_db
def test_task_outcomes_are_counted_by_task_name_in_eager_mode_too():
    before = samples()
    assert works.delay().get() == 1
    # As in a worker: not propagated to the caller (eager propagation skips the signals).
    assert fails.apply(throw=False).failed()
    assert retries.apply(throw=False).get() == "second time"  # eager: retried at once
    after = samples()

    def moved(task, outcome):
        labels = dict(task=task, outcome=outcome)
        return (value(after, "aerolith_celery_tasks_total", **labels)
                - value(before, "aerolith_celery_tasks_total", **labels))

    assert moved("tests.metrics.works", "success") == 1
    assert moved("tests.metrics.fails", "failure") == 1
    assert moved("tests.metrics.retries", "retry") == 1
    assert moved("tests.metrics.retries", "success") == 1


# --- figures from the database ---------------------------------------------------------------

@pytest.mark.django_db
def test_invoices_payments_and_clusters_come_from_the_database_at_scrape_time(alice, bob):
    now = clock.wall_now()
    period = dict(period_start=now - timedelta(days=30), period_end=now)
    issued = Invoice.objects.create(tenant=alice, status="open", finalized_at=now,
                                    number=f"MT-{uuid.uuid4().hex[:8]}", **period)
    Invoice.objects.create(tenant=bob, status="draft", **period)
    Payment.objects.create(tenant=alice, invoice=issued, method="card", status="failed",
                           amount_cents=2900)
    Payment.objects.create(tenant=alice, invoice=issued, method="card", status="succeeded",
                           amount_cents=2900)
    Cluster.objects.create(tenant=bob, name="m1", handle=f"metrics-{uuid.uuid4().hex[:8]}",
                           region="eu-central", health=Health.DEGRADED)
    data = samples()
    for status in ("open", "draft"):
        assert value(data, "aerolith_invoices", status=status) == \
            Invoice.objects.filter(status=status).count() >= 1
    assert value(data, "aerolith_invoices_issued_total") == \
        Invoice.objects.filter(finalized_at__isnull=False).count() >= 1
    for status in ("failed", "succeeded"):
        assert value(data, "aerolith_payments", status=status, method="card") == \
            Payment.objects.filter(status=status, method="card").count() >= 1
    assert value(data, "aerolith_clusters", health="degraded") == \
        Cluster.objects.filter(health="degraded").count() >= 1
    # A later scrape sees a change at once: nothing is cached in the process.
    Cluster.objects.filter(health="degraded").update(health=Health.HEALTHY)
    data = samples()
    assert value(data, "aerolith_clusters", health="degraded") == 0
    assert value(data, "aerolith_clusters", health="healthy") == \
        Cluster.objects.filter(health="healthy").count()


# --- several processes -----------------------------------------------------------------------

_CHILD = """
from aerolith.metrics import CELERY_TASKS, usage_ingested
usage_ingested(accepted=3, duplicates=1, rejected=0, source="api")
CELERY_TASKS.labels("tests.child", "success").inc()
"""


@pytest.mark.django_db
def test_multiprocess_mode_adds_up_every_process(tmp_path, monkeypatch):
    """Two processes (like two gunicorn workers, or a worker and the web) write their
    counters to PROMETHEUS_MULTIPROC_DIR; one scrape sums them."""
    env = {"PROMETHEUS_MULTIPROC_DIR": str(tmp_path), "PATH": "/usr/bin:/bin"}
    for _ in range(2):
        done = subprocess.run([sys.executable, "-c", _CHILD], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
    assert len(list(tmp_path.glob("counter_*.db"))) == 2
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    text = exposition().decode()
    data = {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}
    assert value(data, "aerolith_usage_events_total", outcome="accepted", source="api") == 6
    assert value(data, "aerolith_usage_events_total", outcome="duplicate", source="api") == 2
    assert value(data, "aerolith_celery_tasks_total", task="tests.child", outcome="success") == 2
    assert ("aerolith_invoices_issued_total", frozenset()) in data  # database figures too
