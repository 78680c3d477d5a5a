"""Reads for the model registry and model jobs (dashboard, API)."""

from __future__ import annotations

from django.contrib.auth.models import User
from django.db.models import QuerySet
from django.http import Http404

from annotation.models import Campaign
from annotation.selectors import is_campaign_admin
from scoring.jobs.runner import ACTIVE_STATUSES, EXCLUSIVE_KINDS
from scoring.models import Job, JobLogLine, ModelVersion


def model_versions_for_campaign(*, campaign: Campaign) -> QuerySet[ModelVersion]:
    return ModelVersion.objects.filter(campaign=campaign).order_by("-number")


def model_version_for_admin(*, version_id: int, user: User) -> ModelVersion:
    """The version, for an admin of its campaign (site admin or admin member); 404 otherwise."""
    version = ModelVersion.objects.select_related("campaign").filter(pk=version_id).first()
    if version is None or not is_campaign_admin(campaign_id=version.campaign_id, user=user):
        raise Http404("No such model version.")
    return version


def job_for_admin(*, job_id: int, user: User) -> Job:
    """The job, for an admin of its campaign (site admin or admin member); 404 otherwise."""
    job = Job.objects.select_related("campaign").filter(pk=job_id).first()
    if job is None or not is_campaign_admin(campaign_id=job.campaign_id, user=user):
        raise Http404("No such job.")
    return job


def current_model_job(*, campaign: Campaign) -> Job | None:
    """The campaign's queued or running model job, else its most recent one."""
    jobs = Job.objects.filter(campaign=campaign, kind__in=EXCLUSIVE_KINDS)
    return jobs.filter(status__in=ACTIVE_STATUSES).order_by("id").first() or jobs.order_by(
        "-created_at", "-id"
    ).first()


def job_log_tail(*, job: Job, lines: int = 20) -> list[JobLogLine]:
    """The last ``lines`` log lines, oldest first."""
    recent = list(JobLogLine.objects.filter(job=job).order_by("-id")[:lines])
    return recent[::-1]
