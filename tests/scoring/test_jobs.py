"""Job rows: claims, redelivery, fencing of lost workers, progress and cancellation."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from scoring.jobs.runner import (
    MAX_ATTEMPTS,
    ClaimOutcome,
    JobCancelled,
    JobConflict,
    JobContext,
    job_cancel,
    job_claim,
    job_create,
    job_finish,
    job_progress,
    job_run,
)
from scoring.loop.model_jobs import job_run_inline
from scoring.loop.requests import loop_request, scoring_request, training_request
from scoring.models import Job, JobLogLine, ModelVersion
from scoring.tasks.model_jobs import train_reward_model_task
from tests.conftest import start_in_thread, wait_for
from tests.factories import CampaignFactory
from tests.scoring.loop_support import label_queue, make_loop_campaign, use_tiny_base


@pytest.fixture
def job(db):
    return job_create(campaign=CampaignFactory(), kind=Job.Kind.TRAIN)


def test_a_queued_job_is_claimed_once(job):
    first = job_claim(job_id=job.pk, worker="w1")
    second = job_claim(job_id=job.pk, worker="w2")
    assert first.outcome == ClaimOutcome.CLAIMED and first.job.worker == "w1"
    assert first.job.attempts == 1 and first.job.status == Job.Status.RUNNING
    assert second.outcome == ClaimOutcome.BUSY and 0 < second.retry_in <= 61


def test_a_running_job_with_a_stale_heartbeat_is_taken_over(job, settings):
    settings.ARBITER = {**settings.ARBITER, "JOB_STALE_SECONDS": 30}
    job_claim(job_id=job.pk, worker="dead")
    Job.objects.filter(pk=job.pk).update(heartbeat_at=timezone.now() - timedelta(seconds=31))
    claim = job_claim(job_id=job.pk, worker="alive")
    assert claim.outcome == ClaimOutcome.CLAIMED
    assert claim.job.worker == "alive" and claim.job.attempts == 2
    assert JobLogLine.objects.filter(job=job, message__contains="worker lost").exists()


def test_a_job_whose_worker_keeps_dying_is_marked_failed(job):
    for attempt in range(MAX_ATTEMPTS):
        assert job_claim(job_id=job.pk, worker=f"w{attempt}").outcome == ClaimOutcome.CLAIMED
        Job.objects.filter(pk=job.pk).update(heartbeat_at=timezone.now() - timedelta(hours=1))
    claim = job_claim(job_id=job.pk, worker="last")
    job.refresh_from_db()
    assert claim.outcome == ClaimOutcome.FINISHED
    assert job.status == Job.Status.FAILED and "worker was lost" in job.error


def test_a_worker_that_lost_its_job_can_neither_report_nor_finish(job):
    old = job_claim(job_id=job.pk, worker="old").job
    Job.objects.filter(pk=job.pk).update(heartbeat_at=timezone.now() - timedelta(hours=1))
    new = job_claim(job_id=job.pk, worker="new").job
    assert not job_progress(job=old, fraction=0.5, message="zombie")
    assert not job_finish(job=old, result={"version": 99})
    job.refresh_from_db()
    assert job.status == Job.Status.RUNNING and job.worker == "new" and job.result == {}
    assert job_progress(job=new, fraction=0.5, message="alive")


def test_progress_keeps_a_cancel_request(job):
    claimed = job_claim(job_id=job.pk, worker="w").job
    job_cancel(job=job)
    assert job_progress(job=claimed, fraction=0.3, message="training")
    job.refresh_from_db()
    assert job.cancel_requested and job.progress == pytest.approx(0.3)
    assert JobLogLine.objects.filter(job=job, message="training").exists()


def test_cancelling_a_queued_job_ends_it_before_any_worker_starts(job):
    job_cancel(job=job)
    job.refresh_from_db()
    assert job.status == Job.Status.CANCELLED
    assert job_claim(job_id=job.pk, worker="w").outcome == ClaimOutcome.FINISHED


def test_a_running_job_sees_a_cancel_at_its_next_check(job):
    context = JobContext(job_claim(job_id=job.pk, worker="w").job)
    context.check()  # nothing asked yet
    job_cancel(job=job)
    with pytest.raises(JobCancelled, match="^$"):
        context.check()


def test_a_cancelled_job_records_cancelled(job):
    def work_for(_job):
        def work(context):
            job_cancel(job=context.job)
            context.check()
            return {"never": True}

        return work

    claim = job_run(job_id=job.pk, worker="w", work_for=work_for)
    assert claim.job.status == Job.Status.CANCELLED and claim.job.result == {}


def test_a_cancel_whose_worker_then_died_ends_the_job_cancelled_not_failed(job, settings):
    settings.ARBITER = {**settings.ARBITER, "JOB_STALE_SECONDS": 30}
    job_claim(job_id=job.pk, worker="dead")
    job_cancel(job=job)
    Job.objects.filter(pk=job.pk).update(heartbeat_at=timezone.now() - timedelta(hours=1))
    claim = job_claim(job_id=job.pk, worker="next")
    job.refresh_from_db()
    assert claim.outcome == ClaimOutcome.FINISHED
    assert job.status == Job.Status.CANCELLED and job.error == "" and job.attempts == 1
    assert job.log_lines.filter(message__contains="worker was lost before it stopped").exists()


def test_the_log_of_a_cancel_says_what_the_work_had_registered(job):
    def work_for(_job):
        def work(context):
            context.cancel_leaves = "v3 was registered and is the active model"
            job_cancel(job=context.job)
            context.check()
            return {"never": True}

        return work

    claim = job_run(job_id=job.pk, worker="w", work_for=work_for)
    assert claim.job.status == Job.Status.CANCELLED
    messages = [line.message for line in claim.job.log_lines.all()]
    assert "cancelled; v3 was registered and is the active model" in messages
    assert not any("nothing was registered" in message for message in messages)


def test_an_unexpected_error_fails_the_job_with_its_message(job):
    def work_for(_job):
        def work(context):
            raise RuntimeError("CUDA out of memory")

        return work

    with pytest.raises(RuntimeError, match="CUDA out of memory"):
        job_run(job_id=job.pk, worker="w", work_for=work_for)
    job.refresh_from_db()
    assert job.status == Job.Status.FAILED and "CUDA out of memory" in job.error


def test_one_model_job_at_a_time_per_campaign(db):
    campaign = CampaignFactory()
    first = training_request(campaign=campaign, enqueue=False)
    assert loop_request(campaign=campaign, enqueue=False) == first
    assert scoring_request(campaign=campaign, enqueue=False) == first
    with pytest.raises(JobConflict, match="is already queued"):
        job_create(campaign=campaign, kind=Job.Kind.LOOP)
    job_cancel(job=first)
    assert loop_request(campaign=campaign, enqueue=False) != first
    # Other campaigns are independent.
    assert training_request(campaign=CampaignFactory(), enqueue=False) != first


@pytest.mark.smoke
def test_delivering_the_same_task_twice_does_the_work_once(
    db, settings, tmp_path, annotator_a, annotator_b, annotator_c
):
    use_tiny_base(settings, model_dir=tmp_path / "models")
    campaign = make_loop_campaign(labelled=6, pooled=2, gold=2)
    label_queue(campaign, [annotator_a, annotator_b, annotator_c])
    job = training_request(campaign=campaign, enqueue=False)
    train_reward_model_task(job.pk)  # the task body, as a worker runs it
    train_reward_model_task(job.pk)  # a redelivery of the same message
    job.refresh_from_db()
    assert job.status == Job.Status.SUCCEEDED and job.attempts == 1
    assert ModelVersion.objects.filter(campaign=campaign).count() == 1


@pytest.mark.django_db(transaction=True)
def test_cancelling_during_training_stops_it_and_registers_nothing(
    settings, tmp_path, annotator_a, annotator_b, annotator_c
):
    use_tiny_base(settings, model_dir=tmp_path / "models")
    settings.ARBITER = {**settings.ARBITER, "JOB_HEARTBEAT_SECONDS": 0.2}
    campaign = make_loop_campaign(labelled=6, pooled=2, gold=2)
    label_queue(campaign, [annotator_a, annotator_b, annotator_c])
    job = training_request(
        campaign=campaign, enqueue=False, params={"mode": "full", "max_steps": 5000}
    )

    def run() -> None:
        try:
            job_run_inline(job=Job.objects.get(pk=job.pk))
        finally:
            connection.close()

    runner = start_in_thread(run)
    try:
        wait_for(
            lambda: Job.objects.filter(
                pk=job.pk, progress__gt=0, message__startswith="step"
            ).exists(),
            timeout=120,
            what="training steps",
        )
        job_cancel(job=job)
    finally:
        runner.result(timeout=120)  # re-raises what the run raised
    job.refresh_from_db()
    assert job.status == Job.Status.CANCELLED
    assert job.progress < 0.9
    assert not ModelVersion.objects.filter(campaign=campaign).exists()


def test_silent_running_jobs_are_sent_again_for_a_worker_to_take_over(
    db, django_capture_on_commit_callbacks
):
    from scoring.jobs.runner import jobs_recover_stale

    silent = job_create(campaign=CampaignFactory(), kind=Job.Kind.LOOP)
    alive = job_create(campaign=CampaignFactory(), kind=Job.Kind.TRAIN)
    for job in (silent, alive):
        job_claim(job_id=job.pk, worker="w")
    Job.objects.filter(pk=silent.pk).update(heartbeat_at=timezone.now() - timedelta(hours=1))
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        assert jobs_recover_stale() == [silent.pk]
    assert len(callbacks) == 1


def test_a_released_job_whose_retries_ran_out_is_sent_again_once_a_while(
    db, django_capture_on_commit_callbacks
):
    from scoring.jobs.claims import RELEASED_STALE_PERIODS, stale_seconds
    from scoring.jobs.runner import job_release, jobs_recover_stale

    released = job_create(campaign=CampaignFactory(), kind=Job.Kind.TRAIN)
    waiting = job_create(campaign=CampaignFactory(), kind=Job.Kind.TRAIN)  # never claimed
    recent = job_create(campaign=CampaignFactory(), kind=Job.Kind.TRAIN)
    for job in (released, recent):
        job_release(job=job_claim(job_id=job.pk, worker="w").job, reason="database restarting")
    long_ago = timezone.now() - timedelta(seconds=stale_seconds() * RELEASED_STALE_PERIODS + 1)
    Job.objects.filter(pk=released.pk).update(heartbeat_at=long_ago)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        assert jobs_recover_stale() == [released.pk]
        assert jobs_recover_stale() == []  # not again at the next sweep
    assert len(callbacks) == 1
    assert released.log_lines.filter(message__contains="never taken again").exists()
    assert job_claim(job_id=released.pk, worker="w2").outcome == ClaimOutcome.CLAIMED
    assert Job.objects.get(pk=waiting.pk).status == Job.Status.QUEUED


@pytest.mark.parametrize(
    "kind",
    [Job.Kind.EXPORT, Job.Kind.CURATE, Job.Kind.EVALUATE, Job.Kind.CROSS_VALIDATE],
)
def test_jobs_of_every_kind_are_recovered_not_only_the_model_jobs(
    kind, db, django_capture_on_commit_callbacks
):
    # Export, curation and evaluation tasks have no automatic retry: a job their run released
    # after a database error was queued with no task left, for ever.
    from scoring.jobs.claims import RELEASED_STALE_PERIODS, stale_seconds
    from scoring.jobs.runner import job_release, jobs_recover_stale

    released = job_create(campaign=CampaignFactory(), kind=kind)
    silent = job_create(campaign=CampaignFactory(), kind=kind)
    job_release(job=job_claim(job_id=released.pk, worker="w").job, reason="database restarting")
    job_claim(job_id=silent.pk, worker="w")
    long_ago = timezone.now() - timedelta(seconds=stale_seconds() * RELEASED_STALE_PERIODS + 1)
    Job.objects.filter(pk__in=[released.pk, silent.pk]).update(heartbeat_at=long_ago)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        assert sorted(jobs_recover_stale()) == sorted([released.pk, silent.pk])
    assert len(callbacks) == 2
    assert job_claim(job_id=released.pk, worker="w2").outcome == ClaimOutcome.CLAIMED
    assert job_claim(job_id=silent.pk, worker="w2").outcome == ClaimOutcome.CLAIMED
