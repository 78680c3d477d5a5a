"""Sharded jobs: a job's pairs split into id ranges that any number of workers run in parallel.

Lifecycle of a sharded job (a score job, or the scoring stage of a loop job):

1. The job's own task (stage ``main``) does what must happen once (training, say), then plans
   the shards by keyset pagination over its target pairs ordered by id (one page of at most
   ``shard_size`` ids in memory at a time, never the whole list), and in one transaction
   creates the ``JobShard`` rows, moves the job to stage ``shards`` (no worker owns it now)
   and, on commit, sends one ``scoring.score_shard`` task per shard to the job's queue.
2. Every worker on that queue, on any host, takes shards. A shard is claimed with a
   conditional UPDATE (queued → running, ``attempts + 1``), heartbeaten, and every write is
   fenced by ``(status=running, attempts)`` as for jobs (``scoring.jobs.runner``); its
   heartbeat also keeps the job's fresh. A shard whose worker died (stale heartbeat, or the
   task redelivered after a ``kill -9``: tasks acknowledge late) is taken over, up to
   ``MAX_SHARD_ATTEMPTS`` claims; a shard that fails with a user error (``JobError``), or
   after that many attempts, fails the job with its error and cancels the shards not started.
3. A shard that succeeds counts the job's unfinished shards in the database after its own
   commit. The last one to commit sees none and moves the job to stage ``finishing`` with a
   conditional UPDATE (so exactly one shard does), then sends the job's task again; that
   delivery claims the job (``job_claim``) and runs its last part (prioritising, opening
   the round) and finishes it. If that shard's worker dies between its commit and that
   UPDATE, the shard's task delivered again, or ``shards_recover_stale``, does it instead.

Progress of the job during stage ``shards`` is shards done / shards (mapped onto the stage's
range of the progress bar). Cancelling the job in stage ``shards`` cancels it and its unfinished
shards at once; running shards notice at their next chunk (their fenced writes fail) and stop.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

from celery import current_app
from django.conf import settings
from django.db import transaction
from django.db.models import F, Q, QuerySet, Sum
from django.db.models.functions import Now
from django.utils import timezone

from scoring.jobs.claims import RELEASED_STALE_PERIODS, resend_due
from scoring.jobs.runner import (
    TASK_NAMES,
    JobCancelled,
    JobContext,
    JobError,
    JobLost,
    campaign_files_remove_send,
    fenced_heartbeat,
    job_cancel_sharded,
    job_log,
    seconds_until_stale,
    stale_before,
)
from scoring.models import Job, JobShard

logger = logging.getLogger(__name__)

SHARD_TASK = "scoring.score_shard"
MAX_SHARD_ATTEMPTS = 3
RETRY_SECONDS = 2  # before a shard that failed is run again
_PLAN_BATCH = 1000


def shard_size_setting() -> int:
    return int(settings.ARBITER.get("SHARD_SIZE", 20_000))


# A shard's planned pair count is stored in a 32-bit column (JobShard.planned).
SHARD_SIZE_MAX = 2**31 - 1


def shard_size_of(params: dict[str, Any]) -> int:
    """The job's ``shard_size`` parameter, else the setting; a clear JobError when bad."""
    raw = params.get("shard_size")
    if raw is None:
        return shard_size_setting()
    try:
        size = int(raw)
    except (TypeError, ValueError):
        raise JobError(f"shard_size must be a whole number, got {raw!r}") from None
    if not 1 <= size <= SHARD_SIZE_MAX:
        raise JobError(f"shard_size must be between 1 and {SHARD_SIZE_MAX}, got {size}")
    return size


# --- Planning (the job's own worker) -------------------------------------------------------


@dataclass(frozen=True)
class ShardRange:
    first_id: int
    last_id: int
    count: int


# Ids read per query while planning shards: the planner's memory, whatever the shard size.
_PLAN_PAGE = 10_000


def shard_ranges(
    targets: QuerySet[Any], size: int, *, check: Callable[[], None] | None = None
) -> Iterator[ShardRange]:
    """Consecutive id ranges of ``targets`` with ``size`` pairs each (the last one fewer).

    Keyset pagination: each page is ``id > last id seen ORDER BY id LIMIT n``, one index range
    scan, with n at most ``_PLAN_PAGE`` whatever the shard size, so that a shard as large as
    the pool (``--shard-size`` up to 2**31-1) never holds the pool's ids in memory.
    ``check`` is called before each page (it raises to stop): bounded work between two.
    """
    if size < 1:
        raise ValueError("shard size must be at least 1")
    after: int | None = None
    first: int | None = None
    count = 0
    while True:
        if check is not None:
            check()
        page = targets if after is None else targets.filter(id__gt=after)
        ids = list(
            page.order_by("id").values_list("id", flat=True)[: min(_PLAN_PAGE, size - count)]
        )
        if not ids:
            if first is not None and after is not None:
                yield ShardRange(first, after, count)
            return
        if first is None:
            first = ids[0]
        count += len(ids)
        after = ids[-1]
        if count == size:
            yield ShardRange(first, after, count)
            first, count = None, 0


def job_hand_off_to_shards(
    *,
    context: JobContext,
    targets: QuerySet[Any],
    size: int,
    progress_range: tuple[float, float],
    queue: str | None = None,
    inline: bool = False,
) -> int:
    """Plan the job's shards and give the job over to them (stage ``shards``); 0 if none.

    Idempotent: a job restarted in stage ``shards`` (its planner died, or it was recovered)
    keeps its shards and sends the unfinished ones again (a live one ignores the duplicate).
    """
    job = context.job
    with transaction.atomic():
        # The shard rows are written in this one transaction (a planner killed halfway leaves
        # none), but the job's row is locked only once they are: a lock held while planning
        # millions of pairs would make a cancel request (and the job's heartbeat) wait for
        # the whole plan. The planning reads the cancel flag instead (``_plan_check``).
        if not JobShard.objects.filter(job=job).exists():
            _plan_check(context)
            size = _bounded_shard_size(context, targets=targets, size=size)
            _shards_plan(context, targets=targets, size=size)
        owned = Job.objects.select_for_update().filter(
            pk=job.pk, status=Job.Status.RUNNING, attempts=job.attempts
        )
        # Locked, the row is the truth: a takeover, or a cancel asked during the plan, ends
        # it here and rolls its shard rows back.
        _plan_check(context, rows=owned)
        total = JobShard.objects.filter(job=job).count()
        if total == 0:
            return 0
        result = {**(job.result or {}), "shard_progress": list(progress_range)}
        if queue:
            result["queue"] = queue
        result["inline"] = inline
        owned.update(
            stage=Job.Stage.SHARDS,
            worker="",
            heartbeat_at=Now(),
            result=result,
            message=f"0/{total} shards done",
        )
        job.stage, job.result = Job.Stage.SHARDS, result
        pending = list(
            JobShard.objects.filter(
                job=job, status__in=(JobShard.Status.QUEUED, JobShard.Status.RUNNING)
            ).values_list("pk", flat=True)
        )
        job_log(job=job, message=f"split into {total} shards of up to {size} pairs")
        if not inline:
            options = {"queue": queue} if queue else {}
            transaction.on_commit(
                lambda: [current_app.send_task(SHARD_TASK, args=(pk,), **options) for pk in pending]
            )
    return total


# A job's shards are planned in one transaction and each sent as a message: a shard size of 1
# on a pool of 40 million pairs would be 40 million rows and messages. Past this many shards
# the size grows instead.
MAX_SHARDS = 100_000


def _bounded_shard_size(context: JobContext, *, targets: QuerySet[Any], size: int) -> int:
    needed = -(-targets.count() // MAX_SHARDS)
    if needed <= size:
        return size
    context.log(f"shard size raised from {size} to {needed}: at most {MAX_SHARDS:,} shards a job")
    return needed


def _plan_check(context: JobContext, rows: QuerySet[Job] | None = None) -> None:
    """Raise JobLost or JobCancelled where the job must stop, reading its row (``rows``:
    the same row, locked) and writing nothing: a write would lock the row until the plan's
    transaction commits (``JobContext.check`` beats the heartbeat; its thread does that)."""
    job = context.job
    found = (rows if rows is not None else Job.objects.filter(pk=job.pk)).values_list(
        "status", "attempts", "cancel_requested"
    )
    row = found.first()
    if context.lost or row is None or row[0] != Job.Status.RUNNING or row[1] != job.attempts:
        raise JobLost(f"job {job.pk} is no longer owned by this worker")
    if row[2] or context.should_stop():
        raise JobCancelled


def _shards_plan(context: JobContext, *, targets: QuerySet[Any], size: int) -> None:
    """Write the job's shard rows, a batch at a time, checking for a stop before each page of
    ids read (``_PLAN_PAGE``)."""
    job = context.job
    batch: list[JobShard] = []
    check = functools.partial(_plan_check, context)
    for index, shard_range in enumerate(shard_ranges(targets, size, check=check)):
        batch.append(
            JobShard(
                job=job,
                index=index,
                first_id=shard_range.first_id,
                last_id=shard_range.last_id,
                planned=shard_range.count,
            )
        )
        if len(batch) >= _PLAN_BATCH:
            JobShard.objects.bulk_create(batch)
            batch = []
    JobShard.objects.bulk_create(batch)


def shards_summary(job: Job) -> dict[str, Any]:
    """Totals over a job's shards: pairs scored and embedded, shards, distinct workers."""
    shards = JobShard.objects.filter(job=job)
    totals = shards.aggregate(scored=Sum("scored"), embedded=Sum("embedded"))
    workers = sorted(set(shards.exclude(worker="").values_list("worker", flat=True).distinct()))
    return {
        "scored": int(totals["scored"] or 0),
        "embedded": int(totals["embedded"] or 0),
        "shards": shards.count(),
        "workers": workers,
    }


# --- Claiming and running a shard (any worker) ----------------------------------------------


@dataclass(frozen=True)
class ShardClaim:
    outcome: str  # "claimed", "busy" (retry in retry_in s), "finished" (nothing to do)
    shard: JobShard | None = None
    retry_in: float = 0.0


def _job_active(job_id: int) -> QuerySet[Job]:
    return Job.objects.filter(
        pk=job_id, status=Job.Status.RUNNING, stage=Job.Stage.SHARDS, cancel_requested=False
    )


def shard_claim(*, shard_id: int, worker: str) -> ShardClaim:
    now = timezone.now()  # the times shown; staleness is judged by the database's clock
    shard = JobShard.objects.filter(pk=shard_id).select_related("job").first()
    if shard is None:
        return ShardClaim("finished")
    if not _job_active(shard.job_id).exists():
        # The job was cancelled, failed or finished: this shard has nothing left to do.
        _job_cancel_if_asked(shard.job)
        JobShard.objects.filter(pk=shard_id, status=JobShard.Status.QUEUED).update(
            status=JobShard.Status.CANCELLED
        )
        return ShardClaim("finished", shard)
    owned = {"worker": worker[:200], "heartbeat_at": Now(), "attempts": F("attempts") + 1}
    claimed = JobShard.objects.filter(pk=shard_id, status=JobShard.Status.QUEUED).update(
        status=JobShard.Status.RUNNING, started_at=now, **owned
    )
    resumed = 0
    if not claimed:
        resumed = JobShard.objects.filter(
            pk=shard_id,
            status=JobShard.Status.RUNNING,
            heartbeat_at__lt=stale_before(),
            attempts__lt=MAX_SHARD_ATTEMPTS,
        ).update(**owned)
    if claimed or resumed:
        shard = JobShard.objects.select_related("job__campaign").get(pk=shard_id)
        if resumed:
            job_log(
                job=shard.job,
                message=f"shard {shard.index}: worker lost; taken over by {worker} "
                f"(attempt {shard.attempts})",
            )
        return ShardClaim("claimed", shard)
    shard.refresh_from_db()
    running = JobShard.objects.filter(
        pk=shard_id, status=JobShard.Status.RUNNING, heartbeat_at__isnull=False
    )
    if running.filter(heartbeat_at__lt=stale_before()).exists():  # stale, and out of attempts
        _shard_fail_for_good(
            shard=shard, error=f"its worker was lost {shard.attempts} times", fenced=False
        )
        return ShardClaim("finished", shard)
    if running.exists():
        return ShardClaim("busy", shard, seconds_until_stale(running) + 1.0)
    if shard.status == JobShard.Status.SUCCEEDED:
        # Delivered again (tasks acknowledge late): its worker may have died after the
        # shard's commit and before it handed the job on; if so, this delivery does it.
        _job_advance_if_done(shard.job)
    return ShardClaim("finished", shard)


def _owned_shard(shard: JobShard) -> QuerySet[JobShard]:
    return JobShard.objects.filter(
        pk=shard.pk, status=JobShard.Status.RUNNING, attempts=shard.attempts
    )


class ShardContext:
    """What a running shard's code sees: ``check`` between chunks and fenced counters."""

    def __init__(self, shard: JobShard) -> None:
        self.shard = shard
        self.job = shard.job
        self._stop = threading.Event()
        self._cancelled = threading.Event()

    def check(self) -> None:
        self._poll()
        if self._cancelled.is_set():
            raise JobCancelled
        if self._stop.is_set():
            raise JobLost(f"shard {self.shard.pk} is no longer owned by this worker")

    def should_stop(self) -> bool:
        return self._stop.is_set() or self._cancelled.is_set()

    def _poll(self) -> bool:
        alive = _owned_shard(self.shard).update(heartbeat_at=Now())
        if not alive:
            self._stop.set()
            return False
        # The job's heartbeat: alive while any of its shards is (its shards taken, the
        # sweep's sends of them start their spacing afresh).
        if not _job_active(self.job.pk).update(heartbeat_at=Now(), resends=0, resent_at=None):
            job = Job.objects.filter(pk=self.job.pk).first()
            if job is None or job.cancel_requested or job.status == Job.Status.CANCELLED:
                self._cancelled.set()
            else:
                self._stop.set()
            return False
        return True

    def add_counts(self, *, scored: int = 0, embedded: int = 0) -> None:
        """Add to the shard's counters, inside the caller's transaction; raises if lost."""
        if not _owned_shard(self.shard).update(
            scored=F("scored") + scored, embedded=F("embedded") + embedded
        ):
            raise JobLost(f"shard {self.shard.pk} is no longer owned by this worker")

    def store_result(self, result: dict[str, Any], *, scored: int) -> None:
        """Set the shard's result and its count of scored pairs (a shard run again after its
        worker was lost overwrites both, so nothing counts twice); raises if lost."""
        if not _owned_shard(self.shard).update(result=result, scored=scored):
            raise JobLost(f"shard {self.shard.pk} is no longer owned by this worker")

    def heartbeat(self) -> AbstractContextManager[None]:
        """Beat in a background thread while the shard's code runs (the job's too)."""
        return fenced_heartbeat(row=f"shard {self.shard.pk}", poll=self._poll)


ShardWork = Callable[[ShardContext], None]


def shard_run(
    *, shard_id: int, worker: str, work_for: Callable[[JobShard], ShardWork]
) -> ShardClaim:
    """Claim the shard and run its work; the rows record the outcome (see the docstring)."""
    claim = shard_claim(shard_id=shard_id, worker=worker)
    if claim.outcome != "claimed":
        return claim
    shard = claim.shard
    assert shard is not None  # noqa: S101 - a claim carries its shard
    context = ShardContext(shard)
    try:
        work = work_for(shard)
        with context.heartbeat():
            context.check()
            work(context)
    except JobCancelled:
        _shard_cancel(shard=shard)
    except JobLost:
        logger.warning("shard %s was taken over or ended; stopping", shard.pk)
    except JobError as error:
        _shard_fail_for_good(shard=shard, error=str(error))
    except Exception as error:
        # Not re-raised: the shard row records it and the shard's task is sent again.
        logger.exception("shard %s failed", shard.pk)
        _shard_fail_or_retry(shard=shard, error=f"{type(error).__name__}: {error}")
    else:
        shard_finish(shard=shard)
    try:
        shard.refresh_from_db()
    except JobShard.DoesNotExist:  # deleted with its campaign while it ran
        campaign_files_remove_send(campaign_id=shard.job.campaign_id)
        return ShardClaim("finished")
    return ShardClaim("claimed", shard)


def shard_finish(*, shard: JobShard) -> bool:
    """Mark the shard done; the last shard of the job to finish hands the job to its
    finishing stage. Returns whether this shard was that last one."""
    now = timezone.now()
    with transaction.atomic():
        if not _owned_shard(shard).update(
            status=JobShard.Status.SUCCEEDED, finished_at=now, heartbeat_at=Now()
        ):
            return False
    # Counted after our own commit: of shards finishing together, at least the last to
    # commit sees none left. A worker killed before this point leaves the job to a redelivery
    # of its task or to the sweep (both call the same helper).
    return _job_advance_if_done(shard.job)


def _job_advance_if_done(job: Job) -> bool:
    """Record the job's shards done; if all have succeeded, move the job to stage
    ``finishing`` and send its task on commit. Returns whether this call moved it.

    Called by each shard that succeeds, by a shard task delivered again after its shard
    succeeded, and by ``shards_recover_stale``: the conditional UPDATE lets exactly one of
    them move the job, so its task is sent once. A job whose cancel was asked is cancelled
    instead: its last part would run with no check of the request."""
    shards = JobShard.objects.filter(job_id=job.pk)
    total = shards.count()
    done = shards.filter(status=JobShard.Status.SUCCEEDED).count()
    low, high = (job.result or {}).get("shard_progress", [0.0, 1.0])
    _job_active(job.pk).update(
        progress=low + (high - low) * done / max(total, 1),
        message=f"{done}/{total} shards done",
        heartbeat_at=Now(),
    )
    if total == 0 or done < total:
        return False
    with transaction.atomic():
        advanced = _job_active(job.pk).update(
            stage=Job.Stage.FINISHING, worker="", heartbeat_at=Now()
        )
        if not advanced:
            _job_cancel_if_asked(job)
            return False
        job_log(job=job, message=f"all {total} shards done")
        if not (job.result or {}).get("inline"):
            queue = (job.result or {}).get("queue")
            options = {"queue": queue} if queue else {}
            name = TASK_NAMES[job.kind]
            transaction.on_commit(lambda: current_app.send_task(name, args=(job.pk,), **options))
    return True


def _job_cancel_if_asked(job: Job) -> None:
    """Cancel a job left in stage ``shards`` with its cancel asked: asked before the job got
    there, or by a request that died before it cancelled the job. No shard of it would run
    to notice, and its last part must not run."""
    if Job.objects.filter(
        pk=job.pk, status=Job.Status.RUNNING, stage=Job.Stage.SHARDS, cancel_requested=True
    ).exists():
        job_cancel_sharded(job=job)


def _shard_cancel(*, shard: JobShard) -> None:
    now = timezone.now()
    _owned_shard(shard).update(status=JobShard.Status.CANCELLED, finished_at=now)
    job_cancel_sharded(job=shard.job)


def _shard_fail_or_retry(*, shard: JobShard, error: str) -> None:
    if shard.attempts >= MAX_SHARD_ATTEMPTS:
        _shard_fail_for_good(shard=shard, error=error)
        return
    with transaction.atomic():
        released = _owned_shard(shard).update(
            status=JobShard.Status.QUEUED, worker="", error=error[:2000]
        )
        if released:
            job_log(job=shard.job, message=f"shard {shard.index} failed, will retry: {error}")
            if (shard.job.result or {}).get("inline"):
                return  # shards_run_inline takes it again; no worker is meant to
            queue = (shard.job.result or {}).get("queue")
            options = {"queue": queue} if queue else {}
            transaction.on_commit(
                lambda: current_app.send_task(
                    SHARD_TASK, args=(shard.pk,), countdown=RETRY_SECONDS, **options
                )
            )


def _shard_fail_for_good(*, shard: JobShard, error: str, fenced: bool = True) -> None:
    now = timezone.now()
    rows = (
        _owned_shard(shard)
        if fenced
        else JobShard.objects.filter(pk=shard.pk, status=JobShard.Status.RUNNING)
    )
    with transaction.atomic():
        if not rows.update(status=JobShard.Status.FAILED, error=error[:2000], finished_at=now):
            return
        message = f"shard {shard.index} failed: {error}"
        failed = Job.objects.filter(pk=shard.job_id, status=Job.Status.RUNNING).update(
            status=Job.Status.FAILED,
            error=message,
            finished_at=now,
            message=message[:500],
        )
        # The others stop: queued ones are never claimed, running ones' fenced writes fail.
        JobShard.objects.filter(
            job_id=shard.job_id, status__in=(JobShard.Status.QUEUED, JobShard.Status.RUNNING)
        ).update(status=JobShard.Status.CANCELLED, finished_at=now)
        if failed:
            job_log(job=shard.job, message=f"failed: {message}")


def shards_recover_stale() -> list[int]:
    """Send again the tasks of running shards whose worker went silent (brokers without
    redelivery), and of queued shards of a job silent that long; the claim decides. Hand
    on the jobs silent that long whose shards have all succeeded. Returns the shards sent."""
    # The last shard's worker died between the shard's commit and handing the job on, and its
    # task was not delivered again (a broker without redelivery): nothing else moves the job.
    unfinished = [status for status in JobShard.Status if status != JobShard.Status.SUCCEEDED]
    finished = Job.objects.filter(
        status=Job.Status.RUNNING, stage=Job.Stage.SHARDS, heartbeat_at__lt=stale_before()
    ).exclude(shards__status__in=unfinished)
    for job in finished:
        _job_advance_if_done(job)
    stale = list(
        JobShard.objects.filter(
            status=JobShard.Status.RUNNING,
            heartbeat_at__lt=stale_before(),
            job__status=Job.Status.RUNNING,
        ).select_related("job")
    )
    # Queued shards of a job none of whose shards has run for RELEASED_STALE_PERIODS stale
    # periods: their messages may be lost (a broker restart); a duplicate of a live one is
    # ignored by its claim. Sent again as the job's own task is (``resend_due``: each time
    # twice as long after the one before, counted on the job): shards merely waiting behind
    # other work (every gpu worker busy with a training of hours) were sent again every
    # RELEASED_STALE_PERIODS, each time every one of them, without end.
    waiting_jobs = Job.objects.filter(
        Q(resent_at__isnull=True) | resend_due("resent_at"),
        status=Job.Status.RUNNING,
        stage=Job.Stage.SHARDS,
        heartbeat_at__lt=stale_before(RELEASED_STALE_PERIODS),
    )
    waiting = list(
        JobShard.objects.filter(status=JobShard.Status.QUEUED, job__in=waiting_jobs)
        .select_related("job")
        .order_by("job_id", "index")
    )
    Job.objects.filter(
        pk__in={shard.job_id for shard in waiting},
        status=Job.Status.RUNNING,
        stage=Job.Stage.SHARDS,
    ).update(resends=F("resends") + 1, resent_at=Now())
    stale += waiting
    sent = []
    for shard in stale:
        queue = (shard.job.result or {}).get("queue")
        options = {"queue": queue} if queue else {}
        try:
            current_app.send_task(SHARD_TASK, args=(shard.pk,), **options)
        except Exception:  # the broker's own errors (kombu, redis): the next sweep tries again
            logger.warning(
                "stale shard %s: its task could not be sent again", shard.pk, exc_info=True
            )
            continue
        sent.append(shard.pk)
    return sent


def shards_run_inline(*, job: Job, worker: str, work_for: Callable[[JobShard], ShardWork]) -> None:
    """Run a job's unfinished shards one after another in this process (``--inline``), and
    again those a transient error put back in the queue, until none is queued: each run
    takes an attempt, so a shard failing every time fails the job after
    ``MAX_SHARD_ATTEMPTS``."""
    queued = JobShard.objects.filter(job=job, status=JobShard.Status.QUEUED)
    shard_ids = list(queued.values_list("pk", flat=True))
    while shard_ids:
        for shard_id in shard_ids:
            shard_run(shard_id=shard_id, worker=worker, work_for=work_for)
        shard_ids = list(queued.values_list("pk", flat=True))
        if shard_ids:
            time.sleep(RETRY_SECONDS)  # as a worker's retry waits
