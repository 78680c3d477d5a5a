"""Running a claimed model job (train, score, loop): its work runs under a fenced heartbeat
and the job row records the outcome.

The lifecycle, the claim and its fencing token are described in ``scoring.jobs.claims``;
creating, enqueueing and cancelling jobs live in ``scoring.jobs.requests``. This module
re-exports both, so ``scoring.jobs.runner`` stays the one import for the job machinery.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any

from celery import current_app
from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import (
    InterfaceError,
    OperationalError,
    close_old_connections,
    connection,
    transaction,
)
from django.db.models.functions import Now
from redis.exceptions import ConnectionError as RedisConnectionError

from core.queue import BROKER_ERRORS
from core.time_limits import connections_reset
from scoring.jobs.claims import (
    MAX_ATTEMPTS,
    ClaimOutcome,
    JobClaim,
    job_claim,
    job_fail,
    job_finish,
    job_log,
    job_mark_cancelled,
    job_owned,
    job_progress,
    job_release,
    jobs_recover_stale,
    seconds_until_stale,
    stale_before,
    stale_seconds,
    worker_name,
)
from scoring.jobs.requests import (
    ACTIVE_STATUSES,
    EXCLUSIVE_KINDS,
    TASK_NAMES,
    JobConflict,
    JobError,
    job_cancel,
    job_cancel_sharded,
    job_create,
    job_enqueue,
    job_fail_unsent,
)
from scoring.models import Job

__all__ = [
    "ACTIVE_STATUSES",
    "EXCLUSIVE_KINDS",
    "MAX_ATTEMPTS",
    "REMOVE_CAMPAIGN_FILES_TASK",
    "TASK_NAMES",
    "ClaimOutcome",
    "JobCancelled",
    "JobClaim",
    "JobConflict",
    "JobContext",
    "JobError",
    "JobHandedOff",
    "JobLost",
    "JobWork",
    "campaign_files_remove_send",
    "fenced_heartbeat",
    "heartbeat_seconds",
    "job_cancel",
    "job_cancel_sharded",
    "job_claim",
    "job_create",
    "job_enqueue",
    "job_fail",
    "job_fail_unsent",
    "job_finish",
    "job_log",
    "job_mark_cancelled",
    "job_progress",
    "job_release",
    "job_run",
    "jobs_recover_stale",
    "seconds_until_stale",
    "stale_before",
    "stale_seconds",
    "worker_name",
]

logger = logging.getLogger(__name__)

_PROGRESS_MIN_INTERVAL_S = 0.5


class JobCancelled(Exception):
    """Raised inside a job when an admin asked it to stop."""


class JobLost(Exception):
    """This worker no longer owns the job (another worker took it over, or it was ended)."""


class JobHandedOff(Exception):  # noqa: N818 - a control-flow signal, like JobCancelled
    """Raised by a job's work once it gave the job over to its shards (``scoring.jobs.shards``):
    the job stays running, owned by no worker, until its last shard sends it on."""


def heartbeat_seconds() -> float:
    default = max(min(stale_seconds() / 4, 10.0), 0.2)
    return float(settings.ARBITER.get("JOB_HEARTBEAT_SECONDS", default))


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
        # What a cancel at this point leaves behind, for the job's log; the work updates it
        # once it has changed something a cancel does not undo (a version registered).
        self.cancel_leaves = "nothing was registered"

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
        alive = job_owned(self.job).update(heartbeat_at=Now())
        if not alive:
            self.lost = True
            self._stop.set()
            return False
        if Job.objects.filter(pk=self.job.pk, cancel_requested=True).exists():
            self._stop.set()
        return True

    @contextmanager
    def owned(self) -> Iterator[None]:
        """A transaction in which this worker still owns the job: its row is locked first, so
        a takeover waits until the block commits. Raises JobLost where the job is no longer
        this worker's (taken over while a stale heartbeat let it); for the step that makes
        the job's result visible (a file renamed into place, its record saved)."""
        with transaction.atomic():
            if not job_owned(self.job).select_for_update().exists():
                self.lost = True
                self._stop.set()
                raise JobLost(f"job {self.job.pk} is no longer owned by this worker")
            yield

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
        job_mark_cancelled(job=job, leaves=context.cancel_leaves)
    except JobLost:
        logger.warning("job %s was taken over by another worker; stopping", job.pk)
    except _transient_errors() as error:
        if context.inline:
            # Nothing retries an inline run: released, the job would sit queued with no task,
            # refusing the campaign's other model jobs until a sweep sent it to a worker.
            _fail_or_log(job, error)
            if reraise:
                raise
        else:
            try:
                job_release(
                    job=job,
                    reason=f"{type(error).__name__}: {error}",
                    cancel_leaves=context.cancel_leaves,
                )
            except Exception:  # the database may still be down; the heartbeat goes stale
                logger.warning("could not release job %s", job.pk, exc_info=True)
            raise
    except BaseException as error:
        if isinstance(error, SoftTimeLimitExceeded):
            connections_reset()  # the limit may have stopped a query half-way
        job_fail(job=job, error=_describe(error))
        if reraise or not isinstance(error, Exception):
            raise
    else:
        job_finish(job=job, result=result)
    try:
        job.refresh_from_db()
    except Job.DoesNotExist:  # deleted with its campaign while it ran
        campaign_files_remove_send(campaign_id=job.campaign_id)
        return JobClaim(ClaimOutcome.MISSING)
    return JobClaim(ClaimOutcome.CLAIMED, job)


# The default-queue task that removes a deleted campaign's files (scoring.campaign_files).
REMOVE_CAMPAIGN_FILES_TASK = "scoring.remove_campaign_files"


def campaign_files_remove_send(*, campaign_id: int, directories: list[str] | None = None) -> None:
    """Send the removal of a deleted campaign's files, once the current transaction commits:
    by the deletion, and again by a worker whose job or shard of the campaign was still
    running then and may have written a file since. A broker that cannot be reached is
    logged: the next removal sweeps every deleted campaign's files. ``directories``: the
    campaign's directories its rows named outside today's stores (``scoring.campaign_files``)."""
    args: tuple[object, ...] = (int(campaign_id),)
    if directories:
        args = (*args, list(directories))

    def send() -> None:
        try:
            current_app.send_task(REMOVE_CAMPAIGN_FILES_TASK, args=args, queue="default")
        except BROKER_ERRORS as error:
            logger.warning(
                "could not send the removal of campaign %s's files: %s", campaign_id, error
            )

    transaction.on_commit(send)


def _fail_or_log(job: Job, error: BaseException) -> None:
    try:
        job_fail(job=job, error=_describe(error))
    except Exception:  # the database may still be down; the heartbeat goes stale instead
        logger.warning("could not fail job %s", job.pk, exc_info=True)


def _transient_errors() -> tuple[type[BaseException], ...]:
    return (OperationalError, InterfaceError, RedisConnectionError)


def _describe(error: BaseException) -> str:
    if isinstance(error, JobError):
        return str(error)
    name = type(error).__name__
    if name == "SoftTimeLimitExceeded":
        return f"time limit of {settings.TRAINING_TIME_LIMIT_S} s exceeded"
    return f"{name}: {error}"
