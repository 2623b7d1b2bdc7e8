"""Security checks run by CI through the test command (SPEC §8, issue 8 item 9):
bandit finds nothing, the production settings pass `check --deploy`, and schemathesis,
fuzzing the tenant API from its own OpenAPI schema, provokes no 5xx.

pip-audit is not here: it needs the PyPI/OSV vulnerability service, which this CI cannot
reach (see the README's Security section for running it elsewhere).
"""
import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from django.db import connection
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable

from tests.conftest import host_of, make_key

ROOT = Path(__file__).resolve().parent.parent
BANDIT_TARGETS = ["aerolith", "tenants", "billing", "metering", "provisioning", "aerolith_cli"]


def test_bandit_reports_no_issue():
    """Findings judged safe carry `# nosec BXXX - reason` (listed in the README)."""
    result = subprocess.run(
        [sys.executable, "-m", "bandit", "-r", *BANDIT_TARGETS, "-c", "pyproject.toml",
         "-f", "json", "-q"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    report = json.loads(result.stdout)
    issues = [f"{r['filename']}:{r['line_number']} {r['test_id']} {r['issue_text']}"
              for r in report["results"]]
    assert not issues, "bandit found:\n" + "\n".join(issues)
    assert not report["errors"], report["errors"]
    assert result.returncode == 0, result.stderr[-2000:]


def test_production_settings_pass_check_deploy():
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "AEROLITH_"))}
    env.update(DJANGO_SETTINGS_MODULE="aerolith.settings.production",
               DJANGO_SECRET_KEY=secrets.token_urlsafe(50),
               DJANGO_ALLOWED_HOSTS="aerolith.example.com,.aerolith.example.com",
               AEROLITH_BASE_DOMAIN="aerolith.example.com")
    result = subprocess.run([sys.executable, "manage.py", "check", "--deploy", "--fail-level",
                             "WARNING"], cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_production_settings_refuse_a_missing_or_weak_secret_key():
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "AEROLITH_"))}
    env.update(DJANGO_SETTINGS_MODULE="aerolith.settings.production",
               DJANGO_ALLOWED_HOSTS="aerolith.example.com", AEROLITH_BASE_DOMAIN="aerolith.example.com")
    missing = subprocess.run([sys.executable, "manage.py", "check"], cwd=ROOT, env=env,
                             capture_output=True, text=True, timeout=120)
    assert missing.returncode != 0 and "DJANGO_SECRET_KEY" in missing.stderr
    weak = subprocess.run([sys.executable, "manage.py", "check"], cwd=ROOT,
                          env={**env, "DJANGO_SECRET_KEY": "short"}, capture_output=True,
                          text=True, timeout=120)
    assert weak.returncode != 0 and "at least 50" in weak.stderr


# --- schemathesis -------------------------------------------------------------------------

# Operations left out, and why: they act outside the test's database transaction, so
# what they do would not be rolled back (and is covered by their own tests).
EXCLUDED = {
    ("POST", "/api/v1/databases"): "creates a database on a real PostgreSQL server",
    ("POST", "/api/v1/databases/{id}/query"): "runs SQL on a real PostgreSQL server",
}
EXCLUDED_PATH_WORDS = {
    "webhook": "delivers HTTP requests to the generated URLs",
    "sso": "fetches the generated issuer's discovery document over HTTP",
    "export": "writes archive files outside the database",
    "erasure": "drops schemas and databases",
}
MAX_EXAMPLES = 20


@pytest.fixture
def fuzz_target(bob, monkeypatch):
    """Bob's API as its owner's key with every scope; cluster operations are recorded but
    not run (running one would start PostgreSQL servers)."""
    from django.core.signals import request_finished, request_started
    from django.db import close_old_connections

    from tenants.permissions import ALL_SCOPES

    monkeypatch.setattr("provisioning.services.operations._enqueue", lambda operation_id: None)
    key = make_key(bob, list(ALL_SCOPES), name="schemathesis")
    # The raw WSGI app closes the database connection after each request, which would end
    # the test's transaction; Django's test client disconnects this the same way.
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield f"http://{host_of('bob')}", {"Authorization": f"Bearer {key}"}
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


def _operations(base_url: str):
    import schemathesis

    from aerolith.wsgi import application

    schema = schemathesis.openapi.from_wsgi("/api/schema/", application,
                                            headers={"Host": base_url.split("//")[1]})
    only = os.environ.get("AEROLITH_FUZZ_ONLY")  # a path fragment, to rerun one failure
    for result in schema.get_all_operations():
        operation = result.ok()
        path = operation.path
        if not path.startswith("/api/v1/") or path in ("/api/v1/signup", "/api/v1/plans"):
            continue  # the public domain's operations
        if only and only not in path:
            continue
        if operation.method.upper() not in ("GET", "POST"):
            continue
        if (operation.method.upper(), path) in EXCLUDED:
            continue
        if any(word in path for word in EXCLUDED_PATH_WORDS):
            continue
        yield operation


@pytest.mark.django_db
def test_schemathesis_finds_no_server_error(fuzz_target):
    from schemathesis.checks import not_a_server_error

    base_url, headers = fuzz_target
    failures, fuzzed = [], []
    for operation in _operations(base_url):
        fuzzed.append(f"{operation.method.upper()} {operation.path}")

        @settings(max_examples=MAX_EXAMPLES, derandomize=True, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck), print_blob=False)
        @given(case=operation.as_strategy())
        def fuzz(case):
            response = case.call(base_url=base_url, headers=headers)
            connection.set_schema_to_public()
            case.validate_response(response, checks=[not_a_server_error])

        try:
            fuzz()
        except Unsatisfiable:
            continue
        except (Exception, BaseExceptionGroup) as error:  # noqa: BLE001 - collect them all
            failures.append(f"{fuzzed[-1]}: {str(error)[:1500]}")
    assert len(fuzzed) >= (1 if os.environ.get("AEROLITH_FUZZ_ONLY") else 25), fuzzed
    assert not failures, "\n\n".join(failures)
