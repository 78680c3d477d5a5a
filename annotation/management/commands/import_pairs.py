from __future__ import annotations

import json
import time
from pathlib import Path

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from annotation.importers import ImportFormatError
from annotation.models import Campaign, ItemKind, RankingExpansion
from annotation.services.imports import campaign_get_or_create, pairs_import


def _messages(error: ValidationError) -> str:
    if hasattr(error, "message_dict"):
        items = error.message_dict.items()
        return "; ".join(f"{field}: {' '.join(messages)}" for field, messages in items)
    return " ".join(error.messages)


def _check_rankings(campaign: Campaign, rule: object) -> None:
    """``--rankings`` describes the campaign the import creates; an existing campaign of
    another kind or rule would silently import by its own, so it is refused instead."""
    if not rule:
        return
    if campaign.item_kind != ItemKind.RANKING:
        raise CommandError(
            f"campaign {campaign.name!r} exists and is not a ranking campaign: --rankings "
            "applies to the campaign an import creates (nothing was imported)"
        )
    if campaign.ranking_expansion != rule:
        raise CommandError(
            f"campaign {campaign.name!r} exists with --rankings {campaign.ranking_expansion}, "
            f"not {rule} (nothing was imported)"
        )


class Command(BaseCommand):
    help = (
        "Import preference pairs (JSONL, JSON, CSV or Parquet, optionally gzipped) into a "
        "campaign, creating it if absent. All or nothing: a bad row rejects the whole file."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", type=Path)
        parser.add_argument("--campaign", required=True, help="Campaign name.")
        parser.add_argument(
            "--as-gold",
            action="store_true",
            help="The file's chosen/rejected labels are human-verified: import as gold pairs "
            "(held out for evaluation and quality checks, never queued for annotation).",
        )
        parser.add_argument(
            "--open-to-all",
            action="store_true",
            help="A campaign created by this import takes every annotator and expert, members "
            "or not (by default only its members and site admins work on it).",
        )
        parser.add_argument(
            "--rankings",
            choices=RankingExpansion.values,
            help="Create the campaign (when absent) for ranking items (rows with `responses` "
            "or `completions`), expanded to pairs by this rule; an existing campaign must be a "
            "ranking campaign of this rule.",
        )
        parser.add_argument(
            "--pool",
            action="store_true",
            help="Put the pairs in the pool instead of the open round (the loop queues them).",
        )

    def handle(self, *args: object, **options: object) -> None:
        path = Path(str(options["file"]))
        try:
            is_dir, is_file = path.is_dir(), path.is_file()
        except OSError as exc:  # a name over 255 bytes, a folder this user may not search
            raise CommandError(f"cannot read {path}: {exc.strerror or exc}") from None
        if is_dir:
            raise CommandError(f"{path} is a directory: give one file")
        if not is_file:
            raise CommandError(f"{path}: no such file")
        fields: dict[str, object] = {"open_to_all": bool(options["open_to_all"])}
        if options["rankings"]:
            fields |= {"item_kind": ItemKind.RANKING, "ranking_expansion": options["rankings"]}
        started = time.perf_counter()
        try:
            # A campaign this creates is part of the import's all or nothing (a bad row, an
            # unreadable file or Ctrl-C leaves none behind): one transaction holds both, and
            # pairs_import's own becomes a savepoint in it. The COPY helper thread works on
            # this same connection, so it sees the uncommitted campaign.
            with transaction.atomic():
                campaign = campaign_get_or_create(name=str(options["campaign"]), **fields)
                _check_rankings(campaign, options["rankings"])
                result = pairs_import(
                    campaign=campaign,
                    path=path,
                    as_gold=bool(options["as_gold"]),
                    queue=not options["pool"],
                )
        except ValidationError as exc:
            raise CommandError(f"invalid campaign: {_messages(exc)}") from None
        except ImportFormatError as exc:
            raise CommandError(f"{path.name}: {exc} (nothing was imported)") from exc
        except OSError as exc:
            raise CommandError(f"cannot read {path}: {exc.strerror or exc}") from None
        self.stdout.write(
            json.dumps(
                {
                    "campaign": campaign.name,
                    "campaign_id": campaign.pk,
                    "rows": result.rows_read,
                    "created": result.created,
                    "duplicates": result.duplicates,
                    "made_gold": result.made_gold,
                    "busy_gold": result.busy_gold,
                    "seconds": round(time.perf_counter() - started, 3),
                }
            )
        )
