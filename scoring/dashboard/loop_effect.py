"""The loop's effect, measured on the campaign's own data: per round, the prioritised slice
against the random one (``Pair.selection``, see ``scoring.loop.rounds``).

For each slice of a round:

* **hit rate**: the share of its pairs, once humans settled them with a side (complete, or
  resolved by an expert: an escalated pair's stored majority is provisional), that the model
  which chose the round had mispredicted (``Round.chosen_by_version``: the version the loop
  job prioritised with, else the version active when the round opened; for rounds opened
  before that was recorded, the newest loop version registered before the round opened and
  that scored the pair). A ranking item (K responses, a consensus ranking) is judged as
  prioritisation and training read it: mispredicted when the model misorders, or ties, any
  pair its consensus ranking expands into by the campaign's rule, from the reward of every
  response its score holds (``scoring.loop.prioritisation.ranking_agreement``: the lowest p
  over those pairs, a miss at p <= 0.5 as for an A/B pair, by prioritisation's own rule,
  ``scoring.loop.retrieval.is_mispredicted``), so an item whose humans tied
  responses 0 and 1 counts too, and one whose every response they tied picks no side. Raising
  it is what the error-driven queue is for. 95% Wilson interval; the difference between the
  slices has Newcombe's interval, once each slice has at least ``BOOTSTRAP_MIN_N`` scored
  pairs (as the disagreement's difference needs).
* **human disagreement**: the mean of ``Pair.disagreement`` (0: the votes agreed) over its
  labelled pairs, escalated ones included, with a bootstrap interval, and the bootstrap
  interval of the difference.

And for the round as a whole, the change in held-out accuracy from the version before to the
version trained once the round closed (both slices train that one model, so this change is
not split by slice), with Newcombe's interval. That version is the newest loop version naming
the round or, when none does (the loop job that closed the round failed or was cancelled
before registering one, and the next retrain closed nothing), the first loop version created
once the round closed that names no round. A difference whose interval contains 0 is
reported in a plain sentence as within noise.
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any

from annotation.models import Campaign, Outcome, Pair, Round
from scoring.evaluation.maths import (
    BOOTSTRAP_MIN_N,
    bootstrap_mean_difference,
    bootstrap_mean_interval,
    proportion_difference,
    wilson_interval,
)
from scoring.loop.prioritisation import ranking_agreement
from scoring.loop.ranking_pairs import ranking_pairs
from scoring.loop.retrieval import agreement_of, is_mispredicted
from scoring.models import ModelVersion, PairScore

SLICES = (Pair.Selection.PRIORITY, Pair.Selection.RANDOM)
# An escalated pair stores its labels' majority too, but only provisionally: the hit rate waits
# for the expert (resolved), as the training data does for its adjudicated verdict.
SETTLED = (Pair.Status.COMPLETE, Pair.Status.RESOLVED)
# Verdicts that pick no side (a later preference on them is not a human's choice).
NO_SIDE = (Outcome.BOTH_BAD, Outcome.BOTH_GOOD)
# The side a ranking item's score is judged by: its score is the lowest p(chosen better) over
# the pairs its consensus ranking expands into, so the humans' side is the chosen one (+1).
RANKED = 1

# (pair id, the settled side the score is judged by or None, disagreement) of one slice's pair.
Row = tuple[int, int | None, float | None]


def _slice_figures(rows: list[Row], scores: dict[int, float]) -> dict[str, Any]:
    """rows: (pair id, settled side or None, disagreement) of one slice: an A/B pair's side is
    its settled preference, judged against p(A better); a ranking item's is ``RANKED``,
    judged against its ranking agreement (``_previous_scores``). The disagreement counts every
    labelled pair, escalated ones included (it is why they were)."""
    judged = [(pair_id, preference) for pair_id, preference, _ in rows if preference]
    scored = [(pair_id, preference) for pair_id, preference in judged if pair_id in scores]
    # Prioritisation's rule, on the same p: the slices are judged as the loop chose them.
    misses = sum(
        1 for pair_id, side in scored if is_mispredicted(agreement_of(scores[pair_id], side))
    )
    low, high = wilson_interval(misses, len(scored))
    disagreements = [value for _, _, value in rows if value is not None]
    mean, d_low, d_high = bootstrap_mean_interval(disagreements)
    return {
        "pairs": len(rows),
        "judged": len(judged),
        "scored": len(scored),
        "mispredicted": misses,
        "hit_rate": misses / len(scored) if scored else None,
        "hit_rate_ci": (low, high) if scored else None,
        "disagreement": mean if disagreements else None,
        # None below BOOTSTRAP_MIN_N labelled pairs (the bootstrap says nothing that small).
        "disagreement_ci": None if math.isnan(d_low) else (d_low, d_high),
        "disagreement_n": len(disagreements),
        "disagreements": disagreements,
    }


def _difference_sentence(
    what: str, difference: tuple[float, float, float] | None, *, unit: str = "", at_least: int = 1
) -> str:
    if difference is None:
        needed = f" (at least {at_least} in each)" if at_least > 1 else ""
        return f"{what}: not enough labelled pairs in both slices to compare yet{needed}."
    value, low, high = difference
    span = f"{value:+.3f}{unit} (95% interval {low:+.3f} to {high:+.3f})"
    if low <= 0 <= high:
        return f"{what}: the prioritised and random slices differ by {span}, within noise."
    direction = "higher" if value > 0 else "lower"
    return f"{what}: the prioritised slice is {direction} than the random one by {span}."


def _previous_scores(round_: Round, pair_ids: set[int], *, rule: str) -> dict[int, float]:
    """The score each pair is judged by, from the model that chose the round
    (``Round.chosen_by_version``: a loop job's scoring version, else the version active when it
    opened; after a rollback not the newest one). For rounds recorded before that field, the
    newest loop version registered before the round opened that scored the pair.

    An A/B pair's score is p(A better). A ranking item's is the lowest p(chosen better) over
    the pairs its consensus ranking expands into by ``rule``, from every response's reward
    (prioritisation's ``ranking_agreement``); an item with no such pair whose responses have a
    reward (a score from before every reward was kept, on responses 0 and 1 that humans tied)
    has none."""
    best: dict[int, tuple[int, float | None]] = {}
    # Read by the round (its pairs' index), not by a list of ids: a round of 100,000 judged
    # pairs made a statement of 100,000 parameters. Other pairs' rows are passed over here.
    scores = PairScore.objects.filter(pair__round=round_)
    if round_.chosen_by_version is not None:
        scores = scores.filter(
            model_version__campaign_id=round_.campaign_id,
            model_version__number=round_.chosen_by_version,
        )
    else:
        scores = scores.filter(
            model_version__kind=ModelVersion.Kind.LOOP,
            model_version__created_at__lt=round_.opened_at,
        )
    rows = scores.values_list(
        "pair_id",
        "model_version__number",
        "p_a_better",
        "reward_a",
        "reward_b",
        "rewards",
        "pair__consensus_ranking",
    )
    for pair_id, number, p, reward_a, reward_b, rewards, ranking in rows.iterator(chunk_size=5000):
        if pair_id not in pair_ids or (pair_id in best and number <= best[pair_id][0]):
            continue
        judged_by: float | None = p
        if ranking is not None:
            judged_by = ranking_agreement(
                rewards=rewards or [reward_a, reward_b], ranking=ranking, rule=rule
            )
        best[pair_id] = (number, judged_by)
    # A NaN score (a checkpoint's non-finite reward) decides nothing: prioritisation leaves
    # such a pair out, and so does the hit rate (``p <= 0.5`` false would count it a hit).
    return {pair_id: p for pair_id, (_, p) in best.items() if p is not None and math.isfinite(p)}


def _round_rows(round_: Round, *, rule: str) -> dict[str, list[Row]]:
    """Each slice's rows of ``round_``, read for this round alone (the pool and the other
    rounds' pairs are never held). A pair settled with a side: an A/B pair whose settled
    preference is not a tie, or a ranking item whose consensus ranking expands into at least
    one chosen/rejected pair by ``rule`` (responses 0 and 1 tied or not)."""
    rows: dict[str, list[Row]] = defaultdict(list)
    for pair_id, selection, preference, disagreement, status, outcome, ranking in (
        Pair.objects.filter(round=round_, selection__in=SLICES)
        .order_by("id")
        .values_list(
            "id",
            "selection",
            "consensus_preference",
            "disagreement",
            "status",
            "consensus_outcome",
            "consensus_ranking",
        )
        .iterator(chunk_size=5000)
    ):
        side = None
        if status in SETTLED and outcome not in NO_SIDE:
            if ranking is None:
                side = preference or None
            elif ranking_pairs(ranking, rule):
                side = RANKED
        rows[selection].append((pair_id, side, disagreement))
    return rows


def _heldout_change(
    trained: ModelVersion | None, previous: ModelVersion | None
) -> dict[str, Any] | None:
    if trained is None or previous is None:
        return None
    if trained.heldout_accuracy is None or previous.heldout_accuracy is None:
        return None
    n_new = int(((trained.metrics or {}).get("heldout") or {}).get("n") or 0)
    n_old = int(((previous.metrics or {}).get("heldout") or {}).get("n") or 0)
    if not n_new or not n_old:
        return None
    change = proportion_difference(
        round(trained.heldout_accuracy * n_new),
        n_new,
        round(previous.heldout_accuracy * n_old),
        n_old,
    )
    value, low, high = change
    sentence = (
        f"Held-out accuracy v{previous.number} → v{trained.number}: {value:+.3f} "
        f"(95% interval {low:+.3f} to {high:+.3f})"
        + (", within noise." if low <= 0 <= high else ".")
    )
    return {
        "from_version": previous.number,
        "to_version": trained.number,
        "change": value,
        "ci": (low, high),
        "sentence": sentence,
    }


def _trained_after(round_: Round, versions: list[ModelVersion]) -> ModelVersion | None:
    """The loop version trained once ``round_`` closed: the newest naming it, else (its loop
    job failed or was cancelled after closing it, and the next retrain, closing nothing,
    registered a version naming no round) the first created at or after its close that names
    it or no round. ``versions`` in number order."""
    named = next((v for v in reversed(versions) if v.round_id == round_.pk), None)
    if named is not None or round_.closed_at is None:
        return named
    return next(
        (
            v
            for v in versions
            if v.round_id in (None, round_.pk) and v.created_at >= round_.closed_at
        ),
        None,
    )


def loop_effect(*, campaign: Campaign) -> dict[str, Any]:
    """Per round, both slices' figures and the sentences comparing them (module docstring).
    Reads one round's pairs at a time."""
    versions = list(
        ModelVersion.objects.filter(campaign=campaign, kind=ModelVersion.Kind.LOOP).order_by(
            "number"
        )
    )
    rule = campaign.ranking_expansion
    rounds = []
    for round_ in Round.objects.filter(campaign=campaign).order_by("number"):
        slices = _round_rows(round_, rule=rule)
        if not slices:
            continue
        pair_ids = {row[0] for rows in slices.values() for row in rows if row[1]}
        scores = _previous_scores(round_, pair_ids, rule=rule)
        figures = {name: _slice_figures(slices.get(name, []), scores) for name in SLICES}
        prioritised, random_ = figures[Pair.Selection.PRIORITY], figures[Pair.Selection.RANDOM]
        hit_difference = None
        # As for the disagreement: no comparison below BOOTSTRAP_MIN_N scored pairs a side.
        if min(prioritised["scored"], random_["scored"]) >= BOOTSTRAP_MIN_N:
            hit_difference = proportion_difference(
                prioritised["mispredicted"],
                prioritised["scored"],
                random_["mispredicted"],
                random_["scored"],
            )
        disagreement_difference = bootstrap_mean_difference(
            prioritised["disagreements"], random_["disagreements"]
        )
        trained = _trained_after(round_, versions)
        previous = (
            next((v for v in reversed(versions) if v.number < trained.number), None)
            if trained is not None
            else None
        )
        for name in SLICES:
            figures[name].pop("disagreements")
        rounds.append(
            {
                "number": round_.number,
                "status": round_.status,
                "slices": {str(name): figures[name] for name in SLICES},
                "hit_rate_difference": hit_difference,
                "hit_rate_sentence": _difference_sentence(
                    "Hit rate", hit_difference, at_least=BOOTSTRAP_MIN_N
                ),
                "disagreement_difference": disagreement_difference,
                "disagreement_sentence": _difference_sentence(
                    "Human disagreement", disagreement_difference, at_least=BOOTSTRAP_MIN_N
                ),
                "heldout": _heldout_change(trained, previous),
            }
        )
    return {"rounds": rounds, "random_slice_share": campaign.random_slice_share}
