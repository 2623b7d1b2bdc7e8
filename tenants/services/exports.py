"""Data exports (SPEC §8): an owner asks, a worker builds the zip, the owner downloads it
once, and whatever is not downloaded is deleted after AEROLITH_EXPORT_TTL_DAYS.

The archive holds personal data, so it lives as short as it can: one file per export,
mode 0600 under AEROLITH_EXPORTS_DIR, named by a random token rather than anything
guessable; the download unlinks it at once (an open file handle keeps streaming it) and
the hourly `data_exports_expire` task removes the rest. Export times are wall-clock
times on purpose: files on disk age in real time, whatever a tenant's test clock says.
"""
import hashlib
import logging
import os
import secrets
from datetime import timedelta
from pathlib import Path

from django.conf import settings
from django.db import IntegrityError, transaction

from aerolith import clock
from aerolith.errors import Conflict, DomainError, NotFound

from ..models import DataExport, Tenant
from .audit import audit_record

logger = logging.getLogger(__name__)


class ExportGone(DomainError):
    """The archive was downloaded already or expired: 410, and what to do instead."""

    status = 410
    code = "export_gone"
    title = "Gone"


def exports_dir() -> Path:
    configured = getattr(settings, "AEROLITH_EXPORTS_DIR", "")
    if configured:
        return Path(configured)
    from aerolith.devservices import VAR

    return VAR / "exports"


def export_path(export: DataExport) -> Path:
    return exports_dir() / f"{export.token}.zip"


def export_request(*, tenant: Tenant, actor) -> DataExport:
    """Record an export and have a worker build it after commit. Raises Conflict
    `export_in_progress` while another export of the tenant is pending or building."""
    from .audit import actor_identity

    if tenant.erased_at is not None:
        raise Conflict("This organisation's data was erased; there is nothing to export.",
                       code="tenant_erased")
    user, label = actor_identity(actor)
    now = clock.wall_now()
    try:
        with transaction.atomic():
            export = DataExport.objects.create(
                tenant=tenant, requested_by=user, requested_by_label=label[:200],
                token=secrets.token_urlsafe(32), created_at=now,
                expires_at=now + timedelta(days=settings.AEROLITH_EXPORT_TTL_DAYS))
            audit_record(action="export.requested", tenant=tenant, actor=actor, target=export)
            transaction.on_commit(lambda: _enqueue(export.pk))
    except IntegrityError:
        raise Conflict("An export of this organisation is already being built; wait for it to "
                       "be ready (GET /api/v1/exports lists them) and download that one.",
                       code="export_in_progress") from None
    return export


def _enqueue(export_id: int) -> None:
    from ..tasks import data_export_build

    data_export_build.delay(export_id)


def export_build(export_id: int) -> DataExport | None:
    """Build the archive of a pending export; safe to run twice (a ready export is left as
    it is, one left `building` by a worker that died is built again when Celery redelivers
    the task — acks late). A failure marks the export failed with a reason and removes the
    partial file, so the owner can ask again."""
    with transaction.atomic():
        export = (DataExport.objects.select_for_update().select_related("tenant")
                  .filter(pk=export_id).first())
        if export is None or export.status not in (DataExport.Status.PENDING,
                                                   DataExport.Status.BUILDING):
            return export
        export.status = DataExport.Status.BUILDING
        export.save(update_fields=["status"])
    tenant = export.tenant
    path = export_path(export)
    try:
        from .export_archive import archive_write

        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        descriptor = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w+b") as handle:
            manifest = archive_write(tenant, handle)
            handle.flush()
            size = handle.tell()
            handle.seek(0)
            digest = hashlib.file_digest(handle, "sha256").hexdigest()
    except Exception as exc:  # noqa: BLE001 - any failure is reported on the export
        logger.exception("Building export %s of tenant %s failed", export.pk, tenant.pk)
        path.unlink(missing_ok=True)
        with transaction.atomic():
            DataExport.objects.filter(pk=export.pk).update(
                status=DataExport.Status.FAILED,
                error=f"The archive could not be built ({type(exc).__name__}); ask for a new "
                      "export, and tell support if it fails again.")
            audit_record(action="export.failed", tenant=tenant, actor="system", target=export,
                         after={"error": type(exc).__name__})
        export.refresh_from_db()
        return export
    with transaction.atomic():
        export.status = DataExport.Status.READY
        export.size_bytes, export.sha256 = size, digest
        export.built_at = clock.wall_now()
        export.save(update_fields=["status", "size_bytes", "sha256", "built_at"])
        audit_record(action="export.built", tenant=tenant, actor="system", target=export,
                     after={"size_bytes": size, "files": len(manifest["files"])})
    return export


def export_for(tenant: Tenant, export_id) -> DataExport:
    export = DataExport.objects.filter(tenant=tenant, pk=export_id).first()
    if export is None:
        raise NotFound("There is no such export in this organisation; list them with "
                       "GET /api/v1/exports.")
    return export


def export_download(*, tenant: Tenant, export_id: int, actor):
    """Hand over the archive once: returns (export, an open binary file). The export is
    marked downloaded and the file unlinked before this returns, so a second download
    (even a concurrent one) gets ExportGone; the open handle still reads the whole file.
    Raises NotFound for another tenant's export, Conflict `export_not_ready` while it is
    being built, ExportGone when downloaded, expired or failed."""
    with transaction.atomic():
        export = (DataExport.objects.select_for_update()
                  .filter(tenant=tenant, pk=export_id).first())
        if export is None:
            raise NotFound("There is no such export in this organisation; list them with "
                           "GET /api/v1/exports.")
        _require_downloadable(export)
        path = export_path(export)
        try:
            handle = open(path, "rb")  # noqa: SIM115 - the response closes it
        except FileNotFoundError:
            raise ExportGone("The archive's file is missing; ask for a new export.",
                             code="export_missing") from None
        export.status = DataExport.Status.DOWNLOADED
        export.downloaded_at = clock.wall_now()
        export.save(update_fields=["status", "downloaded_at"])
        audit_record(action="export.downloaded", tenant=tenant, actor=actor, target=export,
                     after={"size_bytes": export.size_bytes})
        transaction.on_commit(lambda: path.unlink(missing_ok=True))
    return export, handle


def _require_downloadable(export: DataExport) -> None:
    status = export.status
    if status in (DataExport.Status.PENDING, DataExport.Status.BUILDING):
        raise Conflict("The export is still being built; try again in a minute.",
                       code="export_not_ready")
    if status == DataExport.Status.DOWNLOADED:
        raise ExportGone("This export was downloaded already and its archive deleted; ask "
                         "for a new export (POST /api/v1/exports).", code="export_downloaded")
    if status == DataExport.Status.EXPIRED or export.expires_at <= clock.wall_now():
        raise ExportGone("This export expired and its archive was deleted; ask for a new "
                         "export (POST /api/v1/exports).", code="export_expired")
    if status == DataExport.Status.FAILED:
        raise ExportGone(export.error or "This export failed; ask for a new one.",
                         code="export_failed")


def exports_expire(now=None) -> int:
    """Delete the files of exports past their expiry and mark them expired (beat, hourly);
    returns how many. Downloaded exports have no file left already."""
    now = now or clock.wall_now()
    expired = 0
    due = DataExport.objects.filter(
        expires_at__lte=now,
        status__in=[DataExport.Status.PENDING, DataExport.Status.BUILDING,
                    DataExport.Status.READY, DataExport.Status.FAILED])
    for export in due.select_related("tenant").order_by("pk"):
        with transaction.atomic():
            locked = DataExport.objects.select_for_update().filter(pk=export.pk).first()
            if locked is None or locked.status in (DataExport.Status.DOWNLOADED,
                                                   DataExport.Status.EXPIRED):
                continue
            export_path(locked).unlink(missing_ok=True)
            locked.status = DataExport.Status.EXPIRED
            locked.save(update_fields=["status"])
            audit_record(action="export.expired", tenant=export.tenant, actor="system",
                         target=locked)
        expired += 1
    return expired


def exports_discard(tenant: Tenant) -> int:
    """Remove every archive of `tenant` and its rows (erasure); returns how many."""
    rows = list(DataExport.objects.filter(tenant=tenant))
    for export in rows:
        export_path(export).unlink(missing_ok=True)
    DataExport.objects.filter(tenant=tenant).delete()
    return len(rows)
