from __future__ import annotations

import math

import krippendorff
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from reviewers.agreement.maths import (
    alpha_components,
    alpha_confidence_interval,
    alpha_from_pattern_histogram,
    alpha_from_value_counts,
    annotator_agreement,
    annotator_agreements,
    krippendorff_alpha,
    unit_disagreement,
    value_counts_from_reliability_data,
)

LEVELS = ("nominal", "ordinal", "interval", "ratio")
NAN = np.nan

# Krippendorff (2011), "Computing Krippendorff's Alpha-Reliability", section E:
# 4 observers x 12 units, values 1..5, with missing data.
KRIPPENDORFF_2011 = [
    [1, 2, 3, 3, 2, 1, 4, 1, 2, NAN, NAN, NAN],
    [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, NAN, 3],
    [NAN, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, NAN],
    [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, NAN],
]
# The Wikipedia worked example, also used by the krippendorff package's own tests.
WIKIPEDIA_EXAMPLE = [
    [NAN, NAN, NAN, NAN, NAN, 3, 4, 1, 2, 1, 1, 3, 3, NAN, 3],
    [1, NAN, 2, 1, 3, 3, 4, 3, NAN, NAN, NAN, NAN, NAN, NAN, NAN],
    [NAN, NAN, 2, 1, 3, 4, 4, NAN, 2, 1, 1, 3, 3, NAN, 4],
]

# Per test, not a global profile: other test modules keep their own hypothesis settings.
property_test = settings(deadline=None, max_examples=80)


def reliability_matrices(min_coders: int = 2, max_coders: int = 5, max_units: int = 25):
    """Coders x units matrices of the labels 0..4 with missing entries (NaN)."""
    shapes = st.tuples(st.integers(min_coders, max_coders), st.integers(1, max_units))
    labels = st.sampled_from([NAN, NAN, 0.0, 1.0, 2.0, 3.0, 4.0])
    return arrays(np.float64, shapes, elements=labels)


def has_pairable_variation(data: np.ndarray) -> bool:
    """Whether units with two or more labels hold at least two distinct labels overall."""
    pairable_units = (~np.isnan(data)).sum(axis=0) >= 2
    pairable_labels = data[:, pairable_units]
    return len(np.unique(pairable_labels[~np.isnan(pairable_labels)])) >= 2


def pattern_histogram(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    patterns, multiplicities = np.unique(counts, axis=0, return_counts=True)
    return patterns, multiplicities


def agreeing_annotators(pairs: int, seed: int) -> np.ndarray:
    """Three annotators on a 5-point scale who mostly agree with a hidden preference."""
    rng = np.random.default_rng(seed)
    truth = rng.integers(-2, 3, size=pairs)
    noise = rng.integers(-2, 3, size=(3, pairs))
    labels = np.where(rng.random((3, pairs)) < 0.7, truth, noise).astype(np.float64)
    labels[rng.random((3, pairs)) < 0.1] = NAN
    return labels


@pytest.mark.parametrize(
    ("level", "expected"),
    [("nominal", 0.743), ("ordinal", 0.815), ("interval", 0.849), ("ratio", 0.797)],
)
def test_it_reproduces_krippendorffs_2011_worked_example(level, expected):
    assert round(krippendorff_alpha(KRIPPENDORFF_2011, level), 3) == expected


def test_it_reproduces_krippendorffs_2011_binary_example():
    observers = [[0, 1, 0, 0, 0, 0, 0, 0, 1, 0], [1, 1, 1, 0, 0, 1, 0, 0, 0, 0]]

    assert round(krippendorff_alpha(observers, "nominal"), 3) == 0.095


def test_it_reproduces_krippendorffs_2011_two_coder_nominal_example():
    coders = [list("aabbdcccedda"), list("babbbcccedd") + ["d"]]

    assert round(krippendorff_alpha(coders, "nominal"), 3) == 0.692


@pytest.mark.parametrize(("level", "expected"), [("nominal", 0.691358), ("interval", 0.810845)])
def test_it_reproduces_the_wikipedia_example(level, expected):
    assert round(krippendorff_alpha(WIKIPEDIA_EXAMPLE, level), 6) == expected


def test_it_reproduces_the_example_from_value_counts():
    counts, values = value_counts_from_reliability_data(WIKIPEDIA_EXAMPLE)

    assert round(alpha_from_value_counts(counts, values, "nominal"), 6) == 0.691358


def test_it_accepts_string_labels_with_none_or_nan_missing():
    data = [["pos", "neg", "neu", None], ["pos", "neg", "neu", "pos"], ["pos", "neg", "pos", NAN]]
    expected = krippendorff.alpha(
        [["pos", "neg", "neu", NAN], ["pos", "neg", "neu", "pos"], ["pos", "neg", "pos", NAN]],
        level_of_measurement="nominal",
    )

    assert krippendorff_alpha(data, "nominal") == pytest.approx(expected, abs=1e-12)


def test_it_ranks_ordinal_string_labels_by_the_given_domain():
    names = {1: "very low", 2: "low", 3: "mid", 4: "high", 5: "very high"}
    data = [[None if math.isnan(v) else names[v] for v in row] for row in KRIPPENDORFF_2011]

    alpha = krippendorff_alpha(data, "ordinal", value_domain=list(names.values()))

    assert round(alpha, 3) == 0.815


def test_it_treats_two_zeros_as_agreement_on_a_ratio_scale():
    assert krippendorff_alpha([[0, 1, 2], [0, 1, 2]], "ratio") == 1.0


def test_it_returns_nan_when_no_unit_has_two_labels():
    data = [[1, NAN, NAN], [NAN, 2, NAN], [NAN, NAN, 3]]
    counts, values = value_counts_from_reliability_data(data)

    components = alpha_components(counts, None, values, "nominal")

    assert math.isnan(krippendorff_alpha(data))
    assert math.isnan(components.alpha)
    assert components.undefined_reason == "no_pairable_units"
    assert components.pairable_units == 0


def test_it_returns_nan_when_every_pairable_label_is_the_same():
    # The lone 3 sits on an unpairable unit, so the pairable data has no variation.
    data = [[1, 1, 3], [1, 1, NAN]]
    counts, values = value_counts_from_reliability_data(data, values=[1, 2, 3])

    for level in LEVELS:
        components = alpha_components(counts, None, values, level)
        assert math.isnan(components.alpha)
        assert components.undefined_reason == "no_variation"
        assert components.observed_disagreement == 0


def test_it_returns_nan_for_empty_data():
    assert math.isnan(krippendorff_alpha(np.empty((3, 0))))
    assert math.isnan(alpha_from_pattern_histogram(np.empty((0, 5)), np.empty(0)))


def test_it_reports_no_undefined_reason_when_alpha_is_defined():
    counts, values = value_counts_from_reliability_data(KRIPPENDORFF_2011)

    components = alpha_components(counts, None, values, "interval")

    assert components.undefined_reason is None
    assert components.pairable_units == 11
    assert components.pairable_values == 40
    assert components.alpha == pytest.approx(
        1 - components.observed_disagreement / components.expected_disagreement
    )


def test_it_rejects_an_unknown_level_of_measurement():
    with pytest.raises(ValueError, match="level_of_measurement"):
        krippendorff_alpha(KRIPPENDORFF_2011, "circular")


def test_it_rejects_labels_outside_the_value_domain():
    with pytest.raises(ValueError, match="outside value_domain"):
        krippendorff_alpha([[1, 2], [1, 3]], value_domain=[1, 2])


def test_it_rejects_negative_values_on_a_ratio_scale():
    with pytest.raises(ValueError, match="non-negative"):
        krippendorff_alpha([[-2, 2], [-2, 1]], "ratio")


def test_it_rejects_negative_or_fractional_counts():
    with pytest.raises(ValueError, match="negative"):
        alpha_from_value_counts([[2, -1], [1, 1]])
    with pytest.raises(ValueError, match="whole"):
        alpha_from_value_counts([[1.5, 1], [1, 1]])


def test_it_rejects_string_values_for_interval_data():
    with pytest.raises(ValueError, match="numeric"):
        krippendorff_alpha([["a", "b"], ["a", "b"]], "interval")


@property_test
@given(
    labels=arrays(np.float64, st.integers(2, 30), elements=st.sampled_from([0.0, 1.0, 2.0, 4.0])),
    coders=st.integers(2, 5),
    level=st.sampled_from(LEVELS),
)
def test_it_gives_one_for_perfect_agreement(labels, coders, level):
    if len(np.unique(labels)) < 2:
        labels[0] = 0.0 if labels[1] else 1.0
    data = np.tile(labels, (coders, 1))

    assert krippendorff_alpha(data, level) == pytest.approx(1.0, abs=1e-12)


@property_test
@given(data=reliability_matrices(), permutation=st.permutations([0.0, 1.0, 2.0, 3.0, 4.0]))
def test_it_is_invariant_to_relabelling_nominal_values(data, permutation):
    relabelled = np.full_like(data, NAN)
    present = ~np.isnan(data)
    relabelled[present] = np.asarray(permutation)[data[present].astype(int)]

    original = krippendorff_alpha(data, "nominal")
    renamed = krippendorff_alpha(relabelled, "nominal")

    assert original == pytest.approx(renamed, abs=1e-12, nan_ok=True)


@property_test
@given(data=reliability_matrices())
def test_it_is_invariant_to_monotone_relabelling_of_ordinal_values(data):
    stretched = np.where(np.isnan(data), NAN, data**3 + 7)

    original = krippendorff_alpha(data, "ordinal")
    stretched_alpha = krippendorff_alpha(stretched, "ordinal")

    assert original == pytest.approx(stretched_alpha, abs=1e-12, nan_ok=True)


@property_test
@given(data=reliability_matrices(), level=st.sampled_from(LEVELS))
def test_the_fast_paths_equal_the_matrix_path(data, level):
    counts, values = value_counts_from_reliability_data(data)
    patterns, multiplicities = pattern_histogram(counts)

    from_matrix = krippendorff_alpha(data, level)
    from_counts = alpha_from_value_counts(counts, values, level)
    from_histogram = alpha_from_pattern_histogram(patterns, multiplicities, values, level)

    assert from_counts == pytest.approx(from_matrix, abs=1e-12, nan_ok=True)
    assert from_histogram == pytest.approx(from_matrix, abs=1e-12, nan_ok=True)


@property_test
@given(data=reliability_matrices(), level=st.sampled_from(LEVELS))
def test_it_agrees_with_the_krippendorff_package(data, level):
    ours = krippendorff_alpha(data, level)

    if has_pairable_variation(data):
        theirs = krippendorff.alpha(reliability_data=data, level_of_measurement=level)
        assert ours == pytest.approx(theirs, abs=1e-9)
    else:
        assert math.isnan(ours)


@settings(deadline=None, max_examples=25)
@given(
    data=arrays(
        np.float64,
        st.tuples(st.integers(6, 12), st.integers(1, 40)),
        elements=st.sampled_from([NAN, *map(float, range(10))]),
    ),
    level=st.sampled_from(LEVELS),
)
def test_it_agrees_with_the_package_when_count_rows_are_too_varied_to_group(data, level):
    # Many coders and values make the key space of count rows too large to histogram.
    counts, values = value_counts_from_reliability_data(data)
    ours = alpha_from_value_counts(counts, values, level)

    if has_pairable_variation(data):
        theirs = krippendorff.alpha(reliability_data=data, level_of_measurement=level)
        assert ours == pytest.approx(theirs, abs=1e-9)
        assert krippendorff_alpha(data, level) == pytest.approx(theirs, abs=1e-9)
    else:
        assert math.isnan(ours)


def test_a_histogram_of_subsets_sums_to_the_histogram_of_their_union():
    first = agreeing_annotators(400, seed=1)
    second = agreeing_annotators(300, seed=2)
    values = [-2, -1, 0, 1, 2]
    first_counts, _ = value_counts_from_reliability_data(first, values)
    second_counts, _ = value_counts_from_reliability_data(second, values)
    patterns = np.unique(np.vstack([first_counts, second_counts]), axis=0)

    def multiplicities(counts: np.ndarray) -> np.ndarray:
        return (counts[:, np.newaxis, :] == patterns[np.newaxis]).all(axis=2).sum(axis=0)

    summed = multiplicities(first_counts) + multiplicities(second_counts)
    union = krippendorff_alpha(np.hstack([first, second]), "ordinal", value_domain=values)

    assert alpha_from_pattern_histogram(patterns, summed, values, "ordinal") == pytest.approx(
        union, abs=1e-12
    )


def test_the_bootstrap_interval_contains_the_point_estimate():
    counts, values = value_counts_from_reliability_data(agreeing_annotators(500, seed=3))

    for level in LEVELS[:3]:
        alpha = alpha_from_value_counts(counts, values, level)
        low, high = alpha_confidence_interval(counts, values, level, n_boot=400, seed=7)
        assert low < alpha < high


def test_the_bootstrap_interval_narrows_with_more_data():
    counts, values = value_counts_from_reliability_data(agreeing_annotators(400, seed=4))
    patterns, multiplicities = pattern_histogram(counts)

    small_low, small_high = alpha_confidence_interval(
        patterns, values, "ordinal", multiplicities=multiplicities, seed=11
    )
    big_low, big_high = alpha_confidence_interval(
        patterns, values, "ordinal", multiplicities=multiplicities * 16, seed=11
    )

    # Sixteen times the units should roughly quarter the width.
    assert big_high - big_low < 0.4 * (small_high - small_low)


def test_the_bootstrap_interval_is_the_same_from_counts_or_their_histogram():
    counts, values = value_counts_from_reliability_data(agreeing_annotators(300, seed=5))
    patterns, multiplicities = pattern_histogram(counts)

    from_counts = alpha_confidence_interval(counts, values, "nominal", n_boot=200, seed=3)
    from_histogram = alpha_confidence_interval(
        patterns, values, "nominal", multiplicities=multiplicities, n_boot=200, seed=3
    )

    assert from_counts == pytest.approx(from_histogram, abs=1e-12)


def test_the_bootstrap_interval_is_nan_when_alpha_is_undefined():
    counts, values = value_counts_from_reliability_data([[1, NAN], [NAN, 2]])

    low, high = alpha_confidence_interval(counts, values, "nominal", n_boot=50, seed=1)

    assert math.isnan(low)
    assert math.isnan(high)


def test_the_bootstrap_rejects_a_confidence_outside_zero_and_one():
    with pytest.raises(ValueError, match="confidence"):
        alpha_confidence_interval([[2, 0], [0, 2]], confidence=95)


@property_test
@given(data=reliability_matrices(), level=st.sampled_from(LEVELS))
def test_unit_disagreement_shares_sum_to_one(data, level):
    counts, values = value_counts_from_reliability_data(data)

    shares = unit_disagreement(counts, values, level)

    assert shares.shape == (data.shape[1],)
    assert (shares >= 0).all()
    if alpha_components(counts, None, values, level).observed_disagreement > 0:
        assert shares.sum() == pytest.approx(1.0, abs=1e-12)
    else:
        assert (shares == 0).all()


def test_unit_disagreement_ranks_the_most_disputed_pair_first():
    data = [[2, 1, -2, 0, 1], [2, 1, 2, 0, 2], [2, 1, -1, NAN, 1]]
    counts, values = value_counts_from_reliability_data(data)

    shares = unit_disagreement(counts, values, "interval")

    assert np.argmax(shares) == 2
    assert shares[[0, 1, 3]].tolist() == [0.0, 0.0, 0.0]
    assert 0 < shares[4] < shares[2]


def test_unit_disagreement_matches_the_observed_disagreement_of_each_unit():
    counts, values = value_counts_from_reliability_data(KRIPPENDORFF_2011)

    shares = unit_disagreement(counts, values, "nominal")

    # Only units 2, 6 and 8 hold different values, each from four coders (pair weight 1/3).
    disputed = np.flatnonzero(shares)
    assert disputed.tolist() == [1, 5, 7]
    # Unit 6 has four distinct values: 12 disagreeing ordered pairs, weight 4 in all.
    # Units 2 and 8 have one dissenter: 6 disagreeing ordered pairs, weight 2 each.
    assert shares[[1, 5, 7]] == pytest.approx(np.array([2, 4, 2]) / 8)


@property_test
@given(data=reliability_matrices(), level=st.sampled_from(LEVELS))
def test_annotator_agreements_average_to_alpha(data, level):
    counts, values = value_counts_from_reliability_data(data)
    alpha = alpha_from_value_counts(counts, values, level)
    present = ~np.isnan(data)
    pairable_units = present.sum(axis=0) >= 2
    pairable_values_per_coder = (present & pairable_units).sum(axis=1)

    agreements = annotator_agreements(data, level)

    if math.isnan(alpha):
        assert np.isnan(agreements).all()
    else:
        coders = pairable_values_per_coder > 0
        weighted = np.average(agreements[coders], weights=pairable_values_per_coder[coders])
        assert weighted == pytest.approx(alpha, abs=1e-9)
        assert np.isnan(agreements[~coders]).all()


def test_a_careless_annotator_scores_below_the_others():
    data = agreeing_annotators(300, seed=6)
    careless = np.random.default_rng(0).integers(-2, 3, size=data.shape[1])
    data = np.vstack([data, careless])

    agreements = annotator_agreements(data, "interval", value_domain=[-2, -1, 0, 1, 2])

    assert agreements[3] < 0.1
    assert agreements[:3].min() > agreements[3] + 0.3


def test_annotator_agreement_is_nan_for_an_annotator_without_co_labels():
    data = [[1, 2, 3, NAN], [1, 2, 2, NAN], [NAN, NAN, NAN, 1]]

    assert math.isnan(annotator_agreement(data, 2))
    assert annotator_agreement(data, 0) == pytest.approx(annotator_agreement(data, 1))


def test_annotator_agreement_on_their_own_units_uses_the_campaign_reference():
    data = agreeing_annotators(600, seed=8)
    values = [-2, -1, 0, 1, 2]
    counts, _ = value_counts_from_reliability_data(data, values)
    campaign = alpha_components(counts, None, values, "ordinal")
    own_units = ~np.isnan(data[1])
    # The API passes only the annotator's units and the co-labels on them.
    own_slice = data[:, own_units]

    over_campaign = annotator_agreement(data, 1, "ordinal", value_domain=values)
    over_own_units = annotator_agreement(
        own_slice, 1, "ordinal", value_domain=values, reference_value_totals=campaign.value_totals
    )

    assert over_own_units == pytest.approx(over_campaign, abs=1e-12)
