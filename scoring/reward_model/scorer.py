"""``Scorer``: the scoring API that a torch ``RewardModel`` and an ``OnnxRewardModel`` share,
and ``load_scorer``, which opens either kind of directory for scoring.

Code that only scores (evaluation, curation, the scoring endpoint) types its model as a Scorer,
so an ONNX export serves it as well as a checkpoint; training, embedding and saving need a
``RewardModel`` (``RewardModel.load`` opens torch checkpoints only).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Protocol

import numpy as np
import torch

from .formatting import Conversation, EncodedTranscripts
from .model import RewardModel
from .onnx_backend import OnnxRewardModel, is_onnx_model
from .transcript_scoring import ComparedItem, ScoredItem


class Scorer(Protocol):
    """Rewards r(x, y) per (conversation, response), and p(A ≻ B) = sigmoid(r(x, A) − r(x, B))."""

    # Token window (longer transcripts lose tokens on the left) and items per forward pass.
    max_length: int
    batch_size: int

    @property
    def precision(self) -> str: ...

    def render(self, conversation: Conversation, response: str) -> str: ...

    def encode(self, items: Sequence[ScoredItem]) -> EncodedTranscripts: ...

    def score(self, conversation: Conversation, response: str) -> float: ...

    def score_batch(self, items: Sequence[ScoredItem]) -> np.ndarray: ...

    def prob_a_better(
        self, conversation: Conversation, response_a: str, response_b: str
    ) -> float: ...

    def prob_a_better_batch(self, items: Sequence[ComparedItem]) -> np.ndarray: ...

    def rewards_for_ids(
        self,
        input_ids: Sequence[Sequence[int]],
        *,
        on_batch: Callable[[int, int], None] | None = None,
    ) -> np.ndarray: ...


def load_scorer(
    path: str | os.PathLike[str],
    device: str | torch.device | None = None,
    *,
    max_length: int | None = None,
    inference_only: bool = True,
) -> Scorer:
    """A model directory opened for scoring: an ONNX export (``export_onnx``) with ONNX Runtime
    on the CPU, any other directory as a torch ``RewardModel`` (``inference_only`` by default:
    see ``RewardModel.load``)."""
    if is_onnx_model(path):
        return OnnxRewardModel.load(path, max_length=max_length)
    return RewardModel.load(path, device, max_length=max_length, inference_only=inference_only)
