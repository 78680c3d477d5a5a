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
