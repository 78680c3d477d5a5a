"""The unit of training and evaluation data: one judged pair."""

from __future__ import annotations

from dataclasses import dataclass

from .formatting import Conversation


@dataclass(frozen=True)
class PreferenceExample:
    """A conversation and two candidate final assistant turns, ``chosen`` preferred."""

    conversation: Conversation
    chosen: str
    rejected: str
    category: str | None = None
