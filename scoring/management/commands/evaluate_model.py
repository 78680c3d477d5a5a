from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from scoring.evaluation.reading import EvaluationSetError, read_evaluation_set
from scoring.evaluation.services import (
    evaluation_request,
    evaluation_run,
    evaluation_set_upload,
)
from scoring.jobs.runner import worker_name
from scoring.management.commands._model_job import (
    MODE_HELP,
    add_run_arguments,
    campaign_named,
    run_and_report,
    run_options_check,
    version_named,
)
from scoring.models import EvaluationResult, Job


class Command(BaseCommand):
    help = (
        "Upload FILE as an evaluation set of the campaign (RewardBench layout: prompt, chosen, "
        "rejected, subset; or message lists; JSONL, JSON, CSV or Parquet, optionally gzipped) "
        "and evaluate a model version on it. The last line is one JSON object with version, "
        "accuracy, ci_low, ci_high, n and subsets ({name: {accuracy, n, ci_low, ci_high}}). "
        + MODE_HELP
    )

    def create_parser(self, prog_name: str, subcommand: str, **kwargs: Any) -> CommandParser:
        # Our --version (a model version) replaces Django's --version (its own release).
        return super().create_parser(prog_name, subcommand, conflict_handler="resolve", **kwargs)

    def add_arguments(self, parser: CommandParser) -> None:
        add_run_arguments(parser)
        parser.add_argument("--eval-set", required=True, dest="eval_set", help="The set's file.")
        parser.add_argument("--name", help="The set's name (default: the file's name).")
        parser.add_argument(
            "--version", type=int, dest="number", help="Version number (default: the active one)."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        run_options_check(options)
        campaign = campaign_named(options["campaign"])
        version = version_named(campaign, options["number"])
        path = Path(options["eval_set"])
        try:
            with path.open("rb") as handle:
                records = read_evaluation_set(handle, filename=path.name)
            evaluation_set = evaluation_set_upload(
                campaign=campaign,
                name=options["name"] or path.name,
                records=records,
                filename=path.name,
                enqueue_pending=False,
            )
        except OSError as error:
            raise CommandError(f"cannot read {path}: {error}") from error
        except EvaluationSetError as error:
            raise CommandError(str(error)) from error

        # Set when the job succeeded without storing a result: the command then fails, after
        # its JSON line says why.
        unstored: list[str] = []

        def result_of(job: Job) -> dict[str, Any]:
            # This job's result only: the set's row may hold an earlier job's (this job failed)
            # or one of other content (the set was replaced while this job scored it).
            result = EvaluationResult.objects.filter(
                model_version=version, evaluation_set=evaluation_set, job=job
            ).first()
            if result is None:
                summary = {"version": version.number, "eval_set": evaluation_set.name}
                if job.status == Job.Status.SUCCEEDED:
                    unstored.append(
                        f"no result stored: the set {evaluation_set.name!r} was replaced or "
                        "deleted while it was scored"
                    )
                    summary["error"] = unstored[0]
                return summary
            return {
                "version": version.number,
                "eval_set": evaluation_set.name,
                "accuracy": result.accuracy,
                "ci_low": result.ci_low,
                "ci_high": result.ci_high,
                "n": result.n,
                "subsets": result.subsets,
            }

        if options["inline"]:
            job = evaluation_request(version=version, sets=[evaluation_set], enqueue=False)
            evaluation_run(job_id=job.pk, worker="inline:" + worker_name(), reraise=False)
            job.refresh_from_db()
            options = {**options, "inline": False, "wait": True}  # finished: report it
            run_and_report(
                self,
                options,
                lambda _enqueue: job,
                result_of,
                kind=Job.Kind.EVALUATE,
                share_existing=True,
            )
        else:
            run_and_report(
                self,
                options,
                lambda enqueue: evaluation_request(
                    version=version, sets=[evaluation_set], enqueue=enqueue
                ),
                result_of,
                kind=Job.Kind.EVALUATE,
                # evaluation_request returns an active job only when it evaluates the same
                # version on the same set: the work asked for.
                share_existing=True,
            )
        if unstored:
            raise CommandError(unstored[0])
