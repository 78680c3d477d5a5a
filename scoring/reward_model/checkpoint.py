"""Atomic checkpoint writes.

A checkpoint is an ordinary Hugging Face directory (``config.json``, ``model.safetensors``,
tokenizer files) so ``AutoModelForSequenceClassification.from_pretrained`` reads it. It is written
to a hidden sibling directory and renamed into place only once complete: a crash or an exception
mid-save never leaves a directory at the final path, and readers never see half a checkpoint.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from pathlib import Path

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase


def _fsync_tree(directory: Path) -> None:
    for file_path in directory.rglob("*"):
        if file_path.is_file():
            with open(file_path, "rb") as handle:
                os.fsync(handle.fileno())


def _fsync_directory(directory: Path) -> None:
    # Makes the rename itself durable; not every platform can open a directory.
    try:
        descriptor = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


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
    staging = Path(tempfile.mkdtemp(prefix=f".{final_path.name}.partial-", dir=final_path.parent))
    try:
        model.save_pretrained(staging, state_dict=state_dict)
        tokenizer.save_pretrained(staging)
        _fsync_tree(staging)
        _move_into_place(staging, final_path)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    _fsync_directory(final_path.parent)
    return final_path


def _move_into_place(staging: Path, final_path: Path) -> None:
    if not final_path.exists():
        os.rename(staging, final_path)
        return
    # A directory cannot be renamed over a non-empty one: park the old checkpoint first and put
    # it back if the swap fails, so the final path always holds a complete checkpoint or none.
    retired = final_path.with_name(f".{final_path.name}.old-{uuid.uuid4().hex}")
    os.rename(final_path, retired)
    try:
        os.rename(staging, final_path)
    except BaseException:
        os.rename(retired, final_path)
        raise
    shutil.rmtree(retired, ignore_errors=True)
