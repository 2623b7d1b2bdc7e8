"""Due work per tenant, run when the tenant's own clock reaches it (SPEC §9).

Apps register a handler per job kind with `@job_handler("billing.renewal")` and schedule
work with `job_schedule(...)`. The beat dispatcher and the test clock both call
`due_work_run`, which runs a tenant's due jobs one at a time in due order, each in its own
transaction with its row locked, so running twice or on two workers never runs a job twice.
A handler may schedule the next job (a renewal schedules the next renewal); jobs that
become due during the same run are picked up in order.
"""
import logging
from collections.abc import Callable
from contextlib import nullcontext
from datetime import datetime

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F, Value
from django.db.models.functions import Coalesce
from django_tenants.utils import tenant_context
from psycopg.types.json import Jsonb

from aerolith import clock

from ..models import ScheduledJob, Tenant

logger = logging.getLogger(__name__)
MAX_ATTEMPTS = 5
_HANDLERS: dict[str, Callable[[ScheduledJob], None]] = {}
_PUBLIC_ONLY: set[str] = set()
_BATCH_HANDLERS: dict[str, Callable[[list[ScheduledJob]], None]] = {}


def job_handler(kind: str, *, tenant_schema: bool = True):
    """Register the handler of `kind`. Handlers run in the tenant's schema unless they
    touch public tables only (`tenant_schema=False`), which spares two round trips a job."""
    def register(func):
        _HANDLERS[kind] = func
        if not tenant_schema:
            _PUBLIC_ONLY.add(kind)
        return func
    return register


def job_batch_handler(kind: str):
    """Register a handler that runs many tenants' due jobs of `kind` in one transaction
    (renewal at month end). It must do exactly what the single handler does for each job;
    the kind must touch public tables only."""
    def register(func):
        if kind not in _PUBLIC_ONLY:
            raise ValueError(f"{kind!r} must be registered with tenant_schema=False first")
        _BATCH_HANDLERS[kind] = func
        return func
    return register


def job_schedule(*, tenant: Tenant, kind: str, key: str, due_at: datetime,
                 payload: dict | None = None) -> ScheduledJob:
    """Schedule `kind` for `tenant` at `due_at`; the same (kind, key) is scheduled once."""
    if kind not in _HANDLERS:
        raise ValueError(f"No handler registered for job kind {kind!r}")
    # One statement instead of get_or_create's four: renewal schedules two jobs per invoice.
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO tenants_scheduledjob (tenant_id, kind, key, due_at, payload, status, "
            "attempts, last_error, created_at) VALUES (%s, %s, %s, %s, %s, 'pending', 0, '', %s) "
            "ON CONFLICT (tenant_id, kind, key) DO NOTHING RETURNING id",
            [tenant.pk, kind, key, due_at, Jsonb(payload or {}), clock.wall_now()])
        row = cursor.fetchone()
    if row is None:
        return ScheduledJob.objects.get(tenant=tenant, kind=kind, key=key)
    return ScheduledJob(id=row[0], tenant=tenant, kind=kind, key=key, due_at=due_at,
                        payload=payload or {})


def job_schedule_many(jobs: list[tuple[Tenant, str, str, datetime, dict]]) -> None:
    """Schedule several (tenant, kind, key, due_at, payload) at once; keys already
    scheduled are left as they are."""
    for _tenant, kind, *_rest in jobs:
        if kind not in _HANDLERS:
            raise ValueError(f"No handler registered for job kind {kind!r}")
    now = clock.wall_now()
    ScheduledJob.objects.bulk_create(
        [ScheduledJob(tenant=tenant, kind=kind, key=key, due_at=due_at, payload=payload,
                      created_at=now) for tenant, kind, key, due_at, payload in jobs],
        ignore_conflicts=True)


def _due_by_tenant_clock():
    """Pending jobs due by their tenant's own clock (test clock or wall clock)."""
    tenant_now = Value(clock.wall_now())
    if settings.AEROLITH_TEST_MODE:  # as clock.now(): test clocks count only in test mode
        tenant_now = Coalesce(F("tenant__test_clock__frozen_time"), tenant_now)
    return (ScheduledJob.objects.filter(status=ScheduledJob.Status.PENDING)
            .annotate(tenant_now=tenant_now).filter(due_at__lte=F("tenant_now")))


def tenants_with_due_work() -> list[int]:
    """Tenants with a pending job due by their own clock (test clock or wall clock)."""
    return list(
        _due_by_tenant_clock()
        .values_list("tenant_id", flat=True)
        .order_by("tenant_id")  # not Meta.ordering, whose columns would defeat distinct()
        .distinct()
    )


def _next_due(tenant: Tenant, until: datetime, skip: set[int]) -> ScheduledJob | None:
    return (
        ScheduledJob.objects.select_for_update(skip_locked=True)
        .filter(tenant=tenant, status=ScheduledJob.Status.PENDING, due_at__lte=until)
        .exclude(pk__in=skip)
        .order_by("due_at", "id")
        .first()
    )


def due_work_run(*, tenant: Tenant, until: datetime | None = None,
                 before_each: Callable[[ScheduledJob], None] | None = None) -> list[ScheduledJob]:
    """Run `tenant`'s jobs due by `until` (default: its clock's now), oldest first.
    `before_each` lets the test clock step its time to each job's due time first."""
    ran: list[ScheduledJob] = []
    failed: set[int] = set()
    while True:
        limit = until or clock.now(tenant)
        with transaction.atomic():
            job = _next_due(tenant, limit, failed)
            if job is None:
                return ran
            job.tenant = tenant
            if before_each:
                before_each(job)
            try:
                with transaction.atomic(), (nullcontext() if job.kind in _PUBLIC_ONLY
                                            else tenant_context(tenant)):
                    _HANDLERS[job.kind](job)
            except Exception as exc:  # noqa: BLE001 - one failing job must not stop the rest
                logger.exception("Job %s (%s) failed", job.pk, job.kind)
                job.attempts += 1
                job.last_error = f"{exc.__class__.__name__}: {exc}"[:2000]
                if job.attempts >= MAX_ATTEMPTS:
                    job.status = ScheduledJob.Status.FAILED
                job.save(update_fields=["attempts", "last_error", "status"])
                failed.add(job.pk)
                continue
            job.status = ScheduledJob.Status.DONE
            job.attempts += 1
            job.completed_at = clock.now(tenant)
            job.save(update_fields=["status", "attempts", "completed_at"])
            ran.append(job)


def due_work_run_many(tenants: list[Tenant]) -> int:
    """The due work of many tenants (the beat path), each tenant's jobs in due order.
    When the earliest due job of several tenants is of a kind with a batch handler, those
    jobs run together in one transaction; the rest runs tenant by tenant (due_work_run).
    A batch that fails is rolled back and its tenants run one by one, so a bad job is
    recorded on its own."""
    ran = 0
    pending = {tenant.pk: tenant for tenant in tenants}
    while pending:
        firsts = list(_due_by_tenant_clock().filter(tenant_id__in=list(pending))
                      .order_by("tenant_id", "due_at", "id").distinct("tenant_id"))
        batches: dict[str, list[ScheduledJob]] = {}
        for job in firsts:
            if job.kind in _BATCH_HANDLERS:
                job.tenant = pending[job.tenant_id]
                batches.setdefault(job.kind, []).append(job)
        again: dict[int, Tenant] = {}
        for kind, jobs in batches.items():
            done = _run_batch(kind, jobs)
            ran += len(done)
            again.update({job.tenant_id: pending[job.tenant_id] for job in done})
        for tenant_id in {job.tenant_id for job in firsts} - set(again):
            ran += len(due_work_run(tenant=pending[tenant_id]))
        pending = again
    return ran


def _run_batch(kind: str, jobs: list[ScheduledJob]) -> list[ScheduledJob]:
    try:
        with transaction.atomic():
            locked = set(ScheduledJob.objects.select_for_update(skip_locked=True)
                         .filter(pk__in=[job.pk for job in jobs], status=ScheduledJob.Status.PENDING)
                         .values_list("pk", flat=True))
            jobs = [job for job in jobs if job.pk in locked]
            if not jobs:
                return []
            _BATCH_HANDLERS[kind](jobs)
            for job in jobs:
                job.status, job.attempts = ScheduledJob.Status.DONE, job.attempts + 1
                job.completed_at = clock.now(job.tenant)
            ScheduledJob.objects.bulk_update(jobs, ["status", "attempts", "completed_at"])
        return jobs
    except Exception:  # noqa: BLE001 - the tenants run one by one instead
        logger.exception("Batch of %d %s jobs failed; running them one by one", len(jobs), kind)
        return []
