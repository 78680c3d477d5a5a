from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from scoring.jobs.runner import JobError
from scoring.loop.params import MODES
from scoring.loop.requests import training_request
from scoring.loop.training import job_params_for_training
from scoring.management.commands._model_job import (
    MODE_HELP,
    add_run_arguments,
    campaign_named,
    run_and_report,
)
from scoring.models import Job


class Command(BaseCommand):
    help = (
        "Train a new reward-model version on a campaign's verified labels, evaluate it on the "
        "held-out gold pairs and make it the active version. " + MODE_HELP + " With a "
        "finished job the JSON holds version, checkpoint (a directory "
        "AutoModelForSequenceClassification.from_pretrained loads) and heldout_accuracy."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        add_run_arguments(parser)
        parser.add_argument("--mode", choices=MODES, default="head")
        parser.add_argument(
            "--base-model", default=None, help="Model directory (default: ARBITER_BASE_MODEL "
            "or the packaged all-MiniLM-L6-v2)."
        )
        parser.add_argument("--max-steps", type=int, default=None, help="Full mode: step cap.")
        parser.add_argument("--max-length", type=int, default=None, help="Token window.")
        parser.add_argument(
            "--train-on-gold-share", type=float, default=None,
            help="Train on this share of the gold pairs too (default 0: all held out).",
        )
        parser.add_argument(
            "--no-activate", action="store_true", help="Register without activating."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        campaign = campaign_named(options["campaign"])
        try:
            params = job_params_for_training(
                mode=options["mode"],
                base_model=options["base_model"],
                max_steps=options["max_steps"],
                max_length=options["max_length"],
                train_on_gold_share=options["train_on_gold_share"],
                activate=not options["no_activate"],
            )
        except JobError as error:
            raise CommandError(str(error)) from error

        def request(enqueue: bool) -> Job:
            return training_request(campaign=campaign, params=params, enqueue=enqueue)

        def result_of(job: Job) -> dict[str, Any]:
            result = job.result or {}
            return {
                "version": result.get("version"),
                "checkpoint": result.get("checkpoint"),
                "heldout_accuracy": result.get("heldout_accuracy"),
                "mode": result.get("mode"),
                "active": result.get("active"),
                "pairs": result.get("pairs"),
            }

        run_and_report(self, options, request, result_of)
