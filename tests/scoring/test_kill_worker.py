"""kill -9 of a worker in the middle of training, with real worker processes and Redis.

What the test pins down: while the job is orphaned, the previous model stays active, no label
is lost and no version appears. Redis then redelivers the unacknowledged task (acks_late) to a
new worker, whose claim finds the job's heartbeat stale and runs it again from the start
(attempt 2): the job is retried to success, and exactly one new version is registered.
The workers get environment variables for an 8 s visibility timeout and 3 s staleness, so
this takes seconds rather than hours.
"""

from __future__ import annotations

import os
import shutil
import signal

import pytest
from django.conf import settings

from annotation.models import Label
from scoring.loop.model_jobs import job_run_inline
from scoring.loop.requests import training_request
from scoring.models import Job, ModelVersion
from tests.conftest import start_worker, stop_worker, wait_for
from tests.scoring.loop_support import (
    campaign_models_dir,
    label_queue,
    make_loop_campaign,
    use_tiny_base,
)

pytestmark = [
    pytest.mark.worker,
    pytest.mark.slow,  # about a minute: two worker start-ups and two short trainings
    pytest.mark.skipif(
        not settings.CELERY_BROKER_URL.startswith("redis"),
        reason="redelivery after a kill needs the Redis broker's visibility timeout",
    ),
]

# Its own queue, so that no other test's worker (all listen on "gpu") picks the task up.
KILL_QUEUE = "gpu-kill-test"
STEPS = 400  # full fine-tuning of the tiny model: a 6.7 s task on a quiet 2-core machine


def _purge(queue: str) -> None:
    from config.celery import app

    with app.connection_for_write() as conn:
        conn.default_channel.queue_purge(queue)


@pytest.mark.django_db(transaction=True)
def test_kill_9_mid_training_keeps_the_old_model_and_the_redelivered_task_retries(
    monkeypatch, annotator_a, annotator_b, annotator_c, settings
):
    use_tiny_base(settings)
    # Any held-out accuracy may activate (the activation gate has its own tests): this test
    # is about the kill, and a 30-step fine-tune of a random model may well score lower.
    campaign = make_loop_campaign(labelled=8, pooled=4, gold=4, activation_tolerance=1.0)
    workers = []
    try:
        label_queue(campaign, [annotator_a, annotator_b, annotator_c])
        first = job_run_inline(job=training_request(campaign=campaign, enqueue=False))
        assert first.status == Job.Status.SUCCEEDED, first.error
        previous = ModelVersion.objects.get(campaign=campaign, is_active=True)
        labels = Label.objects.filter(campaign=campaign).count()

        # Redis hands an unacknowledged task to another worker after 8 s (instead of hours)
        # and a job whose heartbeat is 3 s old counts as abandoned.
        for name, value in {
            "CELERY_VISIBILITY_TIMEOUT": "8",
            "CELERY_UNACKED_RESTORE_INTERVAL": "1",
            "ARBITER_JOB_STALE_SECONDS": "3",
            "ARBITER_JOB_HEARTBEAT_SECONDS": "0.5",
        }.items():
            monkeypatch.setenv(name, value)
        _purge(KILL_QUEUE)
        workers.append(start_worker(queues=KILL_QUEUE, concurrency=1, name="kill"))
        job = training_request(
            campaign=campaign,
            params={"mode": "full", "max_steps": STEPS, "base_model": str(use_tiny_base(settings))},
            queue=KILL_QUEUE,
        )
        wait_for(
            lambda: Job.objects.filter(pk=job.pk, progress__gt=0, message__startswith="step")
            .exists(),
            timeout=120,
            what="training steps on the first worker",
        )
        os.killpg(workers[0].pid, signal.SIGKILL)
        workers[0].wait(timeout=10)

        job.refresh_from_db()
        assert job.status == Job.Status.RUNNING and job.attempts == 1  # orphaned, not finished
        assert ModelVersion.objects.get(campaign=campaign, is_active=True) == previous
        assert ModelVersion.objects.filter(campaign=campaign).count() == 1
        assert Label.objects.filter(campaign=campaign).count() == labels
        assert not (campaign_models_dir(campaign) / "v2").exists()

        workers.append(start_worker(queues=KILL_QUEUE, concurrency=1, name="kill-2"))
        wait_for(
            lambda: Job.objects.get(pk=job.pk).is_finished,
            timeout=180,
            what="the redelivered task to finish the job",
        )
        job.refresh_from_db()
        assert job.status == Job.Status.SUCCEEDED, job.error
        assert job.attempts == 2
        assert any("worker lost; restarted" in line.message for line in job.log_lines.all())
        versions = list(ModelVersion.objects.filter(campaign=campaign).order_by("number"))
        assert [v.number for v in versions] == [1, 2]
        assert versions[1].is_active and versions[1].job_id == job.pk
        assert versions[1].mode == "full"
        assert Label.objects.filter(campaign=campaign).count() == labels
    finally:
        for process in workers:
            stop_worker(process, sig=signal.SIGKILL)
        shutil.rmtree(campaign_models_dir(campaign), ignore_errors=True)
