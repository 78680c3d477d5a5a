"""Dawid–Skene: each item's true class and each annotator's reliability, estimated together by
EM over plain arrays (no ORM), with known answers (gold) as anchors.

Every annotator has a confusion matrix ``confusion[j, true, said]``; the E-step gives each
item a posterior over the classes from the class priors and the confusions of the annotators
who labelled it, the M-step re-estimates priors and confusions from those posteriors. Anchored
items keep their known class throughout, so they pin each annotator's confusion to the truth
where it is known (and an adversarial annotator is recognised as such, not merely outvoted).

Written here rather than taken from crowd-kit: that library brings pandas and scikit-learn
for some fifty lines of EM, and works on data frames where the campaign's labels arrive as
arrays.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class DawidSkeneFit:
    posteriors: FloatArray  # (items, classes): P(true class | labels)
    confusions: FloatArray  # (annotators, true class, said class)
    priors: FloatArray  # (classes,)
    iterations: int
    # False when the fit stopped at max_iterations with posteriors still moving.
    converged: bool = True

    def annotator_accuracy(self) -> FloatArray:
        """P(an annotator says the true class), weighted by the class priors."""
        diagonal = np.einsum("jkk->jk", self.confusions)
        return np.asarray(diagonal @ self.priors, dtype=np.float64)


def dawid_skene(
    items: Sequence[int] | npt.NDArray[np.int64],
    annotators: Sequence[int] | npt.NDArray[np.int64],
    classes: Sequence[int] | npt.NDArray[np.int64],
    *,
    n_items: int,
    n_annotators: int,
    n_classes: int,
    anchors: Mapping[int, int] | None = None,
    max_iterations: int = 100,
    tolerance: float = 1e-6,
    smoothing: float = 0.01,
) -> DawidSkeneFit:
    """Fit Dawid–Skene to labels given as three parallel arrays of indices: the item, the
    annotator and the class each label said. ``anchors`` maps item index to its known class.

    Starts from the (anchored) vote shares, as Dawid and Skene did; ``smoothing`` is a small
    pseudo-count on every confusion cell, so an annotator seen on few items is not certain.
    """
    if n_items == 0:
        empty = np.zeros((0, n_classes))
        uniform = np.full((n_annotators, n_classes, n_classes), 1.0 / max(n_classes, 1))
        return DawidSkeneFit(empty, uniform, np.full(n_classes, 1.0 / n_classes), 0)
    item = np.asarray(items, dtype=np.int64)
    annotator = np.asarray(annotators, dtype=np.int64)
    said = np.asarray(classes, dtype=np.int64)
    anchored = np.zeros(n_items, dtype=bool)
    anchor_rows = np.zeros((n_items, n_classes))
    if anchors:
        anchor_items = np.fromiter(anchors.keys(), dtype=np.int64, count=len(anchors))
        anchor_classes = np.fromiter(anchors.values(), dtype=np.int64, count=len(anchors))
        anchored[anchor_items] = True
        anchor_rows[anchor_items, anchor_classes] = 1.0

    # np.bincount rather than np.add.at throughout: the same sums in the same order, an order
    # of magnitude faster, and one (labels,) vector at a time rather than (labels, classes).
    cells = n_items * n_classes
    posteriors = np.bincount(item * n_classes + said, minlength=cells).astype(np.float64)
    posteriors = _normalise_rows(posteriors.reshape(n_items, n_classes) + 1e-9)
    posteriors[anchored] = anchor_rows[anchored]

    # Each label's (annotator, said) cell of a confusion matrix row, flattened.
    annotator_said = annotator * n_classes + said
    confusions = np.zeros((n_annotators, n_classes, n_classes))
    priors = np.full(n_classes, 1.0 / n_classes)
    iterations = 0
    change = float("inf")
    for iterations in range(1, max_iterations + 1):  # noqa: B007 - reported in the fit
        # M-step: priors and confusions from the current posteriors.
        priors = posteriors.mean(axis=0) + 1e-9
        priors /= priors.sum()
        confusions = np.full((n_annotators, n_classes, n_classes), smoothing)
        for true_class in range(n_classes):
            confusions[:, true_class, :] += np.bincount(
                annotator_said,
                weights=posteriors[item, true_class],
                minlength=n_annotators * n_classes,
            ).reshape(n_annotators, n_classes)
        confusions /= confusions.sum(axis=2, keepdims=True)
        # E-step: log prior plus each label's log likelihood under every true class.
        log_confusions = np.log(confusions)
        log_posteriors = np.empty((n_items, n_classes))
        for true_class in range(n_classes):
            log_posteriors[:, true_class] = np.log(priors[true_class]) + np.bincount(
                item,
                weights=log_confusions[:, true_class, :].reshape(-1)[annotator_said],
                minlength=n_items,
            )
        log_posteriors -= log_posteriors.max(axis=1, keepdims=True)
        updated = _normalise_rows(np.exp(log_posteriors))
        updated[anchored] = anchor_rows[anchored]
        change = float(np.abs(updated - posteriors).max()) if n_items else 0.0
        posteriors = updated
        if change < tolerance:
            break
    return DawidSkeneFit(posteriors, confusions, priors, iterations, change < tolerance)


def _normalise_rows(matrix: FloatArray) -> FloatArray:
    return np.asarray(matrix / matrix.sum(axis=1, keepdims=True), dtype=np.float64)
