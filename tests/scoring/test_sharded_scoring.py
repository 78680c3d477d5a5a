"""Sharded pool scoring: the planner, and shards run by several real Celery worker processes.

The worker tests run two workers of their own on a queue no other test uses, with an 8 s
visibility timeout and 3 s staleness (so a killed worker's shard is taken over in seconds),
and shards of a few pairs scored a couple at a time (so a shard is still running when a test
kills or cancels it).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import time

import numpy as np
import pytest
from django.conf import settings
from django.core.management import call_command
from django.db.models import Sum

from scoring.jobs.shards import shard_ranges, shard_size_of
from scoring.loop.model_jobs import job_run_inline
from scoring.loop.pool_scoring import pool_pairs, scoring_targets
from scoring.loop.requests import scoring_request, training_request
from scoring.models import Job, JobShard, PairScore
from tests.conftest import start_workers, stop_worker, wait_for
from tests.factories import CampaignFactory, PairFactory
from tests.scoring.loop_support import (
    campaign_models_dir,
    label_queue,
    make_loop_campaign,
    use_tiny_base,
)

QUEUE = "gpu-shards-test"
_WORKER_ENV = {
    "CELERY_VISIBILITY_TIMEOUT": "8",
    "CELERY_UNACKED_RESTORE_INTERVAL": "1",
    "ARBITER_JOB_STALE_SECONDS": "3",
    "ARBITER_JOB_HEARTBEAT_SECONDS": "0.5",
    "ARBITER_SCORE_CHUNK": "2",
}


# --- The planner -------------------------------------------------------------------------


def test_shard_ranges_cover_every_target_once_in_id_order(db):
    campaign = CampaignFactory()
    pairs = PairFactory.create_batch(23, campaign=campaign)
    PairFactory.create_batch(3)  # another campaign's pairs are not in the ranges
    targets = scoring_targets(campaign=campaign)
    ranges = list(shard_ranges(targets, 5))
    assert [r.count for r in ranges] == [5, 5, 5, 5, 3]
    assert all(r.first_id <= r.last_id for r in ranges)
    assert all(a.last_id < b.first_id for a, b in zip(ranges, ranges[1:], strict=False))
    covered = [
        pk
        for r in ranges
        for pk in targets.filter(id__gte=r.first_id, id__lte=r.last_id)
        .order_by("id")
        .values_list("id", flat=True)
    ]
    assert covered == sorted(pair.pk for pair in pairs)


def test_shard_ranges_read_one_page_per_shard(db, django_assert_num_queries):
    campaign = CampaignFactory()
    PairFactory.create_batch(10, campaign=campaign)
    targets = scoring_targets(campaign=campaign)
    with django_assert_num_queries(4):  # 3 pages of 4, 4 and 2 ids, then an empty one
        assert len(list(shard_ranges(targets, 4))) == 3


def test_a_bad_shard_size_is_a_clear_job_error():
    from scoring.jobs.runner import JobError

    assert shard_size_of({}) == settings.ARBITER["SHARD_SIZE"]
    assert shard_size_of({"shard_size": "7"}) == 7
    for bad in (0, -3, "many"):
        with pytest.raises(JobError, match="shard_size"):
            shard_size_of({"shard_size": bad})


# --- Real workers -------------------------------------------------------------------------


def _purge() -> None:
    from config.celery import app

    with app.connection_for_write() as conn:
        conn.default_channel.queue_purge(QUEUE)


@pytest.fixture
def shard_workers(transactional_db, monkeypatch):
    """Two worker processes of one task slot each on the test's own queue."""
    for name, value in _WORKER_ENV.items():
        monkeypatch.setenv(name, value)
    _purge()
    started = []
    try:
        started = start_workers(
            [{"queues": QUEUE, "concurrency": 1, "name": name} for name in ("shard-a", "shard-b")]
        )
        yield started
    finally:
        for process in started:
            stop_worker(process, sig=signal.SIGKILL)
        _purge()


def _trained_campaign(settings_fixture, annotators, *, pooled: int):
    use_tiny_base(settings_fixture)
    campaign = make_loop_campaign(labelled=6, pooled=pooled, gold=4)
    label_queue(campaign, annotators)
    trained = job_run_inline(job=training_request(campaign=campaign, enqueue=False))
    assert trained.status == Job.Status.SUCCEEDED, trained.error
    return campaign


def _scores_are_complete_and_single(job: Job, campaign) -> int:
    version_id = job.result["scoring"]["version"]
    targets = set(scoring_targets(campaign=campaign).values_list("id", flat=True))
    scored = list(
        PairScore.objects.filter(
            model_version__campaign=campaign, model_version__number=version_id
        ).values_list("pair_id", flat=True)
    )
    assert sorted(scored) == sorted(targets)  # nothing missing, nothing twice
    assert JobShard.objects.filter(job=job).aggregate(n=Sum("scored"))["n"] == len(targets)
    return len(targets)


@pytest.mark.worker
@pytest.mark.slow
def test_two_workers_score_the_shards_of_one_pool_each_pair_once(
    shard_workers, settings, annotator_a, annotator_b, annotator_c
):
    campaign = _trained_campaign(
        settings, [annotator_a, annotator_b, annotator_c], pooled=60
    )
    try:
        job = scoring_request(campaign=campaign, params={"shard_size": 6}, queue=QUEUE)
        wait_for(lambda: Job.objects.get(pk=job.pk).is_finished, timeout=300, what="scoring")
        job.refresh_from_db()
        assert job.status == Job.Status.SUCCEEDED, job.error
        total = _scores_are_complete_and_single(job, campaign)
        assert job.result["shards"] == JobShard.objects.filter(job=job).count() == 12
        assert job.result["pool"] == pool_pairs(campaign=campaign).count() == 60
        assert job.result["scored"] == total == 70
        assert len(set(job.result["workers"])) > 1, job.result["workers"]
        assert not JobShard.objects.filter(job=job).exclude(status=JobShard.Status.SUCCEEDED)
        assert job.progress == 1.0
        messages = list(job.log_lines.values_list("message", flat=True))
        assert "split into 12 shards of up to 6 pairs" in messages
        assert any(m.startswith("scored 70 pairs with v1") for m in messages)

        # Scoring again with the same version scores nothing twice.
        again = scoring_request(campaign=campaign, params={"shard_size": 50}, queue=QUEUE)
        wait_for(lambda: Job.objects.get(pk=again.pk).is_finished, timeout=120, what="rescore")
        again.refresh_from_db()
        assert again.status == Job.Status.SUCCEEDED, again.error
        assert again.result["scored"] == 0 and again.result["shards"] == 2
        assert PairScore.objects.filter(model_version__campaign=campaign).count() == total
    finally:
        shutil.rmtree(campaign_models_dir(campaign), ignore_errors=True)


@pytest.mark.worker
@pytest.mark.slow
@pytest.mark.skipif(
    not settings.CELERY_BROKER_URL.startswith("redis"),
    reason="redelivery after a kill needs the Redis broker's visibility timeout",
)
def test_kill_9_of_a_worker_holding_a_shard_loses_and_doubles_nothing(
    shard_workers, settings, annotator_a, annotator_b, annotator_c
):
    campaign = _trained_campaign(
        settings, [annotator_a, annotator_b, annotator_c], pooled=120
    )
    first, _second = shard_workers
    try:
        job = scoring_request(campaign=campaign, params={"shard_size": 20}, queue=QUEUE)
        victim_node = f"shard-a-{os.getpid()}@"
        held = wait_for(
            lambda: JobShard.objects.filter(
                job=job, status=JobShard.Status.RUNNING, worker__startswith=victim_node
            ).first(),
            timeout=180,
            what="a shard running on the first worker",
        )
        os.killpg(first.pid, signal.SIGKILL)
        first.wait(timeout=10)
        held.refresh_from_db()
        killed_mid_shard = held.status == JobShard.Status.RUNNING

        wait_for(lambda: Job.objects.get(pk=job.pk).is_finished, timeout=300, what="the job")
        job.refresh_from_db()
        assert job.status == Job.Status.SUCCEEDED, job.error
        _scores_are_complete_and_single(job, campaign)
        held.refresh_from_db()
        assert held.status == JobShard.Status.SUCCEEDED
        if killed_mid_shard:
            assert held.attempts == 2 and not held.worker.startswith(victim_node)
            assert job.log_lines.filter(message__contains="worker lost; taken over").exists()
    finally:
        shutil.rmtree(campaign_models_dir(campaign), ignore_errors=True)


@pytest.mark.worker
@pytest.mark.slow
def test_cancelling_a_sharded_job_stops_every_shard(
    shard_workers, settings, annotator_a, annotator_b, annotator_c
):
    from scoring.jobs.runner import job_cancel

    campaign = _trained_campaign(
        settings, [annotator_a, annotator_b, annotator_c], pooled=120
    )
    try:
        job = scoring_request(campaign=campaign, params={"shard_size": 10}, queue=QUEUE)
        wait_for(
            lambda: JobShard.objects.filter(job=job, status=JobShard.Status.SUCCEEDED).exists(),
            timeout=180,
            what="a first shard done",
        )
        job = job_cancel(job=Job.objects.get(pk=job.pk))
        assert job.status == Job.Status.CANCELLED
        shards = JobShard.objects.filter(job=job)
        assert not shards.filter(status__in=(JobShard.Status.QUEUED, JobShard.Status.RUNNING))
        assert shards.filter(status=JobShard.Status.CANCELLED).count() >= 5
        scored = PairScore.objects.filter(model_version__campaign=campaign).count()
        time.sleep(4)  # a shard that was mid-chunk stops at its next chunk, writing nothing more
        assert PairScore.objects.filter(model_version__campaign=campaign).count() <= scored + 2
        assert Job.objects.get(pk=job.pk).status == Job.Status.CANCELLED
        assert not Job.objects.filter(pk=job.pk, stage=Job.Stage.FINISHING).exists()
    finally:
        shutil.rmtree(campaign_models_dir(campaign), ignore_errors=True)


@pytest.mark.worker
@pytest.mark.slow
def test_recovery_sends_again_shards_whose_messages_were_lost_or_whose_worker_died(
    transactional_db, monkeypatch, settings, annotator_a, annotator_b, annotator_c
):
    from datetime import timedelta

    from django.utils import timezone

    from scoring.jobs.shards import shards_recover_stale
    from scoring.loop.model_jobs import model_job_run

    campaign = _trained_campaign(settings, [annotator_a, annotator_b, annotator_c], pooled=30)
    settings.ARBITER = {**settings.ARBITER, "JOB_STALE_SECONDS": 3.0}
    for name, value in _WORKER_ENV.items():
        monkeypatch.setenv(name, value)
    _purge()
    workers = []
    try:
        # The job's first part plans the shards and sends their messages to the queue...
        job = scoring_request(
            campaign=campaign, params={"shard_size": 10}, enqueue=False, queue=QUEUE
        )
        model_job_run(job_id=job.pk, worker="planner:1", queue=QUEUE)
        job.refresh_from_db()
        assert job.stage == Job.Stage.SHARDS and job.status == Job.Status.RUNNING
        shards = list(JobShard.objects.filter(job=job).order_by("index"))
        assert len(shards) == 4
        _purge()  # ...which are lost (a broker restarted without persistence, say).
        # One shard's worker took its message and died; this broker does not redeliver.
        long_ago = timezone.now() - timedelta(hours=1)
        JobShard.objects.filter(pk=shards[0].pk).update(
            status=JobShard.Status.RUNNING, attempts=1, worker="gone:1", heartbeat_at=long_ago
        )
        workers = start_workers(
            [{"queues": QUEUE, "concurrency": 1, "name": f"recover-{i}"} for i in range(2)]
        )
        time.sleep(3)  # the workers are ready (start_workers waits) and have nothing to take
        assert JobShard.objects.filter(job=job, status=JobShard.Status.QUEUED).count() == 3
        assert not PairScore.objects.filter(model_version__campaign=campaign).exists()

        # A job silent for the stale time: its queued shards and the dead one are sent again.
        Job.objects.filter(pk=job.pk).update(heartbeat_at=long_ago)
        resent = shards_recover_stale()
        assert sorted(resent) == sorted(shard.pk for shard in shards)
        # Sending again what is now running or done only makes duplicates, which claims drop.
        assert set(shards_recover_stale()) <= set(resent)

        wait_for(lambda: Job.objects.get(pk=job.pk).is_finished, timeout=300, what="the job")
        job.refresh_from_db()
        assert job.status == Job.Status.SUCCEEDED, job.error
        _scores_are_complete_and_single(job, campaign)
        taken_over = JobShard.objects.get(pk=shards[0].pk)
        assert taken_over.status == JobShard.Status.SUCCEEDED
        assert taken_over.attempts == 2 and taken_over.worker.startswith("recover-")
        others = JobShard.objects.filter(job=job).exclude(pk=shards[0].pk)
        assert set(others.values_list("attempts", flat=True)) == {1}
        assert shards_recover_stale() == []  # nothing left to send
    finally:
        for process in workers:
            stop_worker(process, sig=signal.SIGKILL)
        _purge()
        shutil.rmtree(campaign_models_dir(campaign), ignore_errors=True)


@pytest.mark.worker
@pytest.mark.smoke
def test_the_score_pool_command_reports_shards_and_workers(
    worker, settings, capsys, annotator_a, annotator_b, annotator_c
):
    campaign = _trained_campaign(settings, [annotator_a, annotator_b, annotator_c], pooled=12)
    try:
        call_command(
            "score_pool", "--campaign", campaign.name, "--shard-size", "5", "--wait",
            "--timeout", "240",
        )
        summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
        assert summary["status"] == "succeeded"
        assert summary["pool"] == 12 and summary["scored"] == 22 and summary["shards"] == 5
        assert summary["workers"] and all(":" in name for name in summary["workers"])
    finally:
        shutil.rmtree(campaign_models_dir(campaign), ignore_errors=True)


def test_stage_2_curation_scores_the_silver_pool_in_shards_with_both_models(db, tmp_path):
    from scoring.datasets.curation import curation_create, curation_run
    from scoring.models import ModelVersion
    from scoring.reward_model import RewardModel, build_tiny_reward_model

    campaign = CampaignFactory()
    versions = [
        ModelVersion.objects.create(
            campaign=campaign, number=number, base="tiny", heldout_accuracy=0.5 + number / 10,
            checkpoint=str(build_tiny_reward_model(tmp_path / f"v{number}", seed=number)),
            is_active=number == 1,
        )
        for number in (1, 2)
    ]
    silver = [
        PairFactory(campaign=campaign, silver_preference=1 if i % 2 else -1,
                    status="pooled")
        for i in range(7)
    ]
    job = curation_create(
        campaign=campaign, params={"shard_size": 3, "train_gold": False}, enqueue=False
    )
    job = curation_run(job_id=job.pk).job
    assert job.status == Job.Status.SUCCEEDED, job.error
    shards = JobShard.objects.filter(job=job)
    assert shards.count() == 3 and not shards.exclude(status=JobShard.Status.SUCCEEDED)
    assert shards.aggregate(n=Sum("scored"))["n"] == 14  # 7 pairs × 2 models, once each
    assert job.result["kept"] + job.result["discarded"] + job.result["recycled"] == 7
    model = RewardModel.load(versions[1].checkpoint)
    expected = model.prob_a_better_batch(
        [(pair.conversation, pair.response_a, pair.response_b) for pair in silver]
    )
    stored = dict(
        PairScore.objects.filter(model_version=versions[1]).values_list("pair_id", "p_a_better")
    )
    np.testing.assert_allclose([stored[pair.pk] for pair in silver], expected, atol=1e-5)


def test_a_shard_that_lost_its_worker_too_often_fails_the_job_and_stops_the_others(db):
    from datetime import timedelta

    from django.utils import timezone

    from scoring.jobs.shards import MAX_SHARD_ATTEMPTS, shard_claim

    long_ago = timezone.now() - timedelta(hours=1)
    job = Job.objects.create(
        campaign=CampaignFactory(), kind=Job.Kind.SCORE, status=Job.Status.RUNNING,
        stage=Job.Stage.SHARDS, heartbeat_at=timezone.now(),
    )
    dead = JobShard.objects.create(
        job=job, index=0, first_id=1, last_id=10, planned=10, status=JobShard.Status.RUNNING,
        attempts=MAX_SHARD_ATTEMPTS, worker="gone:1", heartbeat_at=long_ago,
    )
    waiting = JobShard.objects.create(job=job, index=1, first_id=11, last_id=20, planned=10)
    claim = shard_claim(shard_id=dead.pk, worker="new:2")
    assert claim.outcome == "finished"
    job.refresh_from_db()
    assert job.status == Job.Status.FAILED
    assert job.error == f"shard 0 failed: its worker was lost {MAX_SHARD_ATTEMPTS} times"
    assert JobShard.objects.get(pk=dead.pk).status == JobShard.Status.FAILED
    assert JobShard.objects.get(pk=waiting.pk).status == JobShard.Status.CANCELLED
    assert shard_claim(shard_id=waiting.pk, worker="new:2").outcome == "finished"


def test_a_tiny_shard_size_on_a_large_pool_is_raised_to_bound_the_shards(
    db, tmp_path, monkeypatch
):
    from scoring.datasets.curation import curation_create, curation_run
    from scoring.jobs import shards
    from scoring.models import ModelVersion
    from scoring.reward_model import build_tiny_reward_model

    monkeypatch.setattr(shards, "MAX_SHARDS", 2)
    campaign = CampaignFactory()
    ModelVersion.objects.create(
        campaign=campaign, number=1, base="tiny", heldout_accuracy=0.6, is_active=True,
        checkpoint=str(build_tiny_reward_model(tmp_path / "v1")),
    )
    for i in range(7):
        PairFactory(campaign=campaign, silver_preference=1 if i % 2 else -1, status="pooled")
    job = curation_create(
        campaign=campaign, params={"shard_size": 1, "train_gold": False}, enqueue=False
    )
    job = curation_run(job_id=job.pk).job
    assert job.status == Job.Status.SUCCEEDED, job.error
    assert sorted(JobShard.objects.filter(job=job).values_list("planned", flat=True)) == [3, 4]
    assert job.log_lines.filter(message__startswith="shard size raised from 1 to 4").exists()
