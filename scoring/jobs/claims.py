"""Claiming model jobs (worker side) and every write a worker makes to the job it owns.

The job row is the truth, workers only claim and report.

Lifecycle: ``queued`` → ``running`` (claimed by one worker) → ``succeeded`` | ``failed`` |
``cancelled``. Every write a worker makes after its claim is conditional on
``(status=running, attempts=<its attempt>)``: ``attempts`` is a fencing token, so a worker that
lost its job (presumed dead and taken over) can neither report progress, register a model nor
finish the job; it notices and stops.

Redelivery. Tasks acknowledge late, so a task whose worker was killed (``kill -9``) is
delivered again by Redis after the visibility timeout. Its claim succeeds only if the job is
still queued, or running with a heartbeat older than ``JOB_STALE_SECONDS`` (the worker is
gone): the job then runs again from the start with ``attempts + 1``, and after
``MAX_ATTEMPTS`` lost workers it is marked failed instead (claims after a ``job_release``
for a transient error are not lost workers and do not count). Heartbeats are written and
judged with the database's clock (``Now()``), so workers on hosts whose clocks differ agree.
A second delivery of a task whose job is alive finds a fresh heartbeat and backs off; one
whose job has finished does nothing. A heartbeat thread beats every ``JOB_HEARTBEAT_SECONDS``
while a job runs, and its check doubles as the cheap cancel query that ``should_stop`` reads.
"""

from __future__ import annotations

import logging
import os
import socket
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from django.db.models import F, Q, QuerySet
from django.db.models.functions import Coalesce, Now
from django.utils import timezone

from core.queue import QueueUnavailable
from scoring.jobs.requests import MESSAGE_MAX, TASK_NAMES, job_enqueue

# Re-exported: their home before job_cancel (requests) needed them.
from scoring.jobs.requests import stale_before as stale_before
from scoring.jobs.requests import stale_seconds as stale_seconds
from scoring.models import Job, JobLogLine

logger = logging.getLogger(__name__)

MAX_ATTEMPTS = 3


def seconds_until_stale(rows: QuerySet[Any]) -> float:
    """Seconds until the heartbeat of the row in ``rows`` (a job, a shard) goes stale, by the
    database's clock; 0 if it has none."""
    found = rows.annotate(db_now=Now()).values_list("heartbeat_at", "db_now").first()
    if found is None or found[0] is None:
        return 0.0
    heartbeat: datetime = found[0]
    db_now: datetime = found[1]
    return max((heartbeat - db_now).total_seconds() + stale_seconds(), 0.0)


def worker_name(hostname: str | None = None) -> str:
    return f"{hostname or socket.gethostname()}:{os.getpid()}"[:200]


class ClaimOutcome(StrEnum):
    CLAIMED = "claimed"
    BUSY = "busy"  # running elsewhere with a fresh heartbeat: try again later
    FINISHED = "finished"  # nothing to do (finished, cancelled, or failed after lost workers)
    MISSING = "missing"


@dataclass(frozen=True)
class JobClaim:
    outcome: ClaimOutcome
    job: Job | None = None
    retry_in: float = 0.0


# Stays long: the claim's cases (queued, finishing, resumed, given up, busy) are tried in one
# order of precedence, each a conditional UPDATE, and read best together.
def job_claim(*, job_id: int, worker: str) -> JobClaim:
    """Claim a job for this worker with a conditional UPDATE (see the module docstring)."""
    now = timezone.now()  # the times shown; staleness is judged by the database's clock
    # A claim ends the sweep's sends (its next lost worker starts their spacing afresh).
    delivered = {"resends": 0, "resent_at": None}
    owned = {
        "worker": worker[:200],
        "heartbeat_at": Now(),
        "attempts": F("attempts") + 1,
        **delivered,
    }
    claimed = Job.objects.filter(
        pk=job_id, status=Job.Status.QUEUED, cancel_requested=False
    ).update(status=Job.Status.RUNNING, started_at=now, message="started", **owned)
    # Sent on by its last shard: the job's last part, same attempt (nobody else owned it).
    # No worker owned it to see a cancel asked meanwhile: the request ends it here.
    waiting = Job.objects.filter(
        pk=job_id, status=Job.Status.RUNNING, stage=Job.Stage.FINISHING, worker=""
    )
    finishing = cancelled_waiting = 0
    if not claimed:
        finishing = waiting.filter(cancel_requested=False).update(
            worker=worker[:200], heartbeat_at=Now(), message="finishing", **delivered
        )
        if not finishing:
            cancelled_waiting = waiting.filter(cancel_requested=True).update(
                status=Job.Status.CANCELLED, finished_at=now, message="cancelled"
            )
    resumed = 0
    if not (claimed or finishing or cancelled_waiting):
        # A job in stage "shards" has no worker to lose: its shards are recovered instead.
        resumed = (
            Job.objects.filter(
                pk=job_id,
                status=Job.Status.RUNNING,
                heartbeat_at__lt=stale_before(),
                attempts__lt=MAX_ATTEMPTS + F("releases"),
                cancel_requested=False,
            )
            .exclude(stage=Job.Stage.SHARDS)
            .update(message="restarted after its worker was lost", **owned)
        )
    if claimed or finishing or resumed:
        job = Job.objects.select_related("campaign").get(pk=job_id)
        note = "claimed" if claimed else "worker lost; restarted from the beginning"
        if finishing:
            note = "last part claimed"
        elif resumed and job.stage != Job.Stage.MAIN:
            note = f"worker lost; restarted at stage {job.stage}"
        JobLogLine.objects.create(job=job, message=f"{note} by {worker} (attempt {job.attempts})")
        return JobClaim(ClaimOutcome.CLAIMED, job)
    lost = Job.objects.filter(
        pk=job_id, status=Job.Status.RUNNING, heartbeat_at__lt=stale_before()
    ).exclude(stage=Job.Stage.SHARDS)
    # A cancel was asked for and the worker died before it stopped: the job is cancelled
    # (not restarted, not failed for lost workers).
    cancelled_lost = lost.filter(cancel_requested=True).update(
        status=Job.Status.CANCELLED, finished_at=now, message="cancelled"
    )
    given_up = lost.filter(cancel_requested=False).update(
        status=Job.Status.FAILED,
        finished_at=now,
        error="its worker was lost (killed or timed out) too many times",
        message="failed: worker lost",
    )
    found = Job.objects.filter(pk=job_id).first()
    if found is None:
        return JobClaim(ClaimOutcome.MISSING)
    job = found
    if given_up:
        lost_workers = job.attempts - job.releases
        JobLogLine.objects.create(job=job, message=f"failed: worker lost {lost_workers} times")
    if cancelled_lost:
        JobLogLine.objects.create(
            job=job, message="cancelled; its worker was lost before it stopped"
        )
    if cancelled_waiting:
        JobLogLine.objects.create(job=job, message="cancelled before its last part started")
    if job.status == Job.Status.QUEUED and job.cancel_requested:
        Job.objects.filter(pk=job_id, status=Job.Status.QUEUED).update(
            status=Job.Status.CANCELLED, finished_at=now
        )
        return JobClaim(ClaimOutcome.FINISHED, job)
    if job.is_finished or job.stage == Job.Stage.SHARDS:
        # In stage "shards" the shards carry the job; the last one sends its task again.
        return JobClaim(ClaimOutcome.FINISHED, job)
    retry_in = seconds_until_stale(Job.objects.filter(pk=job_id)) + 1.0
    return JobClaim(ClaimOutcome.BUSY, job, retry_in)


def job_owned(job: Job) -> QuerySet[Job]:  # the one job this worker owns
    return Job.objects.filter(pk=job.pk, status=Job.Status.RUNNING, attempts=job.attempts)


def job_log(*, job: Job, message: str) -> None:
    JobLogLine.objects.create(job=job, message=message)


def job_progress(*, job: Job, fraction: float, message: str, log: bool = True) -> bool:
    """Record progress (and a heartbeat) on an owned job; False when the job is no longer ours.

    Only progress, message and heartbeat change, so a concurrent cancel request survives.
    """
    fraction = min(max(float(fraction), 0.0), 1.0)
    updated = job_owned(job).update(
        progress=fraction, message=message[:MESSAGE_MAX], heartbeat_at=Now()
    )
    if updated and log:
        JobLogLine.objects.create(job=job, message=message)
    job.progress, job.message = fraction, message[:MESSAGE_MAX]
    return bool(updated)


def job_finish(*, job: Job, result: dict[str, Any] | None = None) -> bool:
    now = timezone.now()
    updated = job_owned(job).update(
        status=Job.Status.SUCCEEDED,
        progress=1.0,
        result=result or {},
        finished_at=now,
        heartbeat_at=Now(),
        message="done",
    )
    if updated:
        JobLogLine.objects.create(job=job, message="succeeded")
    return bool(updated)


def job_fail(*, job: Job, error: str) -> bool:
    now = timezone.now()
    updated = job_owned(job).update(
        status=Job.Status.FAILED,
        error=error,
        finished_at=now,
        heartbeat_at=Now(),
        message=f"failed: {error}"[:MESSAGE_MAX],
    )
    if updated:
        JobLogLine.objects.create(job=job, message=f"failed: {error}")
    return bool(updated)


def job_mark_cancelled(*, job: Job, leaves: str = "nothing was registered") -> bool:
    """End an owned job as cancelled; ``leaves``: what the work had done that stays."""
    now = timezone.now()
    updated = job_owned(job).update(
        status=Job.Status.CANCELLED, finished_at=now, heartbeat_at=Now(), message="cancelled"
    )
    if updated:
        JobLogLine.objects.create(job=job, message=f"cancelled; {leaves}"[:MESSAGE_MAX])
    return bool(updated)


def job_release(*, job: Job, reason: str, cancel_leaves: str = "nothing was registered") -> bool:
    """Give an owned job back to the queue (before a retry after a transient error); False
    if it is no longer ours, or was cancelled instead: a job whose cancel was asked would sit
    queued, as neither a claim nor the released-job sweep takes it. ``cancel_leaves``: see
    ``job_mark_cancelled``."""
    released = (
        job_owned(job)
        .filter(cancel_requested=False)
        .update(
            status=Job.Status.QUEUED,
            worker="",
            message=reason[:MESSAGE_MAX],
            releases=F("releases") + 1,
        )
    )
    if released:
        JobLogLine.objects.create(job=job, message=f"released for a retry: {reason}")
        return True
    # The request only ever goes from False to True: a job still ours here has it.
    if job_mark_cancelled(job=job, leaves=cancel_leaves):
        job_log(job=job, message=f"stopped by {reason} after a cancel was asked"[:MESSAGE_MAX])
    return False


# A job released for a retry (``job_release``) and still queued this many stale periods later
# lost its task: Celery's automatic retries ran out (e.g. a database outage of minutes).
RELEASED_STALE_PERIODS = 10
# Each send by the sweep waits twice as long as the one before (after a silent worker's
# first: RELEASED_STALE_PERIODS), up to this many doublings: a job merely waiting behind
# hours of other work on its queue (one gpu worker, a long training) is not sent again at
# every sweep, piling up duplicate messages (each harmless to its claim, but each retried
# while the job then runs), and one whose message was lost is still sent within a few hours.
RESEND_DOUBLINGS_MAX = 5


def resend_due(last_sent: str) -> Q:
    """Jobs whose ``last_sent`` (a field or annotation) is older than the spacing their count
    of sends by the sweep (``resends``) asks for."""
    due = Q(
        resends__gte=RESEND_DOUBLINGS_MAX,
        **{f"{last_sent}__lt": stale_before(RELEASED_STALE_PERIODS * 2**RESEND_DOUBLINGS_MAX)},
    )
    for sends in range(RESEND_DOUBLINGS_MAX):
        due |= Q(
            resends=sends,
            **{f"{last_sent}__lt": stale_before(RELEASED_STALE_PERIODS * 2**sends)},
        )
    return due


def jobs_recover_stale() -> list[int]:
    """Re-enqueue running jobs of every kind whose worker went silent (e.g. brokers without
    redelivery, such as the file-system one), and released jobs whose task's retries ran out
    or which had none (exports, curation and evaluation are not retried automatically): queued,
    claimed before, untouched for ``RELEASED_STALE_PERIODS`` stale periods; and jobs queued
    that long that no worker ever claimed (their task lost). The claim decides whether they
    run again, so a task sent twice runs once. Sent again while still unclaimed, each waits
    twice as long as the one before (``RESEND_DOUBLINGS_MAX``). Each goes to the queue the job
    was first sent to (``Job.queue``). Returns the jobs sent again."""
    kinds = tuple(TASK_NAMES)
    stale = list(
        Job.objects.filter(
            Q(resent_at__isnull=True) | resend_due("resent_at"),
            kind__in=kinds,
            status=Job.Status.RUNNING,
            heartbeat_at__lt=stale_before(),
        ).exclude(stage=Job.Stage.SHARDS)
    )
    sent = []
    for job in stale:
        job_log(job=job, message="no heartbeat; sent again for a worker to take over")
        _mark_sent_again(job)
        if _send_again(job):
            sent.append(job.pk)
    released = list(
        # Released (its last heartbeat), sent again (resent_at), or never claimed and queued
        # that long (created_at): its task may be lost (a broker restarted without its
        # messages, a request that died between its commit and the send); nothing else would
        # ever run it, and a model job would refuse its campaign's next ones for good.
        Job.objects.annotate(last_sent=Coalesce("resent_at", "heartbeat_at", "created_at"))
        .filter(resend_due("last_sent"))
        .filter(kind__in=kinds, status=Job.Status.QUEUED, cancel_requested=False)
    )
    for job in released:
        taken_before = job.heartbeat_at is not None
        job_log(
            job=job,
            message="released and never taken again; sent again"
            if taken_before
            else "never taken by a worker; sent again",
        )
        _mark_sent_again(job)
        if _send_again(job):
            sent.append(job.pk)
    return sent


def _mark_sent_again(job: Job) -> None:
    """Count the send: the next one waits twice as long (``resend_due``)."""
    Job.objects.filter(pk=job.pk, status=job.status).update(
        resends=F("resends") + 1, resent_at=Now()
    )


def _send_again(job: Job) -> bool:
    """Send the job's task; False if the broker refused it (``job_enqueue`` settled the row),
    so that one refusal does not end the sweep (nor the shards' sweep after it)."""
    try:
        job_enqueue(job=job)
    except QueueUnavailable:
        logger.warning("stale job %s: its task could not be sent again", job.pk, exc_info=True)
        return False
    return True
