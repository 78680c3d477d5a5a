"""What a worker killed while registering a version staged (a whole checkpoint copy, or half
of one) is removed when a later attempt of the same job registers: no later save reuses its
name, so it would otherwise stay on disk for as long as the campaign lives."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from scoring.jobs.runner import JobContext, job_claim
from scoring.loop.model_jobs import job_run_inline
from scoring.loop.registry import campaign_model_root
from scoring.loop.requests import training_request
from scoring.loop.training import train_job_work
from scoring.models import Job, ModelVersion
from tests.scoring.loop_support import learnable_campaign, use_tiny_base


class _WorkerKilled(BaseException):
    """The worker process died (kill -9): nothing in the job's code may catch it."""


class _DiesWhileSaving(JobContext):
    def log(self, message: str) -> None:
        super().log(message)
        if message.startswith("held-out gold accuracy"):
            raise _WorkerKilled


@pytest.mark.django_db
def test_a_later_attempt_removes_what_a_killed_registration_staged(settings, tmp_path):
    use_tiny_base(settings, model_dir=tmp_path / "models")
    campaign = learnable_campaign(train=6, gold=2)
    job = training_request(campaign=campaign, params={"mode": "head"}, enqueue=False)
    claim = job_claim(job_id=job.pk, worker="dead:1")
    assert claim.outcome == "claimed" and claim.job is not None
    with pytest.raises(_WorkerKilled):
        train_job_work(_DiesWhileSaving(claim.job))
    # What the kill left while model_version_register saved: the attempt's staged checkpoint
    # and a save of it cut short.
    root = campaign_model_root(campaign)
    staged = root / f".job-{job.pk}-attempt-{claim.job.attempts}"
    partial = root / f".{staged.name}.partial-killed"  # save_checkpoint's staging name
    for leftover in (staged, partial):
        leftover.mkdir(parents=True)
        (leftover / "model.safetensors").write_bytes(b"\0" * 1024)
    other_job = root / f".job-{job.pk + 1000}-attempt-1"
    other_job.mkdir()
    Job.objects.filter(pk=job.pk).update(heartbeat_at=timezone.now() - timedelta(hours=1))

    job = job_run_inline(job=Job.objects.get(pk=job.pk))

    assert job.status == Job.Status.SUCCEEDED, job.error
    assert job.attempts > claim.job.attempts
    (version,) = ModelVersion.objects.filter(campaign=campaign)
    assert (root / "v1").is_dir() and version.checkpoint == str(root / "v1")
    assert not staged.exists() and not partial.exists()
    assert other_job.is_dir()  # another job's staging is that job's own
