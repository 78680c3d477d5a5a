"""Curated export: verified (and optionally silver) pairs as a reward-model training set.

Rows follow the Hugging Face preference format of Skywork-Reward-Preference-80K: ``chosen`` and
``rejected`` are message lists (the conversation plus the final assistant turn), followed by
provenance columns (see ``MAIN_SCHEMA``). Pairs without a chosen side (ties, and unresolved or
discarded pairs when asked for) are left out or written to a separate file whose rows carry
``response_a``/``response_b`` instead (``UNRANKED_SCHEMA``).

What is exported (``ExportFilters``):

* Gold pairs (``Pair.is_gold``: imported as verified, or promoted by an expert) are verified and
  exported by default, with their gold preference.
* Human consensus: provenance ``unanimous``/``majority`` (while no escalation is open) and
  ``adjudicated``; ``discarded`` and ``unresolved`` only when asked.
* ``rounds`` and ``min_agreement`` narrow the human-labelled pairs only; gold and silver pairs
  belong to no round and were not voted on. ``min_agreement`` compares with
  ``agreement = 1 - Pair.disagreement`` (the scaled mean squared difference of the votes, see
  reviewers.consensus.pair_disagreement) and applies to unanimous/majority pairs: an expert
  decided adjudicated ones, whatever the votes said.
* Silver (``include_silver``): unverified pairs with a source label and no human label yet,
  Stage-2 ``kept`` and ``recycled`` pairs (a recycled pair's label is the flip of its source
  label), and, unless ``silver_curated_only``, pairs not curated yet. Pairs curation marked
  ``discarded``, ``duplicate`` or ``contaminated`` never are.

Every export streams pairs in primary-key order, a chunk at a time, with the chunk's labels,
adjudications, scores and evidence fetched in a handful of queries, so memory stays bounded
whatever the campaign's size. Each chunk reads committed data; a pair that changes while the
export runs appears once, either before or after the change, and the manifest records the
highest pair id read. Files are written under a hidden temporary name and renamed only when
complete, so an interrupted export leaves no visible file.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import json
import os
import shutil
import subprocess
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.db.models import Max, Q, QuerySet
from django.utils import timezone

from annotation.models import Campaign, Evidence, Label, Pair
from reviewers.models import Adjudication
from scoring.models import ExportSnapshot, Job, ModelVersion, PairScore
from scoring.services.jobs import (
    JobCancelled,
    JobClaim,
    JobContext,
    JobError,
    JobWork,
    job_create,
    job_run,
    worker_name,
)

FORMATS = ("jsonl", "parquet")
DEFAULT_PROVENANCE = ("gold", "unanimous", "majority", "adjudicated")
PROVENANCE_CHOICES = (*DEFAULT_PROVENANCE, "discarded", "unresolved")
TIES_CHOICES = ("exclude", "separate")
SILVER_CURATIONS = ("kept", "recycled")
EVIDENCE_KINDS = tuple(Evidence.Kind.values)
EVIDENCE_ITEMS_PER_PAIR = 5
EVIDENCE_ITEM_CHARS = 120
DEFAULT_CHUNK_SIZE = 2000
PARQUET_ROW_GROUP = 10_000
# Floating-point slack for min_agreement: 1 - 0.8 is 0.19999999999999996.
_AGREEMENT_EPSILON = 1e-9

ProgressCallback = Callable[[int, int], None]


class InvalidExport(ValueError):
    """Filters or a format the export cannot honour."""


@dataclass(frozen=True)
class ExportFilters:
    rounds: tuple[int, ...] = ()
    provenance: tuple[str, ...] = DEFAULT_PROVENANCE
    min_agreement: float | None = None
    task_categories: tuple[str, ...] = ()
    include_silver: bool = False
    silver_curated_only: bool = False
    ties: str = "exclude"

    def __post_init__(self) -> None:
        unknown = sorted(set(self.provenance) - set(PROVENANCE_CHOICES))
        if unknown:
            raise InvalidExport(f"unknown provenance {', '.join(unknown)}")
        if not self.provenance and not self.include_silver:
            raise InvalidExport("nothing to export: no provenance and no silver pairs")
        if self.ties not in TIES_CHOICES:
            raise InvalidExport(f"ties must be one of {', '.join(TIES_CHOICES)}")
        if self.min_agreement is not None and not 0.0 <= self.min_agreement <= 1.0:
            raise InvalidExport("min_agreement must lie between 0 and 1")

    @classmethod
    def from_params(cls, params: Mapping[str, Any] | None) -> ExportFilters:
        params = dict(params or {})
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(params) - known)
        if unknown:
            raise InvalidExport(f"unknown filter {', '.join(unknown)}")
        try:
            values: dict[str, Any] = {}
            if "rounds" in params:
                values["rounds"] = tuple(sorted({int(number) for number in params["rounds"]}))
            if "provenance" in params and params["provenance"] is not None:
                values["provenance"] = tuple(dict.fromkeys(str(p) for p in params["provenance"]))
            if params.get("min_agreement") is not None:
                values["min_agreement"] = float(params["min_agreement"])
            if "task_categories" in params:
                values["task_categories"] = tuple(str(c) for c in params["task_categories"])
            for flag in ("include_silver", "silver_curated_only"):
                if flag in params:
                    values[flag] = bool(params[flag])
            if params.get("ties"):
                values["ties"] = str(params["ties"])
        except (TypeError, ValueError) as error:
            if isinstance(error, InvalidExport):
                raise
            raise InvalidExport(f"bad filter value: {error}") from error
        return cls(**values)

    def as_params(self) -> dict[str, Any]:
        params = asdict(self)
        for name in ("rounds", "provenance", "task_categories"):
            params[name] = list(params[name])
        return params


# --- Row schema ---------------------------------------------------------------------------

_MESSAGES = pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))
_EVIDENCE_COUNTS = pa.struct([(kind, pa.int32()) for kind in EVIDENCE_KINDS])
_PROVENANCE_FIELDS = [
    pa.field("provenance", pa.string()),
    pa.field("curation", pa.string()),
    pa.field("source_label_flipped", pa.bool_()),
    pa.field("round", pa.int32()),
    pa.field("votes", pa.list_(pa.int8())),
    pa.field("disagreement", pa.float64()),
    pa.field("agreement", pa.float64()),
    pa.field("adjudication_decision", pa.string()),
    pa.field("adjudication_preference", pa.int8()),
    pa.field("adjudication_note", pa.string()),
    pa.field("model_version", pa.int32()),
]
_ATTRIBUTE_FIELDS = [
    pa.field(name, pa.string())
    for name in (
        "task_category",
        "objectivity",
        "controversiality",
        "desired_attributes",
        "annotation_guideline",
    )
]
_EVIDENCE_FIELDS = [
    pa.field("evidence_counts", _EVIDENCE_COUNTS),
    pa.field("evidence_items", pa.list_(pa.string())),
]
_IDENTITY_FIELDS = [
    pa.field("pair_id", pa.int64()),
    pa.field("external_id", pa.string()),
    pa.field("source", pa.string()),
]

# chosen/rejected: conversation + final assistant turn. preference_strength: 1 (better) or 2
# (much better). votes are canonical (positive = response A); chosen_side says whether A is
# the chosen one. model_* columns: the active model version's view, oriented to chosen.
MAIN_SCHEMA = pa.schema(
    [
        *_IDENTITY_FIELDS,
        pa.field("chosen", _MESSAGES),
        pa.field("rejected", _MESSAGES),
        pa.field("chosen_side", pa.string()),
        pa.field("preference_strength", pa.int8()),
        *_PROVENANCE_FIELDS,
        pa.field("model_p_chosen", pa.float64()),
        pa.field("model_reward_chosen", pa.float64()),
        pa.field("model_reward_rejected", pa.float64()),
        *_ATTRIBUTE_FIELDS,
        *_EVIDENCE_FIELDS,
    ]
)
# Pairs with no chosen side: preference 0 (tie) or null (unresolved, discarded).
UNRANKED_SCHEMA = pa.schema(
    [
        *_IDENTITY_FIELDS,
        pa.field("response_a", _MESSAGES),
        pa.field("response_b", _MESSAGES),
        pa.field("preference", pa.int8()),
        *_PROVENANCE_FIELDS,
        pa.field("model_p_a_better", pa.float64()),
        pa.field("model_reward_a", pa.float64()),
        pa.field("model_reward_b", pa.float64()),
        *_ATTRIBUTE_FIELDS,
        *_EVIDENCE_FIELDS,
    ]
)


def schema_description(schema: pa.Schema) -> list[dict[str, str]]:
    return [{"name": item.name, "type": str(item.type)} for item in schema]


# --- Selecting pairs ----------------------------------------------------------------------

_PAIR_COLUMNS = (
    "id",
    "external_id",
    "source",
    "conversation",
    "response_a",
    "response_b",
    "task_category",
    "objectivity",
    "controversiality",
    "desired_attributes",
    "annotation_guideline",
    "silver_preference",
    "is_gold",
    "gold_preference",
    "consensus_preference",
    "provenance",
    "disagreement",
    "curation",
    "labels_count",
    "round__number",
)
_COLUMN = {name: index for index, name in enumerate(_PAIR_COLUMNS)}


def export_condition(filters: ExportFilters) -> Q:
    """The WHERE clause of an export, over one campaign's pairs."""
    wanted = set(filters.provenance)
    in_rounds = Q(round__number__in=filters.rounds) if filters.rounds else Q()
    human = Q(is_gold=False) & in_rounds
    parts: list[Q] = []
    if "gold" in wanted:
        parts.append(Q(is_gold=True))
    voted = [name for name in ("unanimous", "majority") if name in wanted]
    if voted:
        # An open escalation means an expert may still overturn the majority.
        condition = human & Q(provenance__in=voted) & ~Q(status=Pair.Status.ESCALATED)
        if filters.min_agreement is not None:
            ceiling = 1.0 - filters.min_agreement + _AGREEMENT_EPSILON
            condition &= Q(disagreement__isnull=True) | Q(disagreement__lte=ceiling)
        parts.append(condition)
    decided = [name for name in ("adjudicated", "discarded", "unresolved") if name in wanted]
    if decided:
        parts.append(human & Q(provenance__in=decided))
    if filters.include_silver:
        curations = (
            list(SILVER_CURATIONS) if filters.silver_curated_only else ["", *SILVER_CURATIONS]
        )
        # A pair humans have started labelling is being verified: not silver any more.
        parts.append(
            Q(is_gold=False, provenance="", labels_count=0, silver_preference__isnull=False)
            & Q(curation__in=curations)
        )
    condition = functools.reduce(lambda left, right: left | right, parts, Q(pk__in=[]))
    if filters.task_categories:
        condition &= Q(task_category__in=filters.task_categories)
    return condition


def export_queryset(*, campaign: Campaign, filters: ExportFilters) -> QuerySet[Pair]:
    return Pair.objects.filter(campaign=campaign).filter(export_condition(filters))


# --- Building rows ------------------------------------------------------------------------


def _messages(conversation: Any, response: str | None) -> list[dict[str, str]]:
    turns = [
        {"role": str(turn.get("role", "")), "content": str(turn.get("content", ""))}
        for turn in (conversation or [])
        if isinstance(turn, Mapping)
    ]
    if response is not None:
        turns.append({"role": "assistant", "content": response})
    return turns


def _evidence_item(kind: str, payload: Any) -> str:
    text = ""
    if isinstance(payload, Mapping):
        keys = {
            Evidence.Kind.SEARCH: ("query",),
            Evidence.Kind.ATTACHED_RESULT: ("title", "source", "snippet"),
            Evidence.Kind.CODE_RUN: ("language", "status"),
            Evidence.Kind.LLM: ("question",),
        }.get(kind, ())
        text = " ".join(str(payload[key]) for key in keys if payload.get(key))
        if not text:
            text = next((value for value in payload.values() if isinstance(value, str)), "")
    text = " ".join(text.split())
    if len(text) > EVIDENCE_ITEM_CHARS:
        text = text[: EVIDENCE_ITEM_CHARS - 1] + "…"
    return f"{kind}: {text}" if text else kind


@dataclass
class _ChunkContext:
    votes: dict[int, list[int]]
    adjudications: dict[int, tuple[str, int | None, str]]
    scores: dict[int, tuple[float, float, float]]
    evidence_counts: dict[int, Counter[str]]
    evidence_items: dict[int, list[str]]


def _chunk_context(pairs: Sequence[tuple[Any, ...]], model: ModelVersion | None) -> _ChunkContext:
    ids = [pair[0] for pair in pairs]
    labelled = [pair[0] for pair in pairs if pair[_COLUMN["labels_count"]]]
    votes: dict[int, list[int]] = defaultdict(list)
    adjudications: dict[int, tuple[str, int | None, str]] = {}
    counts: dict[int, Counter[str]] = defaultdict(Counter)
    items: dict[int, list[str]] = defaultdict(list)
    if labelled:
        vote_rows = (
            Label.objects.filter(pair_id__in=labelled, is_retest=False, is_gold_check=False)
            .order_by("pair_id", "id")
            .values_list("pair_id", "preference")
        )
        for pair_id, preference in vote_rows:
            votes[pair_id].append(preference)
        adjudication_rows = (
            Adjudication.objects.filter(pair_id__in=labelled)
            .order_by("pair_id", "created_at", "id")
            .values_list("pair_id", "decision", "preference", "note")
        )
        for pair_id, decision, preference, note in adjudication_rows:
            adjudications[pair_id] = (decision, preference, note)  # the latest wins
        evidence_rows = (
            Evidence.objects.filter(label__pair_id__in=labelled)
            .order_by("id")
            .values_list("label__pair_id", "kind", "payload")
        )
        for pair_id, kind, payload in evidence_rows:
            counts[pair_id][kind] += 1
            if len(items[pair_id]) < EVIDENCE_ITEMS_PER_PAIR:
                items[pair_id].append(_evidence_item(kind, payload))
    scores: dict[int, tuple[float, float, float]] = {}
    if model is not None:
        score_rows = PairScore.objects.filter(model_version=model, pair_id__in=ids).values_list(
            "pair_id", "reward_a", "reward_b", "p_a_better"
        )
        scores = {pair_id: (a, b, p) for pair_id, a, b, p in score_rows}
    return _ChunkContext(votes, adjudications, scores, counts, items)


def _effective_preference(pair: tuple[Any, ...]) -> tuple[int | None, str, bool]:
    """(preference in canonical orientation, provenance shown, source label flipped)."""
    column = _COLUMN
    if pair[column["is_gold"]]:
        gold = pair[column["gold_preference"]]
        return (gold if gold is not None else pair[column["consensus_preference"]]), "gold", False
    provenance = pair[column["provenance"]]
    if provenance:
        return pair[column["consensus_preference"]], provenance, False
    silver = pair[column["silver_preference"]]
    if pair[column["curation"]] == "recycled" and silver is not None:
        return -silver, "silver", True
    return silver, "silver", False


def _build_row(
    pair: tuple[Any, ...], context: _ChunkContext, model: ModelVersion | None
) -> tuple[bool, dict[str, Any], int | None, str]:
    """(ranked?, row, preference, provenance) for one pair."""
    column = _COLUMN
    pair_id = pair[column["id"]]
    preference, provenance, flipped = _effective_preference(pair)
    disagreement = pair[column["disagreement"]]
    adjudication = context.adjudications.get(pair_id)
    counts = context.evidence_counts.get(pair_id, Counter())
    score = context.scores.get(pair_id)
    head = {
        "pair_id": pair_id,
        "external_id": pair[column["external_id"]],
        "source": pair[column["source"]],
    }
    tail = {
        "provenance": provenance,
        "curation": pair[column["curation"]],
        "source_label_flipped": flipped,
        "round": pair[column["round__number"]],
        "votes": context.votes.get(pair_id, []),
        "disagreement": disagreement,
        "agreement": None if disagreement is None else 1.0 - disagreement,
        "adjudication_decision": adjudication[0] if adjudication else None,
        "adjudication_preference": adjudication[1] if adjudication else None,
        "adjudication_note": adjudication[2] if adjudication else None,
        "model_version": model.number if (model is not None and score is not None) else None,
    }
    attributes = {
        name: pair[column[name]]
        for name in (
            "task_category",
            "objectivity",
            "controversiality",
            "desired_attributes",
            "annotation_guideline",
        )
    }
    evidence = {
        "evidence_counts": {kind: counts.get(kind, 0) for kind in EVIDENCE_KINDS},
        "evidence_items": context.evidence_items.get(pair_id, []),
    }
    conversation = pair[column["conversation"]]
    response_a, response_b = pair[column["response_a"]], pair[column["response_b"]]
    if not preference:
        row = {
            **head,
            "response_a": _messages(conversation, response_a),
            "response_b": _messages(conversation, response_b),
            "preference": preference,
            **tail,
            "model_p_a_better": score[2] if score else None,
            "model_reward_a": score[0] if score else None,
            "model_reward_b": score[1] if score else None,
            **attributes,
            **evidence,
        }
        return False, row, preference, provenance
    a_chosen = preference > 0
    chosen, rejected = (response_a, response_b) if a_chosen else (response_b, response_a)
    model_columns: dict[str, float | None] = {
        "model_p_chosen": None,
        "model_reward_chosen": None,
        "model_reward_rejected": None,
    }
    if score is not None:
        reward_a, reward_b, p_a_better = score
        model_columns = {
            "model_p_chosen": p_a_better if a_chosen else 1.0 - p_a_better,
            "model_reward_chosen": reward_a if a_chosen else reward_b,
            "model_reward_rejected": reward_b if a_chosen else reward_a,
        }
    row = {
        **head,
        "chosen": _messages(conversation, chosen),
        "rejected": _messages(conversation, rejected),
        "chosen_side": "a" if a_chosen else "b",
        "preference_strength": abs(preference),
        **tail,
        **model_columns,
        **attributes,
        **evidence,
    }
    return True, row, preference, provenance


def _chunks(queryset: QuerySet[Pair], chunk_size: int) -> Iterator[list[tuple[Any, ...]]]:
    """Keyset pagination by primary key: each query is short and reads committed rows."""
    last_id = 0
    while True:
        chunk = list(
            queryset.filter(pk__gt=last_id).order_by("pk").values_list(*_PAIR_COLUMNS)[:chunk_size]
        )
        if not chunk:
            return
        yield chunk
        last_id = chunk[-1][0]


def active_model_version(*, campaign: Campaign) -> ModelVersion | None:
    return ModelVersion.objects.filter(campaign=campaign, is_active=True).first()


@dataclass
class ExportCounts:
    rows: int = 0
    ties: int = 0
    unresolved: int = 0
    unranked_written: int = 0
    by_provenance: dict[str, int] = field(default_factory=dict)
    max_pair_id: int = 0


def export_rows(
    *,
    campaign: Campaign,
    filters: ExportFilters,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    counts: ExportCounts | None = None,
) -> Iterator[tuple[bool, dict[str, Any]]]:
    """Every exported row as (ranked, row): ranked rows have chosen/rejected, the others are
    ties or unresolved pairs (for the separate file). Streams; memory bounded by chunk_size."""
    counts = counts if counts is not None else ExportCounts()
    model = active_model_version(campaign=campaign)
    provenance_counts: Counter[str] = Counter()
    queryset = export_queryset(campaign=campaign, filters=filters)
    for chunk in _chunks(queryset, chunk_size):
        context = _chunk_context(chunk, model)
        for pair in chunk:
            ranked, row, preference, provenance = _build_row(pair, context, model)
            if ranked:
                counts.rows += 1
                provenance_counts[provenance] += 1
            elif preference == 0:
                counts.ties += 1
            else:
                counts.unresolved += 1
            yield ranked, row
        counts.max_pair_id = chunk[-1][0]
        counts.by_provenance = dict(sorted(provenance_counts.items()))


# --- Writing files ------------------------------------------------------------------------


class _JsonlWriter:
    def __init__(self, path: Path, schema: pa.Schema) -> None:
        self.handle = path.open("wb")

    def write(self, row: dict[str, Any]) -> None:
        line = json.dumps(row, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
        self.handle.write(line.encode() + b"\n")

    def close(self) -> None:
        self.handle.flush()
        os.fsync(self.handle.fileno())
        self.handle.close()

    def abort(self) -> None:
        self.handle.close()


class _ParquetWriter:
    """Rows buffered into row groups, each converted and written as one table."""

    def __init__(self, path: Path, schema: pa.Schema) -> None:
        self.schema = schema
        self.writer = pq.ParquetWriter(path, schema, compression="zstd")
        self.buffer: list[dict[str, Any]] = []
        self.path = path

    def write(self, row: dict[str, Any]) -> None:
        self.buffer.append(row)
        if len(self.buffer) >= PARQUET_ROW_GROUP:
            self._flush()

    def _flush(self) -> None:
        if self.buffer:
            self.writer.write_table(pa.Table.from_pylist(self.buffer, schema=self.schema))
            self.buffer = []

    def close(self) -> None:
        self._flush()
        self.writer.close()
        with self.path.open("rb") as handle:
            os.fsync(handle.fileno())

    def abort(self) -> None:
        self.buffer = []
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


def _hidden_temporary(path: Path) -> Path:
    return path.with_name(f".{path.name}.{uuid.uuid4().hex}.part")


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


def export_write(
    *,
    campaign: Campaign,
    filters: ExportFilters,
    file_format: str,
    destination: Path,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    on_progress: ProgressCallback | None = None,
    extra_manifest: Mapping[str, Any] | None = None,
) -> ExportResult:
    """Write the export to ``destination`` (and its ties file when asked), atomically.

    Nothing appears at ``destination`` until every row is written and synced; on any error
    the hidden temporary files are removed and the error propagates.
    """
    if file_format not in FORMATS:
        raise InvalidExport(f"format must be one of {', '.join(FORMATS)}")
    destination = Path(destination)
    destination.parent.mkdir(parents=True, exist_ok=True)
    total = export_queryset(campaign=campaign, filters=filters).count()
    separate = filters.ties == "separate"
    targets = {"main": destination}
    if separate:
        targets["ties"] = unranked_path(destination)
    temporaries = {role: _hidden_temporary(path) for role, path in targets.items()}
    writer_class = _WRITERS[file_format]
    writers: dict[str, Any] = {}
    counts = ExportCounts()
    renamed: list[Path] = []
    seen = 0
    try:
        writers["main"] = writer_class(temporaries["main"], MAIN_SCHEMA)
        if separate:
            writers["ties"] = writer_class(temporaries["ties"], UNRANKED_SCHEMA)
        for ranked, row in export_rows(
            campaign=campaign, filters=filters, chunk_size=chunk_size, counts=counts
        ):
            if ranked:
                writers["main"].write(row)
            elif separate:
                writers["ties"].write(row)
                counts.unranked_written += 1
            seen += 1
            if on_progress is not None and seen % chunk_size == 0:
                on_progress(seen, total)
        for writer in writers.values():
            writer.close()
        writers.clear()
        files = []
        for role, temporary in temporaries.items():
            files.append(
                {
                    "role": role,
                    "name": targets[role].name,
                    "rows": counts.rows if role == "main" else counts.unranked_written,
                    "bytes": temporary.stat().st_size,
                    "sha256": file_sha256(temporary),
                    "schema": schema_description(
                        MAIN_SCHEMA if role == "main" else UNRANKED_SCHEMA
                    ),
                }
            )
        for role, temporary in temporaries.items():
            os.replace(temporary, targets[role])
            renamed.append(targets[role])
        _sync_directory(destination.parent)
    except BaseException:
        for writer in writers.values():
            writer.abort()
        for temporary in temporaries.values():
            temporary.unlink(missing_ok=True)
        # All files or none: a ties file renamed before a failure goes too.
        for path in renamed:
            path.unlink(missing_ok=True)
        raise
    if on_progress is not None:
        on_progress(seen, total)
    model = active_model_version(campaign=campaign)
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
            "by_provenance": counts.by_provenance,
        },
        "sha256": files[0]["sha256"],
        "files": files,
        "schema": files[0]["schema"],
        "model_version": model.number if model is not None else None,
        "max_pair_id": counts.max_pair_id,
        "code_version": code_version(),
        "created_at": timezone.now().isoformat(),
        **dict(extra_manifest or {}),
    }
    return ExportResult(path=destination, manifest=manifest)


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


# --- Snapshots (jobs) ---------------------------------------------------------------------


def export_directory(*, campaign: Campaign) -> Path:
    return Path(settings.ARBITER["EXPORT_DIR"]) / f"campaign-{campaign.pk}"


def export_create(
    *,
    campaign: Campaign,
    file_format: str,
    filters: ExportFilters,
    user: AbstractBaseUser | None = None,
    enqueue: bool = True,
) -> ExportSnapshot:
    """Record a queued export job and its snapshot row (the next version), and enqueue it."""
    if file_format not in FORMATS:
        raise InvalidExport(f"format must be one of {', '.join(FORMATS)}")
    with transaction.atomic():
        # Lock the campaign row so two exports created at once get different versions.
        Campaign.objects.select_for_update(no_key=True).filter(pk=campaign.pk).first()
        latest = ExportSnapshot.objects.filter(campaign=campaign).aggregate(n=Max("version"))["n"]
        version = (latest or 0) + 1
        params = {"format": file_format, "filters": filters.as_params(), "version": version}
        author = user if user is not None and user.is_authenticated else None
        job = job_create(campaign=campaign, kind=Job.Kind.EXPORT, params=params, user=author)
        snapshot = ExportSnapshot.objects.create(
            job=job,
            campaign=campaign,
            version=version,
            format=file_format,
            filters=filters.as_params(),
        )
        if enqueue:
            from scoring.export_tasks import export_snapshot_task

            export_snapshot_task.delay_on_commit(job.pk)
    return snapshot


def _export_work(job: Job, chunk_size: int) -> JobWork:
    snapshot = ExportSnapshot.objects.select_related("campaign").get(job=job)
    campaign = snapshot.campaign
    extension = "jsonl" if snapshot.format == "jsonl" else "parquet"
    destination = export_directory(campaign=campaign) / f"export-v{snapshot.version}.{extension}"

    def work(context: JobContext) -> dict[str, Any]:
        def on_progress(done: int, total: int) -> None:
            if context.should_stop():
                raise JobCancelled  # export_write removes its temporary files
            context.progress(done / total if total else 1.0, f"{done} of {total} pairs")

        try:
            result = export_write(
                campaign=campaign,
                filters=ExportFilters.from_params(snapshot.filters),
                file_format=snapshot.format,
                destination=destination,
                chunk_size=chunk_size,
                on_progress=on_progress,
                extra_manifest={"snapshot_version": snapshot.version, "job": job.pk},
            )
        except InvalidExport as error:
            raise JobError(str(error)) from error
        snapshot.path = str(result.path)
        snapshot.manifest = result.manifest
        snapshot.save(update_fields=["path", "manifest"])
        context.log(f"exported {result.manifest['counts']['rows']} pairs to {result.path.name}")
        return result.manifest["counts"]

    return work


def export_run(
    *, job_id: int, worker: str = "", chunk_size: int = DEFAULT_CHUNK_SIZE, reraise: bool = True
) -> JobClaim:
    """Claim the export job and write its snapshot (see scoring.services.jobs: a second
    delivery does nothing, a job whose worker died is taken over once its heartbeat is stale).
    """
    return job_run(
        job_id=job_id,
        worker=worker or worker_name(),
        work_for=lambda job: _export_work(job, chunk_size),
        reraise=reraise,
    )


def export_file(*, snapshot: ExportSnapshot, role: str = "main") -> Path | None:
    """The finished file of a snapshot ("main" or "ties"), or None when there is none."""
    if not snapshot.path:
        return None
    main = Path(snapshot.path)
    path = main if role == "main" else unranked_path(main)
    names = {item.get("name") for item in snapshot.manifest.get("files", [])}
    if path.name not in names or not path.is_file():
        return None
    return path
