"""One exported row before it is given a format: a pair's columns from its chunk's reads, a
rewrite's row, and a ranking item's expanded rows."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from annotation.models import Outcome, Pair
from scoring.datasets.export.filters import EVIDENCE_KINDS
from scoring.datasets.export.reading import (
    _ATTRIBUTES,
    _CONSENSUS,
    _CONSENSUS_RANKING,
    _CONVERSATION,
    _CURATION,
    _DISAGREEMENT,
    _EXTERNAL_ID,
    _GOLD_PREFERENCE,
    _ID,
    _IS_GOLD,
    _OUTCOME,
    _POSTERIOR,
    _PROVENANCE,
    _RESPONSE_A,
    _RESPONSE_B,
    _RESPONSES,
    _ROUND,
    _SILVER,
    _SILVER_RANKING,
    _SOURCE,
    _ChunkContext,
)
from scoring.datasets.export.schema import MAIN_SCHEMA, UNRANKED_SCHEMA, _in_schema_order
from scoring.loop.ranking_pairs import ranking_pairs, tied_pairs
from scoring.models import ModelVersion

_PREFERENCE = str(Outcome.PREFERENCE)


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


# Stays long: every column of a row set in schema order in one pass, the export's per-pair hot loop.
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
    if provenance in (Pair.Provenance.DISCARDED, Pair.Provenance.UNRESOLVED):
        return None  # no chosen side, whatever ranking a row from before still holds
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
            "ranking_pair": _ranking_pair_column(
                pair[_ID],
                rule,
                (ranked.chosen, ranked.chosen_rank),
                (ranked.rejected, ranked.rejected_rank),
            ),
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
            "ranking_pair": _ranking_pair_column(
                pair[_ID], rule, (tie.first, tie.rank), (tie.second, tie.rank)
            ),
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


def _ranking_pair_column(
    item: int, rule: str, first: tuple[int, int], second: tuple[int, int]
) -> dict[str, Any]:
    """The ``ranking_pair`` column: the item, the expansion rule, and the two responses'
    (index, rank)."""
    return {
        "item": item,
        "rule": rule,
        "first_index": first[0],
        "first_rank": first[1],
        "second_index": second[0],
        "second_rank": second[1],
    }
