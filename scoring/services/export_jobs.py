"""Job lifecycle for export and curation jobs.

Thin wrappers so the export and curation services read the same whether the shared job
services (scoring/services/jobs.py) are present or not: a job row is claimed with a
conditional UPDATE (queued → running), so a task delivered twice does the work once.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.db.models import F, Q
from django.utils import timezone

from scoring.models import Job, JobLogLine

# A running job whose heartbeat is older than this lost its worker (killed, redelivered task).
STALE_AFTER = timedelta(minutes=10)


def job_start(*, job_id: int, worker: str = "", stale_after: timedelta = STALE_AFTER) -> Job | None:
    """Claim a queued job, or a running one whose worker went silent, for this worker.

    None when another worker holds it or it is finished: a task delivered twice runs once.
    """
    now = timezone.now()
    claimable = Q(status=Job.Status.QUEUED) | Q(
        status=Job.Status.RUNNING, heartbeat_at__lt=now - stale_after
    )
    claimed = Job.objects.filter(claimable, pk=job_id, cancel_requested=False).update(
        status=Job.Status.RUNNING,
        started_at=now,
        heartbeat_at=now,
        worker=worker[:200],
        attempts=F("attempts") + 1,
    )
    if not claimed:
        return None
    return Job.objects.select_related("campaign").get(pk=job_id)


def job_report(*, job: Job, fraction: float, message: str = "", log: bool = False) -> None:
    """Progress and a heartbeat, committed at once so pages see it while the job runs;
    with ``log`` the message is also kept as a log line."""
    fraction = min(max(fraction, 0.0), 1.0)
    Job.objects.filter(pk=job.pk).update(
        progress=fraction, message=message[:500], heartbeat_at=timezone.now()
    )
    job.progress, job.message = fraction, message[:500]
    if log and message:
        JobLogLine.objects.create(job=job, message=message)


def job_succeed(*, job: Job, result: dict[str, Any], message: str = "done") -> None:
    now = timezone.now()
    Job.objects.filter(pk=job.pk).update(
        status=Job.Status.SUCCEEDED,
        progress=1.0,
        result=result,
        message=message[:500],
        heartbeat_at=now,
        finished_at=now,
    )
    JobLogLine.objects.create(job=job, message=message)
    job.status, job.result, job.progress = Job.Status.SUCCEEDED, result, 1.0
    job.message = message[:500]


def job_error(*, job: Job, error: str) -> None:
    now = timezone.now()
    Job.objects.filter(pk=job.pk).update(
        status=Job.Status.FAILED, error=error, heartbeat_at=now, finished_at=now
    )
    JobLogLine.objects.create(job=job, message=f"failed: {error}"[:2000])
    job.status, job.error = Job.Status.FAILED, error
