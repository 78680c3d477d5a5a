"""An import whose request or upload dies part-way leaves nothing behind for ever: a job queued
but never sent is sent again by the sweep, then failed (its upload removed) if still untaken;
an upload cut off while being written leaves no file that no row names."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import DatabaseError

from annotation.models import ImportJob
from annotation.services import import_jobs
from annotation.services.import_jobs import (
    IMPORT_QUEUED_FAIL_SECONDS,
    IMPORT_QUEUED_RESEND_SECONDS,
    import_job_create,
    import_job_run,
    import_jobs_fail_stale,
)
from core.queue import QueueUnavailable

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.smoke]

GOOD = b'{"prompt": "hi", "response_a": "hello", "response_b": "hey"}\n'


@pytest.fixture
def sent(monkeypatch):
    """The tasks the sweep sends, recorded instead of reaching the broker."""
    calls: list[tuple] = []

    def record(name, *, args, on_unavailable, **kwargs):
        calls.append((name, tuple(args)))

    monkeypatch.setattr(import_jobs, "send_task_on_commit", record)
    return calls


def _imports_folder(settings) -> Path:
    return Path(settings.MEDIA_ROOT) / "imports"


def test_a_queued_job_never_sent_is_sent_once_again_then_failed(campaign, sent):
    job = import_job_create(campaign=campaign, upload=SimpleUploadedFile("p.jsonl", GOOD))
    created = job.created_at.timestamp()
    # A job waiting in the queue is left alone.
    assert import_jobs_fail_stale(now=created + IMPORT_QUEUED_RESEND_SECONDS - 5) == 0
    assert sent == []
    # Past the re-send threshold it is sent again, once.
    resent_at = created + IMPORT_QUEUED_RESEND_SECONDS + 5
    assert import_jobs_fail_stale(now=resent_at) == 0
    assert import_jobs_fail_stale(now=resent_at + 60) == 0
    assert sent == [("annotation.import_pairs", (job.pk,))]
    job.refresh_from_db()
    assert job.status == ImportJob.Status.QUEUED and Path(job.file).exists()
    # Not failed until it has waited the whole fail period after being sent again.
    assert import_jobs_fail_stale(now=resent_at + IMPORT_QUEUED_FAIL_SECONDS - 5) == 0
    assert import_jobs_fail_stale(now=resent_at + IMPORT_QUEUED_FAIL_SECONDS + 5) == 1
    job.refresh_from_db()
    assert job.status == ImportJob.Status.FAILED and "No worker ever took" in job.error
    assert job.finished_at is not None
    assert not Path(job.file).exists()
    assert len(sent) == 1


def test_queued_job_never_swept(campaign, sent):
    """The reported repro: a queued job, however old, was never looked at."""
    job = import_job_create(campaign=campaign, upload=SimpleUploadedFile("p.jsonl", GOOD))
    far = job.created_at.timestamp() + 10**7
    import_jobs_fail_stale(now=far)
    assert import_jobs_fail_stale(now=far + IMPORT_QUEUED_FAIL_SECONDS + 1) == 1
    job.refresh_from_db()
    assert job.status == ImportJob.Status.FAILED and not Path(job.file).exists()


def test_a_job_sent_again_imports_and_keeps_no_note(campaign, sent):
    job = import_job_create(campaign=campaign, upload=SimpleUploadedFile("p.jsonl", GOOD))
    import_jobs_fail_stale(now=job.created_at.timestamp() + IMPORT_QUEUED_RESEND_SECONDS + 5)
    job.refresh_from_db()
    assert job.status == ImportJob.Status.QUEUED and job.error  # says it was sent again
    job = import_job_run(job_id=job.pk)
    assert job.status == ImportJob.Status.SUCCEEDED and job.error == ""
    assert ImportJob.objects.get(pk=job.pk).error == ""


def test_a_broker_down_during_the_sweep_leaves_the_job_for_the_next_one(campaign, monkeypatch):
    job = import_job_create(campaign=campaign, upload=SimpleUploadedFile("p.jsonl", GOOD))

    def down(name, *, args, on_unavailable, **kwargs):
        on_unavailable()
        raise QueueUnavailable("down", retry_after=5)

    monkeypatch.setattr(import_jobs, "send_task_on_commit", down)
    later = job.created_at.timestamp() + IMPORT_QUEUED_RESEND_SECONDS + 5
    assert import_jobs_fail_stale(now=later) == 0
    job.refresh_from_db()
    assert job.status == ImportJob.Status.QUEUED and job.error == ""
    assert Path(job.file).exists()


class _Broken(SimpleUploadedFile):
    def chunks(self, chunk_size=None):
        yield b'{"prompt": "x", '
        raise OSError("client went away")


def test_an_upload_cut_off_leaves_no_file(campaign, settings):
    with pytest.raises(OSError, match="client went away"):
        import_job_create(campaign=campaign, upload=_Broken("p.jsonl", b""))
    assert os.listdir(_imports_folder(settings)) == []
    assert ImportJob.objects.count() == 0


def test_a_failed_insert_removes_the_written_file(campaign, settings, monkeypatch):
    def refuse(**kwargs):
        raise DatabaseError("the database went away")

    monkeypatch.setattr(ImportJob.objects, "create", refuse)
    with pytest.raises(DatabaseError):
        import_job_create(campaign=campaign, upload=SimpleUploadedFile("p.jsonl", GOOD))
    assert os.listdir(_imports_folder(settings)) == []


def test_a_complete_upload_has_its_final_name(campaign, settings):
    job = import_job_create(campaign=campaign, upload=SimpleUploadedFile("p.jsonl", GOOD))
    stored = Path(job.file)
    assert stored.read_bytes() == GOOD and stored.name.endswith(".jsonl")
    assert os.listdir(_imports_folder(settings)) == [stored.name]


def test_the_sweep_removes_day_old_leftovers_only(campaign, settings, sent):
    folder = _imports_folder(settings)
    folder.mkdir(parents=True)
    job = import_job_create(campaign=campaign, upload=SimpleUploadedFile("p.jsonl", GOOD))
    old_partial = folder / ".0123abcd.partial"
    new_partial = folder / ".4567ef01.partial"
    orphan = folder / "89abcdef.jsonl"  # renamed, but its row never committed
    for leftover in (old_partial, new_partial, orphan):
        leftover.write_bytes(b"x")
    day_ago = time.time() - 24 * 3600 - 60
    for path in (old_partial, orphan, Path(job.file)):
        os.utime(path, (day_ago, day_ago))
    import_jobs_fail_stale(now=job.created_at.timestamp() + 5)
    assert sorted(os.listdir(folder)) == sorted([new_partial.name, Path(job.file).name])


class _Killed(BaseException):
    """Stands for SIGKILL: no handler of the import runs after it."""


def test_a_worker_killed_after_the_import_leaves_both_or_neither(campaign, monkeypatch):
    """The pairs and the job's success commit together: killed just after the import, the
    job was running with every pair in, and the stale sweep then said "nothing was
    imported"; now the kill rolls both back, and that message is true."""
    from annotation.models import Pair
    from annotation.services.import_jobs import IMPORT_STALE_SECONDS

    rows = b"".join(
        b'{"prompt": "q%d", "response_a": "a%d", "response_b": "b%d"}\n' % (i, i, i)
        for i in range(5)
    )
    job = import_job_create(campaign=campaign, upload=SimpleUploadedFile("p.jsonl", rows))
    real_import = import_jobs.pairs_import

    def import_then_die(**kwargs):
        real_import(**kwargs)
        raise _Killed

    monkeypatch.setattr(import_jobs, "pairs_import", import_then_die)
    with pytest.raises(_Killed):
        import_job_run(job_id=job.pk)
    monkeypatch.undo()
    assert not Pair.objects.filter(campaign=campaign).exists()
    import_job_run(job_id=job.pk)  # redelivered (acks_late): claimed already, nothing to do
    import_jobs_fail_stale(now=time.time() + IMPORT_STALE_SECONDS + 60)
    job.refresh_from_db()
    assert job.status == ImportJob.Status.FAILED
    assert "nothing was imported" in job.error
    assert not Pair.objects.filter(campaign=campaign).exists()
