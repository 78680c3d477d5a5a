"""Dawid–Skene over simulated labels: pure maths, no database."""

from __future__ import annotations

import numpy as np

from reviewers.agreement.dawid_skene import dawid_skene


def _simulate(accuracies: list[float], *, n_items: int = 600, per_item: int = 3, seed: int = 1):
    """Binary items; each labelled by ``per_item`` annotators drawn at random. An annotator
    with accuracy p says the true class with probability p, else the other one."""
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, 2, n_items)
    items, annotators, said = [], [], []
    for index in range(n_items):
        for annotator in rng.choice(len(accuracies), per_item, replace=False):
            right = rng.random() < accuracies[annotator]
            items.append(index)
            annotators.append(int(annotator))
            said.append(int(truth[index] if right else 1 - truth[index]))
    return truth, np.array(items), np.array(annotators), np.array(said)


def _majority(items, said, n_items):
    votes = np.zeros((n_items, 2))
    np.add.at(votes, (items, said), 1)
    return votes.argmax(axis=1)


def test_it_recovers_known_accuracies_and_beats_the_majority_on_the_adversarys_pairs():
    accuracies = [0.9, 0.85, 0.8, 0.15]  # three good annotators and one adversarial
    truth, items, annotators, said = _simulate(accuracies)
    n_items = len(truth)
    anchors = {index: int(truth[index]) for index in range(30)}  # gold
    fit = dawid_skene(
        items, annotators, said, n_items=n_items, n_annotators=4, n_classes=2, anchors=anchors
    )
    assert np.allclose(fit.annotator_accuracy(), accuracies, atol=0.05)
    weighted = fit.posteriors.argmax(axis=1)
    majority = _majority(items, said, n_items)
    adversary_items = np.unique(items[annotators == 3])
    weighted_right = (weighted[adversary_items] == truth[adversary_items]).mean()
    majority_right = (majority[adversary_items] == truth[adversary_items]).mean()
    assert weighted_right > majority_right + 0.1
    assert weighted_right > 0.9
    # Posteriors are probabilities, and anchors keep their known class.
    assert np.allclose(fit.posteriors.sum(axis=1), 1.0)
    assert all(fit.posteriors[index, known] == 1.0 for index, known in anchors.items())


def test_it_equals_the_majority_when_all_annotators_are_equally_good():
    truth, items, annotators, said = _simulate([0.8] * 4, seed=5)
    n_items = len(truth)
    fit = dawid_skene(items, annotators, said, n_items=n_items, n_annotators=4, n_classes=2)
    assert np.allclose(fit.annotator_accuracy(), 0.8, atol=0.05)
    assert (fit.posteriors.argmax(axis=1) == _majority(items, said, n_items)).all()


def test_it_needs_no_anchors_and_handles_an_empty_campaign():
    fit = dawid_skene([], [], [], n_items=0, n_annotators=0, n_classes=3)
    assert fit.posteriors.shape == (0, 3)


def _reference_fit(items, annotators, said, *, n_items, n_annotators, n_classes, anchors):
    """The EM written out label by label, as Dawid and Skene state it: the check on the
    vectorised fit."""
    smoothing = 0.01
    posteriors = [[1e-9] * n_classes for _ in range(n_items)]
    for i, s in zip(items, said, strict=True):
        posteriors[i][s] += 1.0
    posteriors = [[v / sum(row) for v in row] for row in posteriors]
    for i, known in anchors.items():
        posteriors[i] = [1.0 if c == known else 0.0 for c in range(n_classes)]
    for _ in range(100):
        priors = [sum(row[c] for row in posteriors) / n_items + 1e-9 for c in range(n_classes)]
        priors = [p / sum(priors) for p in priors]
        confusion = [
            [[smoothing] * n_classes for _ in range(n_classes)] for _ in range(n_annotators)
        ]
        for i, j, s in zip(items, annotators, said, strict=True):
            for t in range(n_classes):
                confusion[j][t][s] += posteriors[i][t]
        for j in range(n_annotators):
            for t in range(n_classes):
                total = sum(confusion[j][t])
                confusion[j][t] = [v / total for v in confusion[j][t]]
        logs = [[float(np.log(priors[t])) for t in range(n_classes)] for _ in range(n_items)]
        for i, j, s in zip(items, annotators, said, strict=True):
            for t in range(n_classes):
                logs[i][t] += float(np.log(confusion[j][t][s]))
        updated = []
        for i, row in enumerate(logs):
            top = max(row)
            weights = [float(np.exp(v - top)) for v in row]
            updated.append([w / sum(weights) for w in weights])
            if i in anchors:
                updated[i] = [1.0 if c == anchors[i] else 0.0 for c in range(n_classes)]
        change = max(
            abs(a - b)
            for new, old in zip(updated, posteriors, strict=True)
            for a, b in zip(new, old, strict=True)
        )
        posteriors = updated
        if change < 1e-6:
            break
    return np.array(posteriors), np.array(confusion)


def test_the_vectorised_fit_equals_the_em_written_label_by_label():
    rng = np.random.default_rng(7)
    n_items, n_annotators, n_classes = 60, 5, 3
    items = np.repeat(np.arange(n_items), 3)
    annotators = np.concatenate(
        [rng.choice(n_annotators, 3, replace=False) for _ in range(n_items)]
    )
    said = rng.integers(0, n_classes, len(items))
    anchors = {0: 2, 7: 0, 13: 1}
    fit = dawid_skene(
        items,
        annotators,
        said,
        n_items=n_items,
        n_annotators=n_annotators,
        n_classes=n_classes,
        anchors=anchors,
    )
    posteriors, confusions = _reference_fit(
        items.tolist(),
        annotators.tolist(),
        said.tolist(),
        n_items=n_items,
        n_annotators=n_annotators,
        n_classes=n_classes,
        anchors=anchors,
    )
    assert np.allclose(fit.posteriors, posteriors, atol=1e-9)
    assert np.allclose(fit.confusions, confusions, atol=1e-9)


def test_a_fit_cut_short_says_it_did_not_converge():
    truth, items, annotators, said = _simulate([0.9, 0.85, 0.8, 0.15], n_items=200)
    shape = {"n_items": len(truth), "n_annotators": 4, "n_classes": 2}
    full = dawid_skene(items, annotators, said, **shape)
    assert full.converged and full.iterations > 2
    cut = dawid_skene(items, annotators, said, **shape, max_iterations=2)
    assert not cut.converged and cut.iterations == 2
