"""Intervals from samples too small to have one: the percentile bootstrap of one value, or of a
few equal ones, is zero-width, which the loop-effect panel read as a certain difference and
the agreement page showed as an exact alpha."""

from __future__ import annotations

import math

from reviewers.agreement.maths import alpha_components, alpha_confidence_interval
from scoring.dashboard.loop_effect import _difference_sentence
from scoring.evaluation.maths import (
    BOOTSTRAP_MIN_N,
    bootstrap_mean_difference,
    bootstrap_mean_interval,
)


def test_one_pair_per_slice_makes_no_claim():
    difference = bootstrap_mean_difference([0.5], [0.0])
    assert difference is None
    sentence = _difference_sentence("Human disagreement", difference, at_least=BOOTSTRAP_MIN_N)
    assert "not enough labelled pairs" in sentence and "at least 10 in each" in sentence


def test_two_unanimous_random_pairs_are_no_evidence_of_a_difference():
    # 18 prioritised pairs against 2 random ones, both unanimous: an exact permutation test
    # gives p = C(11, 2) / C(20, 2) = 0.29; the bootstrap said "higher by +0.073 (+0.031 to
    # +0.118)".
    prioritised = [0.0] * 9 + [0.0625] * 5 + [0.25] * 4
    assert math.comb(11, 2) / math.comb(20, 2) > 0.05
    difference = bootstrap_mean_difference(prioritised, [0.0, 0.0])
    sentence = _difference_sentence("Human disagreement", difference, at_least=BOOTSTRAP_MIN_N)
    assert "higher" not in sentence and "not enough labelled pairs" in sentence


def test_a_mean_of_too_few_values_has_no_interval_but_enough_do():
    mean, low, high = bootstrap_mean_interval([0.25])
    assert mean == 0.25 and math.isnan(low) and math.isnan(high)
    assert bootstrap_mean_interval([])[0] == 0.0
    values = [0.0, 0.25] * (BOOTSTRAP_MIN_N // 2)
    mean, low, high = bootstrap_mean_interval(values)
    assert low < mean < high
    assert bootstrap_mean_difference(values, values) is not None


def test_alpha_from_a_single_pairable_pair_has_no_interval():
    counts = [[0, 1, 1]]  # one pair: A better and a tie, on the three-point scale
    components = alpha_components(counts, None, [-1, 0, 1], "ordinal")
    assert components.undefined_reason is None and components.pairable_units == 1
    low, high = alpha_confidence_interval(counts, [-1, 0, 1], "ordinal", seed=0)
    assert math.isnan(low) and math.isnan(high)
    two = [[0, 1, 1], [0, 0, 2]]
    low, high = alpha_confidence_interval(two, [-1, 0, 1], "ordinal", seed=0)
    assert math.isfinite(low) and math.isfinite(high)
