"""K-wise rows (2 to 9 responses, ranked by annotators): native_kwise and ultrafeedback."""

from __future__ import annotations

from typing import Any

from annotation.importers.records import MAX_RESPONSES, MIN_RESPONSES, ImportLimits, PairRecord
from annotation.importers.row_fields import (
    SOURCE_MAX_CHARS,
    RowError,
    kwise_record,
    prompt_conversation,
    response_text,
    short_text,
    text_value,
    type_name,
)


def native_kwise_record(row: dict[str, Any], line: int, limits: ImportLimits) -> PairRecord:
    conversation = prompt_conversation(row, limits)
    responses = _kwise_responses(row["responses"], "responses", limits)
    silver = row.get("silver_ranking")
    silver_ranking = None if silver is None else _silver_ranking_value(silver, len(responses))
    return kwise_record(row, line, limits, conversation, responses, silver_ranking, "native_kwise")


def ultrafeedback_record(row: dict[str, Any], line: int, limits: ImportLimits) -> PairRecord:
    conversation = prompt_conversation(row, limits, prompt_keys=("instruction", "prompt"))
    completions = row["completions"]
    responses = _kwise_responses(completions, "completions", limits)
    scores: list[float] = []
    for item in completions:
        score = item.get("overall_score", item.get("rating"))
        if isinstance(score, bool) or not isinstance(score, int | float) or score != score:
            scores = []  # a missing or odd score anywhere: no silver ranking at all
            break
        scores.append(float(score))
    silver_ranking = _ranking_from_scores(scores) if scores else None
    return kwise_record(row, line, limits, conversation, responses, silver_ranking, "ultrafeedback")


def _kwise_responses(value: Any, field: str, limits: ImportLimits) -> list[dict[str, str]]:
    """2..MAX_RESPONSES items, each a string or {content, model} (``content_key`` for the text)."""
    if not isinstance(value, list):
        raise RowError(f"{field} must be a list of responses, got {type_name(value)}")
    if not MIN_RESPONSES <= len(value) <= MAX_RESPONSES:
        raise RowError(
            f"{field} must hold {MIN_RESPONSES} to {MAX_RESPONSES} responses, got {len(value)}"
        )
    content_key = "response" if field == "completions" else "content"
    responses = []
    for index, item in enumerate(value):
        where = f"{field}[{index}]"
        if isinstance(item, str) and field != "completions":
            responses.append({"content": text_value(item, where, limits), "model": ""})
            continue
        if type(item) is not dict:
            expected = "an object with response" if field == "completions" else "a string or "
            if field != "completions":
                expected += "an object with content"
            raise RowError(f"{where} must be {expected}, got {type_name(item)}")
        content = response_text(item.get(content_key), f"{where}.{content_key}", limits)
        model = short_text(item.get("model"), f"{where}.model", SOURCE_MAX_CHARS) or ""
        responses.append({"content": content, "model": model})
    first_seen: dict[str, int] = {}
    for index, response in enumerate(responses):
        earlier = first_seen.setdefault(response["content"], index)
        if earlier != index:
            raise RowError(f"{field}[{earlier}] and {field}[{index}] are identical")
    return responses


def _silver_ranking_value(value: Any, size: int) -> tuple[tuple[int, ...], ...]:
    if not isinstance(value, list) or not value or len(value) > size:
        raise RowError(f"silver_ranking must be a list of 1 to {size} groups of indices")
    seen: list[int] = []
    for group in value:
        if not isinstance(group, list) or not group:
            raise RowError("silver_ranking groups must be non-empty lists of indices")
        for index in group:
            if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < size:
                raise RowError(f"silver_ranking holds {index!r}, not an index below {size}")
        seen.extend(group)
    if sorted(seen) != list(range(size)):
        raise RowError("silver_ranking must name every response exactly once")
    return tuple(tuple(sorted(group)) for group in value)


def _ranking_from_scores(scores: list[float]) -> tuple[tuple[int, ...], ...]:
    """Higher score first; equal scores share a group."""
    by_score: dict[float, list[int]] = {}
    for index, score in enumerate(scores):
        by_score.setdefault(score, []).append(index)
    return tuple(tuple(by_score[score]) for score in sorted(by_score, reverse=True))
