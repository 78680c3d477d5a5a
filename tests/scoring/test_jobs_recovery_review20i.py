"""A job whose task was lost before any worker claimed it (review 20i).

The stale-job sweep sent again running jobs whose heartbeat went silent and queued jobs that a
worker had claimed and released, but never a queued job no worker had claimed: one whose task
the broker lost (a restart without its messages) or whose request died between committing the
row and sending the task stayed queued for good, and a train, score or loop job refused every
later model job of its campaign (auto-retrain included) until an admin cancelled it.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from scoring.datasets.export.filters import ExportFilters
from scoring.datasets.export.snapshots import export_create
from scoring.jobs.claims import RELEASED_STALE_PERIODS, stale_seconds
from scoring.jobs.runner import job_cancel, job_create, jobs_recover_stale
from scoring.loop.requests import loop_request
from scoring.models import Job
from scoring.tasks.periodic import recover_stale_jobs_task
from tests.conftest import wait_for
from tests.factories import CampaignFactory


def _queued_since(job: Job, seconds: float) -> None:
    Job.objects.filter(pk=job.pk).update(created_at=timezone.now() - timedelta(seconds=seconds))


def test_a_queued_job_no_worker_ever_took_is_sent_again_once_a_while(
    db, django_capture_on_commit_callbacks
):
    long_wait = stale_seconds() * RELEASED_STALE_PERIODS + 5
    lost = loop_request(campaign=CampaignFactory(), enqueue=False)  # its task never sent
    recent = loop_request(campaign=CampaignFactory(), enqueue=False)
    cancelled = job_create(campaign=CampaignFactory(), kind=Job.Kind.TRAIN)
    job_cancel(job=cancelled)
    for job in (lost, cancelled):
        _queued_since(job, long_wait)
    _queued_since(recent, long_wait - 30)

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        assert jobs_recover_stale() == [lost.pk]
        assert jobs_recover_stale() == []  # the next sweep waits as long again
    assert len(callbacks) == 1
    assert lost.log_lines.filter(message="never taken by a worker; sent again").exists()
    assert Job.objects.get(pk=recent.pk).status == Job.Status.QUEUED
    assert Job.objects.get(pk=cancelled.pk).status == Job.Status.CANCELLED

    # Still not taken as long after that send: not yet (each send waits twice as long as the
    # one before, review 21B); twice as long after it: sent again.
    Job.objects.filter(pk=lost.pk).update(resent_at=timezone.now() - timedelta(seconds=long_wait))
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        assert jobs_recover_stale() == []
    Job.objects.filter(pk=lost.pk).update(
        resent_at=timezone.now() - timedelta(seconds=2 * long_wait)
    )
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        assert jobs_recover_stale() == [lost.pk]
    assert len(callbacks) == 1
    # Never taken by a worker, still (its resends leave its heartbeat alone).
    assert lost.log_lines.filter(message="never taken by a worker; sent again").count() == 2


@pytest.mark.worker
def test_a_worker_runs_a_job_whose_task_was_lost_once_the_sweep_sends_it_again(worker):
    campaign = CampaignFactory()
    # Committed, and its task lost before any worker took it.
    snapshot = export_create(
        campaign=campaign, file_format="jsonl", filters=ExportFilters(), enqueue=False
    )
    job = snapshot.job
    _queued_since(job, stale_seconds() * RELEASED_STALE_PERIODS + 5)

    assert recover_stale_jobs_task() == [job.pk]  # the beat's sweep, as it runs

    wait_for(lambda: Job.objects.get(pk=job.pk).is_finished, timeout=120, what="the export job")
    job.refresh_from_db()
    assert job.status == Job.Status.SUCCEEDED, job.error
    assert job.attempts == 1
    assert job.log_lines.filter(message="never taken by a worker; sent again").exists()
