"""Imports and exports stopped by their task's soft time limit (ARBITER_IMPORT_TIME_LIMIT_S,
ARBITER_EXPORT_TIME_LIMIT_S) end failed, saying so, and leave nothing behind: no pair, no
upload, no export file, and no database connection stuck in a half-run query for the worker's
next task. A real worker, started with limits of a few seconds, runs them on a queue of its
own; a named pipe that its writer stops feeding is a storage read that hangs.

An import stalled past the stale sweep's patience (IMPORT_STALE_SECONDS) is failed by the sweep;
should its read then go on, the import must not turn the failed job into a succeeded one."""

from __future__ import annotations

import contextlib
import errno
import os
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from django.db import connection, connections, transaction

from annotation.models import Campaign, ImportJob, Pair
from annotation.services.import_jobs import (
    IMPORT_STALE_SECONDS,
    import_job_create,
    import_job_progress,
    import_job_run,
    import_jobs_fail_stale,
)
from config.celery import app
from scoring.datasets.export import ExportFilters, export_create
from scoring.models import ExportSnapshot, Job
from tests.conftest import start_in_thread, start_worker, stop_worker, wait_for
from tests.factories import PairFactory

QUEUE = "time-limits-test"  # the limited worker's own: no other test's worker takes its tasks
IMPORT_LIMIT_S = 6
EXPORT_LIMIT_S = 1
BATCH = 10_000  # the importer's batch (annotation.services.imports._BATCH)
# Written before the pipe goes quiet: the reader fills 1 MiB buffers (two of them, one inside
# the other) before it hands rows on, so the last 2 MiB or so of these (some 40,000 rows) wait
# with the hung read; the rest make more than the three batches after which the first is
# reported stored.
BEFORE_THE_HANG = 8 * BATCH


@dataclass(frozen=True)
class LimitedWorker:
    media: Path  # its MEDIA_ROOT: uploads live in media/imports
    exports: Path  # its ARBITER_EXPORT_DIR


def _purge_queue() -> None:
    with app.connection_for_write() as conn, contextlib.suppress(Exception):
        conn.default_channel.queue_purge(QUEUE)


@pytest.fixture(scope="module")
def limited_worker(django_db_setup, django_db_blocker, tmp_path_factory) -> Iterator[LimitedWorker]:
    """One worker process (concurrency 1: every task runs in the same child process) whose
    soft limits are the settings' values given here through its environment."""
    worker = LimitedWorker(tmp_path_factory.mktemp("media"), tmp_path_factory.mktemp("exports"))
    with django_db_blocker.unblock(), pytest.MonkeyPatch.context() as env:
        env.setenv("ARBITER_IMPORT_TIME_LIMIT_S", str(IMPORT_LIMIT_S))
        env.setenv("ARBITER_EXPORT_TIME_LIMIT_S", str(EXPORT_LIMIT_S))
        env.setenv("MEDIA_ROOT", str(worker.media))
        env.setenv("ARBITER_EXPORT_DIR", str(worker.exports))
        _purge_queue()
        process = start_worker(queues=QUEUE, concurrency=1, name="time-limits")
    yield worker
    stop_worker(process)


def _send(name: str, *args: int) -> None:
    """Send by name, as the web does. A sender that has imported the task module (this test
    process may have, through another test file) stamps the limits its own settings give into
    the message, and the worker obeys those: None keeps them out, so the worker's settings
    decide, as they do for a task the web sends."""
    app.send_task(name, args=args, queue=QUEUE, soft_time_limit=None, time_limit=None)


def _rows(count: int, *, start: int = 0) -> bytes:
    return b"".join(
        b'{"prompt": "p%d", "response_a": "a%d", "response_b": "b%d"}\n' % (i, i, i)
        for i in range(start, start + count)
    )


class _HangingPipe:
    """A named pipe in an uploads folder, fed by a thread once its reader opens it: ``first``,
    then nothing (the reader's next read hangs) until ``resume()``, then ``rest`` and the end
    of the file. ``abandon()`` stops a writer whose reader no longer reads."""

    def __init__(self, media: Path, first: bytes, rest: bytes = b"") -> None:
        uploads = media / "imports"
        uploads.mkdir(parents=True, exist_ok=True)
        self.path = uploads / f"{uuid.uuid4().hex}.jsonl"
        os.mkfifo(self.path)
        self.hanging = threading.Event()  # all of ``first`` written
        self._resumed, self._abandoned = threading.Event(), threading.Event()
        self._writer = start_in_thread(lambda: self._feed(first, rest))

    def resume(self) -> None:
        self._resumed.set()
        self._writer.result(timeout=30)

    def abandon(self) -> None:
        self._abandoned.set()
        self.resume()

    def _feed(self, first: bytes, rest: bytes) -> None:
        deadline = time.monotonic() + 60
        while True:
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_NONBLOCK)
                break
            except OSError as error:  # ENXIO: nobody has it open for reading yet
                if error.errno != errno.ENXIO or self._abandoned.is_set():
                    return
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        try:
            if self._write_all(fd, first):
                self.hanging.set()
                self._resumed.wait(timeout=120)
                self._write_all(fd, rest)
        finally:
            os.close(fd)

    def _write_all(self, fd: int, data: bytes) -> bool:
        """False when the reader went away, or was abandoned with the pipe full."""
        view = memoryview(data)
        while view:
            try:
                view = view[os.write(fd, view) :]
            except BlockingIOError:
                if self._abandoned.is_set():
                    return False
                time.sleep(0.005)
            except BrokenPipeError:
                return False
        return True


def _finished(model: type[Job] | type[ImportJob], pk: int, *, timeout: float, what: str):
    return wait_for(
        lambda: model.objects.filter(pk=pk, status__in=["succeeded", "failed"]).first(),
        timeout=timeout,
        what=what,
    )


def _exportable(campaign: Campaign, count: int) -> None:
    """``count`` gold pairs (exported by default) of some 100 words a response: enough for the
    default export's near-duplicate search to take seconds."""
    words = "alpha beta gamma delta epsilon zeta theta kappa lambda sigma omega".split()

    def text(i: int, side: int) -> str:
        return " ".join(
            f"{words[(i * 7 + k * side) % len(words)]}{(i + k) % 97}" for k in range(100)
        )

    pairs = PairFactory.build_batch(
        count, campaign=campaign, is_gold=True, gold_preference=1, status=Pair.Status.COMPLETE
    )
    for i, pair in enumerate(pairs):
        pair.response_a, pair.response_b = text(i, 1), text(i, 3)
    Pair.objects.bulk_create(pairs)


@pytest.mark.worker
@pytest.mark.smoke
def test_an_import_whose_read_hangs_fails_at_its_time_limit_and_keeps_no_pair(
    limited_worker, transactional_db, campaign
):
    # Batches are stored in the import's transaction as they are read; then the read hangs.
    pipe = _HangingPipe(limited_worker.media, _rows(BEFORE_THE_HANG))
    job = import_job_create(campaign=campaign, path=pipe.path)

    def storing_or_stopped() -> bool:
        now = ImportJob.objects.get(pk=job.pk)
        return import_job_progress(job=now) >= BATCH or now.status == ImportJob.Status.FAILED

    try:
        _send("annotation.import_pairs", job.pk)
        # Normally pairs are stored before the limit (a machine loaded enough may be slower).
        wait_for(storing_or_stopped, timeout=60, what="the import to store its first batch")
        failed = _finished(
            ImportJob, job.pk, timeout=IMPORT_LIMIT_S + 25, what="the import to stop at its limit"
        )
    finally:
        pipe.abandon()
    assert failed.status == ImportJob.Status.FAILED
    assert f"time limit of {IMPORT_LIMIT_S} s" in failed.error
    assert "ARBITER_IMPORT_TIME_LIMIT_S" in failed.error and "nothing was imported" in failed.error
    assert failed.finished_at is not None
    assert not Pair.objects.filter(campaign=campaign).exists()  # all or nothing, as promised
    assert not pipe.path.exists()  # the upload goes with its finished job


@pytest.mark.worker
@pytest.mark.smoke
def test_an_export_past_its_time_limit_fails_and_leaves_no_file(
    limited_worker, transactional_db, campaign
):
    # Three times what a quiet machine exports within the limit (4,000 pairs sometimes
    # finished inside its second there): the limit, not the machine's load, must stop it.
    _exportable(campaign, 12_000)
    snapshot = export_create(
        campaign=campaign, file_format="jsonl", filters=ExportFilters(), enqueue=False
    )
    folder = limited_worker.exports / f"campaign-{campaign.pk}"
    _send("scoring.export_snapshot", snapshot.job_id)
    # The export writes its hidden temporary file...
    wait_for(
        lambda: folder.is_dir() and os.listdir(folder),
        timeout=60,
        interval=0.02,
        what="the export to start writing",
    )
    job = _finished(Job, snapshot.job_id, timeout=60, what="the export to stop at its limit")
    assert job.status == Job.Status.FAILED, "the export finished within the limit"
    assert f"time limit of {EXPORT_LIMIT_S} s exceeded" in job.error
    assert "ARBITER_EXPORT_TIME_LIMIT_S" in job.error
    # ...and nothing of it stays: no file, and the snapshot names none.
    assert os.listdir(folder) == []
    assert ExportSnapshot.objects.get(pk=snapshot.pk).path == ""


@pytest.mark.worker
def test_an_export_whose_query_hangs_fails_at_its_limit_and_the_worker_goes_on(
    limited_worker, transactional_db, campaign
):
    """The limit stops the export inside a query (a lock wait): the failure is recorded all
    the same, and the next task of the same worker process finds a working connection."""
    if connection.vendor != "postgresql":
        pytest.skip("LOCK TABLE is PostgreSQL's")
    _exportable(campaign, 3)
    first = export_create(
        campaign=campaign, file_format="jsonl", filters=ExportFilters(), enqueue=False
    )
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("LOCK TABLE annotation_pair IN ACCESS EXCLUSIVE MODE")
        _send("scoring.export_snapshot", first.job_id)
        job = _finished(Job, first.job_id, timeout=30, what="the export to stop at its limit")
    assert job.status == Job.Status.FAILED
    assert f"time limit of {EXPORT_LIMIT_S} s exceeded" in job.error
    second = export_create(
        campaign=campaign, file_format="jsonl", filters=ExportFilters(), enqueue=False
    )
    _send("scoring.export_snapshot", second.job_id)
    job = _finished(Job, second.job_id, timeout=30, what="the next export")
    assert job.status == Job.Status.SUCCEEDED, job.error
    assert ExportSnapshot.objects.get(pk=second.pk).manifest["counts"]["rows"] == 3


@pytest.mark.django_db(transaction=True)
def test_an_import_failed_by_the_sweep_while_its_read_hung_stays_failed(campaign, settings):
    """PostgreSQL: on SQLite the sweep's write waits for the import's transaction."""
    if connection.vendor != "postgresql":
        pytest.skip("SQLite serialises the sweep behind the import")
    rest = _rows(10, start=BEFORE_THE_HANG)
    pipe = _HangingPipe(Path(settings.MEDIA_ROOT), _rows(BEFORE_THE_HANG), rest)
    job = import_job_create(campaign=campaign, path=pipe.path)

    def run() -> ImportJob:
        try:
            return import_job_run(job_id=job.pk)
        finally:
            connections.close_all()  # this thread's

    importing = start_in_thread(run)
    try:
        wait_for(
            lambda: (
                pipe.hanging.is_set()
                and import_job_progress(job=ImportJob.objects.get(pk=job.pk)) >= BATCH
            ),
            timeout=60,
            what="the import to store its first batch and its read to hang",
        )
        # The read has hung for longer than the sweep waits: it fails the job.
        assert import_jobs_fail_stale(now=time.time() + IMPORT_STALE_SECONDS + 1) == 1
        pipe.resume()  # the read goes on, to the end of the file
    finally:
        pipe.abandon()
    done = importing.result(timeout=60)
    assert done.status == ImportJob.Status.FAILED
    job.refresh_from_db()
    assert job.status == ImportJob.Status.FAILED and "nothing was imported" in job.error
    assert not Pair.objects.filter(campaign=campaign).exists()
