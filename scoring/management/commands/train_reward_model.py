from __future__ import annotations

import argparse
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from scoring.jobs.runner import JobError
from scoring.loop.params import TrainParams
from scoring.loop.requests import training_request
from scoring.loop.training import job_params_from_settings
from scoring.management.commands._model_job import (
    MODE_HELP,
    add_run_arguments,
    campaign_named,
    run_and_report,
    run_options_check,
)
from scoring.models import Job
from scoring.reward_model.job_settings import TRAINING_SETTINGS


class Command(BaseCommand):
    help = (
        "Train a new reward-model version on a campaign's verified labels, evaluate it on the "
        "held-out gold pairs and make it the active version. " + MODE_HELP + " With a "
        "finished job the JSON holds version, checkpoint (a directory "
        "AutoModelForSequenceClassification.from_pretrained loads) and heldout_accuracy."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        add_run_arguments(parser)
        # One option per training setting (scoring.reward_model.job_settings), default shown.
        for setting in TRAINING_SETTINGS:
            flag = "--" + setting.name.replace("_", "-")
            default = "none" if setting.default in (None, "") else setting.default
            help_text = f"{setting.help} Default: {default}."
            if setting.kind == "bool":
                parser.add_argument(
                    flag, action=argparse.BooleanOptionalAction, default=None, help=help_text
                )
            elif setting.kind == "choice":
                parser.add_argument(flag, choices=setting.choices, default=None, help=help_text)
            else:
                parser.add_argument(flag, default=None, help=help_text)
        parser.add_argument("--max-steps", type=int, default=None, help="Full mode: step cap.")
        parser.add_argument(
            "--train-on-gold-share",
            type=float,
            default=None,
            help="Train on this share of the gold pairs too (default 0: all held out).",
        )
        parser.add_argument(
            "--no-activate", action="store_true", help="Register without activating."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        run_options_check(options)
        campaign = campaign_named(options["campaign"])
        try:
            params = job_params_from_settings(
                {setting.name: options[setting.name] for setting in TRAINING_SETTINGS}
            )
            for name in ("max_steps", "train_on_gold_share"):
                if options[name] is not None:
                    params[name] = options[name]
            if options["no_activate"]:
                params["activate"] = False
            TrainParams.from_params(params)  # checks those two here, not as a traceback later
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
                "world_size": result.get("world_size"),
                "strategy": result.get("strategy"),
            }

        run_and_report(self, options, request, result_of, kind=Job.Kind.TRAIN)
