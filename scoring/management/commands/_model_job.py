"""Shared by the model-job commands: run inline, wait, or just enqueue; print JSON last."""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Callable
from typing import Any, NoReturn

from django.core.management.base import BaseCommand, CommandError, CommandParser

from annotation.models import Campaign
from core.queue import QUEUE_UNAVAILABLE_REASON, QueueUnavailable
from scoring.loop.model_jobs import job_run_inline, job_wait
from scoring.models import Job, ModelVersion

MODE_HELP = (
    "Without --wait or --inline the job is queued for a gpu worker and its id printed. "
    "--wait queues it and polls the job row until it finishes (a worker must be running "
    "`celery -A config worker -Q gpu`); --inline runs it in this process instead (no worker). "
    "While another train, score or loop job of the campaign is queued or running, nothing is "
    'started ("campaign busy"). The last line of output is one JSON object, also when the '
    "command fails after asking for its job."
)


def timeout_seconds(text: str) -> float:
    """``--timeout``: a finite number of seconds, at least 0."""
    try:
        seconds = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not math.isfinite(seconds) or seconds < 0:
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text!r}")
    return seconds


def add_run_arguments(parser: CommandParser) -> None:
    parser.add_argument("--campaign", required=True, help="Campaign name.")
    how = parser.add_mutually_exclusive_group()
    how.add_argument("--wait", action="store_true", help="Queue, then wait for a worker.")
    how.add_argument("--inline", action="store_true", help="Run in this process.")
    parser.add_argument(
        "--timeout",
        type=timeout_seconds,
        default=None,
        help="With --wait: give up after this many s (the job stays queued or running).",
    )


def run_options_check(options: dict[str, Any]) -> None:
    """Refuse ``--timeout`` without ``--wait`` (queued, the command waits for nothing; inline,
    the run is not cut short): before any work, so a refused command changes nothing."""
    if options.get("timeout") is not None and not options.get("wait"):
        raise CommandError("--timeout applies with --wait only")


def campaign_named(name: str) -> Campaign:
    campaign = Campaign.objects.filter(name=name).first()
    if campaign is None:
        raise CommandError(f"no campaign named {name!r}")
    return campaign


def version_named(campaign: Campaign, number: int | None) -> ModelVersion:
    """``--version``: the campaign's version of that number, or its active one when None."""
    versions = ModelVersion.objects.select_related("campaign").filter(campaign=campaign)
    version = (
        versions.filter(number=number).first()
        if number is not None
        else versions.filter(is_active=True).first()
    )
    if version is None:
        wanted = f"version {number}" if number is not None else "active version"
        raise CommandError(f"campaign {campaign.name!r} has no {wanted}")
    return version


def job_state(job: Job) -> dict[str, Any]:
    return {"job": job.pk, "kind": job.kind, "status": job.status}


def failure_reason(job: Job) -> str:
    """Why a finished job did not succeed: its error, else its last message (a cancelled job
    has no error), else its status."""
    return job.error or job.message or str(job.status)


def report_finished(
    command: BaseCommand, job: Job, result_of: Callable[[Job], dict[str, Any]]
) -> None:
    """Print the finished job's summary as the last line; CommandError unless it succeeded."""
    summary = {"job": job.pk, "status": job.status, **result_of(job)}
    if job.status != Job.Status.SUCCEEDED:
        summary["error"] = failure_reason(job)
    command.stdout.write(json.dumps(summary, default=str))
    if job.status != Job.Status.SUCCEEDED:
        raise CommandError(f"{job.kind} job {job.pk} {job.status}: {failure_reason(job)}")


def latest_job_id() -> int:
    return Job.objects.order_by("-pk").values_list("pk", flat=True).first() or 0


def report_unsent(
    command: BaseCommand,
    error: QueueUnavailable,
    *,
    kind: str,
    campaign_name: str,
    latest_before: int,
) -> NoReturn:
    """The broker was down as the job was enqueued: core.queue has failed the row it created
    (``job_fail_unsent``). Print that job as failed as the last line, then CommandError."""
    job = (
        Job.objects.filter(
            pk__gt=latest_before,
            kind=kind,
            campaign__name=campaign_name,
            status=Job.Status.FAILED,
            error=QUEUE_UNAVAILABLE_REASON,
        )
        .order_by("pk")
        .first()
    )
    reason = job.error if job is not None else QUEUE_UNAVAILABLE_REASON
    summary = {"job": job.pk if job else None, "kind": kind, "status": "failed", "error": reason}
    command.stdout.write(json.dumps(summary))
    named = f"{kind} job {job.pk}" if job is not None else f"the {kind} job"
    raise CommandError(f"{named} failed: {reason}; retry when the broker is back") from error


def run_and_report(
    command: BaseCommand,
    options: dict[str, Any],
    request: Callable[[bool], Job],
    result_of: Callable[[Job], dict[str, Any]],
    *,
    kind: str,
    share_existing: bool = False,
) -> None:
    """``request(enqueue)`` creates a ``kind`` job, or returns the campaign's active job that
    stops it being created (``scoring.loop.requests``: one train, score or loop job at a time).
    Only a job this call created is run, waited for or reported; another one is refused as
    "campaign busy". ``share_existing``: the request returns an existing job of ``kind`` only
    when it does the very same work (``evaluation_request``), so that one is taken as ours."""
    inline = bool(options["inline"])
    # A job with an id up to this one existed before the request. (A job another process
    # creates between this read and the request would pass for ours if it is of our kind:
    # the request does not say which it returns.)
    latest_before = latest_job_id()
    try:
        job = request(not inline)
    except QueueUnavailable as error:
        report_unsent(
            command,
            error,
            kind=kind,
            campaign_name=options["campaign"],
            latest_before=latest_before,
        )
    if job.kind != kind or (job.pk <= latest_before and not share_existing):
        message = f"campaign busy: {job.kind} job {job.pk} is {job.status}"
        command.stdout.write(
            json.dumps(
                {
                    "job": None,
                    "kind": kind,
                    "status": "refused",
                    "error": message,
                    "active_job": job_state(job),
                }
            )
        )
        raise CommandError(message)
    if not inline and not options["wait"]:
        command.stdout.write(json.dumps(job_state(job)))
        return
    job_id = job.pk
    try:
        job = _run_or_wait(command, job, inline=inline, timeout=options["timeout"])
    except Job.DoesNotExist:
        # Deleted with its campaign while it ran or was waited for.
        message = f"{kind} job {job_id} no longer exists (its campaign was deleted)"
        summary = {"job": job_id, "kind": kind, "status": "deleted", "error": message}
        command.stdout.write(json.dumps(summary))
        raise CommandError(message) from None
    report_finished(command, job, result_of)


def _run_or_wait(command: BaseCommand, job: Job, *, inline: bool, timeout: float | None) -> Job:
    """The finished job: run here (``--inline``) or waited for (``--wait``)."""
    if inline:
        if job.status != Job.Status.QUEUED:
            command.stdout.write(json.dumps(job_state(job)))
            raise CommandError(f"{job.kind} job {job.pk} is already {job.status}")
        return job_run_inline(job=job)

    def show(current: Job) -> None:
        command.stderr.write(f"[{current.progress:6.1%}] {current.status}: {current.message}")

    try:
        return job_wait(job=job, timeout=timeout, on_update=show)
    except TimeoutError as error:
        job.refresh_from_db()
        command.stdout.write(json.dumps(job_state(job)))
        raise CommandError(str(error)) from error
