"""Atomic checkpoint writes.

A checkpoint is an ordinary Hugging Face directory (``config.json``, ``model.safetensors``,
tokenizer files) so ``AutoModelForSequenceClassification.from_pretrained`` reads it. It is written
to a hidden sibling directory and renamed into place only once complete: a crash or an exception
mid-save never leaves a directory at the final path, and readers never see half a checkpoint.
What a killed save staged is removed by a later save of the same path once it is stale.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from .files import (
    chmod_from_umask,
    fsync_directory,
    fsync_tree,
    move_into_place,
    staging_directory,
)


def save_checkpoint(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    path: str | os.PathLike[str],
    *,
    state_dict: dict[str, torch.Tensor] | None = None,
) -> Path:
    """Write model (safetensors + config) and tokenizer to ``path`` atomically; replaces any
    existing checkpoint there. Returns the final path.

    ``state_dict``: the weights to write instead of the model's own, e.g. the whole weights
    gathered from an FSDP-sharded model (whose own parameters are shards)."""
    final_path = Path(path).absolute()
    final_path.parent.mkdir(parents=True, exist_ok=True)
    staging = staging_directory(final_path)
    try:
        model.save_pretrained(staging, state_dict=state_dict)
        tokenizer.save_pretrained(staging)
        chmod_from_umask(staging)
        fsync_tree(staging)
        move_into_place(staging, final_path)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    fsync_directory(final_path.parent)
    return final_path
