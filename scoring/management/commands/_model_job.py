"""Shared by the model-job commands: run inline, wait, or just enqueue; print JSON last."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from annotation.models import Campaign
from scoring.loop.model_jobs import job_run_inline, job_wait
from scoring.models import Job

MODE_HELP = (
    "Without --wait or --inline the job is queued for a gpu worker and its id printed. "
    "--wait queues it and polls the job row until it finishes (a worker must be running "
    "`celery -A config worker -Q gpu`); --inline runs it in this process instead (no worker). "
    "The last line of output is one JSON object."
)


def add_run_arguments(parser: CommandParser) -> None:
    parser.add_argument("--campaign", required=True, help="Campaign name.")
    how = parser.add_mutually_exclusive_group()
    how.add_argument("--wait", action="store_true", help="Queue, then wait for a worker.")
    how.add_argument("--inline", action="store_true", help="Run in this process.")
    parser.add_argument(
        "--timeout", type=float, default=None, help="With --wait: give up after this many s."
    )


def campaign_named(name: str) -> Campaign:
    campaign = Campaign.objects.filter(name=name).first()
    if campaign is None:
        raise CommandError(f"no campaign named {name!r}")
    return campaign


def run_and_report(
    command: BaseCommand,
    options: dict[str, Any],
    request: Callable[[bool], Job],
    result_of: Callable[[Job], dict[str, Any]],
) -> None:
    """``request(enqueue)`` creates (or returns the already active) job."""
    inline = bool(options["inline"])
    job = request(not inline)
    if inline:
        if job.status != Job.Status.QUEUED:
            raise CommandError(f"{job.kind} job {job.pk} is already {job.status}")
        job = job_run_inline(job=job)
    elif options["wait"]:
        def show(current: Job) -> None:
            command.stderr.write(f"[{current.progress:6.1%}] {current.status}: {current.message}")

        try:
            job = job_wait(job=job, timeout=options["timeout"], on_update=show)
        except TimeoutError as error:
            raise CommandError(str(error)) from error
    else:
        command.stdout.write(json.dumps({"job": job.pk, "kind": job.kind, "status": job.status}))
        return
    summary = {"job": job.pk, "status": job.status, **result_of(job)}
    if job.status != Job.Status.SUCCEEDED:
        summary["error"] = job.error
    command.stdout.write(json.dumps(summary, default=str))
    if job.status != Job.Status.SUCCEEDED:
        raise CommandError(f"{job.kind} job {job.pk} {job.status}: {job.error}")
