"""A campaign's escalation rules: their names, defaults and the bounds ``Campaign.clean``
holds new saves to. Pure code (no Django), so the consensus maths (``reviewers.consensus``,
which reads the rules) imports it without settings."""

from __future__ import annotations

import math
from collections.abc import Callable

DEFAULT_ESCALATION_RULES = {
    "no_majority": True,
    "opposite_directions": True,
    "disagreement_threshold": 0.5,
    "flags": True,
    "retest_contradiction": True,
    "model_contradiction": True,
    "model_confidence": 0.9,
    "deadline_hours": 72,
}

# Every setting the code reads (reviewers.consensus, reviewers.services.consensus and
# .escalations, reviewers.agreement.rankings, the weighted consensus) and what it takes. The
# switches turn a rule off with false.
ESCALATION_RULE_SWITCHES = (
    "no_majority",
    "opposite_directions",
    "flags",
    "retest_contradiction",
    "model_contradiction",
)
# The numbers: finite, and within what their readers can use.
ESCALATION_RULE_NUMBERS: dict[str, tuple[Callable[[float], bool], str]] = {
    # A pair's (or ranking's) disagreement lies in [0, 1]; the rule fires above the threshold.
    "disagreement_threshold": (lambda value: 0.0 <= value <= 1.0, "a number from 0 to 1"),
    # The model contradicts a label when p(agree) < 1 - confidence: below 0.5 that would be a
    # model that agrees, and at 1 never (model_contradiction: false turns the rule off).
    "model_confidence": (lambda value: 0.5 <= value < 1.0, "a number from 0.5 to below 1"),
    # Hours an expert has to decide an escalation: at most a year.
    "deadline_hours": (lambda value: 0.0 < value <= 8760.0, "a number above 0, at most 8760"),
    # Dawid-Skene posteriors lie in [0, 1]; 0 turns the rule off.
    "posterior_threshold": (lambda value: 0.0 <= value <= 1.0, "a number from 0 to 1"),
}
ESCALATION_RULE_KEYS = (*ESCALATION_RULE_SWITCHES, *ESCALATION_RULE_NUMBERS)


def escalation_rule_problem(key: str, value: object) -> str | None:
    """Why ``value`` cannot be the escalation rule ``key`` (a sentence naming the key), or None
    when it can."""
    if key in ESCALATION_RULE_SWITCHES:
        return None if isinstance(value, bool) else f"{key} must be true or false."
    if key not in ESCALATION_RULE_NUMBERS:
        return f"{key} is not an escalation rule (they are: {', '.join(ESCALATION_RULE_KEYS)})."
    admits, wanted = ESCALATION_RULE_NUMBERS[key]
    if isinstance(value, int | float) and not isinstance(value, bool):
        try:
            number = float(value)
        except OverflowError:  # an integer beyond any float
            number = math.inf
        if math.isfinite(number) and admits(number):
            return None
    return f"{key} must be {wanted}."


def escalation_rules_problems(rules: object) -> list[str]:
    """What is wrong with a campaign's escalation rules: one sentence per wrong setting."""
    if not isinstance(rules, dict):
        return ['Escalation rules are an object of settings, e.g. {"deadline_hours": 48}.']
    found = (escalation_rule_problem(str(key), value) for key, value in rules.items())
    return [problem for problem in found if problem is not None]
