"""Reading the inputs of the agreement maths: reliability data coded against a value domain,
missing labels, count matrices and multiplicities, checked and turned into numpy arrays."""

from __future__ import annotations

import numbers
from typing import Literal, get_args

import numpy as np
from numpy.typing import ArrayLike, NDArray

LevelOfMeasurement = Literal["nominal", "ordinal", "interval", "ratio"]
_LEVELS: frozenset[str] = frozenset(get_args(LevelOfMeasurement))
# Up to this many values, numeric labels are coded by comparison rather than binary search.
_SMALL_DOMAIN = 8
_OUTSIDE_DOMAIN = "The reliability data contains values outside value_domain."


def _coded_reliability_data(
    reliability_data: ArrayLike, value_domain: ArrayLike | None
) -> tuple[NDArray[np.intp], NDArray[np.generic]]:
    """Coders x units indices into the value domain (-1 = missing), and the domain."""
    labels, missing, domain = _labels_and_domain(reliability_data, value_domain)
    return _codes(labels, missing, domain), domain


def _labels_and_domain(
    reliability_data: ArrayLike, value_domain: ArrayLike | None
) -> tuple[NDArray[np.generic], NDArray[np.bool_], NDArray[np.generic]]:
    """The labels, their missing mask and the validated value domain."""
    labels, missing = _labels_and_missing(reliability_data)
    if value_domain is None:
        return labels, missing, np.unique(labels[~missing])
    domain = np.asarray(value_domain, dtype=labels.dtype)
    if domain.ndim != 1:
        raise ValueError("value_domain must be one-dimensional.")
    if len(np.unique(domain)) != len(domain):
        raise ValueError("value_domain contains duplicates.")
    return labels, missing, domain


def _codes(
    labels: NDArray[np.generic], missing: NDArray[np.bool_], domain: NDArray[np.generic]
) -> NDArray[np.intp]:
    codes = np.full(labels.shape, -1, dtype=np.intp)
    if domain.size == 0:
        if not missing.all():
            raise ValueError(_OUTSIDE_DOMAIN)
        return codes
    if labels.dtype.kind == "O":
        # Object labels are compared one by one in Python, so look up only the present ones.
        codes[~missing] = _domain_indices(domain, labels[~missing])
        return codes
    if len(domain) <= _SMALL_DOMAIN:
        for index, value in enumerate(domain):
            codes[labels == value] = index
    else:
        indices = _domain_indices(domain, labels)
        # NaN finds no match and stays -1.
        np.copyto(codes, indices, where=domain[indices] == labels)
    if not np.array_equal(codes >= 0, ~missing):
        raise ValueError(_OUTSIDE_DOMAIN)
    return codes


def _domain_indices(domain: NDArray[np.generic], labels: NDArray[np.generic]) -> NDArray[np.intp]:
    """Index into ``domain`` of each label.

    Object labels outside the domain raise here; numeric callers compare the match themselves
    because NaN (missing) must become -1 rather than an error.
    """
    sorter = np.argsort(domain, kind="stable")
    positions = np.searchsorted(domain, labels, sorter=sorter)
    indices = sorter[np.minimum(positions, len(domain) - 1)]
    if labels.dtype.kind == "O" and not np.all(domain[indices] == labels):
        raise ValueError(_OUTSIDE_DOMAIN)
    return indices


def _labels_and_missing(
    reliability_data: ArrayLike,
) -> tuple[NDArray[np.generic], NDArray[np.bool_]]:
    """The data as a 2-D array (float when numeric, object otherwise) and its missing mask."""
    inferred = np.asarray(reliability_data)
    if inferred.dtype.kind in "US":
        # Re-read lists so that NaN stays NaN instead of becoming the string "nan".
        inferred = np.array(reliability_data, dtype=object)
    if inferred.ndim != 2:
        raise ValueError("reliability_data must be a 2-D coders x units array.")
    if inferred.dtype.kind in "biuf":
        labels = inferred.astype(np.float64, copy=False)
        return labels, np.isnan(labels)
    if inferred.dtype.kind != "O":
        raise ValueError(f"Unsupported label dtype {inferred.dtype}.")
    missing = np.frompyfunc(_is_missing, 1, 1)(inferred).astype(bool)
    all_numeric = np.frompyfunc(_is_real_number, 1, 1)(inferred[~missing]).astype(bool).all()
    if all_numeric:
        labels = np.where(missing, np.nan, inferred).astype(np.float64)
        return labels, missing
    return inferred, missing


def _is_missing(label: object) -> bool:
    return label is None or (isinstance(label, float) and label != label)


def _is_real_number(label: object) -> bool:
    return isinstance(label, numbers.Real)


def _as_count_matrix(counts: ArrayLike) -> NDArray[np.int64]:
    array = np.asarray(counts)
    if array.ndim != 2:
        raise ValueError("counts must be a 2-D units x values array.")
    if array.dtype.kind not in "biuf":
        raise ValueError("counts must be numeric.")
    if array.dtype.kind == "f" and not np.all(np.mod(array, 1) == 0):
        raise ValueError("counts must be whole numbers.")
    if (array < 0).any():
        raise ValueError("counts must not be negative.")
    return array.astype(np.int64, copy=False)


def _as_multiplicities(multiplicities: ArrayLike | None, row_count: int) -> NDArray[np.float64]:
    if multiplicities is None:
        return np.ones(row_count, dtype=np.float64)
    array = np.asarray(multiplicities, dtype=np.float64)
    if array.shape != (row_count,):
        raise ValueError("multiplicities needs one entry per pattern row.")
    if (array < 0).any():
        raise ValueError("multiplicities must not be negative.")
    return array


def _as_values(
    values: ArrayLike | None, value_count: int, level: LevelOfMeasurement
) -> NDArray[np.generic]:
    if level not in _LEVELS:
        raise ValueError(f"Unknown level_of_measurement {level!r}; use one of {sorted(_LEVELS)}.")
    array = np.arange(value_count) if values is None else np.asarray(values)
    if array.shape != (value_count,):
        raise ValueError("values needs one entry per column of counts.")
    if level in ("interval", "ratio"):
        if array.dtype.kind not in "biuf":
            raise ValueError(f"{level} data needs numeric values.")
        if level == "ratio" and (array < 0).any():
            raise ValueError("ratio data needs non-negative values (a ratio scale has a true 0).")
    return array
