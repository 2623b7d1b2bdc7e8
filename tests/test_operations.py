"""Operations: health endpoints, readiness with a real Celery worker, structured logs."""
import io
import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection
from django.test import Client

from tenants.models import PooledSchema
from tests.conftest import api_client, child_database_url, jwt_for

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def celery_worker_process(django_db_setup):
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "aerolith.settings.base",
        "DATABASE_URL": child_database_url(),
        "REDIS_URL": settings.REDIS_URL,
        "AEROLITH_SCHEMA_POOL_SIZE": "1",
        "AEROLITH_TEST_MODE": "1",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "aerolith", "worker", "--pool", "solo",
         "--loglevel", "WARNING", "--hostname", f"test-{os.getpid()}@%h"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    from aerolith.celery import app

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"worker exited: {process.stderr.read().decode()[-2000:]}")
        if app.control.ping(timeout=0.5):
            break
    else:
        process.kill()
        pytest.fail("the Celery worker did not answer a ping within 60 s")
    yield process
    process.terminate()
    process.wait(timeout=30)


@pytest.mark.parametrize("host", ["127.0.0.1", "aerolith.localhost", "alice.aerolith.localhost",
                                  "unknown.example.org"])
def test_healthz_answers_on_any_host_without_touching_the_database(host):
    response = Client(HTTP_HOST=host).get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


@pytest.mark.django_db
def test_readyz_names_the_dependency_that_is_down(settings):
    settings.REDIS_URL = "redis://127.0.0.1:1/0"  # nothing listens on port 1
    response = Client(HTTP_HOST="127.0.0.1").get("/readyz")
    assert response.status_code == 503
    checks = response.json()["checks"]
    assert checks["database"]["status"] == "ok"
    assert checks["redis"]["status"] == "error" and checks["redis"]["detail"]


@pytest.mark.django_db
def test_readyz_is_ok_with_database_redis_and_a_real_worker(celery_worker_process):
    response = Client(HTTP_HOST="127.0.0.1").get("/readyz")
    body = response.json()
    assert response.status_code == 200, body
    assert {name: c["status"] for name, c in body["checks"].items()} == {
        "database": "ok", "redis": "ok", "celery": "ok"}


def test_a_real_worker_runs_a_task_against_the_database(celery_worker_process, django_db_blocker):
    """The worker process (not eager mode) refills the schema pool in the test database."""
    from aerolith.celery import app

    app.conf.task_always_eager = False  # send to the real worker, read the real result
    with django_db_blocker.unblock():
        before = set(PooledSchema.objects.values_list("schema_name", flat=True))
        made = app.send_task("tenants.tasks.refill_schema_pool").get(timeout=120)  # noqa
        after = set(PooledSchema.objects.values_list("schema_name", flat=True))
        try:
            assert made == len(after - before) == 1
            with connection.cursor() as cursor:
                cursor.execute("SELECT count(*) FROM information_schema.tables WHERE table_schema = %s",
                               [next(iter(after - before))])
                assert cursor.fetchone()[0] >= 2  # django_migrations and tenants_apikey
        finally:
            from tenants.services.schemas import schema_pool_refresh

            PooledSchema.objects.filter(schema_name__in=after - before).update(fingerprint="stale")
            schema_pool_refresh()
            app.conf.task_always_eager = True


@pytest.mark.django_db
def test_logs_are_json_with_request_id_tenant_and_user(alice):
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    formatter_config = settings.LOGGING["formatters"]["json"]
    from pythonjsonlogger.json import JsonFormatter

    from aerolith.logging import ContextFilter

    handler.setFormatter(JsonFormatter(formatter_config["fmt"],
                                       rename_fields=formatter_config["rename_fields"]))
    handler.addFilter(ContextFilter())
    logger = logging.getLogger("django.request")
    logger.addHandler(handler)
    try:
        token = jwt_for("alice", "owner@alice.test")
        response = api_client("alice", token).get("/api/v1/api-keys/999", HTTP_X_REQUEST_ID="req-42")
        assert response.status_code == 404
        assert response["X-Request-ID"] == "req-42"
    finally:
        logger.removeHandler(handler)
    records = [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]
    assert records, "django.request logged nothing for a 404"
    record = records[-1]
    assert record["request_id"] == "req-42"
    assert record["tenant"] == "alice"
    assert record["user"] == "owner@alice.test"
    assert record["level"] == "WARNING"
