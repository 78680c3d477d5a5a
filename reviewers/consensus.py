"""Consensus of a pair's labels: pure functions, no ORM.

Two notions of "how disputed" a pair is, for two different jobs:

* ``pair_disagreement`` (stored on the pair and its escalation) is the pair's own observed
  disagreement: the mean squared difference between two of its labels, over all pairs of
  labels, divided by the largest squared difference the scale allows. It depends on nothing
  but the pair, so a campaign's ``disagreement_threshold`` means the same whatever else has been
  labelled, and the expert queue can sort by it in SQL. On a binary scale it is the share of
  label pairs that disagree. With three labels it tops out at 2/3 (two labels at one end, one
  at the other); with two labels at 1.
* ``reviewers.agreement.maths.unit_disagreement`` is a pair's share of the observed disagreement
  of a population (a round) at the campaign's level of measurement: the pairs that cost that round
  the most agreement. ``reviewers.agreement.selectors`` uses it to list a round's worst pairs.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from itertools import combinations
from typing import Any

from annotation.models.campaigns import (
    ESCALATION_RULE_NUMBERS,
    ESCALATION_RULE_SWITCHES,
    escalation_rule_problem,
)
from annotation.models.choices import DEFAULT_ESCALATION_RULES

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Consensus:
    preference: int | None  # canonical, None when there is no majority
    provenance: str  # "unanimous", "majority" or "unresolved"
    disagreement: float  # see pair_disagreement
    opposite_directions: bool
    # "both_bad"/"both_good" when more than half of the labels said so (preference is then 0),
    # else "preference". Values of annotation.models.Outcome.
    outcome: str = "preference"


def direction(preference: int) -> int:
    """1 when A is preferred, -1 when B is, 0 for a tie."""
    return (preference > 0) - (preference < 0)


def round_half_away(value: float) -> int:
    return int(math.copysign(math.floor(abs(value) + 0.5), value))


def pair_disagreement(preferences: list[int], *, max_value: int = 2) -> float:
    """Mean squared difference over all pairs of labels, divided by the largest one possible.

    0 when all labels are equal; 1 only when two labels sit at opposite ends of the scale.
    ``max_value`` is the scale's largest preference (2 on five-point, 1 otherwise).
    """
    if len(preferences) < 2:
        return 0.0
    squared = [(a - b) ** 2 for a, b in combinations(preferences, 2)]
    return sum(squared) / len(squared) / float((2 * max_value) ** 2)


def consensus_outcome(outcomes: Sequence[str]) -> str:
    """The outcome more than half of the labels gave (both_bad, both_good), else "preference"."""
    for outcome in ("both_bad", "both_good"):
        if sum(1 for value in outcomes if value == outcome) * 2 > len(outcomes):
            return outcome
    return "preference"


def consensus_of(
    preferences: list[int], *, max_value: int = 2, outcomes: Sequence[str] | None = None
) -> Consensus:
    """Majority direction (A, tie or B) with the strength averaged over the majority.

    A direction needs more than half of the labels; otherwise the pair is unresolved. The
    averaged strength is rounded half away from zero, so "A much better" and "A better" from two
    annotators give "A much better".

    ``outcomes`` (one per preference): "both bad" and "both good" labels carry preference 0, so
    they vote for "neither is better"; when more than half of all labels said the same one of
    them, the consensus (preference 0) takes that outcome instead of a plain tie.
    """
    if not preferences:
        return Consensus(None, "unresolved", 0.0, False)
    consensus = _preference_consensus(preferences, max_value=max_value)
    outcome = consensus_outcome(outcomes or ())
    if outcome != "preference" and consensus.preference == 0:
        return replace(consensus, outcome=outcome)
    return consensus


def _preference_consensus(preferences: list[int], *, max_value: int) -> Consensus:
    directions = [direction(p) for p in preferences]
    disagreement = pair_disagreement(preferences, max_value=max_value)
    opposite = 1 in directions and -1 in directions
    for side in (1, 0, -1):
        voters = [p for p, d in zip(preferences, directions, strict=True) if d == side]
        if len(voters) * 2 > len(preferences):
            strength = round_half_away(sum(voters) / len(voters))
            # Unanimous means every label picked this direction; strengths may differ.
            provenance = "unanimous" if len(voters) == len(preferences) else "majority"
            return Consensus(strength, provenance, disagreement, opposite)
    return Consensus(None, "unresolved", disagreement, opposite)


def escalation_rules_of(stored: object) -> dict[str, Any]:
    """A campaign's ``escalation_rules`` as their readers take them: the defaults
    (``DEFAULT_ESCALATION_RULES``) with each stored setting that ``Campaign.clean`` accepts.

    A campaign saved before the admin checked its rules may hold what clean refuses (a word
    for a threshold, a list for the rules). Such a number keeps its default and a switch is read
    by its truth value, as it always was (turning an existing campaign's rules on or off
    silently would be worse), each with one warning per read: a label never fails for them.
    ``posterior_threshold`` has no default (absent: off). Unknown keys are left out.
    """
    rules: dict[str, Any] = dict(DEFAULT_ESCALATION_RULES)
    if not isinstance(stored, Mapping):
        logger.warning("escalation rules %.80r are not an object; the defaults apply", stored)
        return rules
    ignored: list[str] = []
    for key, value in stored.items():
        if key in ESCALATION_RULE_SWITCHES:
            rules[key] = bool(value)
            if not isinstance(value, bool):
                ignored.append(f"{key}={value!r:.40} read as {bool(value)}")
        elif key in ESCALATION_RULE_NUMBERS:
            if escalation_rule_problem(key, value) is None:
                rules[key] = float(value)
            else:
                ignored.append(f"{key}={value!r:.40} ignored, the default applies")
    if ignored:
        logger.warning("escalation rules the campaign cannot take: %s", "; ".join(ignored))
    return rules


def escalation_reasons(
    consensus: Consensus,
    *,
    flags: Iterable[str],
    rules: object,
    both_bad_to_expert: bool = False,
) -> list[tuple[str, str]]:
    """The campaign's escalation rules that fire for a pair's consensus: (reason, detail).

    Rules (each on unless ``rules`` sets it false): ``no_majority``; ``opposite_directions``
    when someone chose A, someone B, and ``disagreement > disagreement_threshold`` (0.5);
    ``flags`` when any label carries a flag (unsafe, broken, cannot judge); ``both_bad`` when
    the consensus is "both bad" and ``both_bad_to_expert`` (the campaign routes such pairs to an
    expert). Reasons are the values of ``reviewers.models.Escalation.Reason``. ``rules`` is the
    campaign's stored ``escalation_rules``, read by ``escalation_rules_of``.
    """
    rule = escalation_rules_of(rules)
    reasons: list[tuple[str, str]] = []
    if consensus.outcome == "both_bad" and both_bad_to_expert:
        reasons.append(("both_bad", "most annotators found both responses bad"))
    if consensus.preference is None and rule["no_majority"]:
        reasons.append(("no_majority", "labels split with no majority direction"))
    threshold = float(rule["disagreement_threshold"])
    if (
        rule["opposite_directions"]
        and consensus.opposite_directions
        and consensus.disagreement > threshold
    ):
        reasons.append(
            (
                "opposite_directions",
                f"A and B both chosen; disagreement {consensus.disagreement:.2f} > {threshold:g}",
            )
        )
    flag_names = sorted(set(flags))
    if flag_names and rule["flags"]:
        reasons.append(("flagged", "flags: " + ", ".join(flag_names)))
    return reasons
