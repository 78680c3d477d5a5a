"""Model-job commands and the runner when a job ends oddly: a transient database error in an
``--inline`` run (nothing retries it: the job must not sit queued with no task, keeping the
campaign busy), and a job deleted with its campaign while ``--wait`` polls it or its worker
runs it (the command's last line stays JSON; the worker ends quietly)."""

from __future__ import annotations

import io
import json

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import OperationalError

from scoring.jobs.runner import ClaimOutcome, job_create, job_run
from scoring.loop import model_jobs
from scoring.models import Job


def last_json(out: io.StringIO) -> dict:
    return json.loads(out.getvalue().strip().splitlines()[-1])


def test_an_inline_run_hit_by_a_database_error_fails_its_job_and_says_so(campaign, monkeypatch):
    def lose_the_database(context):
        raise OperationalError("server closed the connection unexpectedly")

    monkeypatch.setitem(model_jobs._WORK, Job.Kind.SCORE, lose_the_database)
    out = io.StringIO()
    with pytest.raises(CommandError, match="server closed the connection"):
        call_command("score_pool", "--campaign", campaign.name, "--inline", stdout=out)
    job = Job.objects.get(campaign=campaign, kind=Job.Kind.SCORE)
    # Not released to the queue: no task exists to claim it again, and a queued score job
    # refuses every train, score and loop job of the campaign.
    assert job.status == Job.Status.FAILED
    assert "OperationalError: server closed the connection" in job.error
    summary = last_json(out)
    assert summary["job"] == job.pk and summary["status"] == "failed"
    assert "server closed the connection" in summary["error"]


class _DeleteCampaignWhileWaiting(io.StringIO):
    """The progress stream of --wait: deletes the campaign (and so its jobs) at the first update."""

    def __init__(self, campaign) -> None:
        super().__init__()
        self.campaign = campaign

    def write(self, text: str) -> int:
        type(self.campaign).objects.filter(pk=self.campaign.pk).delete()
        return super().write(text)


def test_a_wait_whose_job_was_deleted_ends_with_json(campaign):
    out = io.StringIO()
    with pytest.raises(CommandError, match=r"score job \d+ no longer exists"):
        call_command(
            "score_pool",
            "--campaign",
            campaign.name,
            "--wait",
            "--timeout",
            "30",
            stdout=out,
            stderr=_DeleteCampaignWhileWaiting(campaign),
        )
    summary = last_json(out)
    assert summary["kind"] == "score" and summary["status"] == "deleted"
    assert summary["job"] is not None and not Job.objects.filter(pk=summary["job"]).exists()


def test_a_worker_whose_job_was_deleted_meanwhile_ends_quietly(campaign):
    job = job_create(campaign=campaign, kind=Job.Kind.SCORE)

    def delete_the_campaign(context):
        type(campaign).objects.filter(pk=campaign.pk).delete()
        context.progress(0.5, "halfway", log=True)  # no longer ours: JobLost
        raise AssertionError("unreachable")

    # Not Job.DoesNotExist from the runner, which a Celery worker logs as the task's error.
    claim = job_run(job_id=job.pk, worker="w1", work_for=lambda _job: delete_the_campaign)
    assert claim.outcome == ClaimOutcome.MISSING
    assert not Job.objects.filter(pk=job.pk).exists()
