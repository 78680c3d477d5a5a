"""Cancelling a job whose worker is gone (review 20i).

A running job whose worker was killed (``kill -9``, a lost host) only had its cancel flag set:
it stayed "running · cancelling" until the stale sweep's task reached a free gpu worker, hours
later behind other work maybe, and meanwhile refused every other model job of its campaign.
It now ends cancelled at once; a worker merely slow finds its fenced writes refused.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from scoring.jobs.runner import (
    ClaimOutcome,
    job_cancel,
    job_claim,
    job_create,
    job_finish,
    job_progress,
)
from scoring.loop.requests import loop_request
from scoring.models import Job
from tests.conftest import api_client_for
from tests.factories import CampaignFactory


@pytest.fixture
def silent_job(db, settings):
    settings.ARBITER = {**settings.ARBITER, "JOB_STALE_SECONDS": 30}
    job = job_create(campaign=CampaignFactory(), kind=Job.Kind.LOOP)
    claimed = job_claim(job_id=job.pk, worker="gone:1").job
    Job.objects.filter(pk=job.pk).update(heartbeat_at=timezone.now() - timedelta(minutes=5))
    return claimed


def test_cancelling_a_job_whose_worker_went_silent_ends_it_at_once(silent_job, admin_user):
    answer = api_client_for(admin_user).post(f"/api/jobs/{silent_job.pk}/cancel")
    assert answer.status_code == 200
    assert answer.json()["status"] == "cancelled"
    silent_job.refresh_from_db()
    assert silent_job.status == Job.Status.CANCELLED and silent_job.finished_at is not None
    assert silent_job.log_lines.filter(message__contains="worker was lost").exists()
    # The campaign takes its next model job.
    campaign = silent_job.campaign
    assert loop_request(campaign=campaign, enqueue=False).pk != silent_job.pk
    # The old worker, were it only slow, can neither report nor finish it.
    assert not job_progress(job=silent_job, fraction=0.5, message="still here")
    assert not job_finish(job=silent_job, result={"late": True})
    assert Job.objects.get(pk=silent_job.pk).status == Job.Status.CANCELLED
    # A task of it delivered again has nothing to do.
    assert job_claim(job_id=silent_job.pk, worker="next:1").outcome == ClaimOutcome.FINISHED


def test_a_job_with_a_live_worker_is_only_asked_to_stop(silent_job):
    Job.objects.filter(pk=silent_job.pk).update(heartbeat_at=timezone.now())
    job = job_cancel(job=silent_job)
    assert job.status == Job.Status.RUNNING and job.cancel_requested
    assert job_progress(job=silent_job, fraction=0.5, message="stopping soon")
