"""Model jobs (train, score, loop): the job row is the truth, workers only claim and report.

Lifecycle: ``queued`` → ``running`` (claimed by one worker) → ``succeeded`` | ``failed`` |
``cancelled``. Every write a worker makes after its claim is conditional on
``(status=running, attempts=<its attempt>)``: ``attempts`` is a fencing token, so a worker that
lost its job (presumed dead and taken over) can neither report progress, register a model nor
finish the job; it notices and stops.

Redelivery. Tasks acknowledge late, so a task whose worker was killed (``kill -9``) is
delivered again by Redis after the visibility timeout. Its claim succeeds only if the job is
still queued, or running with a heartbeat older than ``JOB_STALE_SECONDS`` (the worker is
gone): the job then runs again from the start with ``attempts + 1``, and after
``MAX_ATTEMPTS`` lost workers it is marked failed instead. A second delivery of a task whose
job is alive finds a fresh heartbeat and backs off; one whose job has finished does nothing.
A heartbeat thread beats every ``JOB_HEARTBEAT_SECONDS`` while a job runs, and its check
doubles as the cheap cancel query that ``should_stop`` reads.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from django.conf import settings
from django.contrib.auth.models import User
from django.db import (
    InterfaceError,
    OperationalError,
    close_old_connections,
    connection,
    transaction,
)
from django.db.models import F, QuerySet
from django.utils import timezone
from redis.exceptions import ConnectionError as RedisConnectionError

from annotation.models import Campaign
from core.errors import ApplicationError, Conflict
from core.queue import QUEUE_UNAVAILABLE_REASON, send_task_on_commit
from scoring.models import Job, JobLogLine, JobShard

logger = logging.getLogger(__name__)

MAX_ATTEMPTS = 3
# Jobs that read or write a campaign's models and priorities: one at a time per campaign.
EXCLUSIVE_KINDS = (Job.Kind.TRAIN, Job.Kind.SCORE, Job.Kind.LOOP)
ACTIVE_STATUSES = (Job.Status.QUEUED, Job.Status.RUNNING)
_PROGRESS_MIN_INTERVAL_S = 0.5
_MESSAGE_MAX = 500


class JobError(ApplicationError):
    """A job cannot do its work for a reason the user must fix (no labels, bad parameters)."""

    code = "job_error"


class JobConflict(Conflict, JobError):
    """Another model job of the campaign is queued or running."""

    code = "job_conflict"

    def __init__(self, existing: Job) -> None:
        super().__init__(f"{existing.kind} job {existing.pk} is already {existing.status}")
        self.existing = existing


class JobCancelled(Exception):
    """Raised inside a job when an admin asked it to stop."""


class JobLost(Exception):
    """This worker no longer owns the job (another worker took it over, or it was ended)."""


class JobHandedOff(Exception):  # noqa: N818 - a control-flow signal, like JobCancelled
    """Raised by a job's work once it gave the job over to its shards (``scoring.jobs.shards``):
    the job stays running, owned by no worker, until its last shard sends it on."""


def stale_seconds() -> float:
    return float(settings.ARBITER.get("JOB_STALE_SECONDS", 60))


def heartbeat_seconds() -> float:
    default = max(min(stale_seconds() / 4, 10.0), 0.2)
    return float(settings.ARBITER.get("JOB_HEARTBEAT_SECONDS", default))


def worker_name(hostname: str | None = None) -> str:
    return f"{hostname or socket.gethostname()}:{os.getpid()}"[:200]


# --- Creating and cancelling (web side) ----------------------------------------------------


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

    ``queue`` overrides the route (``scoring.*`` → ``gpu``), e.g. for a dedicated GPU host.
    With the broker down the job is marked failed (no queued row without a task) and
    ``core.queue.QueueUnavailable`` (503) propagates.
    """
    send_task_on_commit(
        TASK_NAMES[job.kind],
        args=(job.pk,),
        queue=queue,
        on_unavailable=lambda: job_fail_unsent(job=job),
    )


def job_fail_unsent(*, job: Job) -> bool:
    """Fail a queued job whose task could not be sent (see ``job_enqueue``)."""
    updated = Job.objects.filter(pk=job.pk, status=Job.Status.QUEUED).update(
        status=Job.Status.FAILED,
        error=QUEUE_UNAVAILABLE_REASON,
        finished_at=timezone.now(),
        message=f"failed: {QUEUE_UNAVAILABLE_REASON}"[:_MESSAGE_MAX],
    )
    if updated:
        JobLogLine.objects.create(job=job, message=f"failed: {QUEUE_UNAVAILABLE_REASON}")
    return bool(updated)


def job_cancel(*, job: Job) -> Job:
    """Ask a job to stop. A queued job is cancelled at once; a running one at its next check."""
    now = timezone.now()
    with transaction.atomic():
        Job.objects.filter(pk=job.pk, status__in=ACTIVE_STATUSES).update(cancel_requested=True)
        cancelled_now = Job.objects.filter(pk=job.pk, status=Job.Status.QUEUED).update(
            status=Job.Status.CANCELLED, finished_at=now, message="cancelled before it started"
        )
        if cancelled_now:
            JobLogLine.objects.create(job=job, message="cancelled before it started")
        elif Job.objects.filter(pk=job.pk, status=Job.Status.RUNNING).exists():
            JobLogLine.objects.create(job=job, message="cancel requested")
    job.refresh_from_db()
    if job.stage == Job.Stage.SHARDS and job.status == Job.Status.RUNNING:
        job_cancel_sharded(job=job)
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


# --- Claiming (worker side) ----------------------------------------------------------------


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


def job_claim(*, job_id: int, worker: str, now: datetime | None = None) -> JobClaim:
    """Claim a job for this worker with a conditional UPDATE (see the module docstring)."""
    now = now or timezone.now()
    stale_before = now - timedelta(seconds=stale_seconds())
    owned = {"worker": worker[:200], "heartbeat_at": now, "attempts": F("attempts") + 1}
    claimed = Job.objects.filter(
        pk=job_id, status=Job.Status.QUEUED, cancel_requested=False
    ).update(status=Job.Status.RUNNING, started_at=now, message="started", **owned)
    # Sent on by its last shard: the job's last part, same attempt (nobody else owned it).
    finishing = 0
    if not claimed:
        finishing = Job.objects.filter(
            pk=job_id, status=Job.Status.RUNNING, stage=Job.Stage.FINISHING, worker=""
        ).update(worker=worker[:200], heartbeat_at=now, message="finishing")
    resumed = 0
    if not claimed and not finishing:
        # A job in stage "shards" has no worker to lose: its shards are recovered instead.
        resumed = Job.objects.filter(
            pk=job_id,
            status=Job.Status.RUNNING,
            heartbeat_at__lt=stale_before,
            attempts__lt=MAX_ATTEMPTS,
            cancel_requested=False,
        ).exclude(stage=Job.Stage.SHARDS).update(
            message="restarted after its worker was lost", **owned
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
    given_up = Job.objects.filter(
        pk=job_id, status=Job.Status.RUNNING, heartbeat_at__lt=stale_before
    ).exclude(stage=Job.Stage.SHARDS).update(
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
        JobLogLine.objects.create(job=job, message=f"failed: worker lost {job.attempts} times")
    if job.status == Job.Status.QUEUED and job.cancel_requested:
        Job.objects.filter(pk=job_id, status=Job.Status.QUEUED).update(
            status=Job.Status.CANCELLED, finished_at=now
        )
        return JobClaim(ClaimOutcome.FINISHED, job)
    if job.is_finished or job.stage == Job.Stage.SHARDS:
        # In stage "shards" the shards carry the job; the last one sends its task again.
        return JobClaim(ClaimOutcome.FINISHED, job)
    heartbeat = job.heartbeat_at or now
    retry_in = max((heartbeat - stale_before).total_seconds(), 0.0) + 1.0
    return JobClaim(ClaimOutcome.BUSY, job, retry_in)


def _owned(job: Job) -> QuerySet[Job]:  # the one job this worker owns
    return Job.objects.filter(pk=job.pk, status=Job.Status.RUNNING, attempts=job.attempts)


def job_log(*, job: Job, message: str) -> None:
    JobLogLine.objects.create(job=job, message=message)


def job_progress(*, job: Job, fraction: float, message: str, log: bool = True) -> bool:
    """Record progress (and a heartbeat) on an owned job; False when the job is no longer ours.

    Only progress, message and heartbeat change, so a concurrent cancel request survives.
    """
    fraction = min(max(float(fraction), 0.0), 1.0)
    updated = _owned(job).update(
        progress=fraction, message=message[:_MESSAGE_MAX], heartbeat_at=timezone.now()
    )
    if updated and log:
        JobLogLine.objects.create(job=job, message=message)
    job.progress, job.message = fraction, message[:_MESSAGE_MAX]
    return bool(updated)


def job_finish(*, job: Job, result: dict[str, Any] | None = None) -> bool:
    now = timezone.now()
    updated = _owned(job).update(
        status=Job.Status.SUCCEEDED,
        progress=1.0,
        result=result or {},
        finished_at=now,
        heartbeat_at=now,
        message="done",
    )
    if updated:
        JobLogLine.objects.create(job=job, message="succeeded")
    return bool(updated)


def job_fail(*, job: Job, error: str) -> bool:
    now = timezone.now()
    updated = _owned(job).update(
        status=Job.Status.FAILED,
        error=error,
        finished_at=now,
        heartbeat_at=now,
        message=f"failed: {error}"[:_MESSAGE_MAX],
    )
    if updated:
        JobLogLine.objects.create(job=job, message=f"failed: {error}")
    return bool(updated)


def job_mark_cancelled(*, job: Job) -> bool:
    now = timezone.now()
    updated = _owned(job).update(
        status=Job.Status.CANCELLED, finished_at=now, heartbeat_at=now, message="cancelled"
    )
    if updated:
        JobLogLine.objects.create(job=job, message="cancelled; nothing was registered")
    return bool(updated)


def job_release(*, job: Job, reason: str) -> bool:
    """Give an owned job back to the queue (before a retry after a transient error)."""
    updated = _owned(job).update(status=Job.Status.QUEUED, worker="", message=reason[:500])
    if updated:
        JobLogLine.objects.create(job=job, message=f"released for a retry: {reason}")
    return bool(updated)


def jobs_recover_stale(*, now: datetime | None = None) -> list[int]:
    """Re-enqueue running model jobs whose worker went silent (e.g. brokers without
    redelivery, such as the file-system one). The claim decides whether they run again."""
    now = now or timezone.now()
    stale_before = now - timedelta(seconds=stale_seconds())
    stale = list(
        Job.objects.filter(
            kind__in=EXCLUSIVE_KINDS, status=Job.Status.RUNNING, heartbeat_at__lt=stale_before
        ).exclude(stage=Job.Stage.SHARDS)
    )
    for job in stale:
        job_log(job=job, message="no heartbeat; sent again for a worker to take over")
        job_enqueue(job=job)
    return [job.pk for job in stale]


# --- Running a claimed job -----------------------------------------------------------------


@contextmanager
def fenced_heartbeat(*, row: str, poll: Callable[[], bool]) -> Iterator[None]:
    """While the body runs, call ``poll`` every ``heartbeat_seconds()`` in a background thread.

    ``poll`` refreshes the heartbeat of the row this worker owns (a job, a shard) with an
    UPDATE fenced by its attempt, and returns False once the row is no longer ours: the beats
    stop (the poll has told the body to stop). A failing poll (a database hiccup) is logged and
    tried again at the next beat. ``row`` names it in the thread's name and the log.
    """
    done = threading.Event()
    interval = heartbeat_seconds()

    def beat() -> None:
        try:
            while not done.wait(interval):
                try:
                    if not poll():
                        return
                except Exception:  # a database hiccup: try again at the next beat
                    logger.warning("heartbeat of %s failed", row, exc_info=True)
                    close_old_connections()
        finally:
            # Each thread has its own database connection; close it.
            connection.close()

    thread = threading.Thread(target=beat, name=f"{row} heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join(timeout=interval + 30)


class JobContext:
    """What a running job's code sees: throttled progress, stage ranges and the stop check."""

    def __init__(self, job: Job, queue: str | None = None) -> None:
        self.job = job
        # Where the job's task came from: its shards are sent to the same queue.
        self.queue = queue
        self._stop = threading.Event()
        self.lost = False
        self._last_write = 0.0
        self._range = (0.0, 1.0)

    # Progress ------------------------------------------------------------------------------
    @contextmanager
    def stage(self, start: float, end: float, message: str) -> Iterator[None]:
        """Map the fractions reported inside onto [start, end] of the job's progress bar."""
        outer = self._range
        self._range = (self._absolute(start, outer), self._absolute(end, outer))
        self.progress(0.0, message, log=True)
        try:
            yield
        finally:
            self._range = outer

    @staticmethod
    def _absolute(fraction: float, bounds: tuple[float, float]) -> float:
        low, high = bounds
        return low + (high - low) * min(max(fraction, 0.0), 1.0)

    def progress(self, fraction: float, message: str, *, log: bool = False) -> None:
        """Report progress within the current stage; at most twice a second unless logged."""
        now = time.monotonic()
        if not log and now - self._last_write < _PROGRESS_MIN_INTERVAL_S:
            return
        self._last_write = now
        absolute = self._absolute(fraction, self._range)
        if not job_progress(job=self.job, fraction=absolute, message=message, log=log):
            self.lost = True
            self._stop.set()
            raise JobLost(f"job {self.job.pk} is no longer owned by this worker")

    def log(self, message: str) -> None:
        job_log(job=self.job, message=message)

    @property
    def inline(self) -> bool:
        """Run in the requesting process (``--inline``): its shards run here too."""
        return self.job.worker.startswith("inline:")

    def on_progress(self, fraction: float, message: str) -> None:
        """A callback for the reward-model package (``on_progress``)."""
        self.progress(fraction, message)

    # Stopping -------------------------------------------------------------------------------
    def should_stop(self) -> bool:
        """Cheap: reads a flag the heartbeat thread sets from its periodic query."""
        return self._stop.is_set()

    def check(self) -> None:
        """Raise if the job must stop (between steps that cannot be interrupted halfway)."""
        self._poll()
        if self.lost:
            raise JobLost(f"job {self.job.pk} is no longer owned by this worker")
        if self._stop.is_set():
            raise JobCancelled

    def _poll(self) -> bool:
        """One heartbeat: refresh ownership and read the cancel flag. False once lost."""
        alive = _owned(self.job).update(heartbeat_at=timezone.now())
        if not alive:
            self.lost = True
            self._stop.set()
            return False
        if Job.objects.filter(pk=self.job.pk, cancel_requested=True).exists():
            self._stop.set()
        return True

    def heartbeat(self) -> AbstractContextManager[None]:
        """Beat in a background thread while the job's code runs."""
        return fenced_heartbeat(row=f"job {self.job.pk}", poll=self._poll)


JobWork = Callable[[JobContext], dict[str, Any]]


def job_run(
    *,
    job_id: int,
    worker: str,
    work_for: Callable[[Job], JobWork],
    reraise: bool = True,
    queue: str | None = None,
) -> JobClaim:
    """Claim the job and run its work under a heartbeat; the job row records the outcome.

    Cancellation and loss of ownership end quietly. A JobError or any other exception marks the
    job failed and is re-raised (``reraise``) so Celery logs it. Transient database errors
    release the job to the queue before they propagate, so the task's automatic retry claims
    it again.
    """
    claim = job_claim(job_id=job_id, worker=worker)
    if claim.outcome != ClaimOutcome.CLAIMED:
        return claim
    job = claim.job
    assert job is not None  # noqa: S101 - CLAIMED always carries the job
    context = JobContext(job, queue)
    try:
        work = work_for(job)
        with context.heartbeat():
            result = work(context)
    except JobHandedOff:
        pass  # the shards carry the job now (scoring.jobs.shards)
    except JobCancelled:
        job_mark_cancelled(job=job)
    except JobLost:
        logger.warning("job %s was taken over by another worker; stopping", job.pk)
    except _transient_errors() as error:
        try:
            job_release(job=job, reason=f"{type(error).__name__}: {error}")
        except Exception:  # the database may still be down; the heartbeat goes stale instead
            logger.warning("could not release job %s", job.pk, exc_info=True)
        raise
    except BaseException as error:
        job_fail(job=job, error=_describe(error))
        if reraise or not isinstance(error, Exception):
            raise
    else:
        job_finish(job=job, result=result)
    job.refresh_from_db()
    return JobClaim(ClaimOutcome.CLAIMED, job)


def _transient_errors() -> tuple[type[BaseException], ...]:
    return (OperationalError, InterfaceError, RedisConnectionError)


def _describe(error: BaseException) -> str:
    if isinstance(error, JobError):
        return str(error)
    name = type(error).__name__
    if name == "SoftTimeLimitExceeded":
        return f"time limit of {settings.TRAINING_TIME_LIMIT_S} s exceeded"
    return f"{name}: {error}"
