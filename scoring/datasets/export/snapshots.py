"""Export snapshots: export jobs, their directory and files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.contrib.auth.models import User
from django.db import transaction
from django.db.models import Max

from annotation.models import Campaign
from core.time_limits import connections_reset
from scoring.datasets.export.filters import (
    DEFAULT_CHUNK_SIZE,
    FORMATS,
    ExportFilters,
    InvalidExport,
    export_filters_check,
)
from scoring.datasets.export.writers import (
    export_write,
    outcomes_path,
    stale_temporaries_remove,
    unranked_path,
)
from scoring.jobs.runner import (
    JobCancelled,
    JobClaim,
    JobContext,
    JobError,
    JobWork,
    job_create,
    job_enqueue,
    job_run,
    worker_name,
)
from scoring.models import ExportSnapshot, Job

# --- Snapshots (jobs) ---------------------------------------------------------------------


def export_directory(*, campaign: Campaign) -> Path:
    return Path(settings.ARBITER["EXPORT_DIR"]) / f"campaign-{campaign.pk}"


def export_create(
    *,
    campaign: Campaign,
    file_format: str,
    filters: ExportFilters,
    user: User | None = None,
    enqueue: bool = True,
) -> ExportSnapshot:
    """Record a queued export job and its snapshot row (the next version), and enqueue it."""
    if file_format not in FORMATS:
        raise InvalidExport(f"format must be one of {', '.join(FORMATS)}")
    # A mistyped round or evaluation set would export nothing (or less than asked) silently.
    export_filters_check(campaign=campaign, filters=filters)
    with transaction.atomic():
        # Lock the campaign row so two exports created at once get different versions.
        Campaign.objects.select_for_update(no_key=True).filter(pk=campaign.pk).first()
        latest = ExportSnapshot.objects.filter(campaign=campaign).aggregate(n=Max("version"))["n"]
        version = (latest or 0) + 1
        params = {"format": file_format, "filters": filters.as_params(), "version": version}
        author = user if user is not None and user.is_authenticated else None
        job = job_create(campaign=campaign, kind=Job.Kind.EXPORT, params=params, user=author)
        snapshot = ExportSnapshot.objects.create(
            job=job,
            campaign=campaign,
            version=version,
            format=file_format,
            filters=filters.as_params(),
        )
        if enqueue:
            job_enqueue(job=job)
    return snapshot


def _export_work(job: Job, chunk_size: int) -> JobWork:
    snapshot = ExportSnapshot.objects.select_related("campaign").get(job=job)
    campaign = snapshot.campaign
    extension = "jsonl" if snapshot.format == "jsonl" else "parquet"
    destination = export_directory(campaign=campaign) / f"export-v{snapshot.version}.{extension}"

    def work(context: JobContext) -> dict[str, Any]:
        def on_progress(done: int, total: int) -> None:
            if context.should_stop():
                raise JobCancelled  # export_write removes its temporary files
            context.progress(done / total if total else 1.0, f"{done} of {total} pairs")

        # A run killed mid-write (SIGKILL, lost machine) left its temporaries; this run owns
        # the job now, so no other writes this version.
        if stale_temporaries_remove(destination):
            context.log("removed the temporary files of an interrupted run")
        try:
            result = export_write(
                campaign=campaign,
                filters=ExportFilters.from_params(snapshot.filters),
                file_format=snapshot.format,
                destination=destination,
                chunk_size=chunk_size,
                on_progress=on_progress,
                extra_manifest={"snapshot_version": snapshot.version, "job": job.pk},
                # A worker whose job was taken over (a stale heartbeat) must not put its
                # files in place, nor its manifest beside its successor's files.
                commit_fence=context.owned,
            )
        except InvalidExport as error:
            raise JobError(str(error)) from error
        except SoftTimeLimitExceeded as error:
            # export_write removed its temporary files; the job fails saying why.
            connections_reset()
            raise JobError(
                f"time limit of {settings.EXPORT_TIME_LIMIT_S} s exceeded "
                "(ARBITER_EXPORT_TIME_LIMIT_S); no file was written"
            ) from error
        snapshot.path = str(result.path)
        snapshot.manifest = result.manifest
        with context.owned():
            snapshot.save(update_fields=["path", "manifest"])
        context.log(f"exported {result.manifest['counts']['rows']} pairs to {result.path.name}")
        counts: dict[str, Any] = result.manifest["counts"]
        return counts

    return work


def export_run(
    *, job_id: int, worker: str = "", chunk_size: int = DEFAULT_CHUNK_SIZE, reraise: bool = True
) -> JobClaim:
    """Claim the export job and write its snapshot (see scoring.jobs.runner: a second
    delivery does nothing, a job whose worker died is taken over once its heartbeat is stale).
    """
    return job_run(
        job_id=job_id,
        worker=worker or worker_name(),
        work_for=lambda job: _export_work(job, chunk_size),
        reraise=reraise,
    )


def export_file(*, snapshot: ExportSnapshot, role: str = "main") -> Path | None:
    """The finished file of a snapshot ("main", "ties" or "outcomes"), or None when there is
    none."""
    if not snapshot.path:
        return None
    main = Path(snapshot.path)
    paths = {"main": main, "ties": unranked_path(main), "outcomes": outcomes_path(main)}
    path = paths.get(role)
    if path is None:
        return None
    names = {item.get("name") for item in snapshot.manifest.get("files", [])}
    if path.name not in names or not path.is_file():
        return None
    return path
