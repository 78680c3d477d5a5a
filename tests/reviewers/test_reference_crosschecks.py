"""Cross-checks of the agreement and interval maths against independent references: the
krippendorff package, and statsmodels values computed outside this project."""

from __future__ import annotations

import random

import krippendorff
import numpy as np

from reviewers.agreement.maths import (
    alpha_components,
    annotator_agreements,
    value_counts_from_reliability_data,
)
from reviewers.agreement.rankings import fractional_ranks, ranking_alpha
from reviewers.agreement.selectors import _coder_agreement
from scoring.evaluation.maths import proportion_difference, wilson_interval


def _random_ranking(k, rng):
    order = list(range(k))
    rng.shuffle(order)
    groups, i = [], 0
    while i < k:
        size = rng.choice([1, 1, 2])
        groups.append(sorted(order[i : i + size]))
        i += size
    return groups


def test_ranking_alpha_matches_krippendorff_package():
    rng = random.Random(3)
    for _ in range(200):
        coders = rng.randint(2, 4)
        items, columns = [], []
        for _item in range(rng.randint(1, 6)):
            k = rng.randint(2, 5)
            rankings = [_random_ranking(k, rng) for _ in range(rng.randint(1, coders))]
            items.append(rankings)
            for response in range(k):
                column = [np.nan] * coders
                for j, ranking in enumerate(rankings):
                    column[j] = fractional_ranks(ranking, k)[response]
                columns.append(column)
        data = np.array(columns).T
        domain = np.unique(data[~np.isnan(data)])
        try:
            ref = krippendorff.alpha(
                reliability_data=data, level_of_measurement="ordinal", value_domain=domain
            )
        except ValueError:
            ref = np.nan
        ours = ranking_alpha(items)
        assert np.isclose(ours, ref) or (np.isnan(ours) and np.isnan(ref))


def test_grouped_coder_agreement_equals_expanded_annotator_agreement():
    rng = np.random.default_rng(4)
    values = (-2, -1, 0, 1, 2)
    for _ in range(200):
        coders, units = int(rng.integers(2, 5)), int(rng.integers(1, 12))
        data = rng.choice([np.nan, -2, -1, 0, 1, 2], size=(coders, units))
        counts, _ = value_counts_from_reliability_data(data, values)
        for level in ("nominal", "ordinal", "interval"):
            totals = alpha_components(counts, None, values, level).value_totals
            expected = annotator_agreements(data, level, values, totals)
            for coder in range(coders):
                rows: dict[tuple[int, ...], int] = {}
                for unit in range(units):
                    if np.isnan(data[coder, unit]):
                        continue
                    key = (values.index(int(data[coder, unit])), *counts[unit])
                    rows[key] = rows.get(key, 0) + 1
                if not rows:
                    continue
                grouped = np.asarray([(*k, n) for k, n in rows.items()], dtype=np.int64)
                got, _ = _coder_agreement(grouped, values, level, totals)
                ref = expected[coder]
                assert np.isclose(got, ref) or (np.isnan(got) and np.isnan(ref))


def test_wilson_and_newcombe_match_statsmodels_values():
    # statsmodels 0.14 proportion_confint(method="wilson") / confint_proportions_2indep
    # (method="newcomb"), computed in a separate venv.
    assert np.allclose(wilson_interval(0, 5), (0.0, 0.43448246478317324))
    assert np.allclose(wilson_interval(3, 10), (0.10779126740630095, 0.6032218525388546))
    low, high = proportion_difference(3, 10, 1, 4)[1:]
    assert np.allclose((low, high), (-0.43874016667654303, 0.41568847370456763), atol=1e-9)
