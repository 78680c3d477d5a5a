from __future__ import annotations

import json

from django.core.management.base import BaseCommand, CommandError, CommandParser

from scoring.deploy.export import FORMATS, HF_DTYPES, ModelExportError, model_version_export
from scoring.management.commands._model_job import campaign_named, version_named
from scoring.reward_model.onnx_backend import QUANTIZATIONS


class Command(BaseCommand):
    help = (
        "Write a model version for serving to the directory OUT, atomically: ONNX for ONNX "
        "Runtime on CPUs (--quantize int8: weight-only int8, faithful; int8-dynamic: int8 "
        "arithmetic, coarser), or a Hugging Face checkpoint in "
        "bf16/fp16 for GPUs (--format hf). load_scorer(OUT) scores with either. Prints a "
        "summary as one JSON object on the last line."
    )

    def create_parser(self, prog_name: str, subcommand: str, **kwargs: object) -> CommandParser:
        # Our --version (a model version) replaces Django's --version (its own release).
        return super().create_parser(prog_name, subcommand, conflict_handler="resolve", **kwargs)

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "out",
            help="Output directory: a new or empty one, or an earlier export holding only its "
            "own files (replaced). Not inside the model store.",
        )
        parser.add_argument("--campaign", required=True, help="Campaign name.")
        parser.add_argument(
            "--version", type=int, dest="number", help="Version number (default: the active one)."
        )
        parser.add_argument("--format", choices=FORMATS, default="onnx")
        parser.add_argument("--quantize", choices=QUANTIZATIONS, help="onnx only.")
        parser.add_argument("--dtype", choices=HF_DTYPES, help="hf only (default: bfloat16).")

    def handle(self, *args: object, **options: object) -> None:
        campaign = campaign_named(str(options["campaign"]))
        number = options["number"]
        assert number is None or isinstance(number, int)  # noqa: S101 - argparse type=int
        version = version_named(campaign, number)
        try:
            summary = model_version_export(
                version=version,
                out=str(options["out"]),
                format=str(options["format"]),
                quantize=options["quantize"],  # type: ignore[arg-type]
                dtype=options["dtype"],  # type: ignore[arg-type]
            )
        except ModelExportError as error:
            raise CommandError(str(error)) from error
        except OSError as error:  # OUT under a file, a parent not writable, a name too long
            where = error.filename or options["out"]
            raise CommandError(f"cannot export to {where}: {error.strerror or error}") from error
        self.stdout.write(json.dumps(summary))
