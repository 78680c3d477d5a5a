"""Sharded jobs that used to be left running: a last shard killed between its commit and
handing the job on, and ``--inline`` jobs whose shard hit a retryable error.

The Celery tasks a step sends are recorded (``send_task`` replaced) rather than run: these
tests drive the services as a worker would, one step at a time.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from celery import current_app
from django.utils import timezone

from annotation.models import Pair
from scoring.jobs import shards
from scoring.jobs.runner import TASK_NAMES, jobs_recover_stale
from scoring.jobs.shards import MAX_SHARD_ATTEMPTS, SHARD_TASK, shard_run, shards_recover_stale
from scoring.loop import model_jobs
from scoring.loop.model_jobs import job_run_inline
from scoring.loop.requests import scoring_request
from scoring.models import Job, JobShard, ModelVersion
from tests.factories import CampaignFactory, PairFactory


def _no_work(shard):
    return lambda context: None


# --- The last shard dies between its commit and handing the job on --------------------------


def _job_whose_last_shard_died_after_its_commit() -> tuple[Job, JobShard]:
    """Both shards committed SUCCEEDED; the worker of the last one was killed before it
    moved the job to stage ``finishing``, so the job is still in stage ``shards``."""
    long_ago = timezone.now() - timedelta(hours=1)
    job = Job.objects.create(
        campaign=CampaignFactory(),
        kind=Job.Kind.SCORE,
        status=Job.Status.RUNNING,
        stage=Job.Stage.SHARDS,
        heartbeat_at=long_ago,
        attempts=1,
        result={"score_version_id": 1, "shard_progress": [0.0, 0.9]},
    )
    JobShard.objects.create(
        job=job,
        index=0,
        first_id=1,
        last_id=10,
        planned=10,
        status=JobShard.Status.SUCCEEDED,
        attempts=1,
        worker="w:1",
        heartbeat_at=long_ago,
    )
    last = JobShard.objects.create(
        job=job,
        index=1,
        first_id=11,
        last_id=20,
        planned=10,
        status=JobShard.Status.SUCCEEDED,
        attempts=1,
        worker="w:2",
        heartbeat_at=long_ago,
    )
    return job, last


def _assert_handed_on_once(job: Job, sent_tasks) -> None:
    job.refresh_from_db()
    assert (job.status, job.stage, job.worker) == (Job.Status.RUNNING, Job.Stage.FINISHING, "")
    assert job.progress == pytest.approx(0.9)
    assert sent_tasks == [(TASK_NAMES[Job.Kind.SCORE], (job.pk,))]
    logged = list(job.log_lines.values_list("message", flat=True))
    assert logged.count("all 2 shards done") == 1


def test_a_redelivered_last_shard_hands_on_a_job_its_dead_worker_left_in_stage_shards(
    db, sent_tasks, django_capture_on_commit_callbacks
):
    job, last = _job_whose_last_shard_died_after_its_commit()
    with django_capture_on_commit_callbacks(execute=True):
        claim = shard_run(shard_id=last.pk, worker="w:3", work_for=_no_work)
    assert claim.outcome == "finished"
    assert JobShard.objects.get(pk=last.pk).attempts == 1  # not run again
    _assert_handed_on_once(job, sent_tasks)
    # A further delivery finds the job handed on: nothing more is sent_tasks.
    with django_capture_on_commit_callbacks(execute=True):
        assert shard_run(shard_id=last.pk, worker="w:4", work_for=_no_work).outcome == "finished"
    _assert_handed_on_once(job, sent_tasks)


def test_the_stale_sweep_hands_on_a_job_whose_shards_all_succeeded_once(
    db, sent_tasks, django_capture_on_commit_callbacks
):
    job, _last = _job_whose_last_shard_died_after_its_commit()
    with django_capture_on_commit_callbacks(execute=True):
        assert jobs_recover_stale() + shards_recover_stale() == []  # no shard to send again
    _assert_handed_on_once(job, sent_tasks)
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        assert jobs_recover_stale() + shards_recover_stale() == []
    assert callbacks == []
    _assert_handed_on_once(job, sent_tasks)


def test_the_sweep_leaves_a_job_with_a_shard_still_to_run_to_its_shards(
    db, sent_tasks, django_capture_on_commit_callbacks
):
    job, last = _job_whose_last_shard_died_after_its_commit()
    JobShard.objects.filter(pk=last.pk).update(status=JobShard.Status.QUEUED)
    with django_capture_on_commit_callbacks(execute=True):
        assert shards_recover_stale() == [last.pk]
    job.refresh_from_db()
    assert job.stage == Job.Stage.SHARDS
    assert sent_tasks == [(SHARD_TASK, (last.pk,))]


# --- --inline jobs whose shard hits a retryable error ----------------------------------------


def _inline_scoring_job(campaign, monkeypatch, failures: int) -> tuple[Job, list[int]]:
    """Run a score job of 4 pooled pairs in shards of 2 inline; the first ``failures`` shard
    runs raise a transient error (the shard work replaced to inject the fault)."""
    ModelVersion.objects.create(
        campaign=campaign,
        number=1,
        base="test",
        checkpoint="/nowhere",
        metrics={"encoder": "review-enc"},
        is_active=True,
    )
    PairFactory.create_batch(4, campaign=campaign, status=Pair.Status.POOLED)
    calls: list[int] = []

    def flaky_work_for(shard):
        def work(context):
            calls.append(shard.pk)
            if len(calls) <= failures:
                raise RuntimeError("database hiccup")

        return work

    monkeypatch.setattr(model_jobs, "shard_score_work", flaky_work_for)
    monkeypatch.setattr(shards, "RETRY_SECONDS", 0.01)
    request = scoring_request(campaign=campaign, params={"shard_size": 2}, enqueue=False)
    return job_run_inline(job=request), calls


def test_an_inline_job_runs_again_a_shard_that_failed_once_and_succeeds(
    db, monkeypatch, settings, sent_tasks
):
    # No beat during the test: the heartbeat thread's connection cannot see its rows.
    settings.ARBITER = {**settings.ARBITER, "JOB_HEARTBEAT_SECONDS": 3600.0}
    job, calls = _inline_scoring_job(CampaignFactory(), monkeypatch, failures=1)
    rows = list(
        JobShard.objects.filter(job=job).order_by("index").values_list("status", "attempts")
    )
    assert job.status == Job.Status.SUCCEEDED, (job.status, job.stage, job.error, rows)
    assert rows == [(JobShard.Status.SUCCEEDED, 2), (JobShard.Status.SUCCEEDED, 1)]
    assert len(calls) == 3
    assert sent_tasks == []  # inline: no Celery task, not even for the retry


def test_an_inline_shard_that_fails_every_attempt_fails_the_job(
    db, monkeypatch, settings, sent_tasks
):
    settings.ARBITER = {**settings.ARBITER, "JOB_HEARTBEAT_SECONDS": 3600.0}
    job, calls = _inline_scoring_job(CampaignFactory(), monkeypatch, failures=100)
    assert job.status == Job.Status.FAILED
    assert job.error == "shard 0 failed: RuntimeError: database hiccup"
    rows = list(
        JobShard.objects.filter(job=job).order_by("index").values_list("status", "attempts")
    )
    # Each pass runs every queued shard once: the second shard had one attempt fewer.
    assert rows == [
        (JobShard.Status.FAILED, MAX_SHARD_ATTEMPTS),
        (JobShard.Status.CANCELLED, MAX_SHARD_ATTEMPTS - 1),
    ]
    assert len(calls) == 2 * MAX_SHARD_ATTEMPTS - 1
    assert sent_tasks == []


def test_a_broker_refusing_one_stale_shard_does_not_end_the_sweep(db, monkeypatch):
    job, last = _job_whose_last_shard_died_after_its_commit()
    first = JobShard.objects.get(job=job, index=0)
    JobShard.objects.filter(job=job).update(status=JobShard.Status.QUEUED)
    sent: list[int] = []

    def send_task(name, args=(), **options):
        if args == (first.pk,):
            raise ConnectionError("broker down for this one")
        sent.append(args[0])

    monkeypatch.setattr(current_app, "send_task", send_task)
    assert shards_recover_stale() == [last.pk]
    assert sent == [last.pk]


def test_queued_shards_waiting_behind_other_work_are_not_sent_at_every_sweep(
    db, sent_tasks, django_capture_on_commit_callbacks, settings
):
    """Sent again once the job was silent ten stale periods, then not before twice as long
    (every gpu worker busy with an hours-long training: duplicates at every sweep)."""
    job, last = _job_whose_last_shard_died_after_its_commit()
    JobShard.objects.filter(pk=last.pk).update(status=JobShard.Status.QUEUED)
    assert shards_recover_stale() == [last.pk]
    assert shards_recover_stale() == []  # the next sweeps wait
    assert shards_recover_stale() == []
    stale_seconds = float(settings.ARBITER.get("JOB_STALE_SECONDS", 60))
    # Silent for less than ten stale periods since: still waiting.
    Job.objects.filter(pk=job.pk).update(
        heartbeat_at=timezone.now() - timedelta(seconds=5 * stale_seconds)
    )
    assert shards_recover_stale() == []
    # Silent for long, but sent again less than twenty stale periods ago: each send waits
    # twice as long as the one before (review 21B).
    Job.objects.filter(pk=job.pk).update(
        heartbeat_at=timezone.now() - timedelta(seconds=11 * stale_seconds),
        resent_at=timezone.now() - timedelta(seconds=11 * stale_seconds),
    )
    assert shards_recover_stale() == []
    Job.objects.filter(pk=job.pk).update(
        resent_at=timezone.now() - timedelta(seconds=21 * stale_seconds)
    )
    assert shards_recover_stale() == [last.pk]
    assert [task for task in sent_tasks if task[0] == SHARD_TASK] == [(SHARD_TASK, (last.pk,))] * 2
