"""Job claims, cancels and sweeps that used to go wrong (review 13).

A cancel that nobody acted on (a job waiting for its last part, a job released after an error,
a sharded job whose cancel request died halfway), the pending-evaluation sweep undoing a cancel
or retrying a failure every minute, staleness judged with one host's clock against another's,
transient releases using up the lost-worker attempts, and one broker refusal ending the
stale-job sweep. Tasks a step sends are recorded (``send_task`` replaced) rather than run.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
import time_machine
from celery import current_app
from django.db import OperationalError
from django.utils import timezone
from kombu.exceptions import OperationalError as BrokerOperationalError

from scoring.evaluation.services import evaluation_run, evaluations_enqueue_pending
from scoring.jobs.runner import (
    MAX_ATTEMPTS,
    ClaimOutcome,
    job_cancel,
    job_claim,
    job_create,
    job_release,
    job_run,
)
from scoring.jobs.shards import shard_claim, shard_finish, shard_run
from scoring.models import EvaluationResult, EvaluationSet, Job, JobShard, ModelVersion
from scoring.tasks.periodic import recover_stale_jobs_task
from tests.factories import CampaignFactory


@pytest.fixture
def job(db):
    return job_create(campaign=CampaignFactory(), kind=Job.Kind.EXPORT)


def _waiting_for_its_last_part(**fields) -> Job:
    """A job whose last shard sent_tasks its task on: running, stage finishing, no worker."""
    defaults = {
        "kind": Job.Kind.EVALUATE,
        "status": Job.Status.RUNNING,
        "stage": Job.Stage.FINISHING,
        "worker": "",
        "attempts": 1,
        "heartbeat_at": timezone.now(),
        "params": {"version": 0, "sets": []},
    }
    return Job.objects.create(**{"campaign": CampaignFactory(), **defaults, **fields})


def _store(context):
    # Like evaluation's last part: sums the shards' counts and stores them, with no check().
    return {"stored": True}


def test_the_pending_evaluation_sweep_does_not_undo_a_cancel_or_loop_on_a_failure(db, sent_tasks):
    campaign = CampaignFactory()
    ModelVersion.objects.create(campaign=campaign, number=1, base="tiny", checkpoint="/nonexistent")
    EvaluationSet.objects.create(campaign=campaign, name="bench", sha256="0" * 64, pairs_count=3)
    (first,) = evaluations_enqueue_pending()
    job_cancel(job=Job.objects.get(pk=first))
    assert evaluations_enqueue_pending() == []  # the admin's cancel stands

    # A new set is a new evaluation: asked for; when it fails, not again every minute.
    EvaluationSet.objects.create(campaign=campaign, name="more", sha256="1" * 64, pairs_count=3)
    (second,) = evaluations_enqueue_pending()
    Job.objects.filter(pk=second).update(status=Job.Status.FAILED, error="files missing")
    assert evaluations_enqueue_pending() == []


def test_a_cancel_of_a_job_waiting_for_its_finishing_part_is_honoured(db):
    job = _waiting_for_its_last_part()
    job = job_cancel(job=job)
    assert job.status == Job.Status.CANCELLED  # no worker owned it to see a request
    claim = job_run(job_id=job.pk, worker="gpu:1", work_for=lambda _job: _store)
    job.refresh_from_db()
    assert claim.outcome == ClaimOutcome.FINISHED
    assert job.status == Job.Status.CANCELLED and job.result == {}


def test_the_finishing_claim_cancels_a_job_whose_cancel_was_asked(db):
    # E.g. a row an earlier version left: the request set while the job waited.
    job = _waiting_for_its_last_part(cancel_requested=True)
    claim = job_run(job_id=job.pk, worker="gpu:1", work_for=lambda _job: _store)
    job.refresh_from_db()
    assert claim.outcome == ClaimOutcome.FINISHED
    assert job.status == Job.Status.CANCELLED and job.result == {}
    assert job.log_lines.filter(message="cancelled before its last part started").exists()


def test_a_cancelled_evaluation_waiting_for_its_last_part_stores_nothing(db):
    campaign = CampaignFactory()
    version = ModelVersion.objects.create(
        campaign=campaign, number=1, base="tiny", checkpoint="/nonexistent"
    )
    bench = EvaluationSet.objects.create(
        campaign=campaign, name="bench", sha256="a" * 64, pairs_count=0
    )
    job = _waiting_for_its_last_part(
        campaign=campaign,
        params={"version": version.pk, "sets": [bench.pk]},
        result={"set_sha256": {str(bench.pk): bench.sha256}, "shard_progress": [0.0, 0.95]},
    )
    job_cancel(job=job)
    evaluation_run(job_id=job.pk, worker="gpu:1")
    job.refresh_from_db()
    assert job.status == Job.Status.CANCELLED
    assert not EvaluationResult.objects.exists()


def test_a_sharded_job_whose_cancel_was_asked_is_not_handed_to_its_last_part(db, sent_tasks):
    job = Job.objects.create(
        campaign=CampaignFactory(),
        kind=Job.Kind.SCORE,
        status=Job.Status.RUNNING,
        stage=Job.Stage.SHARDS,
        attempts=1,
        heartbeat_at=timezone.now(),
        cancel_requested=True,  # asked while its planner ran, before the job got to its shards
        result={"shard_progress": [0.0, 0.9]},
    )
    shard = JobShard.objects.create(
        job=job, index=0, first_id=1, last_id=10, planned=10, status=JobShard.Status.RUNNING,
        attempts=1, worker="gpu:1", heartbeat_at=timezone.now(),
    )  # fmt: skip
    assert not shard_finish(shard=shard)
    job.refresh_from_db()
    assert (job.status, job.stage) == (Job.Status.CANCELLED, Job.Stage.SHARDS)
    assert sent_tasks == []  # no task for a last part


def test_a_cancelled_then_released_job_does_not_stay_queued_forever(job):
    def work_for(_job):
        def work(context):
            job_cancel(job=context.job)  # an admin asks it to stop while it runs
            raise OperationalError("server closed the connection unexpectedly")

        return work

    with pytest.raises(OperationalError):  # re-raised for the task's retry
        job_run(job_id=job.pk, worker="w", work_for=work_for)
    job.refresh_from_db()
    # An export task is not retried, and the released-job sweep skips cancelled requests.
    assert job.status == Job.Status.CANCELLED
    assert job.log_lines.filter(message__startswith="stopped by OperationalError").exists()


def test_a_worker_with_a_fast_clock_does_not_take_over_a_live_job(job):
    assert job_claim(job_id=job.pk, worker="host-a:1").outcome == ClaimOutcome.CLAIMED
    shard_job = Job.objects.create(
        campaign=CampaignFactory(), kind=Job.Kind.SCORE, status=Job.Status.RUNNING,
        stage=Job.Stage.SHARDS, attempts=1, heartbeat_at=timezone.now(),
    )  # fmt: skip
    shard = JobShard.objects.create(job=shard_job, index=0, first_id=1, last_id=9, planned=9)
    assert shard_claim(shard_id=shard.pk, worker="host-a:1").outcome == "claimed"
    with time_machine.travel(timezone.now() + timedelta(seconds=90)):  # host B's clock
        job_claim_b = job_claim(job_id=job.pk, worker="host-b:1")
        shard_claim_b = shard_claim(shard_id=shard.pk, worker="host-b:1")
    assert job_claim_b.outcome == ClaimOutcome.BUSY, "a live job was taken over (clock skew)"
    assert 0 < job_claim_b.retry_in <= 61
    assert shard_claim_b.outcome == "busy", "a live shard was taken over (clock skew)"


def test_transient_releases_do_not_use_up_the_lost_worker_attempts(job):
    for n in range(MAX_ATTEMPTS - 1):
        claimed = job_claim(job_id=job.pk, worker=f"w{n}").job
        assert job_release(job=claimed, reason="OperationalError: blip")
    assert job_claim(job_id=job.pk, worker="w-last").outcome == ClaimOutcome.CLAIMED
    # This worker is lost once (kill -9); its task is delivered again.
    Job.objects.filter(pk=job.pk).update(heartbeat_at=timezone.now() - timedelta(hours=1))
    claim = job_claim(job_id=job.pk, worker="taker")
    job.refresh_from_db()
    assert claim.outcome == ClaimOutcome.CLAIMED, f"job {job.status}: {job.error!r}"
    # Lost workers still count: after MAX_ATTEMPTS of them the job fails.
    for n in range(MAX_ATTEMPTS - 1):
        Job.objects.filter(pk=job.pk).update(heartbeat_at=timezone.now() - timedelta(hours=1))
        job_claim(job_id=job.pk, worker=f"taker{n}")
    job.refresh_from_db()
    assert job.status == Job.Status.FAILED and "worker was lost" in job.error


def test_a_sharded_job_with_a_cancel_request_and_only_queued_shards_ends(db, sent_tasks):
    job = Job.objects.create(
        campaign=CampaignFactory(),
        kind=Job.Kind.SCORE,
        status=Job.Status.RUNNING,
        stage=Job.Stage.SHARDS,
        worker="",
        attempts=1,
        heartbeat_at=timezone.now() - timedelta(hours=1),
        cancel_requested=True,  # a cancel request that died before it cancelled the job
        result={"score_version_id": 1, "shard_progress": [0.0, 0.9]},
    )
    shards = [
        JobShard.objects.create(
            job=job, index=i, first_id=i * 10 + 1, last_id=i * 10 + 10, planned=10
        )
        for i in range(2)
    ]
    for shard in shards:
        shard_run(shard_id=shard.pk, worker="gpu:1", work_for=lambda s: lambda c: None)
    job.refresh_from_db()
    assert job.status == Job.Status.CANCELLED
    assert set(JobShard.objects.filter(job=job).values_list("status", flat=True)) == {
        JobShard.Status.CANCELLED
    }


@pytest.mark.django_db(transaction=True)  # tasks are sent_tasks at once, as in the beat's sweep
def test_a_broker_refusing_one_stale_job_does_not_end_the_sweep(monkeypatch):
    stale = [job_create(campaign=CampaignFactory(), kind=Job.Kind.EXPORT) for _ in range(2)]
    for job in stale:
        job_claim(job_id=job.pk, worker="gone:1")
    Job.objects.filter(pk__in=[job.pk for job in stale]).update(
        heartbeat_at=timezone.now() - timedelta(hours=1)
    )
    sent_tasks: list[tuple] = []

    def send_task(name, args=(), **options):
        if not sent_tasks:
            sent_tasks.append(())
            raise BrokerOperationalError("Connection refused")
        sent_tasks.append(args)

    monkeypatch.setattr(current_app, "send_task", send_task)
    (recovered,) = recover_stale_jobs_task()  # the one the broker took; the other is logged
    assert sent_tasks == [(), (recovered,)]
