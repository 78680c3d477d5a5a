"""Writing export files (JSONL, Parquet) under a hidden temporary name, renamed when complete,
with their manifest."""

from __future__ import annotations

import contextlib
import functools
import glob
import hashlib
import importlib.metadata
import json
import os
import shutil
import subprocess
import uuid
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.json as pa_json
import pyarrow.parquet as pq
from django.conf import settings
from django.utils import timezone

from annotation.models import Campaign
from scoring.datasets.curation.decontamination import NGRAM
from scoring.datasets.export.filters import (
    DEFAULT_CHUNK_SIZE,
    FORMATS,
    PARQUET_ROW_GROUP,
    ExportFilters,
    InvalidExport,
    ProgressCallback,
    export_queryset,
)
from scoring.datasets.export.row_parts import _RowParts
from scoring.datasets.export.rows import ExportCounts, _export_parts
from scoring.datasets.export.schema import (
    _MESSAGES,
    MAIN_SCHEMA,
    UNRANKED_SCHEMA,
    schema_description,
)
from scoring.models import ModelVersion
from scoring.selectors import active_model_version

# --- Writing files ------------------------------------------------------------------------


# One encoder for every row: json.dumps with arguments would build a new one each call.
_encode_compact = json.JSONEncoder(separators=(",", ":"), allow_nan=False).encode
_encode_text = json.JSONEncoder().encode


def _messages_json(conversation_text: str, response: str) -> str:
    """The message list as JSON text, reusing the conversation's stored JSON as is."""
    final = '{"role":"assistant","content":' + _encode_text(response) + "}"
    opened = conversation_text.rstrip()[:-1].rstrip()
    return opened + ("," if opened != "[" else "") + final + "]"


class _JsonlWriter:
    """One JSON object a line. Only the small columns go through the JSON encoder per row;
    the conversation's JSON comes from the database and is spliced in twice."""

    def __init__(self, path: Path, schema: pa.Schema) -> None:
        self.handle = path.open("wb", buffering=1 << 20)
        self.first = '{"' + schema.names[0] + '":'
        self.second = ',"' + schema.names[1] + '":'
        self.lines: list[str] = []

    def write(self, parts: _RowParts) -> None:
        conversation = parts.conversation_text
        self.lines.append(
            self.first
            + _messages_json(conversation, parts.first)
            + self.second
            + _messages_json(conversation, parts.second)
            + ","
            + _encode_compact(parts.scalars)[1:]
        )
        if len(self.lines) >= 1000:
            self._flush()

    def _flush(self) -> None:
        if self.lines:
            self.lines.append("")  # the last line's newline
            self.handle.write("\n".join(self.lines).encode())
            self.lines = []

    def close(self) -> None:
        self._flush()
        self.handle.flush()
        os.fsync(self.handle.fileno())
        self.handle.close()

    def abort(self) -> None:
        self.handle.close()


def _parse_conversations(texts: Sequence[str]) -> pa.ListArray:
    """Many conversations' JSON parsed at once by Arrow's C++ reader, as message lists."""
    payload = "".join(f'{{"c":{text}}}\n' for text in texts).encode()
    longest = max(len(text) for text in texts)
    table = pa_json.read_json(
        pa.BufferReader(payload),
        # A block must hold the longest line (UTF-8: up to 4 bytes per character).
        read_options=pa_json.ReadOptions(block_size=max(1 << 22, 4 * longest + 64)),
        parse_options=pa_json.ParseOptions(
            explicit_schema=pa.schema([("c", _MESSAGES)]), unexpected_field_behavior="ignore"
        ),
    )
    return table.column("c").combine_chunks()


def _with_final_turn(conversations: pa.ListArray, responses: Sequence[str]) -> pa.ListArray:
    """Each message list plus one assistant turn, by index arithmetic on the flat values."""
    count = len(conversations)
    offsets = conversations.offsets.to_numpy().astype(np.int64)
    turns = conversations.flatten()
    finals = pa.StructArray.from_arrays(
        [pa.array(["assistant"] * count, pa.string()), pa.array(responses, pa.string())],
        names=["role", "content"],
    )
    new_offsets = offsets - offsets[0] + np.arange(count + 1)
    final_positions = new_offsets[1:] - 1
    order = np.empty(len(turns) + count, dtype=np.int64)
    keeps_turn = np.ones(len(order), dtype=bool)
    keeps_turn[final_positions] = False
    order[keeps_turn] = np.arange(len(turns))
    order[final_positions] = len(turns) + np.arange(count)
    values = pa.concat_arrays([turns, finals]).take(pa.array(order))
    return pa.ListArray.from_arrays(pa.array(new_offsets, pa.int32()), values, type=_MESSAGES)


class _ParquetWriter:
    """Rows gathered into a row group, then converted column by column (no per-row objects
    for the message lists: Arrow parses the conversations' JSON in bulk)."""

    max_row_group_chars = 256 * 1024**2  # string arrays must stay well under 2 GiB

    def __init__(self, path: Path, schema: pa.Schema) -> None:
        self.schema = schema
        self.path = path
        self.writer = pq.ParquetWriter(path, schema, compression="zstd")
        self.scalar_names = schema.names[2:]
        self._reset()

    def _reset(self) -> None:
        self.conversations: list[str] = []
        self.firsts: list[str] = []
        self.seconds: list[str] = []
        self.scalars: list[dict[str, Any]] = []
        self.chars = 0

    def write(self, parts: _RowParts) -> None:
        self.conversations.append(parts.conversation_text)
        self.firsts.append(parts.first)
        self.seconds.append(parts.second)
        self.scalars.append(parts.scalars)
        self.chars += len(parts.conversation_text) + len(parts.first) + len(parts.second)
        if len(self.scalars) >= PARQUET_ROW_GROUP or self.chars >= self.max_row_group_chars:
            self._flush()

    def _flush(self) -> None:
        if not self.scalars:
            return
        conversations = _parse_conversations(self.conversations)
        arrays = [
            _with_final_turn(conversations, self.firsts),
            _with_final_turn(conversations, self.seconds),
        ]
        for name in self.scalar_names:
            values = [row[name] for row in self.scalars]
            arrays.append(pa.array(values, type=self.schema.field(name).type))
        self.writer.write_table(pa.Table.from_arrays(arrays, schema=self.schema))
        self._reset()

    def close(self) -> None:
        self._flush()
        self.writer.close()
        with self.path.open("rb") as handle:
            os.fsync(handle.fileno())

    def abort(self) -> None:
        self._reset()
        self.writer.close()


_WRITERS = {"jsonl": _JsonlWriter, "parquet": _ParquetWriter}


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def unranked_path(path: Path) -> Path:
    """Where the ties (and unresolved pairs) go when written separately: x.ties.jsonl."""
    return path.with_name(f"{path.stem}.ties{path.suffix}")


def outcomes_path(path: Path) -> Path:
    """Where "both bad" and "both good" pairs go: x.outcomes.jsonl (never chosen/rejected)."""
    return path.with_name(f"{path.stem}.outcomes{path.suffix}")


def _hidden_temporary(path: Path) -> Path:
    return path.with_name(f".{path.name}.{uuid.uuid4().hex}.part")


def stale_temporaries_remove(destination: Path) -> int:
    """Remove the hidden temporary files an earlier run writing to ``destination`` (and its
    ties and outcomes files) left behind; returns how many. A killed process never reaches
    export_write's cleanup, and its successor writes under new names. Call it only where no
    other run writes to ``destination`` (an export job's owner)."""
    removed = 0
    for target in (destination, unranked_path(destination), outcomes_path(destination)):
        for stale in target.parent.glob(f".{glob.escape(target.name)}.*.part"):
            stale.unlink(missing_ok=True)
            removed += 1
    return removed


@functools.cache
def code_version() -> str:
    """`git describe` of the running code when it is a git checkout, else the package version."""
    base = Path(settings.BASE_DIR)
    git = shutil.which("git")
    if git and (base / ".git").exists():
        try:
            described = subprocess.run(  # noqa: S603 - fixed arguments, no user input
                [git, "describe", "--always", "--dirty", "--tags"],
                cwd=base,
                capture_output=True,
                text=True,
                timeout=10,
                check=True,
            )
        except (OSError, subprocess.SubprocessError):
            pass
        else:
            if described.stdout.strip():
                return f"git {described.stdout.strip()}"
    try:
        return f"arbiter {importlib.metadata.version('arbiter')}"
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


@dataclass(frozen=True)
class ExportResult:
    path: Path
    manifest: dict[str, Any]


# Stays long: one try block owns every file it opens, so that any failure removes them all.
def export_write(
    *,
    campaign: Campaign,
    filters: ExportFilters,
    file_format: str,
    destination: Path,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    on_progress: ProgressCallback | None = None,
    extra_manifest: Mapping[str, Any] | None = None,
    commit_fence: Callable[[], AbstractContextManager[Any]] = contextlib.nullcontext,
) -> ExportResult:
    """Write the export to ``destination`` (and its ties file when asked), atomically.

    Nothing appears at ``destination`` until every row is written and synced; on any error
    the hidden temporary files are removed, the files an earlier export left there stay as
    they were, and the error propagates. A ties or outcomes file of an earlier export that
    this one does not write is removed with the rest of the old set. The files are renamed
    into place inside ``commit_fence()`` (an export job's: while it still owns the job).
    """
    if file_format not in FORMATS:
        raise InvalidExport(f"format must be one of {', '.join(FORMATS)}")
    destination = Path(destination)
    destination.parent.mkdir(parents=True, exist_ok=True)
    total = export_queryset(campaign=campaign, filters=filters).count()
    separate = filters.ties == "separate"
    separate_outcomes = filters.outcomes == "separate"
    targets = {"main": destination}
    if separate:
        targets["ties"] = unranked_path(destination)
    # The outcomes file is opened at its first row: most campaigns have none.
    outcomes_target = outcomes_path(destination)
    for path in [*targets.values(), *([outcomes_target] if separate_outcomes else [])]:
        if path.is_dir():
            raise InvalidExport(f"{path} is a directory")
    temporaries = {role: _hidden_temporary(path) for role, path in targets.items()}
    writer_class = _WRITERS[file_format]
    writers: dict[str, Any] = {}
    counts = ExportCounts()
    # Read once: the rows and the manifest name the same version, whatever the loop activates
    # while the export runs.
    model = active_model_version(campaign=campaign)

    def chunk_read() -> None:
        # Pairs read, as ``total`` counts them (a ranking item writes several rows, a rewrite
        # one more, a repeat or contaminated pair none), once a chunk: also a chunk whose
        # pairs were all left out asks whether to stop.
        if on_progress is not None:
            on_progress(counts.pairs_read, total)

    try:
        writers["main"] = writer_class(temporaries["main"], MAIN_SCHEMA)
        if separate:
            writers["ties"] = writer_class(temporaries["ties"], UNRANKED_SCHEMA)
        for parts in _export_parts(
            campaign=campaign,
            filters=filters,
            chunk_size=chunk_size,
            counts=counts,
            model=model,
            on_chunk=chunk_read,
        ):
            if parts.ranked:
                writers["main"].write(parts)
            elif parts.outcome != "preference":
                if separate_outcomes:
                    if "outcomes" not in writers:
                        targets["outcomes"] = outcomes_target
                        temporaries["outcomes"] = _hidden_temporary(outcomes_target)
                        writers["outcomes"] = writer_class(temporaries["outcomes"], UNRANKED_SCHEMA)
                    writers["outcomes"].write(parts)
                    counts.outcomes_written += 1
            elif separate:
                writers["ties"].write(parts)
                counts.unranked_written += 1
        for writer in writers.values():
            writer.close()
        writers.clear()
        files = _file_entries(temporaries, targets, counts)
        # The last call may cancel (JobCancelled): before the renames, so that nothing stays.
        if on_progress is not None:
            on_progress(counts.pairs_read, total)
        # A companion this export does not write must not outlive it (the manifest would say
        # it holds nothing); its files replace the old set whole, or the old set stays.
        stale = [
            path
            for path in (unranked_path(destination), outcomes_target)
            if path not in targets.values()
        ]
        with commit_fence():
            _commit(temporaries, targets, stale=stale)
            _sync_directory(destination.parent)
    except BaseException:
        for writer in writers.values():
            writer.abort()
        for temporary in temporaries.values():
            temporary.unlink(missing_ok=True)
        raise
    manifest = _manifest(
        campaign=campaign,
        filters=filters,
        file_format=file_format,
        counts=counts,
        files=files,
        model=model,
        extra_manifest=extra_manifest,
    )
    return ExportResult(path=destination, manifest=manifest)


def _commit(
    temporaries: Mapping[str, Path], targets: Mapping[str, Path], *, stale: Sequence[Path]
) -> None:
    """Rename each temporary over its target and remove the ``stale`` companions, all or
    nothing: every file it replaces or removes is kept under a hidden name (a hard link, so the
    target never disappears) until all are done, and put back if one step fails."""
    kept: dict[Path, Path] = {}
    done: list[Path] = []
    try:
        for target in [*(targets[role] for role in temporaries), *stale]:
            if target.is_symlink() or target.is_file():
                kept[target] = _keep(target)
        for role, temporary in temporaries.items():
            os.replace(temporary, targets[role])
            done.append(targets[role])
        for target in stale:
            if target in kept:  # a directory there is not a companion an export wrote
                target.unlink()
                done.append(target)
    except BaseException:
        for target in reversed(done):
            with contextlib.suppress(OSError):
                backup = kept.pop(target, None)
                if backup is not None:
                    os.replace(backup, target)
                else:
                    target.unlink(missing_ok=True)
        for backup in kept.values():
            backup.unlink(missing_ok=True)
        raise
    for backup in kept.values():
        backup.unlink(missing_ok=True)


def _keep(path: Path) -> Path:
    """A second name for ``path``'s file (a hard link; a copy where links are refused)."""
    backup = _hidden_temporary(path)
    try:
        os.link(path, backup, follow_symlinks=False)
    except OSError:
        shutil.copy2(path, backup, follow_symlinks=False)
    return backup


def _file_entries(
    temporaries: Mapping[str, Path], targets: Mapping[str, Path], counts: ExportCounts
) -> list[dict[str, Any]]:
    """The manifest's entry of each written file (still under its temporary name)."""
    files = []
    rows_by_role = {
        "main": counts.rows,
        "ties": counts.unranked_written,
        "outcomes": counts.outcomes_written,
    }
    for role, temporary in temporaries.items():
        files.append(
            {
                "role": role,
                "name": targets[role].name,
                "rows": rows_by_role[role],
                "bytes": temporary.stat().st_size,
                "sha256": file_sha256(temporary),
                "schema": schema_description(MAIN_SCHEMA if role == "main" else UNRANKED_SCHEMA),
            }
        )
    return files


def _manifest(
    *,
    campaign: Campaign,
    filters: ExportFilters,
    file_format: str,
    counts: ExportCounts,
    files: list[dict[str, Any]],
    model: ModelVersion | None,
    extra_manifest: Mapping[str, Any] | None,
) -> dict[str, Any]:
    """What the export holds and how it was made: filters, counts, files, the model version
    that scored the rows, code."""
    manifest = {
        "campaign": {"id": campaign.pk, "name": campaign.name},
        "format": file_format,
        "filters": filters.as_params(),
        "counts": {
            "rows": counts.rows,
            "ties": counts.ties,
            "unresolved": counts.unresolved,
            "unranked_written": counts.unranked_written,
            "excluded_without_chosen_side": (counts.ties + counts.unresolved)
            - counts.unranked_written,
            # Never chosen/rejected pairs: in the outcomes file, or left out when asked.
            "both_bad": counts.both_bad,
            "both_good": counts.both_good,
            "outcomes_written": counts.outcomes_written,
            "rewrites": counts.rewrites,
            "unchanged_rewrites_skipped": counts.unchanged_rewrites,
            "by_provenance": counts.by_provenance,
        },
        "sha256": files[0]["sha256"],
        "files": files,
        "schema": files[0]["schema"],
        "decontamination": {
            "enabled": filters.decontaminate,
            "ngram": NGRAM,
            "evaluation_prompts": counts.evaluation_prompts,
            "dropped": sum(counts.contaminated.values()),
            "by_provenance": dict(sorted(counts.contaminated.items())),
        },
        "deduplication": {
            "enabled": filters.deduplicate,
            "near_duplicate_threshold": filters.near_duplicate_threshold,
            "exact": sum(counts.exact_duplicates.values()),
            "near": sum(counts.near_duplicates.values()),
            "exact_by_provenance": dict(sorted(counts.exact_duplicates.items())),
            "near_by_provenance": dict(sorted(counts.near_duplicates.items())),
        },
        "model_version": model.number if model is not None else None,
        "max_pair_id": counts.max_pair_id,
        "code_version": code_version(),
        "created_at": timezone.now().isoformat(),
        **dict(extra_manifest or {}),
    }
    return manifest


def _sync_directory(folder: Path) -> None:
    # Makes the rename durable; not every platform lets a directory be opened.
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)
