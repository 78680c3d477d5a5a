from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from annotation.models import Campaign
from scoring.datasets.curation.near_duplicates import DEFAULT_NEAR_DUPLICATE_THRESHOLD
from scoring.datasets.export import (
    DEFAULT_PROVENANCE,
    FORMATS,
    PROVENANCE_CHOICES,
    TIES_CHOICES,
    ExportFilters,
    InvalidExport,
    export_write,
    outcomes_path,
    unranked_path,
)
from scoring.datasets.export.filters import OUTCOMES_CHOICES, export_filters_check


class Command(BaseCommand):
    help = (
        "Export a campaign's curated pairs (Hugging Face chosen/rejected message lists plus "
        "provenance) to OUT, inline and atomically: OUT appears only once complete. Prints "
        "the manifest as one JSON object on the last line."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("out", help="Output file (.parquet or .jsonl).")
        parser.add_argument("--campaign", required=True, help="Campaign name.")
        parser.add_argument(
            "--format",
            choices=FORMATS,
            help="Default: jsonl for a .jsonl OUT (any case), else parquet.",
        )
        parser.add_argument(
            "--provenance",
            nargs="+",
            choices=PROVENANCE_CHOICES,
            default=list(DEFAULT_PROVENANCE),
            help="Which verified pairs (default: %(default)s).",
        )
        parser.add_argument("--rounds", nargs="+", type=int, default=[], help="Round numbers.")
        parser.add_argument("--min-agreement", type=float, help="1 - disagreement, 0 … 1.")
        parser.add_argument("--task-category", nargs="+", default=[], dest="task_categories")
        parser.add_argument(
            "--include-silver",
            action="store_true",
            help="Also unverified source labels and Stage-2 kept/recycled pairs.",
        )
        parser.add_argument(
            "--silver-curated-only",
            action="store_true",
            help="With --include-silver (refused without it): only pairs Stage-2 curation kept "
            "or recycled.",
        )
        parser.add_argument(
            "--ties",
            choices=TIES_CHOICES,
            default="exclude",
            help="Pairs without a chosen side: leave out, or write to OUT's .ties file.",
        )
        parser.add_argument(
            "--outcomes",
            choices=OUTCOMES_CHOICES,
            default="separate",
            help='"Both bad"/"both good" pairs: OUT\'s .outcomes file (default), or leave out.',
        )
        parser.add_argument(
            "--rewrites", action="store_true", help="Add (rewrite ≻ original) pairs."
        )
        parser.add_argument(
            "--no-decontaminate",
            action="store_false",
            dest="decontaminate",
            help="Keep pairs that share a 13-gram with the evaluation sets' prompts.",
        )
        parser.add_argument(
            "--evaluation-sets",
            nargs="+",
            default=[],
            help="Decontaminate against these sets only (default: all the campaign sees).",
        )
        parser.add_argument(
            "--no-deduplicate",
            action="store_false",
            dest="deduplicate",
            help="Keep exact and near repeats.",
        )
        parser.add_argument(
            "--near-duplicate-threshold",
            type=_threshold,
            default=_NOT_GIVEN,
            help="0.5 … 1, or none for exact repeats only: near-duplicate search keeps about "
            f"4.5 KB a written pair in memory (default: {DEFAULT_NEAR_DUPLICATE_THRESHOLD}).",
        )
        parser.add_argument("--manifest", help="Also write the manifest to this JSON file.")

    def handle(self, *args: Any, **options: Any) -> None:
        campaign = Campaign.objects.filter(name=options["campaign"]).first()
        if campaign is None:
            raise CommandError(f"no campaign named {options['campaign']!r}")
        if options["silver_curated_only"] and not options["include_silver"]:
            raise CommandError("--silver-curated-only applies with --include-silver only")
        if options["evaluation_sets"] and not options["decontaminate"]:
            raise CommandError("--evaluation-sets applies without --no-decontaminate only")
        if options["near_duplicate_threshold"] is _NOT_GIVEN:
            options["near_duplicate_threshold"] = DEFAULT_NEAR_DUPLICATE_THRESHOLD
        elif not options["deduplicate"]:
            raise CommandError("--near-duplicate-threshold applies without --no-deduplicate only")
        if not options["out"]:
            raise CommandError("OUT must name a file")
        out = Path(options["out"])
        manifest_path = Path(options["manifest"]) if options["manifest"] else None
        # Refused before anything is written: OUT must not be replaced when the manifest fails.
        for path in (out, manifest_path):
            if path is None:
                continue
            try:
                is_dir = path.is_dir()
            except OSError as error:  # a name over 255 bytes, a folder this user may not search
                raise CommandError(f"cannot write {path}: {error.strerror or error}") from None
            if is_dir:
                raise CommandError(f"{path} is a directory; give a file name")
        suffix = out.suffix.lower()
        file_format = options["format"] or ("jsonl" if suffix == ".jsonl" else "parquet")
        try:
            filters = ExportFilters(
                rounds=tuple(options["rounds"]),
                provenance=tuple(options["provenance"]),
                min_agreement=options["min_agreement"],
                task_categories=tuple(options["task_categories"]),
                include_silver=options["include_silver"],
                silver_curated_only=options["silver_curated_only"],
                ties=options["ties"],
                outcomes=options["outcomes"],
                rewrites=options["rewrites"],
                decontaminate=options["decontaminate"],
                evaluation_sets=tuple(options["evaluation_sets"]),
                deduplicate=options["deduplicate"],
                near_duplicate_threshold=options["near_duplicate_threshold"],
            )
            # The checks export_create makes: a round the campaign lacks is refused, not an
            # empty export.
            export_filters_check(campaign=campaign, filters=filters)
            result = export_write(
                campaign=campaign,
                filters=filters,
                file_format=file_format,
                destination=out,
                on_progress=lambda done, total: self.stderr.write(f"{done}/{total} pairs"),
            )
        except InvalidExport as error:
            raise CommandError(str(error)) from error
        except OSError as error:  # the earlier export, if any, is left as it was
            raise CommandError(f"could not write {out}: {error}") from error
        counts = result.manifest["counts"]
        self.stdout.write(f"wrote {counts['rows']} pairs to {out}")
        if counts["unranked_written"]:
            self.stdout.write(f"wrote {counts['unranked_written']} to {unranked_path(out)}")
        if counts["outcomes_written"]:
            self.stdout.write(f"wrote {counts['outcomes_written']} to {outcomes_path(out)}")
        if manifest_path is not None:
            try:
                _write_atomically(manifest_path, json.dumps(result.manifest, indent=2))
            except OSError as error:
                raise CommandError(
                    f"wrote {out}, but could not write the manifest to {manifest_path}: {error}"
                ) from error
        self.stdout.write(json.dumps(result.manifest))


# --near-duplicate-threshold's default, told apart from a threshold given (refused with
# --no-deduplicate, which it would not apply to).
_NOT_GIVEN = object()


def _threshold(text: str) -> float | None:
    """A near-duplicate threshold, or None ("none") for exact repeats only."""
    if text.strip().lower() in ("none", "null"):
        return None
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"a number or none, got {text!r}") from None


def _write_atomically(path: Path, text: str) -> None:
    """Write beside ``path`` and rename over it: a failure or a kill halfway leaves the earlier
    manifest whole, never a truncated one."""
    partial = path.with_name(f".{path.name}.{os.getpid()}.part")
    try:
        partial.write_text(text, encoding="utf-8")
        os.replace(partial, path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
