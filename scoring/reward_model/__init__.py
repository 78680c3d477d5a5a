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

from .evaluation import evaluate  # noqa: E402
from .examples import PreferenceExample  # noqa: E402
from .formatting import Conversation, Turn  # noqa: E402
from .hh_rlhf import load_hh_rlhf, parse_hh_rlhf_pair  # noqa: E402
from .model import RewardModel, default_base_path  # noqa: E402
from .scorer import Scorer, load_scorer  # noqa: E402
from .tiny import build_tiny_decoder_base, build_tiny_reward_model  # noqa: E402
from .training import (  # noqa: E402
    PairEmbeddings,
    TrainingConfig,
    TrainingMetrics,
    embed_pairs,
    train,
)

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
