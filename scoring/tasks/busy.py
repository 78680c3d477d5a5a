"""A second delivery of a job (or shard) that a live worker runs: look again later."""

from __future__ import annotations

from typing import NoReturn

from celery import Task

from scoring.jobs.runner import ClaimOutcome, JobClaim
from scoring.jobs.shards import ShardClaim

# How many times a delivery looks again, each once the running worker's heartbeat would be
# stale (a minute or more): days, longer than any time limit.
BUSY_MAX_RETRIES = 10_000


def retry_while_busy(task: Task, claim: JobClaim | ShardClaim) -> None:
    """Retry the task once the live worker's heartbeat would be stale, when ``claim`` found
    the job or shard busy: by then it has finished (nothing to do) or its worker died (this
    delivery takes over)."""
    if claim.outcome == ClaimOutcome.BUSY:  # a StrEnum: a shard's "busy" too
        _retry(task, claim.retry_in)


def _retry(task: Task, countdown: float | None) -> NoReturn:
    try:
        # An explicit limit: retry(max_retries=None) means the task's own (5 for transient
        # errors), and a delivery would give up, logging an error, while the job still ran.
        raise task.retry(countdown=countdown, max_retries=BUSY_MAX_RETRIES)
    finally:
        # retry() leaves the limit on the task object, shared by the process, where the next
        # automatic retry of a transient error would take it instead of its own.
        task.__dict__.pop("override_max_retries", None)
