"""The unit of training and evaluation data: one judged pair."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from .formatting import Conversation


@dataclass(frozen=True)
class PreferenceExample:
    """A conversation and two candidate final assistant turns, ``chosen`` preferred.

    ``margin`` (optional, reward units) asks training for r(chosen) − r(rejected) ≥ margin, e.g.
    larger for "much better" than for "slightly better" (Llama 2's margin loss).
    """

    conversation: Conversation
    chosen: str
    rejected: str
    category: str | None = None
    margin: float | None = None


# A PreferenceExample, or a plain tuple (conversation, chosen, rejected[, category[, margin]]).
ExampleLike = PreferenceExample | tuple[Any, ...]


def as_preference_examples(examples: Iterable[ExampleLike]) -> list[PreferenceExample]:
    return [
        example if isinstance(example, PreferenceExample) else PreferenceExample(*example)
        for example in examples
    ]
