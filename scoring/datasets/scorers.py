"""What curation scores: a pool item, and a scorer (items → p(A better) per item).

Reward-model versions (``curation.model_version_scorer``) and the LLM judge (``llm_judge``) are
both scorers, so the curation rules treat them alike and can be tested with plain functions.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class PoolItem:
    pair_id: int
    conversation: list[dict[str, str]]
    response_a: str
    response_b: str
    silver_preference: int


Scorer = Callable[[Sequence[PoolItem]], np.ndarray]
