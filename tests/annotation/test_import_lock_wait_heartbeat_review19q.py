"""An import that a worker has claimed and that waits for the campaign's rounds lock (another
import into the campaign, which may run for hours) is alive: it keeps its heartbeat while it
waits, so the stale sweep does not fail it as a dead worker's. Before, its only heartbeat was
the claim's: ten minutes behind a long import, the sweep failed it ("The worker importing
this file stopped; nothing was imported"), removed its upload, and the worker's import, once
it had the lock, was rolled back. Inline imports that meet a busy lock are sent to a worker
(5713859), so this is where a small import behind a long one now waits."""

from __future__ import annotations

import threading
import time

import pytest
from django.db import transaction

from annotation.models import ImportJob, Pair
from annotation.services import import_jobs, imports
from annotation.services.import_jobs import (
    import_job_create,
    import_job_run,
    import_jobs_fail_stale,
)
from annotation.services.imports import campaign_rounds_lock
from tests.conftest import closing_connections, start_in_thread

pytestmark = pytest.mark.django_db(transaction=True)

ROWS = '{"prompt": "hi", "response_a": "hello", "response_b": "hey"}\n'


def test_a_worker_waiting_for_the_rounds_lock_is_not_failed_as_dead(
    campaign, tmp_path, monkeypatch, private_cache
):
    # Seconds instead of minutes: silent this long is dead; the wait reports this often.
    monkeypatch.setattr(import_jobs, "IMPORT_STALE_SECONDS", 2)
    monkeypatch.setattr(imports, "ROUNDS_LOCK_POLL_SECONDS", 0.1, raising=False)
    path = tmp_path / "pairs.jsonl"
    path.write_text(ROWS)
    job = import_job_create(campaign=campaign, path=path)

    taken, release = threading.Event(), threading.Event()

    def hold() -> None:  # the long import ahead of this one
        with transaction.atomic():
            campaign_rounds_lock(campaign.pk)
            taken.set()
            release.wait(timeout=60)

    holder = start_in_thread(closing_connections(hold))
    assert taken.wait(timeout=30)
    worker = start_in_thread(closing_connections(lambda: import_job_run(job_id=job.pk)))
    try:
        deadline = time.monotonic() + 30
        while ImportJob.objects.get(pk=job.pk).status != ImportJob.Status.RUNNING:
            assert time.monotonic() < deadline, "the worker never claimed the job"
            time.sleep(0.05)
        time.sleep(3)  # waiting on the lock longer than IMPORT_STALE_SECONDS

        assert import_jobs_fail_stale() == 0
        assert ImportJob.objects.get(pk=job.pk).status == ImportJob.Status.RUNNING
    finally:
        release.set()
        holder.result(timeout=30)
        worker.result(timeout=30)

    job.refresh_from_db()
    assert job.status == ImportJob.Status.SUCCEEDED, job.error
    assert Pair.objects.filter(campaign=campaign).count() == 1
