"""Krippendorff's alpha and the agreement figures built on it, as pure numpy.

Everything here takes plain arrays and returns plain numbers; nothing touches Django or the ORM
(see STYLE.md §7). The definitions follow Krippendorff, "Computing Krippendorff's
Alpha-Reliability" (2011):

    alpha = 1 - D_o / D_e

where ``D_o`` is the observed disagreement between the values that coders gave to the same unit
and ``D_e`` the disagreement expected when values are paired at random. Both are read off the
*coincidence matrix* ``o[c, k]``: in a unit with ``m_u`` values, each ordered pair of values
from two different coders adds ``1 / (m_u - 1)``. Units with fewer than two values are not
pairable and contribute nothing.

Three input shapes, from the most general to the fastest:

* reliability data: coders x units, ``None``/NaN where a coder did not label a unit (the
  convention of the ``krippendorff`` PyPI package);
* value counts: units x values, how many coders gave each value to each unit;
* a pattern histogram: the distinct rows of the value counts and how many units have each row.
  With three annotators and five values there are only a few dozen patterns, so the database
  can produce the histogram with one ``GROUP BY`` and subsets (a round, a category) are sums of
  histograms.

Undefined results are NaN, never an exception: alpha is undefined when no unit has two or more
values ("not enough overlapping labels") and when every pairable value is the same ("no
variation": ``D_e = 0``). ``AlphaComponents.undefined_reason`` says which; the API should send
``null`` and the pages should show "—" with that reason.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, cast

import numpy as np
from numpy.typing import ArrayLike, NDArray

from reviewers.agreement.inputs import (
    _OUTSIDE_DOMAIN,
    _SMALL_DOMAIN,
    LevelOfMeasurement,
    _as_count_matrix,
    _as_multiplicities,
    _as_values,
    _coded_reliability_data,
    _codes,
    _labels_and_domain,
)

__all__ = [
    "AlphaComponents",
    "LevelOfMeasurement",
    "alpha_components",
    "alpha_confidence_interval",
    "alpha_from_pattern_histogram",
    "alpha_from_value_counts",
    "annotator_agreement",
    "annotator_agreement_from_patterns",
    "annotator_agreements",
    "krippendorff_alpha",
    "unit_disagreement",
    "value_counts_from_reliability_data",
]


UndefinedReason = Literal["no_pairable_units", "no_variation"]


# Bound on the (bootstrap replicates x distinct patterns) block drawn at once, to cap memory.
_BOOTSTRAP_BLOCK_CELLS = 1 << 22
# Largest key space (radix ** values) for which count rows are grouped with np.bincount.
_MAX_PATTERN_KEYS = 1 << 20


@dataclass(frozen=True)
class AlphaComponents:
    """Alpha together with the quantities it is made of.

    ``value_totals`` (``n_c``: pairable values per value) is what the expected disagreement and
    the ordinal distances depend on; pass it to ``annotator_agreements`` to judge an annotator
    against a whole campaign while giving only their own units.
    """

    alpha: float
    observed_disagreement: float
    expected_disagreement: float
    pairable_units: int
    pairable_values: int
    value_totals: NDArray[np.float64]

    @property
    def undefined_reason(self) -> UndefinedReason | None:
        """Why alpha is NaN, or None when it is defined."""
        if self.pairable_values == 0:
            return "no_pairable_units"
        if self.expected_disagreement == 0:
            return "no_variation"
        return None


def krippendorff_alpha(
    reliability_data: ArrayLike,
    level_of_measurement: LevelOfMeasurement = "nominal",
    value_domain: ArrayLike | None = None,
) -> float:
    """Krippendorff's alpha of a coders x units matrix (``None``/NaN = not labelled).

    ``value_domain`` lists the possible values; for ``ordinal`` its order is the rank order
    (lowest first). By default it is the sorted distinct values in the data. Returns NaN when
    alpha is undefined (see the module docstring).
    """
    counts, values = value_counts_from_reliability_data(reliability_data, value_domain)
    return alpha_from_value_counts(counts, values, level_of_measurement)


def alpha_from_value_counts(
    counts: ArrayLike,
    values: ArrayLike | None = None,
    level_of_measurement: LevelOfMeasurement = "nominal",
) -> float:
    """Alpha from a units x values matrix of counts, without any coders x units matrix.

    ``values[j]`` is the value that column ``j`` counts (default ``0..V-1``); for ``ordinal``
    the column order is the rank order.
    """
    return alpha_components(counts, None, values, level_of_measurement).alpha


def alpha_from_pattern_histogram(
    patterns: ArrayLike,
    multiplicities: ArrayLike,
    values: ArrayLike | None = None,
    level_of_measurement: LevelOfMeasurement = "nominal",
) -> float:
    """Alpha from distinct count rows (``patterns``) and how many units have each row."""
    return alpha_components(patterns, multiplicities, values, level_of_measurement).alpha


def alpha_components(
    counts: ArrayLike,
    multiplicities: ArrayLike | None = None,
    values: ArrayLike | None = None,
    level_of_measurement: LevelOfMeasurement = "nominal",
) -> AlphaComponents:
    """Alpha, D_o, D_e and the pairable totals of value counts or of a pattern histogram.

    ``counts`` is units x values; with ``multiplicities`` its rows are distinct patterns and
    ``multiplicities[i]`` units have row ``i``.
    """
    count_matrix, unit_weights, value_array = _weighted_inputs(
        counts, multiplicities, values, level_of_measurement
    )

    labels_per_unit = count_matrix.sum(axis=1)
    pairable = labels_per_unit >= 2
    coincidences = _coincidence_matrix(count_matrix, unit_weights, labels_per_unit)
    value_totals = coincidences.sum(axis=0)
    pairable_values = float(value_totals.sum())
    distances = _squared_distances(value_array, value_totals, level_of_measurement)

    if pairable_values == 0:
        observed = expected = alpha = float("nan")
    else:
        observed = float((coincidences * distances).sum() / pairable_values)
        expected = float(
            value_totals @ distances @ value_totals / (pairable_values * (pairable_values - 1))
        )
        alpha = 1.0 - observed / expected if expected > 0 else float("nan")
    return AlphaComponents(
        alpha=alpha,
        observed_disagreement=observed,
        expected_disagreement=expected,
        pairable_units=int(unit_weights[pairable].sum()),
        pairable_values=round(pairable_values),
        value_totals=value_totals,
    )


def value_counts_from_reliability_data(
    reliability_data: ArrayLike, values: ArrayLike | None = None
) -> tuple[NDArray[np.int64], NDArray[np.generic]]:
    """Convert coders x units data into (units x values counts, values).

    ``values`` defaults to the sorted distinct labels present; given, it fixes the column order
    and any label outside it raises ``ValueError``. Missing labels are ``None`` or NaN. Numeric
    data takes a fully vectorised path; other labels (strings) work but are slower.
    """
    labels, missing, domain = _labels_and_domain(reliability_data, values)
    if labels.dtype.kind != "O" and 0 < len(domain) <= _SMALL_DOMAIN:
        # One comparison pass per value beats coding each label, for a handful of values.
        counts = np.empty((labels.shape[1], len(domain)), dtype=np.int64)
        for index, value in enumerate(domain):
            np.sum(labels == value, axis=0, out=counts[:, index])
        if counts.sum() != missing.size - np.count_nonzero(missing):
            raise ValueError(_OUTSIDE_DOMAIN)
        return counts, domain
    codes = _codes(labels, missing, domain)
    return _counts_from_codes(codes, len(domain)), domain


def unit_disagreement(
    counts: ArrayLike,
    values: ArrayLike | None = None,
    level_of_measurement: LevelOfMeasurement = "nominal",
) -> NDArray[np.float64]:
    """Each unit's share of the total observed disagreement, for ranking disputes.

    Shares sum to 1 when there is any disagreement; with none at all every share is 0. Units
    with fewer than two values have share 0. Ordinal distances use the value totals of
    ``counts`` itself, so pass the whole population you want to rank within.
    """
    count_matrix = _as_count_matrix(counts)
    value_array = _as_values(values, count_matrix.shape[1], level_of_measurement)
    labels_per_unit = count_matrix.sum(axis=1)
    pair_weights = _pair_weights(labels_per_unit)
    # int64 counts times float64 weights: float64 (numpy's stubs cannot tell).
    value_totals = cast(
        "NDArray[np.float64]", count_matrix.T @ pair_weights.astype(bool).astype(np.float64)
    )
    distances = _squared_distances(value_array, value_totals, level_of_measurement)
    float_counts = count_matrix.astype(np.float64)
    # Own pairs drop out because a value's distance to itself is 0.
    per_unit = ((float_counts @ distances) * float_counts).sum(axis=1) * pair_weights
    total = per_unit.sum()
    share: NDArray[np.float64] = per_unit / total if total > 0 else np.zeros_like(per_unit)
    return share


def annotator_agreements(
    reliability_data: ArrayLike,
    level_of_measurement: LevelOfMeasurement = "nominal",
    value_domain: ArrayLike | None = None,
    reference_value_totals: ArrayLike | None = None,
) -> NDArray[np.float64]:
    """An alpha-like agreement of each coder (row) with the other coders.

    Definition: ``1 - D_o(i) / D_e``. ``D_o(i)`` is alpha's observed disagreement restricted to
    coder ``i``'s values: over the pairable units ``i`` labelled, the mean of
    ``sum_j delta(v_i, v_j) / (m_u - 1)`` (``j`` the unit's other values), which is exactly the
    weight each pair has in alpha's coincidence matrix. ``D_e`` is the expected disagreement of
    the whole data, or of ``reference_value_totals`` (``AlphaComponents.value_totals`` of a
    campaign) when given, so an annotator can be judged against the campaign while passing only
    their units and the co-labels on them.

    With the default reference, the average of the coders' agreements weighted by their number
    of pairable values equals alpha. NaN for a coder with no pairable value, and for everyone
    when ``D_e`` is 0 or undefined.
    """
    codes, value_array = _coded_reliability_data(reliability_data, value_domain)
    _as_values(value_array, len(value_array), level_of_measurement)
    counts = _counts_from_codes(codes, len(value_array))
    pair_weights = _pair_weights(counts.sum(axis=1))
    if reference_value_totals is None:
        value_totals = cast(
            "NDArray[np.float64]", counts.T @ pair_weights.astype(bool).astype(np.float64)
        )
    else:
        value_totals = np.asarray(reference_value_totals, dtype=np.float64)
        if value_totals.shape != (len(value_array),):
            raise ValueError("reference_value_totals needs one total per value in the domain.")
    distances = _squared_distances(value_array, value_totals, level_of_measurement)
    expected = _expected_disagreement(value_totals, distances)
    if not expected > 0:
        return np.full(codes.shape[0], np.nan)

    # Distance from each possible value to all values in the unit, per pair weight.
    unit_distances = (counts.astype(np.float64) @ distances) * pair_weights[:, np.newaxis]
    coder_units = (codes >= 0) & (pair_weights > 0)[np.newaxis, :]
    gathered = unit_distances[np.arange(codes.shape[1])[np.newaxis, :], np.maximum(codes, 0)]
    coder_pairable_values = coder_units.sum(axis=1)
    coder_disagreement_sum = np.where(coder_units, gathered, 0.0).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        observed = coder_disagreement_sum / coder_pairable_values
    return np.where(coder_pairable_values > 0, 1.0 - observed / expected, np.nan)


def annotator_agreement(
    reliability_data: ArrayLike,
    annotator: int,
    level_of_measurement: LevelOfMeasurement = "nominal",
    value_domain: ArrayLike | None = None,
    reference_value_totals: ArrayLike | None = None,
) -> float:
    """Agreement of the coder in row ``annotator`` with the others; see ``annotator_agreements``."""
    agreements = annotator_agreements(
        reliability_data, level_of_measurement, value_domain, reference_value_totals
    )
    return float(agreements[annotator])


def annotator_agreement_from_patterns(
    own_values: ArrayLike,
    patterns: ArrayLike,
    multiplicities: ArrayLike,
    values: ArrayLike,
    level_of_measurement: LevelOfMeasurement,
    reference_value_totals: ArrayLike,
) -> float:
    """``annotator_agreement`` of one coder from their units grouped by what the figure reads of
    each: row ``i`` is ``multiplicities[i]`` units where the coder gave ``values[own_values[i]]``
    and the unit's values (the coder's included) counted ``patterns[i]`` (one column per value).

    Each row's ``D_o`` term is ``sum_k patterns[i, k] * delta(own, k) / (m_u - 1)`` (the own
    value's distance to itself is 0), so the figure costs O(rows x values^2) and never builds
    a coders x units matrix. NaN when no row is pairable or the reference's ``D_e`` is not
    positive.
    """
    own = np.asarray(own_values, dtype=np.intp)
    count_matrix = _as_count_matrix(patterns)
    weights = _as_multiplicities(multiplicities, count_matrix.shape[0])
    value_array = _as_values(values, count_matrix.shape[1], level_of_measurement)
    value_totals = np.asarray(reference_value_totals, dtype=np.float64)
    if value_totals.shape != (len(value_array),) or own.shape != weights.shape:
        raise ValueError("one own value per row and one reference total per value are needed.")
    distances = _squared_distances(value_array, value_totals, level_of_measurement)
    expected = _expected_disagreement(value_totals, distances)
    pair_weights = _pair_weights(count_matrix.sum(axis=1))
    keep = (pair_weights > 0) & (weights > 0)
    if not expected > 0 or not keep.any():
        return float("nan")
    rows = np.flatnonzero(keep)
    per_row = (count_matrix[rows].astype(np.float64) @ distances)[
        np.arange(len(rows)), own[rows]
    ] * pair_weights[rows]
    observed = float(np.average(per_row, weights=weights[rows]))
    return 1.0 - observed / expected


def alpha_confidence_interval(
    counts: ArrayLike,
    values: ArrayLike | None = None,
    level_of_measurement: LevelOfMeasurement = "nominal",
    *,
    multiplicities: ArrayLike | None = None,
    n_boot: int = 1000,
    confidence: float = 0.95,
    seed: int | np.random.Generator | None = None,
) -> tuple[float, float]:
    """Percentile bootstrap interval for alpha, resampling units (pairs) with replacement.

    ``counts`` is units x values, or distinct patterns when ``multiplicities`` is given. Units
    are resampled whole because the labels on one pair are not independent; this is not the
    Hayes & Krippendorff (2007) scheme, which resamples pairable values. Only pairable units are
    resampled (the others never change alpha). Resampling n units is a multinomial draw over
    the distinct patterns, so each replicate costs O(patterns x values^2), not O(units).
    Replicates where alpha is undefined (no variation drawn) are dropped. Returns
    ``(nan, nan)`` when alpha itself is undefined.
    """
    if n_boot < 1:
        raise ValueError("n_boot must be at least 1.")
    if not 0 < confidence < 1:
        raise ValueError("confidence must be between 0 and 1.")
    count_matrix, unit_weights, value_array = _weighted_inputs(
        counts, multiplicities, values, level_of_measurement
    )
    patterns, pattern_counts = _pairable_pattern_histogram(count_matrix, unit_weights)
    total_units = int(pattern_counts.sum())
    if total_units < 2:  # resampling one unit gives it back every time: a zero-width interval
        return float("nan"), float("nan")

    value_count = count_matrix.shape[1]
    float_patterns = patterns.astype(np.float64)
    per_unit_coincidences = _pattern_coincidences(float_patterns)

    rng = np.random.default_rng(seed)
    probabilities = pattern_counts / total_units
    block = max(1, min(n_boot, _BOOTSTRAP_BLOCK_CELLS // max(1, len(patterns))))
    replicates: list[NDArray[np.float64]] = []
    for start in range(0, n_boot, block):
        draws = rng.multinomial(total_units, probabilities, size=min(block, n_boot - start))
        draws = draws.astype(np.float64)
        coincidences = (draws @ per_unit_coincidences).reshape(-1, value_count, value_count)
        value_totals = draws @ float_patterns
        replicates.append(
            _batched_alpha(coincidences, value_totals, value_array, level_of_measurement)
        )
    alphas = np.concatenate(replicates)
    alphas = alphas[np.isfinite(alphas)]
    if alphas.size == 0:
        return float("nan"), float("nan")
    tail = (1.0 - confidence) / 2
    low, high = np.quantile(alphas, [tail, 1.0 - tail])
    return float(low), float(high)


def _pattern_coincidences(patterns: NDArray[np.float64]) -> NDArray[np.float64]:
    """Each pattern's coincidence matrix (values x values, flattened to one row): a unit's
    ordered pairs of labels, weighted 1 / (labels - 1) as in alpha's coincidence table."""
    value_count = patterns.shape[1]
    labels_per_pattern = patterns.sum(axis=1)
    per_unit_coincidences: NDArray[np.float64] = (
        patterns[:, :, np.newaxis] * patterns[:, np.newaxis, :]
        - patterns[:, :, np.newaxis] * np.eye(value_count)
    ) / (labels_per_pattern - 1)[:, np.newaxis, np.newaxis]
    return per_unit_coincidences.reshape(len(patterns), -1)


def _batched_alpha(
    coincidences: NDArray[np.float64],
    value_totals: NDArray[np.float64],
    values: NDArray[np.generic],
    level: LevelOfMeasurement,
) -> NDArray[np.float64]:
    """Alpha for a stack of coincidence matrices (replicates x V x V)."""
    distances = _squared_distances(values, value_totals, level)
    pairable_values = value_totals.sum(axis=-1)
    disagreement = (coincidences * distances).sum(axis=(-2, -1))
    distances = np.broadcast_to(distances, coincidences.shape)
    chance = np.einsum("bi,bij,bj->b", value_totals, distances, value_totals)
    with np.errstate(invalid="ignore", divide="ignore"):
        alphas = 1.0 - (pairable_values - 1) * disagreement / chance
    return np.where(chance > 0, alphas, np.nan)


def _coincidence_matrix(
    counts: NDArray[np.int64],
    unit_weights: NDArray[np.float64],
    labels_per_unit: NDArray[np.int64],
) -> NDArray[np.float64]:
    """Krippendorff's o[c, k], summed over units with the given multiplicities."""
    weights = unit_weights * _pair_weights(labels_per_unit)
    weighted = counts * weights[:, np.newaxis]
    # Subtracting the diagonal removes each value's pairing with itself.
    return weighted.T @ counts - np.diag(weighted.sum(axis=0))


def _pair_weights(labels_per_unit: NDArray[np.int64]) -> NDArray[np.float64]:
    """1 / (m_u - 1) for pairable units, 0 for units with fewer than two values."""
    pairable = labels_per_unit >= 2
    weights = np.zeros(labels_per_unit.shape, dtype=np.float64)
    weights[pairable] = 1.0 / (labels_per_unit[pairable] - 1)
    return weights


def _expected_disagreement(
    value_totals: NDArray[np.float64], distances: NDArray[np.float64]
) -> float:
    pairable_values = value_totals.sum()
    if pairable_values < 2:
        return float("nan")
    return float(
        value_totals @ distances @ value_totals / (pairable_values * (pairable_values - 1))
    )


def _squared_distances(
    values: NDArray[np.generic], value_totals: NDArray[np.float64], level: LevelOfMeasurement
) -> NDArray[np.float64]:
    """delta^2[c, k] for each level; ``value_totals`` may be stacked (B x V -> B x V x V)."""
    value_count = len(values)
    if level == "nominal":
        return 1.0 - np.eye(value_count)
    if level == "ordinal":
        # Sum of n_g for g between c and k inclusive, minus half of each end's own total.
        cumulative = np.cumsum(value_totals, axis=-1)
        lower = np.minimum.outer(np.arange(value_count), np.arange(value_count))
        upper = np.maximum.outer(np.arange(value_count), np.arange(value_count))
        between = cumulative[..., upper] - cumulative[..., lower] + value_totals[..., lower]
        ends = (value_totals[..., :, np.newaxis] + value_totals[..., np.newaxis, :]) / 2
        return (between - ends) ** 2
    numeric = values.astype(np.float64)
    difference = numeric[:, np.newaxis] - numeric[np.newaxis, :]
    if level == "interval":
        return difference**2
    total = numeric[:, np.newaxis] + numeric[np.newaxis, :]
    ratio = np.divide(difference, total, out=np.zeros_like(difference), where=total != 0)
    return ratio**2


def _pairable_pattern_histogram(
    counts: NDArray[np.int64], unit_weights: NDArray[np.float64]
) -> tuple[NDArray[np.int64], NDArray[np.float64]]:
    """Distinct pairable rows of ``counts`` and their total multiplicity."""
    keep = (counts.sum(axis=1) >= 2) & (unit_weights > 0)
    patterns, inverse = np.unique(counts[keep], axis=0, return_inverse=True)
    totals = np.bincount(inverse.reshape(-1), weights=unit_weights[keep], minlength=len(patterns))
    return cast("NDArray[np.int64]", patterns), totals.astype(np.float64, copy=False)


def _counts_from_codes(codes: NDArray[np.intp], value_count: int) -> NDArray[np.int64]:
    """Units x values counts from coders x units value indices (-1 = missing)."""
    unit_count = codes.shape[1]
    cells = unit_count * value_count
    # Missing labels land in one extra bin past the end, which is then dropped.
    flat_index = np.where(codes >= 0, np.arange(unit_count) * value_count + codes, cells)
    flat = np.bincount(flat_index.reshape(-1), minlength=cells + 1)[:cells]
    return flat.reshape(unit_count, value_count)


def _weighted_inputs(
    counts: ArrayLike,
    multiplicities: ArrayLike | None,
    values: ArrayLike | None,
    level_of_measurement: LevelOfMeasurement,
) -> tuple[NDArray[np.int64], NDArray[np.float64], NDArray[np.generic]]:
    """The checked count matrix with a weight per row, and the values of its columns. Without
    ``multiplicities`` equal rows are merged into distinct patterns (``_compress_to_patterns``);
    with them the rows are taken as the distinct patterns they weigh."""
    count_matrix = _as_count_matrix(counts)
    if multiplicities is None:
        count_matrix, unit_weights = _compress_to_patterns(count_matrix)
    else:
        unit_weights = _as_multiplicities(multiplicities, count_matrix.shape[0])
    value_array = _as_values(values, count_matrix.shape[1], level_of_measurement)
    return count_matrix, unit_weights, value_array


def _compress_to_patterns(
    counts: NDArray[np.int64],
) -> tuple[NDArray[np.int64], NDArray[np.float64]]:
    """Distinct rows of ``counts`` with multiplicities, when they fit a small key space."""
    if counts.size == 0:
        return counts, np.ones(counts.shape[0])
    radix = _pattern_radix(int(counts.max()), counts.shape[1])
    if radix is None:
        return counts, np.ones(counts.shape[0])
    # A row's key is the row read as a number in base ``radix`` (column 0 least significant).
    keys = counts @ radix ** np.arange(counts.shape[1], dtype=np.int64)
    return _patterns_from_keys(keys, radix, counts.shape[1])


def _pattern_radix(largest_count: int, value_count: int) -> int | None:
    """Base for encoding count rows as integers, or None when the key space is too large."""
    radix = largest_count + 1
    if value_count == 0 or radix**value_count > _MAX_PATTERN_KEYS:
        return None
    return radix


def _patterns_from_keys(
    keys: NDArray[np.int64], radix: int, value_count: int
) -> tuple[NDArray[np.int64], NDArray[np.float64]]:
    histogram = np.bincount(keys, minlength=radix**value_count)
    present_keys = np.flatnonzero(histogram)
    place_values = radix ** np.arange(value_count, dtype=np.int64)
    patterns = (present_keys[:, np.newaxis] // place_values) % radix
    return patterns, histogram[present_keys].astype(np.float64)
