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
adjudications, scores and evidence fetched by pair-id range in a handful of queries, so memory
stays bounded whatever the campaign's size; outside a transaction a reader thread fetches the
next chunk while this one is formatted. Each chunk reads committed data: a pair that changes
while the export runs appears once, either before or after the change, and the manifest records
the highest pair id read. Files are written under a hidden temporary name and renamed only when
complete, so an interrupted export leaves no visible file. benchmarks/export.py measures a
million pairs.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import json
import math
import os
import queue
import shutil
import subprocess
import threading
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.json as pa_json
import pyarrow.parquet as pq
from django.conf import settings
from django.contrib.auth.models import User
from django.db import connection, transaction
from django.db.models import Max, Q, QuerySet, TextField
from django.db.models.functions import Cast
from django.utils import timezone

from annotation.models import Campaign, Evidence, Label, Pair
from reviewers.models import Adjudication
from scoring.jobs.runner import (
    JobCancelled,
    JobClaim,
    JobContext,
    JobError,
    JobWork,
    job_create,
    job_enqueue,
    job_run,
    worker_name,
)
from scoring.models import ExportSnapshot, Job, ModelVersion, PairScore

FORMATS = ("jsonl", "parquet")
DEFAULT_PROVENANCE = ("gold", "unanimous", "majority", "adjudicated")
PROVENANCE_CHOICES = (*DEFAULT_PROVENANCE, "discarded", "unresolved")
TIES_CHOICES = ("exclude", "separate")
SILVER_CURATIONS = ("kept", "recycled")
EVIDENCE_KINDS = tuple(Evidence.Kind.values)
EVIDENCE_ITEMS_PER_PAIR = 5
EVIDENCE_ITEM_CHARS = 120
DEFAULT_CHUNK_SIZE = 5000
# Rows per Parquet row group: bounds the writer's buffers (see benchmarks/export.py).
PARQUET_ROW_GROUP = 5000
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
_IDENTITY_FIELDS = [
    pa.field("pair_id", pa.int64()),
    pa.field("external_id", pa.string()),
    pa.field("source", pa.string()),
]
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
ATTRIBUTE_NAMES = (
    "task_category",
    "objectivity",
    "controversiality",
    "desired_attributes",
    "annotation_guideline",
)
_TRAILING_FIELDS = [
    *(pa.field(name, pa.string()) for name in ATTRIBUTE_NAMES),
    pa.field("evidence_counts", _EVIDENCE_COUNTS),
    pa.field("evidence_items", pa.list_(pa.string())),
]

# chosen/rejected: the conversation plus the final assistant turn. preference_strength: 1
# (better) or 2 (much better). votes are canonical (positive = response A); chosen_side says
# whether A is the chosen one. model_* columns: the active version's view, oriented to chosen.
MAIN_SCHEMA = pa.schema(
    [
        pa.field("chosen", _MESSAGES),
        pa.field("rejected", _MESSAGES),
        *_IDENTITY_FIELDS,
        pa.field("chosen_side", pa.string()),
        pa.field("preference_strength", pa.int8()),
        *_PROVENANCE_FIELDS,
        pa.field("model_p_chosen", pa.float64()),
        pa.field("model_reward_chosen", pa.float64()),
        pa.field("model_reward_rejected", pa.float64()),
        *_TRAILING_FIELDS,
    ]
)
# Pairs with no chosen side: preference 0 (tie) or null (unresolved, discarded).
UNRANKED_SCHEMA = pa.schema(
    [
        pa.field("response_a", _MESSAGES),
        pa.field("response_b", _MESSAGES),
        *_IDENTITY_FIELDS,
        pa.field("preference", pa.int8()),
        *_PROVENANCE_FIELDS,
        pa.field("model_p_a_better", pa.float64()),
        pa.field("model_reward_a", pa.float64()),
        pa.field("model_reward_b", pa.float64()),
        *_TRAILING_FIELDS,
    ]
)


def schema_description(schema: pa.Schema) -> list[dict[str, str]]:
    return [{"name": item.name, "type": str(item.type)} for item in schema]


# --- Selecting pairs ----------------------------------------------------------------------

# The conversation travels as JSON text: JSONL embeds it as is, and only Parquet decodes it.
_PAIR_COLUMNS = (
    "id",
    "external_id",
    "source",
    "conversation_text",
    "response_a",
    "response_b",
    *ATTRIBUTE_NAMES,
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
(
    _ID,
    _EXTERNAL_ID,
    _SOURCE,
    _CONVERSATION,
    _RESPONSE_A,
    _RESPONSE_B,
    *_ATTRIBUTE_POSITIONS,
    _SILVER,
    _IS_GOLD,
    _GOLD_PREFERENCE,
    _CONSENSUS,
    _PROVENANCE,
    _DISAGREEMENT,
    _CURATION,
    _LABELS_COUNT,
    _ROUND,
) = range(len(_PAIR_COLUMNS))
_ATTRIBUTES = tuple(zip(ATTRIBUTE_NAMES, _ATTRIBUTE_POSITIONS, strict=True))


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


def _evidence_item(kind: str, payload: Any) -> str:
    text = ""
    if isinstance(payload, Mapping):
        keys_by_kind: dict[str, tuple[str, ...]] = {
            Evidence.Kind.SEARCH: ("query",),
            Evidence.Kind.ATTACHED_RESULT: ("title", "source", "snippet"),
            Evidence.Kind.CODE_RUN: ("language", "status"),
            Evidence.Kind.LLM: ("question",),
        }
        keys = keys_by_kind.get(kind, ())
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
    scores: dict[int, tuple[float | None, float | None, float | None]]
    evidence_counts: dict[int, Counter[str]]
    evidence_items: dict[int, list[str]]


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _in_range(
    rows: QuerySet[Any, Any], first: int, last: int, chunk_size: int, field_name: str = "pair_id"
) -> Iterable[tuple[Any, ...]]:
    """Rows of the chunk's pair-id range. A range scan on the pair index beats an IN list of
    thousands of ids; rows of pairs outside the chunk are skipped by the caller. The chunks'
    ranges do not overlap, so a whole export reads each related row once. A sparse chunk (a
    narrow filter) spans a wide range: its rows are then read through a server-side cursor in
    batches, so memory stays bounded."""
    rows = rows.filter(**{f"{field_name}__gte": first, f"{field_name}__lte": last})
    if last - first + 1 > 4 * chunk_size:
        return rows.iterator(chunk_size=20_000)
    return rows


def _chunk_context(
    chunk: Sequence[tuple[Any, ...]], campaign: Campaign, model: ModelVersion | None
) -> _ChunkContext:
    first, last, size = chunk[0][_ID], chunk[-1][_ID], len(chunk)
    labelled = {pair[_ID] for pair in chunk if pair[_LABELS_COUNT]}
    votes: dict[int, list[int]] = defaultdict(list)
    adjudications: dict[int, tuple[str, int | None, str]] = {}
    counts: dict[int, Counter[str]] = defaultdict(Counter)
    items: dict[int, list[str]] = defaultdict(list)
    if labelled:
        vote_rows = (
            Label.objects.filter(campaign=campaign, is_retest=False, is_gold_check=False)
            .order_by("pair_id", "id")
            .values_list("pair_id", "preference")
        )
        for pair_id, preference in _in_range(vote_rows, first, last, size):
            if pair_id in labelled:
                votes[pair_id].append(preference)
        adjudication_rows = Adjudication.objects.order_by(
            "pair_id", "created_at", "id"
        ).values_list("pair_id", "decision", "preference", "note")
        for pair_id, decision, preference, note in _in_range(adjudication_rows, first, last, size):
            if pair_id in labelled:
                adjudications[pair_id] = (decision, preference, note)  # the latest wins
        evidence_rows = (
            Evidence.objects.filter(label__campaign=campaign)
            .order_by("id")
            .values_list("label__pair_id", "kind", "payload")
        )
        for pair_id, kind, payload in _in_range(evidence_rows, first, last, size, "label__pair_id"):
            if pair_id in labelled:
                counts[pair_id][kind] += 1
                if len(items[pair_id]) < EVIDENCE_ITEMS_PER_PAIR:
                    items[pair_id].append(_evidence_item(kind, payload))
    scores: dict[int, tuple[float | None, float | None, float | None]] = {}
    if model is not None:
        ids = {pair[_ID] for pair in chunk}
        score_rows = PairScore.objects.filter(model_version=model).values_list(
            "pair_id", "reward_a", "reward_b", "p_a_better"
        )
        for pair_id, reward_a, reward_b, p_a_better in _in_range(score_rows, first, last, size):
            if pair_id in ids:
                scores[pair_id] = (_finite(reward_a), _finite(reward_b), _finite(p_a_better))
    return _ChunkContext(votes, adjudications, scores, counts, items)


def _effective_preference(pair: tuple[Any, ...]) -> tuple[int | None, str, bool]:
    """(preference in canonical orientation, provenance shown, source label flipped)."""
    if pair[_IS_GOLD]:
        gold = pair[_GOLD_PREFERENCE]
        return (gold if gold is not None else pair[_CONSENSUS]), "gold", False
    provenance = pair[_PROVENANCE]
    if provenance:
        return pair[_CONSENSUS], provenance, False
    silver = pair[_SILVER]
    if pair[_CURATION] == "recycled" and silver is not None:
        return -silver, "silver", True
    return silver, "silver", False


# Shared by every row without evidence or votes; rows are only read, never changed, until
# export_rows copies them for its callers.
_NO_EVIDENCE_COUNTS: dict[str, int] = dict.fromkeys(EVIDENCE_KINDS, 0)
_NOTHING: list[Any] = []


@dataclass(frozen=True)
class _RowParts:
    """One exported row, before it is given a format.

    ``first``/``second`` are the final assistant turns of the two message lists: chosen and
    rejected for ranked rows, A and B for the others. ``scalars`` are every other column, in
    schema order."""

    ranked: bool
    conversation_text: str
    first: str
    second: str
    scalars: dict[str, Any]
    preference: int | None
    provenance: str


def _row_parts(
    pair: tuple[Any, ...], context: _ChunkContext, model: ModelVersion | None
) -> _RowParts:
    pair_id = pair[_ID]
    preference, provenance, flipped = _effective_preference(pair)
    disagreement = pair[_DISAGREEMENT]
    adjudication = context.adjudications.get(pair_id)
    score = context.scores.get(pair_id)
    counts = context.evidence_counts.get(pair_id)
    ranked = bool(preference)
    response_a, response_b = pair[_RESPONSE_A], pair[_RESPONSE_B]
    a_chosen = preference is not None and preference > 0  # so ranked and A chosen
    scalars: dict[str, Any] = {
        "pair_id": pair_id,
        "external_id": pair[_EXTERNAL_ID],
        "source": pair[_SOURCE],
    }
    if ranked:
        scalars["chosen_side"] = "a" if a_chosen else "b"
        scalars["preference_strength"] = abs(preference or 0)  # ranked: never 0 or None
    else:
        scalars["preference"] = preference
    scalars["provenance"] = provenance
    scalars["curation"] = pair[_CURATION]
    scalars["source_label_flipped"] = flipped
    scalars["round"] = pair[_ROUND]
    scalars["votes"] = context.votes.get(pair_id, _NOTHING)
    scalars["disagreement"] = disagreement
    scalars["agreement"] = None if disagreement is None else 1.0 - disagreement
    scalars["adjudication_decision"] = adjudication[0] if adjudication else None
    scalars["adjudication_preference"] = adjudication[1] if adjudication else None
    scalars["adjudication_note"] = adjudication[2] if adjudication else None
    scalars["model_version"] = model.number if (model is not None and score) else None
    reward_a, reward_b, p_a_better = score or (None, None, None)
    if not ranked:
        scalars["model_p_a_better"] = p_a_better
        scalars["model_reward_a"] = reward_a
        scalars["model_reward_b"] = reward_b
    elif a_chosen:
        scalars["model_p_chosen"] = p_a_better
        scalars["model_reward_chosen"] = reward_a
        scalars["model_reward_rejected"] = reward_b
    else:
        scalars["model_p_chosen"] = None if p_a_better is None else 1.0 - p_a_better
        scalars["model_reward_chosen"] = reward_b
        scalars["model_reward_rejected"] = reward_a
    for name, position in _ATTRIBUTES:
        scalars[name] = pair[position]
    scalars["evidence_counts"] = (
        {kind: counts.get(kind, 0) for kind in EVIDENCE_KINDS} if counts else _NO_EVIDENCE_COUNTS
    )
    scalars["evidence_items"] = context.evidence_items.get(pair_id, _NOTHING)
    first, second = (
        (response_b, response_a)
        if ranked and not a_chosen
        else (
            response_a,
            response_b,
        )
    )
    return _RowParts(ranked, pair[_CONVERSATION], first, second, scalars, preference, provenance)


def _chunks(queryset: QuerySet[Pair], chunk_size: int) -> Iterator[list[tuple[Any, ...]]]:
    """Keyset pagination by primary key: each query is short and reads committed rows."""
    rows = queryset.annotate(conversation_text=Cast("conversation", TextField()))
    last_id = 0
    while True:
        chunk = list(
            rows.filter(pk__gt=last_id).order_by("pk").values_list(*_PAIR_COLUMNS)[:chunk_size]
        )
        if not chunk:
            return
        yield chunk
        last_id = chunk[-1][_ID]


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


_END = object()


class _Failed:
    def __init__(self, error: BaseException) -> None:
        self.error = error


def _read_ahead(produce: Callable[[], Iterator[Any]], depth: int = 2) -> Iterator[Any]:
    """Items of ``produce()`` computed one step ahead in a thread with its own database
    connection, so the database answers the next chunk's queries while this thread formats
    the current one. Inside a transaction (tests, callers' atomic blocks) another connection
    could not see uncommitted rows: then it reads inline."""
    if connection.in_atomic_block:
        yield from produce()
        return
    items: queue.Queue[Any] = queue.Queue(maxsize=depth)
    stopping = threading.Event()

    def offer(item: Any) -> bool:
        # Never blocks past the consumer: once it stopped, nothing more is handed over.
        while not stopping.is_set():
            try:
                items.put(item, timeout=0.2)
                return True
            except queue.Full:
                continue
        return False

    def run() -> None:
        try:
            for item in produce():
                if not offer(item):
                    return
            offer(_END)
        except BaseException as error:  # handed to the consumer, which re-raises it
            offer(_Failed(error))
        finally:
            connection.close()  # this thread's own connection

    reader = threading.Thread(target=run, name="export-read-ahead", daemon=True)
    reader.start()
    try:
        while True:
            item = items.get()
            if item is _END:
                return
            if isinstance(item, _Failed):
                raise item.error
            yield item
    finally:
        stopping.set()
        reader.join(timeout=60)


def _export_parts(
    *, campaign: Campaign, filters: ExportFilters, chunk_size: int, counts: ExportCounts
) -> Iterator[_RowParts]:
    model = active_model_version(campaign=campaign)
    provenance_counts: Counter[str] = Counter()
    queryset = export_queryset(campaign=campaign, filters=filters)

    def chunks_with_context() -> Iterator[tuple[list[tuple[Any, ...]], _ChunkContext]]:
        for chunk in _chunks(queryset, chunk_size):
            yield chunk, _chunk_context(chunk, campaign, model)

    for chunk, context in _read_ahead(chunks_with_context):
        for pair in chunk:
            parts = _row_parts(pair, context, model)
            if parts.ranked:
                counts.rows += 1
                provenance_counts[parts.provenance] += 1
            elif parts.preference == 0:
                counts.ties += 1
            else:
                counts.unresolved += 1
            yield parts
        counts.max_pair_id = chunk[-1][_ID]
        counts.by_provenance = dict(sorted(provenance_counts.items()))


def _message_list(turns: list[dict[str, str]], response: str) -> list[dict[str, str]]:
    return [*turns, {"role": "assistant", "content": response}]


def export_rows(
    *,
    campaign: Campaign,
    filters: ExportFilters,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    counts: ExportCounts | None = None,
) -> Iterator[tuple[bool, dict[str, Any]]]:
    """Every exported row as (ranked, row), exactly as the files hold them: ranked rows have
    chosen/rejected (MAIN_SCHEMA), the others response_a/response_b (UNRANKED_SCHEMA).
    Streams; memory is bounded by chunk_size."""
    counts = counts if counts is not None else ExportCounts()
    for parts in _export_parts(
        campaign=campaign, filters=filters, chunk_size=chunk_size, counts=counts
    ):
        turns = [
            {"role": turn["role"], "content": turn["content"]}
            for turn in json.loads(parts.conversation_text)
        ]
        first, second = ("chosen", "rejected") if parts.ranked else ("response_a", "response_b")
        row = {
            first: _message_list(turns, parts.first),
            second: _message_list(turns, parts.second),
            **parts.scalars,
        }
        for name in ("votes", "evidence_items"):
            row[name] = list(row[name])
        row["evidence_counts"] = dict(row["evidence_counts"])
        yield parts.ranked, row


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
        for parts in _export_parts(
            campaign=campaign, filters=filters, chunk_size=chunk_size, counts=counts
        ):
            if parts.ranked:
                writers["main"].write(parts)
            elif separate:
                writers["ties"].write(parts)
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
    user: User | None = None,
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
            job_enqueue(job=job)
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
        counts: dict[str, Any] = result.manifest["counts"]
        return counts

    return work


def export_run(
    *, job_id: int, worker: str = "", chunk_size: int = DEFAULT_CHUNK_SIZE, reraise: bool = True
) -> JobClaim:
    """Claim the export job and write its snapshot (see scoring.jobs.runner: a second
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
