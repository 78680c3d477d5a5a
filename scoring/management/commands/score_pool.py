from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from scoring.loop.requests import scoring_request
from scoring.management.commands._model_job import (
    MODE_HELP,
    add_run_arguments,
    campaign_named,
    run_and_report,
    run_options_check,
)
from scoring.models import Job

# A shard's pair count is a PositiveIntegerField (JobShard.planned) and the size is a SQL
# LIMIT: beyond PostgreSQL's integer a job could only fail.
MAX_SHARD_SIZE = 2**31 - 1


class Command(BaseCommand):
    help = (
        "Score the unlabelled pool and the judged pairs with the campaign's active model "
        "version, then raise the priority of pool pairs similar to the pairs it gets wrong. "
        + MODE_HELP
    )

    def add_arguments(self, parser: CommandParser) -> None:
        add_run_arguments(parser)
        parser.add_argument(
            "--no-gold-sources",
            action="store_true",
            help="Do not let gold pairs steer retrieval (keeps gold a clean held-out measure).",
        )
        parser.add_argument(
            "--shard-size",
            type=int,
            default=None,
            help="Pairs per shard, 1 to 2147483647 (default: ARBITER_SHARD_SIZE); every gpu worker "
            "takes shards.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        run_options_check(options)
        campaign = campaign_named(options["campaign"])
        params: dict[str, Any] = {"retrieve_from_gold": not options["no_gold_sources"]}
        if options["shard_size"] is not None:
            if not 1 <= options["shard_size"] <= MAX_SHARD_SIZE:
                raise CommandError(f"--shard-size must be between 1 and {MAX_SHARD_SIZE}")
            params["shard_size"] = options["shard_size"]

        def request(enqueue: bool) -> Job:
            return scoring_request(campaign=campaign, params=params, enqueue=enqueue)

        def result_of(job: Job) -> dict[str, Any]:
            return dict(job.result or {})

        run_and_report(self, options, request, result_of, kind=Job.Kind.SCORE)
