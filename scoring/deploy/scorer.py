"""Worker side of the scoring endpoint: a process-wide cache of loaded models, and scoring a
validated batch with one of them."""

from __future__ import annotations

import math
import os
import threading
from collections import OrderedDict
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from scoring.reward_model import Scorer

# Models kept loaded per worker process; the least recently used is dropped beyond this.
CACHED_MODELS = 2


class NonFiniteRewards(ValueError):
    """The model scored NaN or infinity (its weights diverged): the version cannot serve."""


_models: OrderedDict[tuple[str, float], Scorer] = OrderedDict()
_lock = threading.Lock()


def _cache_key(checkpoint: str) -> tuple[str, float]:
    # The mtime tells a checkpoint replaced in place (a re-registered number) from the old one.
    path = Path(checkpoint)
    marker = path / "config.json"
    return (os.fspath(path.absolute()), marker.stat().st_mtime if marker.exists() else 0.0)


def loaded_model(checkpoint: str) -> Scorer:
    """The model at ``checkpoint``, loaded once per process (bf16 on a bf16-capable GPU; an
    ONNX export with ONNX Runtime)."""
    from scoring.reward_model import load_scorer

    key = _cache_key(checkpoint)
    with _lock:
        model = _models.get(key)
        if model is not None:
            _models.move_to_end(key)
            return model
    model = load_scorer(checkpoint)
    with _lock:
        _models[key] = model
        while len(_models) > CACHED_MODELS:
            _models.popitem(last=False)
    return model


def score_items(*, checkpoint: str, items: list[dict[str, Any]]) -> list[dict[str, float]]:
    """Rewards for ``{"conversation", "response"}`` items and rewards plus p(A better) for
    ``{"conversation", "response_a", "response_b"}`` items, in the order given. Every
    transcript of the batch goes through the model in one call (length-sorted batches)."""
    model = loaded_model(checkpoint)
    transcripts: list[tuple[Any, str]] = []
    for item in items:
        if "response" in item:
            transcripts.append((item["conversation"], item["response"]))
        else:
            transcripts.append((item["conversation"], item["response_a"]))
            transcripts.append((item["conversation"], item["response_b"]))
    rewards = [float(reward) for reward in model.score_batch(transcripts)]
    if not all(math.isfinite(reward) for reward in rewards):
        # A diverged model (NaN weights) scores NaN: no JSON number, and no answer to give.
        raise NonFiniteRewards(
            f"the model gave {sum(not math.isfinite(r) for r in rewards)} non-finite rewards "
            f"(NaN or infinity) of {len(rewards)}"
        )
    results: list[dict[str, float]] = []
    position = 0
    for item in items:
        if "response" in item:
            results.append({"reward": rewards[position]})
            position += 1
            continue
        reward_a, reward_b = rewards[position], rewards[position + 1]
        position += 2
        # sigmoid(a - b) in its overflow-free form, as RewardModel.prob_a_better computes it.
        p_a_better = 0.5 * (1.0 + math.tanh(0.5 * (reward_a - reward_b)))
        results.append({"reward_a": reward_a, "reward_b": reward_b, "p_a_better": p_a_better})
    return results
