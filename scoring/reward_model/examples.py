"""The unit of training and evaluation data: one judged pair."""

from __future__ import annotations

from dataclasses import dataclass

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
