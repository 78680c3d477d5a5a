from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from scoring.jobs.runner import JobError
from scoring.loop.params import MODES
from scoring.loop.requests import cross_validation_request
from scoring.loop.training import job_params_from_settings
from scoring.management.commands._model_job import (
    MODE_HELP,
    add_run_arguments,
    campaign_named,
    run_and_report,
    run_options_check,
)
from scoring.models import Job

# The seeds every trainer takes: numpy's (np.random.seed, which TRL's set_seed calls) end at
# 2**32 - 1 and refuse negatives; a seed outside them would fail in the worker, not here.
MAX_SEED = 2**32 - 1


class Command(BaseCommand):
    help = (
        "k-fold cross-validation of a training configuration on a campaign's verified labels: "
        "each fold is held out once while a fresh model trains on the rest; nothing is "
        "registered. " + MODE_HELP + " With a finished job the JSON holds folds, accuracies "
        "(one per fold), fold_sizes, mean and std."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        add_run_arguments(parser)
        parser.add_argument("--folds", type=int, default=5, help="Folds (2-20). Default: 5.")
        parser.add_argument("--mode", choices=MODES, default="head", help="Default: head.")
        parser.add_argument("--base-model", default=None, help="A local model directory.")
        parser.add_argument("--epochs", default=None, help="Full mode: passes over the pairs.")
        parser.add_argument("--learning-rate", default=None, help="Full mode: peak learning rate.")
        parser.add_argument(
            "--seed",
            type=int,
            default=None,
            help=f"0 to {MAX_SEED}; also seeds the fold split.",
        )
        parser.add_argument(
            "--include-gold", action="store_true", help="Put the gold pairs into the folds too."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        run_options_check(options)
        campaign = campaign_named(options["campaign"])
        seed = options["seed"]
        if seed is not None and not 0 <= seed <= MAX_SEED:
            raise CommandError(f"--seed must be between 0 and {MAX_SEED}, got {seed}")
        try:
            # The bounds train_reward_model, the Retrain form and the API check
            # (scoring.reward_model.job_settings), and a base model must be a model directory.
            params = job_params_from_settings(
                {name: options[name] for name in ("mode", "base_model", "epochs", "learning_rate")}
            )
        except JobError as error:
            raise CommandError(str(error)) from error
        params["folds"] = options["folds"]
        if seed is not None:
            params["seed"] = seed
        if options["include_gold"]:
            params["include_gold"] = True

        def request(enqueue: bool) -> Job:
            try:
                return cross_validation_request(campaign=campaign, params=params, enqueue=enqueue)
            except JobError as error:
                raise CommandError(str(error)) from error

        def result_of(job: Job) -> dict[str, Any]:
            result = job.result or {}
            return {
                name: result.get(name)
                for name in ("folds", "mode", "pairs", "accuracies", "fold_sizes", "mean", "std")
            }

        run_and_report(self, options, request, result_of, kind=Job.Kind.CROSS_VALIDATE)
