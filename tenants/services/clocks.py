"""Test clocks (test mode only): attach a simulated time to a tenant and move it forward,
running the tenant's due work in order on the way, like Stripe's test clocks."""
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction

from aerolith import clock
from aerolith.errors import Conflict, DomainError, ValidationFailed

from ..models import ScheduledJob, Tenant, TestClock
from .audit import audit_record
from .scheduling import due_work_run

MAX_ADVANCE = timedelta(days=3 * 366)


class TestModeOnly(DomainError):
    __test__ = False
    status = 404
    code = "test_mode_only"
    title = "Not available"


def require_test_mode() -> None:
    if not settings.AEROLITH_TEST_MODE:
        raise TestModeOnly("Test clocks exist only when AEROLITH_TEST_MODE=1.")


def tenant_clock_attach(*, tenant: Tenant, actor, at: datetime | None = None) -> TestClock:
    """Freeze `tenant`'s time at `at` (default: now). Idempotent."""
    require_test_mode()
    with transaction.atomic():
        test_clock, created = TestClock.objects.get_or_create(
            tenant=tenant, defaults={"frozen_time": at or clock.wall_now()}
        )
        if created:
            audit_record(action="test_clock.attached", tenant=tenant, actor=actor,
                         target=test_clock, after={"frozen_time": test_clock.frozen_time.isoformat()})
    return test_clock


def tenant_clock_advance(*, tenant: Tenant, actor, to: datetime | None = None,
                       seconds: int | None = None) -> tuple[TestClock, list[ScheduledJob]]:
    """Move `tenant`'s clock forward to `to` (or by `seconds`), stepping through each due
    job at its due time in order. Attaches a clock first if the tenant has none. Raises
    ValidationFailed for a target in the past or more than three years ahead."""
    require_test_mode()
    if (to is None) == (seconds is None):
        raise ValidationFailed({"seconds": [("one_of", "Give either 'seconds' or 'to', not both.")]})
    # Checked before building a timedelta, which overflows on huge values.
    if seconds is not None and seconds < 0:
        raise ValidationFailed({"seconds": [("in_the_past", "Clocks only move forward: give "
                                             "a positive number of seconds.")]})
    if seconds is not None and seconds > MAX_ADVANCE.total_seconds():
        raise ValidationFailed({"seconds": [("too_far", "Advance at most three years at a time.")]})
    with transaction.atomic():
        # Attached in the same transaction, so a refused advance leaves no clock behind.
        tenant_clock_attach(tenant=tenant, actor=actor)
        test_clock = TestClock.objects.select_for_update(nowait=False).get(tenant=tenant)
        start = test_clock.frozen_time
        target = to if to is not None else start + timedelta(seconds=seconds)
        if target < start:
            field = "to" if to is not None else "seconds"
            raise ValidationFailed({field: [("in_the_past", f"The clock is at {start.isoformat()}; "
                                             "it only moves forward.")]})
        if target - start > MAX_ADVANCE:
            raise ValidationFailed({"to" if to is not None else "seconds": [
                ("too_far", "Advance at most three years at a time.")]})

        def step_to(job: ScheduledJob) -> None:
            if job.due_at > test_clock.frozen_time:
                test_clock.frozen_time = job.due_at
                test_clock.save(update_fields=["frozen_time"])

        ran = due_work_run(tenant=tenant, until=target, before_each=step_to)
        test_clock.frozen_time = target
        test_clock.save(update_fields=["frozen_time"])
        if test_clock.frozen_time != start:
            audit_record(action="test_clock.advanced", tenant=tenant, actor=actor, target=test_clock,
                         before={"frozen_time": start.isoformat()},
                         after={"frozen_time": target.isoformat(), "jobs_run": len(ran)})
    return test_clock, ran


def tenant_clock_detach(*, tenant: Tenant, actor) -> None:
    require_test_mode()
    with transaction.atomic():
        deleted, _ = TestClock.objects.filter(tenant=tenant).delete()
        if not deleted:
            raise Conflict("This tenant has no test clock.", code="no_test_clock")
        audit_record(action="test_clock.detached", tenant=tenant, actor=actor, target=tenant)
