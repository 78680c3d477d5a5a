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

from annotation.escalation_rules import (
    DEFAULT_ESCALATION_RULES,
    ESCALATION_RULE_NUMBERS,
    ESCALATION_RULE_SWITCHES,
    escalation_rule_problem,
)

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


# A deadline stored before Campaign.clean bounded it reads as itself up to this (1,000 years),
# and a longer one as this: it never comes either way, and now + it still fits a datetime (the
# old reader's overflowed some 8,000 years out).
_LONGEST_STORED_DEADLINE_HOURS = 1000 * 8760.0


def escalation_rules_of(stored: object) -> dict[str, Any]:
    """A campaign's ``escalation_rules`` as their readers take them: the defaults
    (``DEFAULT_ESCALATION_RULES``) with each stored setting.

    ``Campaign.clean`` holds new saves to ``annotation.escalation_rules``; a campaign saved
    before may hold what it refuses, and keeps the meaning the readers gave it then (each took
    ``float()`` of a number, and a switch by its truth value): see ``_stored_number``. Only what
    they could not use at all (a word for a number, null, NaN, a list for the rules) reads as its
    default. Either way one warning per read names what clean would refuse; a label never
    fails for them. ``posterior_threshold`` has no default (absent: off). Unknown keys are left
    out.
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
                continue
            number = _stored_number(key, value)
            if number is None:
                ignored.append(f"{key}={value!r:.40} ignored, the default applies")
            else:
                rules[key] = number
                ignored.append(f"{key}={value!r:.40} read as {number:g}")
    if ignored:
        logger.warning("escalation rules the campaign cannot take: %s", "; ".join(ignored))
    return rules


def _stored_number(key: str, value: object) -> float | None:
    """What the readers before ``Campaign.clean``'s check made of a number it refuses, or None
    where they could not use it (the default then applies).

    They read ``float(value)``: a numeric string was its number, and a number out of clean's
    range did what it says (a threshold above 1 never fires, a negative one on any split; a model
    confidence of 1 or more never fires; a posterior threshold above 1 escalates every weighted
    verdict, 0 or below is off). A model confidence below 0.5 made the escalation raise
    InvalidDecision, and a deadline of 0 hours or fewer read as the default.
    """
    try:
        number = float(value)  # type: ignore[arg-type]  # any stored value
    except (TypeError, ValueError, OverflowError):
        return None
    if not math.isfinite(number):
        return None
    if key == "model_confidence" and number < 0.5:
        return None
    if key == "deadline_hours":
        if number <= 0.0:
            return None
        return min(number, _LONGEST_STORED_DEADLINE_HOURS)
    return number


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
