"""The simulated clock (SPEC §9): aerolith.clock, test clocks and the tenant's due work,
driven through the services, the API, the management command and the beat task."""
from datetime import UTC, datetime, timedelta

import pytest
from dateutil.relativedelta import relativedelta
from django.core.management import CommandError, call_command
from django.db import connection
from django_tenants.utils import tenant_context

from aerolith import clock
from tenants.models import AuditEvent, ScheduledJob, TestClock
from tenants.services.clocks import tenant_clock_advance, tenant_clock_attach
from tenants.services.scheduling import (
    MAX_ATTEMPTS,
    due_work_run,
    job_handler,
    job_schedule,
    tenants_with_due_work,
)
from tenants.tasks import dispatch_due_work
from tests.conftest import add_member, api_client, assert_problem, jwt_for, make_key

T0 = datetime(2030, 1, 15, 9, 0, tzinfo=UTC)
DAY = timedelta(days=1)

# What the test handlers saw: (kind, tenant slug, job key, the tenant's clock, schema).
RUNS: list[tuple[str, str, str, datetime, str]] = []


def _record(job: ScheduledJob) -> None:
    RUNS.append((job.kind, job.tenant.slug, job.key, clock.now(job.tenant), connection.schema_name))


@job_handler("test.record")
def _record_handler(job: ScheduledJob) -> None:
    _record(job)


@job_handler("test.monthly")
def _monthly_renewal(job: ScheduledJob) -> None:
    """Like a renewal: does its work, then schedules the next period's."""
    _record(job)
    number = job.payload["n"] + 1
    job_schedule(tenant=job.tenant, kind="test.monthly", key=f"renewal-{number}",
                 due_at=job.due_at + relativedelta(months=1), payload={"n": number})


@job_handler("test.fail")
def _failing_handler(job: ScheduledJob) -> None:
    _record(job)
    raise RuntimeError("boom: the gateway is down")


@pytest.fixture(autouse=True)
def _fresh_runs():
    RUNS.clear()
    yield
    RUNS.clear()


def _runs(kinds=("test.record", "test.monthly", "test.fail")):
    return [(slug, key, at) for kind, slug, key, at, _ in RUNS if kind in kinds]


def _frozen(tenant) -> datetime | None:
    return TestClock.objects.filter(tenant=tenant).values_list("frozen_time", flat=True).first()


def _job(tenant, key, due_at, kind="test.record", payload=None) -> ScheduledJob:
    return job_schedule(tenant=tenant, kind=kind, key=key, due_at=due_at, payload=payload)


def _status(job) -> str:
    job.refresh_from_db()
    return job.status


# --- aerolith.clock -----------------------------------------------------------------------

@pytest.mark.django_db
def test_clock_now_is_wall_time_for_a_tenant_without_test_clock(alice):
    before = clock.wall_now()
    now = clock.now(alice)
    assert before <= now <= clock.wall_now()
    assert now.tzinfo is not None


@pytest.mark.django_db
def test_clock_now_returns_the_tenants_frozen_time_and_only_that_tenants(alice, bob):
    tenant_clock_attach(tenant=alice, actor="system", at=T0)
    assert clock.now(alice) == T0
    assert abs(clock.now(bob) - clock.wall_now()) < timedelta(seconds=5)
    assert abs(clock.now() - clock.wall_now()) < timedelta(seconds=5)  # public connection


@pytest.mark.django_db
def test_clock_now_defaults_to_the_tenant_of_the_connection(alice):
    tenant_clock_attach(tenant=alice, actor="system", at=T0)
    with tenant_context(alice):
        assert clock.now() == T0


@pytest.mark.django_db
def test_clock_now_ignores_test_clocks_outside_test_mode(alice, settings):
    tenant_clock_attach(tenant=alice, actor="system", at=T0)
    settings.AEROLITH_TEST_MODE = False
    assert abs(clock.now(alice) - clock.wall_now()) < timedelta(seconds=5)


@pytest.mark.django_db
def test_attaching_a_clock_is_idempotent_and_audited_once(alice):
    first = tenant_clock_attach(tenant=alice, actor="system", at=T0)
    second = tenant_clock_attach(tenant=alice, actor="system", at=T0 + DAY)
    assert first.pk == second.pk and _frozen(alice) == T0
    assert AuditEvent.objects.filter(tenant=alice, action="test_clock.attached").count() == 1


# --- advancing runs due work --------------------------------------------------------------

@pytest.mark.django_db
def test_advancing_five_days_runs_jobs_due_at_one_and_three_days_in_order_at_their_due_time(alice):
    tenant_clock_attach(tenant=alice, actor="system", at=T0)
    # Scheduled out of order, so that ids do not give the order away.
    later = _job(alice, "plus-10d", T0 + 10 * DAY)
    third = _job(alice, "plus-3d", T0 + 3 * DAY)
    first = _job(alice, "plus-1d", T0 + DAY)

    test_clock, ran = tenant_clock_advance(tenant=alice, actor="system", seconds=5 * 86400)

    assert _runs() == [("alice", "plus-1d", T0 + DAY), ("alice", "plus-3d", T0 + 3 * DAY)]
    assert [j.key for j in ran if j.kind.startswith("test.")] == ["plus-1d", "plus-3d"]
    assert test_clock.frozen_time == _frozen(alice) == T0 + 5 * DAY
    for job, due in ((first, T0 + DAY), (third, T0 + 3 * DAY)):
        job.refresh_from_db()
        assert (job.status, job.attempts, job.completed_at) == ("done", 1, due)
    assert _status(later) == "pending"


@pytest.mark.django_db
def test_jobs_run_in_the_tenants_schema(alice):
    tenant_clock_attach(tenant=alice, actor="system", at=T0)
    _job(alice, "schema", T0 + DAY)
    tenant_clock_advance(tenant=alice, actor="system", seconds=2 * 86400)
    assert [schema for *_, schema in RUNS] == [alice.schema_name]


@pytest.mark.django_db
def test_jobs_due_exactly_at_the_target_run_and_one_second_later_do_not(alice):
    tenant_clock_attach(tenant=alice, actor="system", at=T0)
    _job(alice, "on-target", T0 + DAY)
    after = _job(alice, "after-target", T0 + DAY + timedelta(seconds=1))
    tenant_clock_advance(tenant=alice, actor="system", to=T0 + DAY)
    assert [key for _, key, _ in _runs()] == ["on-target"]
    assert _status(after) == "pending"


@pytest.mark.django_db
def test_overdue_jobs_run_at_the_current_clock_time_without_moving_it_back(alice):
    tenant_clock_attach(tenant=alice, actor="system", at=T0)
    _job(alice, "overdue", T0 - 3 * DAY)
    tenant_clock_advance(tenant=alice, actor="system", seconds=60)
    assert _runs() == [("alice", "overdue", T0)]
    assert _frozen(alice) == T0 + timedelta(seconds=60)


@pytest.mark.django_db
@pytest.mark.parametrize("bob_has_clock", [False, True], ids=["bob-wall-clock", "bob-test-clock"])
def test_advancing_one_tenant_leaves_other_tenants_jobs_alone(alice, bob, charlie, bob_has_clock):
    tenant_clock_attach(tenant=alice, actor="system", at=T0)
    if bob_has_clock:
        tenant_clock_attach(tenant=bob, actor="system", at=T0)
        bob_job = _job(bob, "bob-1d", T0 + DAY)
    else:
        bob_job = _job(bob, "bob-1d", clock.wall_now() + DAY)
    charlie_job = _job(charlie, "charlie-1d", T0 + DAY)
    _job(alice, "alice-1d", T0 + DAY)

    tenant_clock_advance(tenant=alice, actor="system", seconds=5 * 86400)

    assert _runs() == [("alice", "alice-1d", T0 + DAY)]
    assert _status(bob_job) == "pending" and _status(charlie_job) == "pending"
    assert _frozen(bob) == (T0 if bob_has_clock else None)
    assert _frozen(charlie) is None


@pytest.mark.django_db
def test_a_handler_that_schedules_the_next_job_is_chained_through_a_year(alice):
    tenant_clock_attach(tenant=alice, actor="system", at=T0)
    _job(alice, "renewal-1", T0 + relativedelta(months=1), kind="test.monthly", payload={"n": 1})

    _, ran = tenant_clock_advance(tenant=alice, actor="system", seconds=365 * 86400)

    expected = [("alice", f"renewal-{n}", T0 + relativedelta(months=n)) for n in range(1, 13)]
    assert _runs() == expected
    assert [j.key for j in ran if j.kind == "test.monthly"] == [key for _, key, _ in expected]
    pending = ScheduledJob.objects.get(tenant=alice, kind="test.monthly", status="pending")
    assert (pending.key, pending.due_at) == ("renewal-13", T0 + relativedelta(months=13))
    assert _frozen(alice) == T0 + 365 * DAY


@pytest.mark.django_db
def test_advancing_in_small_steps_runs_the_same_jobs_as_one_big_step(alice):
    tenant_clock_attach(tenant=alice, actor="system", at=T0)
    _job(alice, "renewal-1", T0 + relativedelta(months=1), kind="test.monthly", payload={"n": 1})
    for _ in range(12):
        tenant_clock_advance(tenant=alice, actor="system", seconds=31 * 86400)
    assert [key for _, key, _ in _runs()] == [f"renewal-{n}" for n in range(1, 13)]


@pytest.mark.django_db
def test_running_due_work_twice_runs_each_job_once(alice):
    tenant_clock_attach(tenant=alice, actor="system", at=T0)
    job = _job(alice, "once", T0 + DAY)
    tenant_clock_advance(tenant=alice, actor="system", seconds=2 * 86400)
    assert due_work_run(tenant=alice) == []
    tenant_clock_advance(tenant=alice, actor="system", seconds=60)
    assert _runs() == [("alice", "once", T0 + DAY)]
    job.refresh_from_db()
    assert (job.status, job.attempts) == ("done", 1)


@pytest.mark.django_db
def test_scheduling_the_same_kind_and_key_twice_makes_one_job(alice):
    first = _job(alice, "same-key", T0 + DAY)
    second = _job(alice, "same-key", T0 + 2 * DAY)
    assert first.pk == second.pk and second.due_at == T0 + DAY
    assert ScheduledJob.objects.filter(tenant=alice, key="same-key").count() == 1


@pytest.mark.django_db
def test_scheduling_an_unregistered_kind_is_refused(alice):
    with pytest.raises(ValueError, match="No handler"):
        _job(alice, "x", T0, kind="test.nobody-handles-this")
    assert not ScheduledJob.objects.filter(tenant=alice, kind="test.nobody-handles-this").exists()


@pytest.mark.django_db
def test_a_failing_handler_records_its_error_and_later_jobs_still_run(alice):
    tenant_clock_attach(tenant=alice, actor="system", at=T0)
    failing = _job(alice, "fails", T0 + DAY, kind="test.fail")
    later = _job(alice, "after-failure", T0 + 2 * DAY)

    _, ran = tenant_clock_advance(tenant=alice, actor="system", seconds=3 * 86400)

    failing.refresh_from_db()
    assert failing.status == "pending" and failing.attempts == 1
    assert failing.last_error == "RuntimeError: boom: the gateway is down"
    assert failing.completed_at is None
    assert [j.key for j in ran if j.kind.startswith("test.")] == ["after-failure"]
    assert _status(later) == "done"
    assert _frozen(alice) == T0 + 3 * DAY


@pytest.mark.django_db
def test_a_job_failing_every_attempt_is_marked_failed_and_not_retried(alice):
    tenant_clock_attach(tenant=alice, actor="system", at=T0)
    failing = _job(alice, "always-fails", T0 + DAY, kind="test.fail")
    tenant_clock_advance(tenant=alice, actor="system", seconds=2 * 86400)
    for _ in range(MAX_ATTEMPTS + 2):
        due_work_run(tenant=alice)
    failing.refresh_from_db()
    assert (failing.status, failing.attempts) == ("failed", MAX_ATTEMPTS)
    assert len(_runs()) == MAX_ATTEMPTS


# --- the dispatcher -----------------------------------------------------------------------

@pytest.mark.django_db
def test_tenants_with_due_work_go_by_each_tenants_own_clock(alice, bob, charlie):
    wall = clock.wall_now()
    # alice's clock stands ten days back: a job due five days ago by the wall is not due
    # for her yet.
    tenant_clock_attach(tenant=alice, actor="system", at=wall - 10 * DAY)
    _job(alice, "alice-past-by-wall", wall - 5 * DAY)
    _job(bob, "bob-due-1", wall - timedelta(minutes=1))
    _job(bob, "bob-due-2", wall - timedelta(minutes=2))
    _job(charlie, "charlie-future", wall + DAY)

    assert tenants_with_due_work() == [bob.pk]

    tenant_clock_advance(tenant=alice, actor="system", seconds=4 * 86400)
    assert sorted(tenants_with_due_work()) == [bob.pk]  # alice's job still ahead by 1 day
    ScheduledJob.objects.filter(tenant=alice).update(due_at=wall - 7 * DAY)
    assert sorted(tenants_with_due_work()) == sorted([alice.pk, bob.pk])


@pytest.mark.django_db
def test_tenants_with_due_work_ignores_test_clocks_outside_test_mode(alice, settings):
    wall = clock.wall_now()
    tenant_clock_attach(tenant=alice, actor="system", at=wall - 10 * DAY)
    _job(alice, "due-by-wall", wall - 5 * DAY)
    settings.AEROLITH_TEST_MODE = False
    assert tenants_with_due_work() == [alice.pk]


@pytest.mark.django_db
def test_beat_dispatch_runs_due_work_of_every_due_tenant_by_its_clock(alice, bob, charlie):
    wall = clock.wall_now()
    tenant_clock_attach(tenant=alice, actor="system", at=T0)
    _job(alice, "alice-due", T0 - DAY)
    _job(alice, "alice-not-yet", T0 + DAY)
    _job(bob, "bob-due", wall - timedelta(minutes=5))
    charlie_job = _job(charlie, "charlie-future", wall + DAY)

    assert dispatch_due_work.delay().get() == 2  # eager in test settings

    assert sorted((slug, key) for slug, key, _ in _runs()) == [
        ("alice", "alice-due"), ("bob", "bob-due")]
    assert ("alice", "alice-due", T0) in _runs()
    assert _status(charlie_job) == "pending"
    assert dispatch_due_work() == 0  # nothing left: a second beat runs nothing


# --- the API ------------------------------------------------------------------------------

@pytest.fixture
def clock_client(alice):
    return api_client("alice", make_key(alice, ["read", "test_clock:write"]))


def _iso(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


@pytest.mark.django_db
def test_api_advance_by_seconds_runs_due_work_and_returns_the_new_time(alice, clock_client):
    tenant_clock_attach(tenant=alice, actor="system", at=T0)
    _job(alice, "plus-1d", T0 + DAY)
    _job(alice, "plus-10d", T0 + 10 * DAY)

    response = clock_client.post("/api/v1/test-clock/advance", {"seconds": 2 * 86400},
                                 format="json")

    assert response.status_code == 200, response.content
    body = response.json()
    assert body["frozen_time"] == _iso(T0 + 2 * DAY)
    assert [j for j in body["jobs_run"] if j["kind"].startswith("test.")] == [
        {"kind": "test.record", "key": "plus-1d", "due_at": _iso(T0 + DAY)}]
    assert _frozen(alice) == T0 + 2 * DAY
    assert clock_client.get("/api/v1/test-clock").json() == {"frozen_time": _iso(T0 + 2 * DAY)}


@pytest.mark.django_db
def test_api_advance_to_a_time_attaches_a_clock_when_there_is_none(alice, clock_client):
    target = clock.wall_now().replace(microsecond=0) + 30 * DAY
    response = clock_client.post("/api/v1/test-clock/advance", {"to": _iso(target)}, format="json")
    assert response.status_code == 200, response.content
    assert response.json()["frozen_time"] == _iso(target)
    assert _frozen(alice) == target
    assert clock.now(alice) == target


@pytest.mark.django_db
def test_api_advance_to_accepts_any_offset_and_stores_utc(alice, clock_client):
    tenant_clock_attach(tenant=alice, actor="system", at=T0)
    response = clock_client.post("/api/v1/test-clock/advance",
                                 {"to": "2030-01-20T12:00:00+02:00"}, format="json")
    assert response.status_code == 200, response.content
    assert response.json()["frozen_time"] == "2030-01-20T10:00:00Z"


def _bad_bodies():
    return [
        pytest.param({"seconds": 60, "to": "2030-02-01T00:00:00Z"}, "seconds", id="both"),
        pytest.param({}, "seconds", id="neither"),
        pytest.param({"seconds": -60}, "seconds", id="negative-seconds"),
        pytest.param({"seconds": 0}, "seconds", id="zero-seconds"),
        pytest.param({"seconds": 10**30}, "seconds", id="huge-seconds"),
        pytest.param({"seconds": "soon"}, "seconds", id="text-seconds"),
        pytest.param({"seconds": 1.5}, "seconds", id="fractional-seconds"),
        pytest.param({"to": "2030-01-14T09:00:00Z"}, "to", id="to-in-the-past"),
        pytest.param({"to": "2033-02-01T00:00:00Z"}, "to", id="to-over-three-years"),
        pytest.param({"to": "next tuesday"}, "to", id="to-not-a-time"),
        pytest.param({"to": "9999-12-31T23:59:59-05:00"}, "to", id="to-overflows"),
    ]


@pytest.mark.django_db
@pytest.mark.parametrize("body, field", _bad_bodies())
def test_api_advance_refuses_bad_input_and_leaves_the_clock_alone(alice, clock_client, body, field):
    tenant_clock_attach(tenant=alice, actor="system", at=T0)
    job = _job(alice, "plus-1d", T0 + DAY)
    audit_before = AuditEvent.objects.filter(tenant=alice).count()

    response = clock_client.post("/api/v1/test-clock/advance", body, format="json")

    problem = assert_problem(response, 400, "validation_error")
    assert field in {e["field"] for e in problem["errors"]}, problem
    assert _frozen(alice) == T0
    assert _status(job) == "pending" and RUNS == []
    assert AuditEvent.objects.filter(tenant=alice).count() == audit_before


@pytest.mark.django_db
def test_api_advance_refused_without_a_clock_attaches_none(alice, clock_client):
    audit_before = AuditEvent.objects.filter(tenant=alice).count()
    response = clock_client.post("/api/v1/test-clock/advance",
                                 {"to": "2001-01-01T00:00:00Z"}, format="json")
    body = assert_problem(response, 400, "validation_error")
    assert body["errors"][0]["code"] == "in_the_past"
    assert _frozen(alice) is None
    assert AuditEvent.objects.filter(tenant=alice).count() == audit_before


@pytest.mark.django_db
def test_api_advance_refuses_non_json_bodies(alice, clock_client):
    tenant_clock_attach(tenant=alice, actor="system", at=T0)
    assert_problem(clock_client.post("/api/v1/test-clock/advance", "seconds=60",
                                     content_type="application/x-www-form-urlencoded"),
                   415, "unsupported_media_type")
    assert_problem(clock_client.post("/api/v1/test-clock/advance", "{seconds: 60",
                                     content_type="application/json"), 400, "malformed_request")
    assert_problem(clock_client.post("/api/v1/test-clock/advance", "[60]",
                                     content_type="application/json"), 400, "validation_error")
    assert _frozen(alice) == T0


@pytest.mark.django_db
def test_api_test_clock_answers_404_outside_test_mode(alice, clock_client, settings):
    settings.AEROLITH_TEST_MODE = False
    response = clock_client.post("/api/v1/test-clock/advance", {"seconds": 60}, format="json")
    assert_problem(response, 404, "test_mode_only")
    assert_problem(clock_client.get("/api/v1/test-clock"), 404, "test_mode_only")
    assert _frozen(alice) is None


@pytest.mark.django_db
def test_api_advance_needs_the_test_clock_scope_or_an_admin_role(alice):
    read_only = api_client("alice", make_key(alice, ["read"]))
    assert_problem(read_only.post("/api/v1/test-clock/advance", {"seconds": 60}, format="json"),
                   403, "insufficient_scope")
    add_member(alice, "dev@alice.test", "developer")
    developer = api_client("alice", jwt_for("alice", "dev@alice.test"))
    assert_problem(developer.post("/api/v1/test-clock/advance", {"seconds": 60}, format="json"),
                   403, "role_not_allowed")
    assert_problem(api_client("alice").post("/api/v1/test-clock/advance", {"seconds": 60},
                                            format="json"), 401)
    assert _frozen(alice) is None
    add_member(alice, "admin@alice.test", "admin")
    admin = api_client("alice", jwt_for("alice", "admin@alice.test"))
    response = admin.post("/api/v1/test-clock/advance", {"seconds": 60}, format="json")
    assert response.status_code == 200


@pytest.mark.django_db
def test_api_get_test_clock_without_one_is_404(clock_client):
    assert_problem(clock_client.get("/api/v1/test-clock"), 404, "not_found")


# --- the management command ---------------------------------------------------------------

@pytest.mark.django_db
def test_command_advances_by_days_and_lists_the_jobs_it_ran(alice, capsys):
    tenant_clock_attach(tenant=alice, actor="system", at=T0)
    _job(alice, "plus-1d", T0 + DAY)
    call_command("test_clock", "alice", days=3)
    assert _frozen(alice) == T0 + 3 * DAY
    assert _runs() == [("alice", "plus-1d", T0 + DAY)]
    out = capsys.readouterr().out
    assert "test clock now 2030-01-18T09:00:00+00:00" in out and "plus-1d" in out


@pytest.mark.django_db
def test_command_attaches_a_clock_and_moves_to_a_time(alice, capsys):
    call_command("test_clock", "alice")
    attached = _frozen(alice)
    assert attached is not None and abs(attached - clock.wall_now()) < timedelta(seconds=5)
    target = (attached + 40 * DAY).replace(microsecond=0)
    call_command("test_clock", "alice", to=target.isoformat())
    assert _frozen(alice) == target
    call_command("test_clock", "alice", seconds=90)
    assert _frozen(alice) == target + timedelta(seconds=90)


@pytest.mark.django_db
@pytest.mark.parametrize("slug", ["nobody", "public"])
def test_command_refuses_an_unknown_tenant(slug):
    with pytest.raises(CommandError, match="No tenant"):
        call_command("test_clock", slug, days=3)
    assert not TestClock.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize("options, message", [
    ({"days": 0}, "must be positive"),
    ({"days": -3}, "must be positive"),
    ({"seconds": 0}, "must be positive"),
    ({"seconds": -1}, "must be positive"),
    ({"days": 10**12}, "three years"),
    ({"days": 4 * 366}, "three years"),
    ({"to": "2030-01-01T00:00:00Z"}, "only moves forward"),
    ({"to": "2030-01-15"}, "ISO-8601"),
    ({"to": "2030-13-45T00:00:00Z"}, "ISO-8601"),
    ({"to": "2030-02-01T00:00:00"}, "with a zone"),
])
def test_command_refuses_bad_values_and_changes_nothing(alice, options, message):
    tenant_clock_attach(tenant=alice, actor="system", at=T0)
    job = _job(alice, "plus-1d", T0 + DAY)
    with pytest.raises(CommandError, match=message):
        call_command("test_clock", "alice", **options)
    assert _frozen(alice) == T0
    assert _status(job) == "pending"


@pytest.mark.django_db
def test_command_refuses_outside_test_mode(alice, settings):
    settings.AEROLITH_TEST_MODE = False
    with pytest.raises(CommandError, match="AEROLITH_TEST_MODE"):
        call_command("test_clock", "alice", days=1)
    assert _frozen(alice) is None
