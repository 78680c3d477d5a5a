"""Asking for model jobs (web side): create one (exclusive per campaign), send its task by
name, cancel it. The worker side is ``scoring.jobs.claims``; running one is
``scoring.jobs.runner``."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth.models import User
from django.db import transaction
from django.db.models.expressions import CombinedExpression
from django.db.models.functions import Now
from django.utils import timezone

from annotation.models import Campaign
from core.errors import ApplicationError, Conflict
from core.queue import QUEUE_UNAVAILABLE_REASON, send_task_on_commit
from scoring.models import Job, JobLogLine, JobShard

# Jobs that read or write a campaign's models and priorities: one at a time per campaign.
EXCLUSIVE_KINDS = (Job.Kind.TRAIN, Job.Kind.SCORE, Job.Kind.LOOP)
ACTIVE_STATUSES = (Job.Status.QUEUED, Job.Status.RUNNING)
# The longest status message a job row shows (its log lines keep the whole text).
MESSAGE_MAX = 500
QUEUE_NAME_MAX = 200  # Job.queue


def stale_seconds() -> float:
    return float(settings.ARBITER.get("JOB_STALE_SECONDS", 60))


def stale_before(periods: float = 1) -> CombinedExpression:
    """The database's clock less ``periods`` stale times. Heartbeats are written with the
    database's clock too (``Now()``): workers on hosts whose clocks differ judge them alike."""
    return Now() - timedelta(seconds=stale_seconds() * periods)


class JobError(ApplicationError):
    """A job cannot do its work for a reason the user must fix (no labels, bad parameters)."""

    code = "job_error"


class JobConflict(Conflict, JobError):
    """Another model job of the campaign is queued or running."""

    code = "job_conflict"

    def __init__(self, existing: Job) -> None:
        super().__init__(f"{existing.kind} job {existing.pk} is already {existing.status}")
        self.existing = existing


def job_create(
    *,
    campaign: Campaign,
    kind: str,
    params: dict[str, Any] | None = None,
    user: User | None = None,
) -> Job:
    """A queued job. Model jobs are exclusive per campaign: raises JobConflict if one is active."""
    job = Job(campaign=campaign, kind=kind, params=dict(params or {}), created_by=user)
    job.full_clean(exclude=["campaign", "created_by"])
    with transaction.atomic():
        if kind in EXCLUSIVE_KINDS:
            # Serialise job creation per campaign so two clicks cannot start two trainings.
            # NO KEY UPDATE leaves the FOR KEY SHARE locks of label inserts unblocked.
            Campaign.objects.select_for_update(no_key=True).filter(pk=campaign.pk).first()
            existing = (
                Job.objects.filter(
                    campaign=campaign, kind__in=EXCLUSIVE_KINDS, status__in=ACTIVE_STATUSES
                )
                .order_by("id")
                .first()
            )
            if existing is not None:
                raise JobConflict(existing)
        job.save()
        JobLogLine.objects.create(job=job, message=f"{kind} job queued")
    return job


# The Celery task that runs each kind of job, by name: the runner sends tasks by name so that
# it need not import the task modules (they import the services that import the runner).
# Queues come from the routes in settings (CELERY_TASK_ROUTES), which see names only.
TASK_NAMES: dict[str, str] = {
    Job.Kind.TRAIN: "scoring.train_reward_model",
    Job.Kind.SCORE: "scoring.score_pool",
    Job.Kind.LOOP: "scoring.run_round_loop",
    Job.Kind.EXPORT: "scoring.export_snapshot",
    Job.Kind.CURATE: "scoring.curate_pool",
    Job.Kind.EVALUATE: "scoring.evaluate_model",
    Job.Kind.CROSS_VALIDATE: "scoring.cross_validate",
}


def job_enqueue(*, job: Job, queue: str | None = None) -> None:
    """Send the job's task once the surrounding transaction commits (the worker must see it).

    ``queue`` overrides the route (``scoring.*`` → ``gpu``), e.g. for a dedicated GPU host;
    the job row keeps it, and a later send without one (the stale-job sweep's) goes there too.
    With the broker down the job is marked failed (no queued row without a task) and
    ``core.queue.QueueUnavailable`` (503) propagates.
    """
    if queue and len(queue) > QUEUE_NAME_MAX:
        raise JobError(f"a queue name has at most {QUEUE_NAME_MAX} characters")
    if queue and queue != job.queue:
        Job.objects.filter(pk=job.pk).update(queue=queue)
        job.queue = queue
    send_task_on_commit(
        TASK_NAMES[job.kind],
        args=(job.pk,),
        queue=job.queue or None,
        on_unavailable=lambda: job_fail_unsent(job=job),
    )


def job_fail_unsent(*, job: Job) -> bool:
    """Fail a queued job whose task could not be sent (see ``job_enqueue``)."""
    updated = Job.objects.filter(pk=job.pk, status=Job.Status.QUEUED).update(
        status=Job.Status.FAILED,
        error=QUEUE_UNAVAILABLE_REASON,
        finished_at=timezone.now(),
        message=f"failed: {QUEUE_UNAVAILABLE_REASON}"[:MESSAGE_MAX],
    )
    if updated:
        JobLogLine.objects.create(job=job, message=f"failed: {QUEUE_UNAVAILABLE_REASON}")
    return bool(updated)


def job_cancel(*, job: Job) -> Job:
    """Ask a job to stop. A job no worker owns (queued; in stage ``shards`` or waiting for its
    last part; its worker silent for the stale time) is cancelled at once; a running one at
    its next check. One transaction, so a
    request that dies halfway leaves no flag that nobody acts on."""
    now = timezone.now()
    with transaction.atomic():
        Job.objects.filter(pk=job.pk, status__in=ACTIVE_STATUSES).update(cancel_requested=True)
        cancelled_now = Job.objects.filter(pk=job.pk, status=Job.Status.QUEUED).update(
            status=Job.Status.CANCELLED, finished_at=now, message="cancelled before it started"
        )
        # Its last shard sent its task on; no worker has claimed it, so none would see the flag.
        cancelled_waiting = Job.objects.filter(
            pk=job.pk, status=Job.Status.RUNNING, stage=Job.Stage.FINISHING, worker=""
        ).update(status=Job.Status.CANCELLED, finished_at=now, message="cancelled")
        # Its worker is gone (silent for the stale time): none would see the flag until the
        # sweep's task reached a free worker, hours away behind other work maybe, and the job
        # would refuse its campaign's next model jobs meanwhile. A worker merely slow finds its
        # fenced writes refused and stops, as after a takeover.
        cancelled_lost = (
            Job.objects.filter(
                pk=job.pk, status=Job.Status.RUNNING, heartbeat_at__lt=stale_before()
            )
            .exclude(stage=Job.Stage.SHARDS)
            .update(status=Job.Status.CANCELLED, finished_at=now, message="cancelled")
        )
        if cancelled_now:
            JobLogLine.objects.create(job=job, message="cancelled before it started")
        elif cancelled_waiting:
            JobLogLine.objects.create(job=job, message="cancelled before its last part started")
        elif cancelled_lost:
            JobLogLine.objects.create(
                job=job, message="cancelled; its worker was lost before it stopped"
            )
        elif Job.objects.filter(
            pk=job.pk, status=Job.Status.RUNNING, stage=Job.Stage.SHARDS
        ).exists():
            job_cancel_sharded(job=job)
        elif Job.objects.filter(pk=job.pk, status=Job.Status.RUNNING).exists():
            JobLogLine.objects.create(job=job, message="cancel requested")
    job.refresh_from_db()
    return job


def job_cancel_sharded(*, job: Job) -> int:
    """Cancel a job in stage ``shards`` (no worker owns it) and its unfinished shards at once;
    running shards notice at their next chunk. Returns how many shards were cancelled."""
    now = timezone.now()
    with transaction.atomic():
        cancelled = Job.objects.filter(
            pk=job.pk, status=Job.Status.RUNNING, stage=Job.Stage.SHARDS
        ).update(
            status=Job.Status.CANCELLED, cancel_requested=True, finished_at=now, message="cancelled"
        )
        stopped = JobShard.objects.filter(
            job_id=job.pk, status__in=(JobShard.Status.QUEUED, JobShard.Status.RUNNING)
        ).update(status=JobShard.Status.CANCELLED, finished_at=now)
        if cancelled:
            JobLogLine.objects.create(
                job=job, message=f"cancelled; {stopped} unfinished shards cancelled"
            )
    return stopped
