"""The export's reads: pairs a chunk at a time (keyset pagination), and per chunk the labels,
adjudications, scores, evidence and rewrites of its pair-id range; the next chunk is read
ahead in a thread while the current one is formatted."""

from __future__ import annotations

import math
import queue
import threading
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from django.db import connection
from django.db.models import Q, QuerySet, TextField
from django.db.models.functions import Cast

from annotation.models import Campaign, Evidence, Label, Pair, Rewrite
from core.text import line_breaks_as_in, unchanged_copy
from reviewers.models import Adjudication
from scoring.datasets.export.filters import (
    EVIDENCE_ITEM_CHARS,
    EVIDENCE_ITEMS_PER_PAIR,
)
from scoring.datasets.export.schema import ATTRIBUTE_NAMES
from scoring.models import ModelVersion, PairScore

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
    "consensus_outcome",
    "provenance",
    "disagreement",
    "consensus_posterior",
    "curation",
    "labels_count",
    "round__number",
    "responses",
    "consensus_ranking",
    "silver_ranking",
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
    _OUTCOME,
    _PROVENANCE,
    _DISAGREEMENT,
    _POSTERIOR,
    _CURATION,
    _LABELS_COUNT,
    _ROUND,
    _RESPONSES,
    _CONSENSUS_RANKING,
    _SILVER_RANKING,
) = range(len(_PAIR_COLUMNS))
_ATTRIBUTES = tuple(zip(ATTRIBUTE_NAMES, _ATTRIBUTE_POSITIONS, strict=True))


def _chunks(queryset: QuerySet[Pair], chunk_size: int) -> Iterator[list[tuple[Any, ...]]]:
    """Keyset pagination by primary key: each query is short and reads committed rows. One
    pass of an export (``export_querysets``): each pass starts again from the lowest id."""
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


def _code_run_seen(payload: Mapping[str, Any]) -> dict[str, Any]:
    """What the annotator saw of a finished run: the program's outcome ("ok", "error",
    "timeout" ...) and its tests', not the run's bookkeeping state ("done" whatever the
    program did)."""
    outcome = payload.get("result_status") or payload.get("status")
    if payload.get("tests_outcome"):
        outcome = f"{outcome}, tests {payload['tests_outcome']}"
    return {**payload, "status": outcome}


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
        if kind == Evidence.Kind.CODE_RUN:
            payload = _code_run_seen(payload)
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
    # Per pair: [(aspect, mean of a, mean of b, labels that rated it)], canonical sides.
    aspects: dict[int, list[tuple[str, float | None, float | None, int]]] = field(
        default_factory=dict
    )
    # Per pair: [(rewrite id, text, canonical side it rewrites)], oldest first.
    rewrites: dict[int, list[tuple[int, str, str]]] = field(default_factory=dict)
    # Rewrites left out as their original unchanged (stored before the service refused them).
    unchanged_rewrites: int = 0


def _mean(values: list[int]) -> float | None:
    return sum(values) / len(values) if values else None


def aspect_summaries(
    ratings: Iterable[Mapping[str, Mapping[str, int]] | None], order: Sequence[str]
) -> list[tuple[str, float | None, float | None, int]]:
    """(aspect, mean rating of A, of B, labels that rated it) over a pair's labels; aspects in
    ``order`` first, then any others a label holds (a campaign's aspects may change)."""
    by_aspect: dict[str, tuple[list[int], list[int], list[int]]] = {}
    for label_ratings in ratings:
        for name, sides in (label_ratings or {}).items():
            a_values, b_values, raters = by_aspect.setdefault(name, ([], [], []))
            if "a" in sides:
                a_values.append(sides["a"])
            if "b" in sides:
                b_values.append(sides["b"])
            raters.append(1)
    names = [name for name in order if name in by_aspect]
    names += sorted(set(by_aspect) - set(names))
    return [
        (name, _mean(by_aspect[name][0]), _mean(by_aspect[name][1]), len(by_aspect[name][2]))
        for name in names
    ]


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _in_range(
    rows: QuerySet[Any, Any], first: int, last: int, chunk_size: int, field_name: str = "pair_id"
) -> Iterable[tuple[Any, ...]]:
    """Rows of the chunk's pair-id range. A range scan on the pair index beats an IN list of
    thousands of ids; rows of pairs outside the chunk are skipped by the caller. The chunks'
    ranges do not overlap within a pass, so a pass reads each related row once (the silver
    pass, whose pairs have no labels, reads only scores and rewrites again). A sparse chunk (a
    narrow filter) spans a wide range: its rows are then read through a server-side cursor in
    batches, so memory stays bounded."""
    rows = rows.filter(**{f"{field_name}__gte": first, f"{field_name}__lte": last})
    if last - first + 1 > 4 * chunk_size:
        return rows.iterator(chunk_size=20_000)
    return rows


def _chunk_context(
    chunk: Sequence[tuple[Any, ...]],
    campaign: Campaign,
    model: ModelVersion | None,
    with_rewrites: bool = False,
) -> _ChunkContext:
    span = _Span(chunk[0][_ID], chunk[-1][_ID], len(chunk))
    labelled = {pair[_ID] for pair in chunk if pair[_LABELS_COUNT]}
    context = _ChunkContext(
        votes=defaultdict(list),
        adjudications={},
        scores={},
        evidence_counts=defaultdict(Counter),
        evidence_items=defaultdict(list),
        rewrites=defaultdict(list),
    )
    ratings: dict[int, list[Any]] = {}
    if labelled:
        ratings = _read_labelled(context, campaign, labelled, span)
    if model is not None:
        context.scores = _read_scores(model, {pair[_ID] for pair in chunk}, span)
    aspect_order = [str(entry.get("name")) for entry in campaign.aspects or [] if entry]
    context.aspects = {
        pair_id: aspect_summaries(label_ratings, aspect_order)
        for pair_id, label_ratings in ratings.items()
    }
    if with_rewrites:
        context.rewrites, context.unchanged_rewrites = _read_rewrites(campaign, chunk, span)
    return context


@dataclass(frozen=True)
class _Span:
    """A chunk's pair-id range and its number of pairs (see ``_in_range``)."""

    first: int
    last: int
    size: int


def _read_labelled(
    context: _ChunkContext, campaign: Campaign, labelled: set[int], span: _Span
) -> dict[int, list[Any]]:
    """Fill the context's votes, adjudications and evidence of the chunk's labelled pairs;
    returns each pair's aspect ratings, one entry per label that rated something."""
    first, last, size = span.first, span.last, span.size
    ratings: dict[int, list[Any]] = defaultdict(list)
    vote_rows = (
        Label.objects.filter(
            campaign=campaign, is_retest=False, is_gold_check=False, set_aside=False
        )
        .order_by("pair_id", "id")
        .values_list("pair_id", "preference", "aspect_ratings")
    )
    for pair_id, preference, aspect_ratings in _in_range(vote_rows, first, last, size):
        if pair_id in labelled:
            context.votes[pair_id].append(preference)
            if aspect_ratings:
                ratings[pair_id].append(aspect_ratings)
    adjudication_rows = Adjudication.objects.order_by("pair_id", "created_at", "id").values_list(
        "pair_id", "decision", "preference", "note"
    )
    for pair_id, decision, preference, note in _in_range(adjudication_rows, first, last, size):
        if pair_id in labelled:
            context.adjudications[pair_id] = (decision, preference, note)  # the latest wins
    # A set-aside label (its annotator quarantined) is left out with everything it carries.
    evidence_rows = (
        Evidence.objects.filter(label__campaign=campaign, label__set_aside=False)
        .order_by("id")
        .values_list("label__pair_id", "kind", "payload")
    )
    for pair_id, kind, payload in _in_range(evidence_rows, first, last, size, "label__pair_id"):
        if pair_id in labelled:
            context.evidence_counts[pair_id][kind] += 1
            if len(context.evidence_items[pair_id]) < EVIDENCE_ITEMS_PER_PAIR:
                context.evidence_items[pair_id].append(_evidence_item(kind, payload))
    return ratings


def _read_scores(
    model: ModelVersion, ids: set[int], span: _Span
) -> dict[int, tuple[float | None, float | None, float | None]]:
    """The active version's (reward A, reward B, p A better) of the chunk's pairs."""
    scores: dict[int, tuple[float | None, float | None, float | None]] = {}
    score_rows = PairScore.objects.filter(model_version=model).values_list(
        "pair_id", "reward_a", "reward_b", "p_a_better"
    )
    for pair_id, reward_a, reward_b, p_a_better in _in_range(
        score_rows, span.first, span.last, span.size
    ):
        if pair_id in ids:
            scores[pair_id] = (_finite(reward_a), _finite(reward_b), _finite(p_a_better))
    return scores


def _read_rewrites(
    campaign: Campaign, chunk: Sequence[tuple[Any, ...]], span: _Span
) -> tuple[dict[int, list[tuple[int, str, str]]], int]:
    """The chunk's rewrites by pair: (rewrite id, text, canonical side it rewrites), oldest
    first, and how many were left out as unchanged. Of a label's rewrites only the newest
    counts (a label changed before changes replaced its rewrite holds several), and none of a
    set-aside label's; an expert's rewrite, of no label, always does.

    The rewrite service refuses a text that is its original unchanged and stores a text with
    the original's line breaks (a browser posts a textarea's lines joined by CRLF); rows stored
    before it did are read the same way here: an unchanged one is left out (an X ≻ X row), a
    kept one's text takes the original's line breaks."""
    originals = {pair[_ID]: (pair[_RESPONSE_A], pair[_RESPONSE_B]) for pair in chunk}
    rewrite_rows = (
        Rewrite.objects.filter(campaign=campaign)
        .filter(Q(label__isnull=True) | Q(label__set_aside=False))
        .order_by("pair_id", "id")
        .values_list("pair_id", "id", "label_id", "text", "based_on")
    )
    found: list[tuple[int, int, int | None, str, str]] = []
    latest: dict[int, int] = {}  # label id: its newest rewrite's id
    for row in _in_range(rewrite_rows, span.first, span.last, span.size):
        pair_id, rewrite_id, label_id = row[:3]
        if pair_id in originals:
            found.append(row)
            if label_id is not None:
                latest[label_id] = rewrite_id  # id order: the last one read is the newest
    rewrites: dict[int, list[tuple[int, str, str]]] = defaultdict(list)
    unchanged = 0
    for pair_id, rewrite_id, label_id, text, based_on in found:
        if label_id is not None and latest[label_id] != rewrite_id:
            continue
        response_a, response_b = originals[pair_id]
        original = response_a if based_on == Rewrite.BasedOn.A else response_b
        text = line_breaks_as_in(text, original)
        if unchanged_copy(text, original):
            unchanged += 1
            continue
        rewrites[pair_id].append((rewrite_id, text, based_on))
    return rewrites, unchanged


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
