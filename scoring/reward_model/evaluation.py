"""Pairwise accuracy of a reward model on held-out judged pairs."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import numpy as np

from .examples import ExampleLike, as_preference_examples
from .model import RewardModel


def evaluate(model: RewardModel, examples: Sequence[ExampleLike]) -> dict[str, Any]:
    """Share of pairs where r(chosen) > r(rejected), overall and per category.

    A tie counts as a miss. Examples without a category count only in the overall figure.
    Returns ``{"accuracy", "n", "per_category": {category: {"accuracy", "n"}}}``.
    """
    examples = as_preference_examples(examples)
    if not examples:
        raise ValueError("Cannot evaluate on zero pairs.")
    items = [(example.conversation, example.chosen) for example in examples]
    items += [(example.conversation, example.rejected) for example in examples]
    rewards = model.score_batch(items)
    correct = rewards[: len(examples)] > rewards[len(examples) :]
    by_category: dict[str, list[bool]] = defaultdict(list)
    for example, hit in zip(examples, correct, strict=True):
        if example.category is not None:
            by_category[example.category].append(bool(hit))
    return {
        "accuracy": float(np.mean(correct)),
        "n": len(examples),
        "per_category": {
            category: {"accuracy": float(np.mean(hits)), "n": len(hits)}
            for category, hits in sorted(by_category.items())
        },
    }
