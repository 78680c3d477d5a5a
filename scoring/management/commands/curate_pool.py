from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from annotation.models import Campaign
from core.queue import QueueUnavailable
from scoring.datasets.curation import (
    CurationError,
    curation_create,
    curation_run,
    evaluation_prompts_from_file,
    evaluation_set_upload,
)
from scoring.jobs.runner import JobConflict
from scoring.loop.judged_pairs import GOLD_SOURCES
from scoring.management.commands._model_job import (
    job_state,
    latest_job_id,
    report_finished,
    report_unsent,
)
from scoring.models import Job


class Command(BaseCommand):
    help = (
        "Stage-2 curation of a campaign's unverified pool: decontaminate against evaluation "
        "prompts, deduplicate, then keep pairs whose source label agrees with the gold and the "
        "best model. Runs inline (recorded as a curate job) unless --enqueue. The last line of "
        "output is one JSON object: the job's result (with error when it failed), the queued "
        "job with --enqueue, or the stored set with --upload-only."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--campaign", required=True, help="Campaign name.")
        parser.add_argument(
            "--eval-set",
            help="A file of evaluation prompts (JSONL/JSON/Parquet/text) to decontaminate "
            "against; replaces the set of the same name.",
        )
        parser.add_argument("--set-name", help="Evaluation set name (default: file stem).")
        parser.add_argument(
            "--upload-only", action="store_true", help="Store the evaluation set, do not curate."
        )
        parser.add_argument(
            "--gold-version",
            type=int,
            help="A version to use as the gold model (default: train one for this curation).",
        )
        parser.add_argument(
            "--gold-sources",
            nargs="+",
            choices=GOLD_SOURCES,
            default=None,
            help="What the gold model trains on (default: gold adjudicated unanimous).",
        )
        parser.add_argument(
            "--no-train-gold",
            action="store_true",
            help="Use the newest gold model, else the active version, instead of training one.",
        )
        parser.add_argument(
            "--best-version",
            type=int,
            help="Default: the best on the evaluation sets, else on held-out gold accuracy.",
        )
        parser.add_argument("--keep-threshold", type=float)
        parser.add_argument("--recycle", action="store_true", help="Flip confident reversals.")
        parser.add_argument("--recycle-threshold", type=float)
        parser.add_argument(
            "--recurate", action="store_true", help="Curate already curated pairs again."
        )
        parser.add_argument(
            "--enqueue", action="store_true", help="Hand the job to a gpu worker and return."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        campaign = Campaign.objects.filter(name=options["campaign"]).first()
        if campaign is None:
            raise CommandError(f"no campaign named {options['campaign']!r}")
        if options["upload_only"] and not options["eval_set"]:
            raise CommandError("--upload-only needs --eval-set (the file to store)")
        if options["gold_sources"] and (
            options["no_train_gold"] or options["gold_version"] is not None
        ):
            # The gold sources say what a gold model trained for this curation learns from;
            # with a given gold model (or none trained) they would be silently ignored.
            raise CommandError(
                "--gold-sources trains a gold model: it cannot go with --gold-version or "
                "--no-train-gold"
            )
        latest_before = latest_job_id()  # a job above it is this call's (see report_unsent)
        try:
            if options["eval_set"]:
                path = Path(options["eval_set"])
                set_name = options["set_name"] or path.name.split(".")[0]
                count = evaluation_set_upload(
                    campaign=campaign,
                    set_name=set_name,
                    prompts=evaluation_prompts_from_file(path),
                )
                self.stdout.write(f"evaluation set {set_name!r}: {count} prompts")
                if options["upload_only"]:
                    self.stdout.write(json.dumps({"eval_set": set_name, "prompts": count}))
                    return
            params: dict[str, Any] = {"recycle": options["recycle"]}
            for name in ("gold_version", "best_version", "keep_threshold", "recycle_threshold"):
                if options[name] is not None:
                    params[name] = options[name]
            if options["recurate"]:
                params["recurate"] = True
            if options["gold_sources"]:
                params["gold_sources"] = options["gold_sources"]
            if options["no_train_gold"]:
                params["train_gold"] = False
            job = curation_create(campaign=campaign, params=params, enqueue=options["enqueue"])
        except (CurationError, JobConflict) as error:
            raise CommandError(str(error)) from error
        except QueueUnavailable as error:
            report_unsent(
                self,
                error,
                kind=Job.Kind.CURATE,
                campaign_name=campaign.name,
                latest_before=latest_before,
            )
        if options["enqueue"]:
            self.stdout.write(json.dumps(job_state(job)))
            return
        job = curation_run(job_id=job.pk, reraise=False).job or job
        job.refresh_from_db()
        for line in job.log_lines.order_by("id").values_list("message", flat=True):
            self.stderr.write(line)
        report_finished(self, job, lambda finished: dict(finished.result or {}))
