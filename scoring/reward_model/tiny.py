"""Small, randomly initialised models for fast tests and demos: a BERT reward model, and a
Qwen3-shaped decoder base (a causal LM, as decoder reward models start from)."""

from __future__ import annotations

import os
from pathlib import Path

import torch
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    BertConfig,
    BertForSequenceClassification,
    Qwen3Config,
)

from .checkpoint import save_checkpoint
from .model import default_base_path

TINY_HIDDEN_SIZE = 128
TINY_LAYERS = 2
TINY_MAX_POSITIONS = 512


def build_tiny_reward_model(
    path: str | os.PathLike[str],
    vocab_from: str | os.PathLike[str] | None = None,
    seed: int = 0,
) -> Path:
    """Save a ~4M-parameter BERT seq-cls model (num_labels=1) with a real tokenizer to ``path``.

    The tokenizer is copied from ``vocab_from`` (default: the MiniLM base model), so any text can
    be scored. Weights are random but fixed by ``seed``. Returns the checkpoint path.
    """
    tokenizer = AutoTokenizer.from_pretrained(
        vocab_from if vocab_from is not None else default_base_path(), local_files_only=True
    )
    config = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=TINY_HIDDEN_SIZE,
        num_hidden_layers=TINY_LAYERS,
        num_attention_heads=4,
        intermediate_size=2 * TINY_HIDDEN_SIZE,
        max_position_embeddings=TINY_MAX_POSITIONS,
        pad_token_id=tokenizer.pad_token_id,
        num_labels=1,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = BertForSequenceClassification(config)
    tokenizer.model_max_length = TINY_MAX_POSITIONS
    tokenizer.truncation_side = "left"
    return save_checkpoint(model, tokenizer, path)


def build_tiny_decoder_base(
    path: str | os.PathLike[str],
    vocab_from: str | os.PathLike[str] | None = None,
    seed: int = 0,
) -> Path:
    """Save a tiny random Qwen3 causal LM with a real tokenizer to ``path``, as a base for
    ``RewardModel.from_base`` (which scores the last real token). Returns the path."""
    tokenizer = AutoTokenizer.from_pretrained(
        vocab_from if vocab_from is not None else default_base_path(), local_files_only=True
    )
    config = Qwen3Config(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
        pad_token_id=tokenizer.pad_token_id,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_config(config)
    return save_checkpoint(model, tokenizer, path)
