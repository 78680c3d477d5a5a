"""Export rows: every pair of the export's selection as one row (or several, for ranking items
and rewrites), left out when contaminated or repeated, counted by kind.

The schemas live in ``schema``, the chunked reads in ``reading`` and a row's columns in
``row_parts``."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from annotation.models import Campaign, Outcome
from scoring.datasets.curation.decontamination import (
    EvaluationIndex,
    evaluation_index,
    turn_texts,
)
from scoring.datasets.curation.near_duplicates import EXACT, NEAR, DuplicateFinder
from scoring.datasets.export.filters import (
    DEFAULT_CHUNK_SIZE,
    ExportFilters,
    export_querysets,
)
from scoring.datasets.export.reading import (
    _CONVERSATION,
    _ID,
    _RESPONSE_A,
    _RESPONSE_B,
    _RESPONSES,
    _chunk_context,
    _ChunkContext,
    _chunks,
    _read_ahead,
)
from scoring.datasets.export.row_parts import (
    _NOTHING,
    _effective_preference,
    _ranking_row_parts,
    _rewrite_parts,
    _row_parts,
    _RowParts,
)
from scoring.models import ModelVersion
from scoring.selectors import active_model_version


@dataclass
class ExportCounts:
    # Pairs of the selection read so far, written or left out (what progress counts).
    pairs_read: int = 0
    rows: int = 0
    ties: int = 0
    unresolved: int = 0
    unranked_written: int = 0
    both_bad: int = 0
    both_good: int = 0
    outcomes_written: int = 0
    rewrites: int = 0
    # Stored rewrites that were their original unchanged (stored before such were refused).
    unchanged_rewrites: int = 0
    by_provenance: dict[str, int] = field(default_factory=dict)
    max_pair_id: int = 0
    # Pairs left out, by the provenance they would have had: contaminated, repeated.
    evaluation_prompts: int = 0
    contaminated: Counter[str] = field(default_factory=Counter)
    exact_duplicates: Counter[str] = field(default_factory=Counter)
    near_duplicates: Counter[str] = field(default_factory=Counter)


def _export_parts(
    *,
    campaign: Campaign,
    filters: ExportFilters,
    chunk_size: int,
    counts: ExportCounts,
    model: ModelVersion | None,
    on_chunk: Callable[[], None] | None = None,
) -> Iterator[_RowParts]:
    """The rows' parts, scored by ``model`` (the campaign's active version, read once by the
    caller: the loop may activate another while an export runs, and the manifest names the one
    the rows carry). ``on_chunk`` is called once each chunk's rows are taken (its pairs are in
    ``counts.pairs_read``), whether or not any of them was written."""
    provenance_counts: Counter[str] = Counter()
    # The verified pass, then the silver one (``export_conditions``): every gold or
    # human-verified pair is in the duplicate finder before any silver pair is checked, so a
    # silver repeat of it is the one left out, whichever id is lower.
    passes = export_querysets(campaign=campaign, filters=filters)
    index = (
        evaluation_index(campaign=campaign, set_names=filters.evaluation_sets or None)
        if filters.decontaminate
        else None
    )
    counts.evaluation_prompts = index.prompts if index is not None else 0
    if index is not None and not index.prompts:
        index = None
    finder = (
        DuplicateFinder(threshold=filters.near_duplicate_threshold) if filters.deduplicate else None
    )

    def chunks_with_context() -> Iterator[tuple[list[tuple[Any, ...]], _ChunkContext]]:
        for queryset in passes:
            for chunk in _chunks(queryset, chunk_size):
                yield chunk, _chunk_context(chunk, campaign, model, filters.rewrites)

    rule = campaign.ranking_expansion
    for chunk, context in _read_ahead(chunks_with_context):
        counts.unchanged_rewrites += context.unchanged_rewrites
        for pair in chunk:
            counts.pairs_read += 1
            expanded = None
            if pair[_RESPONSES] is not None:
                expanded = _ranking_row_parts(pair, context, model, rule)
            rows = expanded or [_row_parts(pair, context, model)]
            if index is not None or finder is not None:
                # Its rewrites' rows are written whether or not its own row is.
                written = bool(context.rewrites.get(pair[_ID])) or any(
                    _goes_to_a_file(parts, filters) for parts in rows
                )
                dropped = _left_out(pair, index, finder, written=written)
                if dropped is not None:
                    getattr(counts, dropped)[_effective_preference(pair)[1]] += 1
                    continue
            for parts in rows:
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
        # Each pass reads in id order, the silver one after the verified one: the highest id
        # read so far, whichever pass read it.
        counts.max_pair_id = max(counts.max_pair_id, chunk[-1][_ID])
        counts.by_provenance = dict(sorted(provenance_counts.items()))
        if on_chunk is not None:
            on_chunk()


def _goes_to_a_file(parts: _RowParts, filters: ExportFilters) -> bool:
    """Whether export_write writes the row (ties and outcomes may be left out)."""
    if parts.ranked:
        return True
    if parts.outcome != "preference":
        return filters.outcomes == "separate"
    return filters.ties == "separate"


def _pair_responses(pair: tuple[Any, ...]) -> list[str]:
    """Every response of a ranking item (two items may share their first two), else A and B."""
    responses = pair[_RESPONSES]
    if responses and len(responses) >= 2:
        return [str(response["content"]) for response in responses]
    return [pair[_RESPONSE_A], pair[_RESPONSE_B]]


def _left_out(
    pair: tuple[Any, ...],
    index: EvaluationIndex | None,
    finder: DuplicateFinder | None,
    *,
    written: bool,
) -> str | None:
    """Which ``ExportCounts`` tally a pair goes to instead of the files, or None to write it.
    Verified pairs (gold, voted, decided) come first in id order, then silver ones in id order,
    so of two repeats a verified one is written rather than an unverified silver copy, and
    otherwise the earlier one. Only a pair with a row in the files (``written``) is
    remembered: a repeat of a tie the export leaves out is no repeat of anything exported."""
    conversation = json.loads(pair[_CONVERSATION])
    if index is not None and index.contaminates(turn_texts(conversation)):
        return "contaminated"
    if finder is not None:
        repeat = finder.check(conversation, *_pair_responses(pair), remember=written)
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
        campaign=campaign,
        filters=filters,
        chunk_size=chunk_size,
        counts=counts,
        model=active_model_version(campaign=campaign),
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
