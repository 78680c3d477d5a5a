"""Scalar reward models: load, score, compare, embed, train, evaluate and save.

Pure torch + transformers (no Django), usable from a notebook::

    from scoring.reward_model import RewardModel, TrainingConfig, train, evaluate

    model = RewardModel.from_base()            # all-MiniLM-L6-v2 + fresh scalar head
    metrics = train(model, examples, TrainingConfig(mode="head"))
    evaluate(model, held_out)                  # {"accuracy", "n", "per_category"}
    model.save("checkpoints/rm-v1")            # an ordinary HF seq-cls directory
    RewardModel.load("checkpoints/rm-v1").prob_a_better(conversation, answer_a, answer_b)
    load_scorer("exports/rm-v1-onnx").prob_a_better(...)   # a checkpoint or an ONNX export
"""

from __future__ import annotations

import os

# Models are only ever read from local directories; never reach for the Hub. This must be set
# before huggingface_hub is imported, which reads it once.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

from importlib import import_module
from typing import TYPE_CHECKING, Any

# Each public name and the submodule that defines it. They load on first use (PEP 562), so
# importing a light submodule such as ``scoring.reward_model.job_settings`` (the web process's
# URL conf does, for the retrain form's fields) no longer loads torch and transformers.
_SUBMODULE_OF = {
    "evaluate": ".evaluation",
    "PreferenceExample": ".examples",
    "Conversation": ".formatting",
    "Turn": ".formatting",
    "load_hh_rlhf": ".hh_rlhf",
    "parse_hh_rlhf_pair": ".hh_rlhf",
    "RewardModel": ".model",
    "default_base_path": ".model",
    "Scorer": ".scorer",
    "load_scorer": ".scorer",
    "build_tiny_decoder_base": ".tiny",
    "build_tiny_reward_model": ".tiny",
    "PairEmbeddings": ".training",
    "TrainingConfig": ".training",
    "TrainingMetrics": ".training",
    "embed_pairs": ".training",
    "train": ".training",
}

if TYPE_CHECKING:
    from .evaluation import evaluate
    from .examples import PreferenceExample
    from .formatting import Conversation, Turn
    from .hh_rlhf import load_hh_rlhf, parse_hh_rlhf_pair
    from .model import RewardModel, default_base_path
    from .scorer import Scorer, load_scorer
    from .tiny import build_tiny_decoder_base, build_tiny_reward_model
    from .training import (
        PairEmbeddings,
        TrainingConfig,
        TrainingMetrics,
        embed_pairs,
        train,
    )


def __getattr__(name: str) -> Any:
    submodule = _SUBMODULE_OF.get(name)
    if submodule is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(submodule, __name__), name)
    globals()[name] = value
    return value


__all__ = [
    "Conversation",
    "PairEmbeddings",
    "PreferenceExample",
    "RewardModel",
    "Scorer",
    "TrainingConfig",
    "TrainingMetrics",
    "Turn",
    "build_tiny_decoder_base",
    "build_tiny_reward_model",
    "default_base_path",
    "embed_pairs",
    "evaluate",
    "load_hh_rlhf",
    "load_scorer",
    "parse_hh_rlhf_pair",
    "train",
]
