"""Import jobs: an uploaded file, imported inline or by a Celery worker, with progress."""

from __future__ import annotations

import contextlib
import hashlib
import logging
import re
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.contrib.auth.models import User
from django.core.cache import cache
from django.core.files.uploadedfile import UploadedFile
from django.db import InterfaceError, OperationalError, connection, transaction
from django.db.models import QuerySet
from django.utils import timezone

from annotation.importers import ImportFormatError
from annotation.importers.streams import estimated_cost_bytes
from annotation.models import Campaign, ImportJob
from annotation.services.imports import CampaignRoundsBusy, ImportResult, pairs_import
from core.queue import QUEUE_UNAVAILABLE_REASON, QueueUnavailable, send_task_on_commit
from core.validation import UPLOAD_NAME_MAX

logger = logging.getLogger(__name__)


def _uploads_folder() -> Path:
    return Path(settings.MEDIA_ROOT) / "imports"


def _progress_key(job_id: int) -> str:
    return f"import-progress:{job_id}"


def _heartbeat_key(job_id: int) -> str:
    return f"import-heartbeat:{job_id}"


@contextlib.contextmanager
def _cache_advisory() -> Iterator[None]:
    """Progress and heartbeats go through the cache (Redis in production) and are advisory:
    an import keeps going while the cache is down (it needs only the database), and a page
    asking for progress shows the last committed figure."""
    try:
        yield
    except Exception:  # noqa: BLE001 - any cache backend's error; logged, never fatal
        logger.warning("cache unavailable for import progress", exc_info=True)


# A running import reports every batch; one silent this long lost its worker.
IMPORT_STALE_SECONDS = 600
# A queued job is normally taken within seconds; one queued this long may have lost its task
# (the request died between committing the row and sending it), so the sweep sends it once
# again: harmless if the first is only waiting, since the claim lets one run.
IMPORT_QUEUED_RESEND_SECONDS = 3 * IMPORT_STALE_SECONDS
# Still queued this long after it was due to be sent again, it is failed and its upload
# removed. Long enough for several imports of up to ARBITER_IMPORT_MAX_SECONDS (4 h) ahead.
IMPORT_QUEUED_FAIL_SECONDS = 24 * 3600
# What a queued job sent again says until a worker takes it (the claim clears it).
_RESENT_NOTE = "Sent to a worker again: the request that queued it stopped before sending it."
# A file in the uploads folder that no job names (an upload cut off, or a row never committed)
# is removed by the sweep once it is this old.
_LEFTOVER_SECONDS = 24 * 3600
_PARTIAL_SUFFIX = ".partial"
# How long a worker whose import lost the database keeps trying to record the failure.
_RECONNECT_SECONDS = 30.0


def import_job_progress(*, job: ImportJob) -> int:
    """Rows read so far. The import runs in one transaction, so live progress goes through
    the cache (shared between processes) rather than the job row, which only commits at the
    end."""
    if job.status == ImportJob.Status.RUNNING:
        with _cache_advisory():
            return int(cache.get(_progress_key(job.pk), 0))
    return job.rows_read


def import_job_create(
    *,
    campaign: Campaign,
    upload: UploadedFile | None = None,
    path: Path | None = None,
    as_gold: bool = False,
    user: User | None = None,
) -> ImportJob:
    """Keep the file on disk and record a queued job for it. An upload is written under a
    hidden ``.partial`` name and renamed once complete; whatever stops it (the client going
    away, the row's insert failing) removes what was written."""
    if upload is not None:
        folder = _uploads_folder()
        folder.mkdir(parents=True, exist_ok=True)
        original_name = Path(upload.name or "upload").name[-UPLOAD_NAME_MAX:]
        stored = folder / _stored_name(original_name)
        partial = folder / f".{uuid.uuid4().hex}{_PARTIAL_SUFFIX}"
        digest, size = hashlib.sha256(), 0
        try:
            with partial.open("wb") as handle:
                for chunk in upload.chunks():
                    handle.write(chunk)
                    digest.update(chunk)
                    size += len(chunk)
            partial.rename(stored)
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
        sha256, file_bytes = digest.hexdigest(), size
    elif path is not None:
        stored, original_name = Path(path), Path(path).name
        sha256, file_bytes = "", None
    else:
        raise ValueError("import_job_create needs an upload or a path")
    try:
        return ImportJob.objects.create(
            campaign=campaign,
            file=str(stored),
            original_name=original_name,
            file_sha256=sha256,
            file_bytes=file_bytes,
            as_gold=as_gold,
            created_by=user if user is not None and user.is_authenticated else None,
        )
    except BaseException:
        if upload is not None:
            stored.unlink(missing_ok=True)
        raise


# Extensions kept on the stored file: short ASCII ones such as ".jsonl.gz".
_STORED_EXTENSIONS = re.compile(r"(\.[A-Za-z0-9]{1,10}){0,2}")


def _stored_name(original_name: str) -> str:
    """A name on disk that no upload can make too long: a uuid and the original's extensions.
    Linux allows 255 bytes per name, and 200 letters such as "é" take 400. The format is read
    from original_name; the extensions only tell whoever lists the folder what each file is."""
    extensions = "".join(Path(original_name).suffixes[-2:])
    if not _STORED_EXTENSIONS.fullmatch(extensions):
        extensions = ""
    return f"{uuid.uuid4().hex}{extensions}"


def _discard_upload(job: ImportJob, *, now: bool = False) -> None:
    """Remove a finished job's uploaded file once its state is committed (``now``: at once,
    when that state could not be stored); the row keeps the name, size, SHA-256, who and
    when, and the outcome. A file imported from a path given on the command line is the
    user's and stays."""
    stored = Path(job.file)
    uploads = _uploads_folder().resolve()
    if stored.parent.resolve() != uploads:
        return
    if now:
        # No on_commit: it asks the connection, which may be the one that was lost.
        stored.unlink(missing_ok=True)
        return
    transaction.on_commit(lambda: stored.unlink(missing_ok=True))


def import_job_enqueue(*, job: ImportJob) -> None:
    """Send the import to a worker after commit; with the broker down the job fails (its
    upload removed) and QueueUnavailable (503) tells the admin to upload again later."""

    def fail_unsent() -> None:
        failed = ImportJob.objects.filter(pk=job.pk, status=ImportJob.Status.QUEUED).update(
            status=ImportJob.Status.FAILED,
            error=f"Nothing was imported: {QUEUE_UNAVAILABLE_REASON}. Upload it again.",
            finished_at=timezone.now(),
        )
        if failed:
            _discard_upload(job)

    # By name: the task module imports this one.
    send_task_on_commit("annotation.import_pairs", args=(job.pk,), on_unavailable=fail_unsent)


def import_job_runs_inline(*, job: ImportJob) -> bool:
    """Whether the job is cheap enough to import within the request: by what reading it will
    cost (a gzip file's decompressed size, measured), not by its size on disk. A 300 KB .gz
    of 300 MiB of blank lines goes to the background."""
    cap = int(settings.ARBITER["IMPORT_INLINE_MAX_BYTES"])
    return estimated_cost_bytes(job.file, cap=cap) <= cap


class _FailedMeanwhile(Exception):  # noqa: N818 - a control-flow signal
    """The job row stopped being running while the file was read (the stale sweep failed it)."""


def import_job_run(*, job_id: int, inline: bool = False) -> ImportJob:
    """Claim the job and import its file; safe to call twice (the second does nothing).
    Inline, where another import into the campaign holds its lock, the job is left queued
    (nothing read) for the caller to send to a worker (import_job_enqueue).
    Reading the file may take ARBITER_IMPORT_INLINE_MAX_SECONDS within a request (`inline`),
    ARBITER_IMPORT_MAX_SECONDS in a worker, whose task stops at ARBITER_IMPORT_TIME_LIMIT_S
    (a read that hangs): the job is then failed, naming the limit, and nothing is kept."""
    claimed = ImportJob.objects.filter(pk=job_id, status=ImportJob.Status.QUEUED).update(
        status=ImportJob.Status.RUNNING,
        error="",  # a note that the sweep sent it again
    )
    job = ImportJob.objects.select_related("campaign").get(pk=job_id)
    if not claimed:
        return job

    def on_progress(rows: int) -> None:
        with _cache_advisory():
            cache.set_many(
                {_progress_key(job_id): rows, _heartbeat_key(job_id): time.time()},
                timeout=24 * 3600,
            )

    on_progress(0)

    try:
        # The pairs and the job's success commit together: a worker killed in between would
        # leave the pairs in and the job running, which the stale sweep then fails as
        # "nothing was imported".
        with transaction.atomic():
            result = pairs_import(
                campaign=job.campaign,
                path=Path(job.file),
                original_name=job.original_name,
                as_gold=job.as_gold,
                on_progress=on_progress,
                max_seconds=settings.ARBITER[
                    "IMPORT_INLINE_MAX_SECONDS" if inline else "IMPORT_MAX_SECONDS"
                ],
                # ARBITER_IMPORT_INLINE_MAX_SECONDS counts the reading only: a request would
                # otherwise wait out another import into the campaign, hours for a large one.
                wait_for_lock=not inline,
                # Alive while it waits for another import into the campaign (hours, maybe):
                # the stale sweep fails a running job silent for IMPORT_STALE_SECONDS.
                on_lock_wait=lambda: on_progress(0),
            )
            _record_success(job, result)
    except CampaignRoundsBusy:
        # Nothing was read: queued again, for the caller to send to a worker, which waits.
        ImportJob.objects.filter(pk=job_id, status=ImportJob.Status.RUNNING).update(
            status=ImportJob.Status.QUEUED
        )
        job.refresh_from_db()
        with _cache_advisory():
            cache.delete_many([_progress_key(job_id), _heartbeat_key(job_id)])
        return job
    except ImportFormatError as exc:
        job.status = ImportJob.Status.FAILED
        # The reason may quote the file (a CSV header's names), and PostgreSQL text holds no
        # NUL: saving one raised DataError, a 500 with the job left running.
        job.error = str(exc).replace("\x00", "\\x00")
        job.error_line = exc.line
    except _FailedMeanwhile:
        # Rolled back: the row, failed by the sweep ("nothing was imported"), stays the truth.
        job.refresh_from_db()
        return job
    except Exception as exc:
        job.status = ImportJob.Status.FAILED
        job.error = (
            _time_limit_error()
            if isinstance(exc, SoftTimeLimitExceeded)
            else f"unexpected error: {exc}"
        )
        job.finished_at = timezone.now()
        try:
            # A request (inline) answers at once (503 when the database is gone); a worker
            # waits for the database to come back.
            _save_after_error(job, fields=["status", "error", "finished_at"], wait=not inline)
        except Exception:
            # Not recorded (the row deleted with its campaign meanwhile, or the database still
            # away): nothing will import this file again, so it goes now, not at a commit.
            _discard_upload(job, now=True)
            raise
        _discard_upload(job)
        raise
    else:
        _discard_upload(job)
        with _cache_advisory():
            cache.delete_many([_progress_key(job_id), _heartbeat_key(job_id)])
        return job
    job.finished_at = timezone.now()
    job.save()
    _discard_upload(job)
    with _cache_advisory():
        cache.delete_many([_progress_key(job_id), _heartbeat_key(job_id)])
    return job


def _time_limit_error() -> str:
    return (
        f"The import stopped at its time limit of {settings.IMPORT_TIME_LIMIT_S} s "
        "(ARBITER_IMPORT_TIME_LIMIT_S), reading or storing the file; nothing was imported. "
        "Upload it again, or split it."
    )


def _record_success(job: ImportJob, result: ImportResult) -> None:
    """Within the import's transaction: the row is locked, so the stale sweep waits for the
    commit and then finds the job finished. A worker stalled past IMPORT_STALE_SECONDS (a hung
    read) may find its job failed by the sweep, which told the admin nothing was imported:
    it raises _FailedMeanwhile, and the pairs roll back, rather than turn a failed job into a
    succeeded one."""
    running = ImportJob.objects.select_for_update().filter(
        pk=job.pk, status=ImportJob.Status.RUNNING
    )
    if not running.exists():
        raise _FailedMeanwhile
    job.status = ImportJob.Status.SUCCEEDED
    job.rows_read = result.rows_read
    job.created_count = result.created
    job.duplicate_count = result.duplicates
    job.made_gold_count = result.made_gold
    job.busy_gold_count = result.busy_gold
    job.progress = 1.0
    job.finished_at = timezone.now()
    job.save()


def _save_after_error(job: ImportJob, *, fields: list[str], wait: bool) -> None:
    """Record a failed import even when the failure was the database going away (a restart):
    the import's transaction was rolled back, and the job should say so once the database is
    back rather than stay running until the stale sweep. Reconnects for up to
    ``_RECONNECT_SECONDS``; after that the sweep (``import_jobs_fail_stale``) settles it."""
    deadline = time.monotonic() + (_RECONNECT_SECONDS if wait else 0.0)
    while True:
        try:
            job.save(update_fields=fields)
            return
        except (OperationalError, InterfaceError):
            if time.monotonic() >= deadline:
                raise
            connection.close()  # the broken connection; the next query opens a new one
            time.sleep(1.0)


def import_jobs_fail_stale(*, now: float | None = None) -> int:
    """Settle imports that nothing will finish; the number failed.

    - Running, silent for ``IMPORT_STALE_SECONDS``: its worker died. The import ran in one
      transaction, which the database rolled back with the dead connection, so nothing of the
      file was kept: failed.
    - Queued for ``IMPORT_QUEUED_RESEND_SECONDS``: its request may have died between
      committing the row and sending the task. Sent again, once; then, still queued
      ``IMPORT_QUEUED_FAIL_SECONDS`` later, failed and its upload removed.
    - Files in the uploads folder that no unfinished job names (an upload cut off, a row
      never committed), a day old: removed.

    ``now``: seconds since the epoch (default: the current time)."""
    now = now or time.time()
    failed = _fail_dead_running(now=now) + _resend_or_fail_queued(now=now)
    _remove_leftover_files(now=now)
    return failed


def _fail_dead_running(*, now: float) -> int:
    failed = 0
    for job in ImportJob.objects.filter(status=ImportJob.Status.RUNNING):
        beat = None
        with _cache_advisory():
            beat = cache.get(_heartbeat_key(job.pk))
        last = beat if beat is not None else job.created_at.timestamp()
        if now - last < IMPORT_STALE_SECONDS:
            continue
        failed += _fail_unfinished(
            job,
            ImportJob.objects.filter(pk=job.pk, status=ImportJob.Status.RUNNING),
            "The worker importing this file stopped; nothing was imported. Upload it again.",
        )
    return failed


def _resend_or_fail_queued(*, now: float) -> int:
    """Whether a queued job was sent again is kept on the row (its note in ``error``, which the
    claim clears); the time counts from when it was due to be sent again."""
    waiting_since = datetime.fromtimestamp(now - IMPORT_QUEUED_RESEND_SECONDS, tz=UTC)
    failed = 0
    queued = ImportJob.objects.filter(status=ImportJob.Status.QUEUED, created_at__lt=waiting_since)
    for job in queued:
        if job.error != _RESENT_NOTE:
            if not _resend(job):
                break  # the broker is down: the next sweep tries again
            continue
        resend_due = job.created_at.timestamp() + IMPORT_QUEUED_RESEND_SECONDS
        if now - resend_due <= IMPORT_QUEUED_FAIL_SECONDS:
            continue
        failed += _fail_unfinished(
            job,
            ImportJob.objects.filter(pk=job.pk, status=ImportJob.Status.QUEUED, error=_RESENT_NOTE),
            "No worker ever took this import; nothing was imported. Upload it again.",
        )
    return failed


def _fail_unfinished(job: ImportJob, still: QuerySet[ImportJob], error: str) -> int:
    """Fail the job if ``still`` (its row in the state the sweep saw) holds, and drop its
    upload; 1 if it did."""
    marked = still.update(status=ImportJob.Status.FAILED, error=error, finished_at=timezone.now())
    if marked:
        _discard_upload(job)
    return marked


def _resend(job: ImportJob) -> bool:
    """Send a queued job's task again, noting it on the row first so that a second sweep does
    not; False, the note withdrawn, when the broker is down."""
    noted = ImportJob.objects.filter(pk=job.pk, status=ImportJob.Status.QUEUED, error="").update(
        error=_RESENT_NOTE
    )
    if not noted:
        return True  # claimed, or noted by another sweep, meanwhile
    logger.warning("import %s queued since %s and never taken; sent again", job.pk, job.created_at)

    def withdraw() -> None:
        ImportJob.objects.filter(
            pk=job.pk, status=ImportJob.Status.QUEUED, error=_RESENT_NOTE
        ).update(error="")

    try:
        send_task_on_commit("annotation.import_pairs", args=(job.pk,), on_unavailable=withdraw)
    except QueueUnavailable:
        return False
    return True


def _remove_leftover_files(*, now: float) -> None:
    """Remove uploads no unfinished job names (and ``.partial`` files a killed request left)
    once a day old: younger ones may belong to an upload still being written or a row not yet
    committed. Names are compared, not paths, so that MEDIA_ROOT spelled otherwise matches."""
    folder = _uploads_folder()
    if not folder.is_dir():
        return
    unfinished = ImportJob.objects.filter(
        status__in=[ImportJob.Status.QUEUED, ImportJob.Status.RUNNING]
    ).values_list("file", flat=True)
    kept = {Path(name).name for name in unfinished}
    for entry in folder.iterdir():
        if entry.name in kept:
            continue
        try:
            if entry.is_file() and now - entry.stat().st_mtime >= _LEFTOVER_SECONDS:
                logger.warning("removing import upload %s that no job needs", entry.name)
                entry.unlink(missing_ok=True)
        except OSError:
            logger.warning("could not remove import upload %s", entry.name, exc_info=True)
