"""Export rows: the Arrow schemas, and the chunked reads that build one row per pair (labels,
adjudications, scores and evidence fetched by pair-id range, a chunk at a time)."""

from __future__ import annotations

import json
import math
import queue
import threading
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
from django.db import connection
from django.db.models import QuerySet, TextField
from django.db.models.functions import Cast

from annotation.models import Campaign, Evidence, Label, Outcome, Pair, Rewrite
from reviewers.models import Adjudication
from scoring.datasets.curation.decontamination import (
    EvaluationIndex,
    evaluation_index,
    turn_texts,
)
from scoring.datasets.curation.near_duplicates import EXACT, NEAR, DuplicateFinder
from scoring.datasets.export.filters import (
    DEFAULT_CHUNK_SIZE,
    EVIDENCE_ITEM_CHARS,
    EVIDENCE_ITEMS_PER_PAIR,
    EVIDENCE_KINDS,
    ExportFilters,
    export_queryset,
)
from scoring.loop.ranking_pairs import ranking_pairs, tied_pairs
from scoring.models import ModelVersion, PairScore
from scoring.selectors import active_model_version

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
    # The consensus outcome: "preference" (a side or a tie), "both_bad" or "both_good".
    pa.field("outcome", pa.string()),
    pa.field("curation", pa.string()),
    pa.field("source_label_flipped", pa.bool_()),
    pa.field("round", pa.int32()),
    pa.field("votes", pa.list_(pa.int8())),
    pa.field("disagreement", pa.float64()),
    pa.field("agreement", pa.float64()),
    # The settling rule's probability of the consensus direction (Dawid-Skene; else null).
    pa.field("consensus_posterior", pa.float64()),
    pa.field("adjudication_decision", pa.string()),
    pa.field("adjudication_preference", pa.int8()),
    pa.field("adjudication_note", pa.string()),
    pa.field("model_version", pa.int32()),
    # Rows expanded from a ranking item (null otherwise): the item, the campaign's rule, and
    # the two responses' indices and ranks (1 = best). "first" is the chosen response in the
    # main file and response_a in the ties file.
    pa.field(
        "ranking_pair",
        pa.struct(
            [
                ("item", pa.int64()),
                ("rule", pa.string()),
                ("first_index", pa.int8()),
                ("first_rank", pa.int8()),
                ("second_index", pa.int8()),
                ("second_rank", pa.int8()),
            ]
        ),
    ),
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


def _aspects_field(first: str, second: str) -> pa.Field:
    """Per-aspect ratings of the regular labels: the mean rating of each response and how many
    labels rated the aspect, in the campaign's aspect order (aspects nobody rated are left out)."""
    return pa.field(
        "aspects",
        pa.list_(
            pa.struct(
                [
                    ("name", pa.string()),
                    (f"{first}_mean", pa.float64()),
                    (f"{second}_mean", pa.float64()),
                    ("ratings", pa.int32()),
                ]
            )
        ),
    )


# Rewrite rows only (provenance "rewrite"): the rewrite's id, and the canonical side ('a' or
# 'b') of the original response it improves on, which is the rejected one.
_REWRITE_FIELDS = [pa.field("rewrite_id", pa.int64()), pa.field("rewrite_of", pa.string())]

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
        _aspects_field("chosen", "rejected"),
        *_REWRITE_FIELDS,
    ]
)
# Pairs with no chosen side: preference 0 (tie, both bad, both good) or null (unresolved,
# discarded). Ties go to the ties file, "both bad"/"both good" to the outcomes file.
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
        _aspects_field("a", "b"),
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
_PREFERENCE = str(Outcome.PREFERENCE)


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
    # Per pair: [(aspect, mean of a, mean of b, labels that rated it)], canonical sides.
    aspects: dict[int, list[tuple[str, float | None, float | None, int]]] = field(
        default_factory=dict
    )
    # Per pair: [(rewrite id, text, canonical side it rewrites)], oldest first.
    rewrites: dict[int, list[tuple[int, str, str]]] = field(default_factory=dict)


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
    ranges do not overlap, so a whole export reads each related row once. A sparse chunk (a
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
    first, last, size = chunk[0][_ID], chunk[-1][_ID], len(chunk)
    labelled = {pair[_ID] for pair in chunk if pair[_LABELS_COUNT]}
    votes: dict[int, list[int]] = defaultdict(list)
    ratings: dict[int, list[Any]] = defaultdict(list)
    adjudications: dict[int, tuple[str, int | None, str]] = {}
    counts: dict[int, Counter[str]] = defaultdict(Counter)
    items: dict[int, list[str]] = defaultdict(list)
    if labelled:
        vote_rows = (
            Label.objects.filter(
                campaign=campaign, is_retest=False, is_gold_check=False, set_aside=False
            )
            .order_by("pair_id", "id")
            .values_list("pair_id", "preference", "aspect_ratings")
        )
        for pair_id, preference, aspect_ratings in _in_range(vote_rows, first, last, size):
            if pair_id in labelled:
                votes[pair_id].append(preference)
                if aspect_ratings:
                    ratings[pair_id].append(aspect_ratings)
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
    aspect_order = [str(entry.get("name")) for entry in campaign.aspects or [] if entry]
    aspects = {
        pair_id: aspect_summaries(label_ratings, aspect_order)
        for pair_id, label_ratings in ratings.items()
    }
    rewrites: dict[int, list[tuple[int, str, str]]] = defaultdict(list)
    if with_rewrites:
        ids = {pair[_ID] for pair in chunk}
        rewrite_rows = (
            Rewrite.objects.filter(campaign=campaign)
            .order_by("pair_id", "id")
            .values_list("pair_id", "id", "text", "based_on")
        )
        for pair_id, rewrite_id, text, based_on in _in_range(rewrite_rows, first, last, size):
            if pair_id in ids:
                rewrites[pair_id].append((rewrite_id, text, based_on))
    return _ChunkContext(votes, adjudications, scores, counts, items, aspects, rewrites)


def _effective_preference(pair: tuple[Any, ...]) -> tuple[int | None, str, bool, str]:
    """(preference in canonical orientation, provenance shown, source label flipped, outcome)."""
    if pair[_IS_GOLD]:
        gold = pair[_GOLD_PREFERENCE]
        return (gold if gold is not None else pair[_CONSENSUS]), "gold", False, _PREFERENCE
    provenance = pair[_PROVENANCE]
    if provenance:
        return pair[_CONSENSUS], provenance, False, pair[_OUTCOME] or _PREFERENCE
    silver = pair[_SILVER]
    if pair[_CURATION] == "recycled" and silver is not None:
        return -silver, "silver", True, _PREFERENCE
    return silver, "silver", False, _PREFERENCE


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
    outcome: str = "preference"
    is_rewrite: bool = False


def _row_parts(
    pair: tuple[Any, ...], context: _ChunkContext, model: ModelVersion | None
) -> _RowParts:
    pair_id = pair[_ID]
    preference, provenance, flipped, outcome = _effective_preference(pair)
    disagreement = pair[_DISAGREEMENT]
    adjudication = context.adjudications.get(pair_id)
    score = context.scores.get(pair_id)
    counts = context.evidence_counts.get(pair_id)
    # "Both bad"/"both good" carry preference 0; the outcome check keeps them unranked anyway.
    ranked = bool(preference) and outcome == _PREFERENCE
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
    scalars["outcome"] = outcome
    scalars["curation"] = pair[_CURATION]
    scalars["source_label_flipped"] = flipped
    scalars["round"] = pair[_ROUND]
    scalars["votes"] = context.votes.get(pair_id, _NOTHING)
    scalars["disagreement"] = disagreement
    scalars["agreement"] = None if disagreement is None else 1.0 - disagreement
    scalars["consensus_posterior"] = None if pair[_IS_GOLD] else pair[_POSTERIOR]
    scalars["adjudication_decision"] = adjudication[0] if adjudication else None
    scalars["adjudication_preference"] = adjudication[1] if adjudication else None
    scalars["adjudication_note"] = adjudication[2] if adjudication else None
    scalars["model_version"] = model.number if (model is not None and score) else None
    scalars["ranking_pair"] = None
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
    summaries = context.aspects.get(pair_id, _NOTHING)
    if ranked:
        chosen, rejected = (0, 1) if a_chosen else (1, 0)
        names = ("chosen_mean", "rejected_mean")
    else:
        chosen, rejected, names = 0, 1, ("a_mean", "b_mean")
    scalars["aspects"] = [
        {
            "name": name,
            names[0]: (a_mean, b_mean)[chosen],
            names[1]: (a_mean, b_mean)[rejected],
            "ratings": raters,
        }
        for name, a_mean, b_mean, raters in summaries
    ]
    if ranked:
        scalars["rewrite_id"] = None
        scalars["rewrite_of"] = None
    first, second = (
        (response_b, response_a)
        if ranked and not a_chosen
        else (
            response_a,
            response_b,
        )
    )
    return _RowParts(
        ranked, pair[_CONVERSATION], first, second, scalars, preference, provenance, outcome
    )


def _rewrite_parts(pair: tuple[Any, ...], rewrite: tuple[int, str, str]) -> _RowParts:
    """(rewrite ≻ the response it corrects): a ranked row of MAIN_SCHEMA, provenance "rewrite".

    No votes, scores or aspect ratings: nobody judged this pair; the pair's own row has them.
    """
    rewrite_id, text, based_on = rewrite
    original = pair[_RESPONSE_A] if based_on == "a" else pair[_RESPONSE_B]
    scalars: dict[str, Any] = {
        "pair_id": pair[_ID],
        "external_id": pair[_EXTERNAL_ID],
        "source": pair[_SOURCE],
        "chosen_side": "rewrite",
        "preference_strength": None,
        "provenance": "rewrite",
        "outcome": _PREFERENCE,
        "curation": pair[_CURATION],
        "source_label_flipped": False,
        "round": pair[_ROUND],
        "votes": _NOTHING,
        "disagreement": None,
        "agreement": None,
        "adjudication_decision": None,
        "adjudication_preference": None,
        "adjudication_note": None,
        "model_version": None,
        "model_p_chosen": None,
        "model_reward_chosen": None,
        "model_reward_rejected": None,
    }
    for name, position in _ATTRIBUTES:
        scalars[name] = pair[position]
    scalars["evidence_counts"] = _NO_EVIDENCE_COUNTS
    scalars["evidence_items"] = _NOTHING
    scalars["aspects"] = _NOTHING
    scalars["rewrite_id"] = rewrite_id
    scalars["rewrite_of"] = based_on
    scalars["consensus_posterior"] = None
    scalars["ranking_pair"] = None
    return _RowParts(
        True, pair[_CONVERSATION], text, original, scalars, None, "rewrite", is_rewrite=True
    )


def _ranking_row_parts(
    pair: tuple[Any, ...], context: _ChunkContext, model: ModelVersion | None, rule: str
) -> list[_RowParts] | None:
    """A ranking item's rows: its ranking expanded into chosen/rejected pairs by ``rule``,
    then its tied responses as unranked rows (preference 0). None when the item has no
    ranking yet (it is then exported as an unresolved A/B row of its first two responses).

    Model scores are per A/B pair, so expanded rows carry none."""
    provenance = pair[_PROVENANCE]
    ranking = pair[_CONSENSUS_RANKING] if provenance else pair[_SILVER_RANKING]
    if not ranking:
        return None
    shown_provenance = provenance or "silver"
    base = _row_parts(pair, context, None).scalars
    texts = [str(response["content"]) for response in pair[_RESPONSES]]
    rows = []
    for ranked in ranking_pairs(ranking, rule):
        values = {
            **base,
            "chosen_side": None,
            "preference_strength": 1,
            "provenance": shown_provenance,
            "ranking_pair": {
                "item": pair[_ID],
                "rule": rule,
                "first_index": ranked.chosen,
                "first_rank": ranked.chosen_rank,
                "second_index": ranked.rejected,
                "second_rank": ranked.rejected_rank,
            },
        }
        rows.append(
            _RowParts(
                True,
                pair[_CONVERSATION],
                texts[ranked.chosen],
                texts[ranked.rejected],
                _in_schema_order(MAIN_SCHEMA, values),
                1,
                shown_provenance,
            )
        )
    for tie in tied_pairs(ranking):
        values = {
            **base,
            "preference": 0,
            "provenance": shown_provenance,
            "ranking_pair": {
                "item": pair[_ID],
                "rule": rule,
                "first_index": tie.first,
                "first_rank": tie.rank,
                "second_index": tie.second,
                "second_rank": tie.rank,
            },
        }
        rows.append(
            _RowParts(
                False,
                pair[_CONVERSATION],
                texts[tie.first],
                texts[tie.second],
                _in_schema_order(UNRANKED_SCHEMA, values),
                0,
                shown_provenance,
            )
        )
    return rows


_MESSAGE_COLUMNS = frozenset({"chosen", "rejected", "response_a", "response_b"})


def _in_schema_order(schema: pa.Schema, values: dict[str, Any]) -> dict[str, Any]:
    return {name: values.get(name) for name in schema.names if name not in _MESSAGE_COLUMNS}


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


@dataclass
class ExportCounts:
    rows: int = 0
    ties: int = 0
    unresolved: int = 0
    unranked_written: int = 0
    both_bad: int = 0
    both_good: int = 0
    outcomes_written: int = 0
    rewrites: int = 0
    by_provenance: dict[str, int] = field(default_factory=dict)
    max_pair_id: int = 0
    # Pairs left out, by the provenance they would have had: contaminated, repeated.
    evaluation_prompts: int = 0
    contaminated: Counter[str] = field(default_factory=Counter)
    exact_duplicates: Counter[str] = field(default_factory=Counter)
    near_duplicates: Counter[str] = field(default_factory=Counter)


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
    index = (
        evaluation_index(campaign=campaign, set_names=filters.evaluation_sets or None)
        if filters.decontaminate
        else None
    )
    counts.evaluation_prompts = index.prompts if index is not None else 0
    if index is not None and not index.prompts:
        index = None
    finder = (
        DuplicateFinder(threshold=filters.near_duplicate_threshold)
        if filters.deduplicate
        else None
    )

    def chunks_with_context() -> Iterator[tuple[list[tuple[Any, ...]], _ChunkContext]]:
        for chunk in _chunks(queryset, chunk_size):
            yield chunk, _chunk_context(chunk, campaign, model, filters.rewrites)

    rule = campaign.ranking_expansion
    for chunk, context in _read_ahead(chunks_with_context):
        for pair in chunk:
            if index is not None or finder is not None:
                dropped = _left_out(pair, index, finder)
                if dropped is not None:
                    getattr(counts, dropped)[_effective_preference(pair)[1]] += 1
                    continue
            expanded = None
            if pair[_RESPONSES] is not None:
                expanded = _ranking_row_parts(pair, context, model, rule)
            for parts in expanded or (_row_parts(pair, context, model),):
                if parts.ranked:
                    counts.rows += 1
                    provenance_counts[parts.provenance] += 1
                elif parts.outcome == Outcome.BOTH_BAD:
                    counts.both_bad += 1
                elif parts.outcome == Outcome.BOTH_GOOD:
                    counts.both_good += 1
                elif parts.preference == 0:
                    counts.ties += 1
                else:
                    counts.unresolved += 1
                yield parts
            for rewrite in context.rewrites.get(pair[_ID], _NOTHING):
                counts.rows += 1
                counts.rewrites += 1
                provenance_counts["rewrite"] += 1
                yield _rewrite_parts(pair, rewrite)
        counts.max_pair_id = chunk[-1][_ID]
        counts.by_provenance = dict(sorted(provenance_counts.items()))


def _left_out(
    pair: tuple[Any, ...], index: EvaluationIndex | None, finder: DuplicateFinder | None
) -> str | None:
    """Which ``ExportCounts`` tally a pair goes to instead of the files, or None to write it.
    Pairs come in id order, so of two repeats the earlier one is written."""
    conversation = json.loads(pair[_CONVERSATION])
    if index is not None and index.contaminates(turn_texts(conversation)):
        return "contaminated"
    if finder is not None:
        repeat = finder.check(conversation, pair[_RESPONSE_A], pair[_RESPONSE_B])
        if repeat == EXACT:
            return "exact_duplicates"
        if repeat == NEAR:
            return "near_duplicates"
    return None


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
        for name in ("votes", "evidence_items", "aspects"):
            row[name] = list(row[name])
        row["evidence_counts"] = dict(row["evidence_counts"])
        yield parts.ranked, row
