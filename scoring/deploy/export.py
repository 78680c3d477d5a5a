"""Writing a model version out for serving: ONNX (optionally INT8) for CPUs, or a half-precision
Hugging Face checkpoint for GPUs."""

from __future__ import annotations

import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Any

from django.conf import settings

from scoring.models import ModelVersion

FORMATS = ("onnx", "hf")
HF_DTYPES = ("bfloat16", "float16", "float32")
# Written by every export (both formats): what it is and the names of the files it wrote.
EXPORT_MARKER = "arbiter_export.json"
# What an ONNX export wrote besides model.onnx and arbiter_onnx.json before it wrote the marker:
# the checkpoint's config and the tokenizer's files.
_LEGACY_ONNX_FILES = frozenset(
    {
        "model.onnx",
        "config.json",
        "tokenizer.json",
        "tokenizer_config.json",
        "special_tokens_map.json",
        "added_tokens.json",
        "vocab.txt",
        "vocab.json",
        "merges.txt",
        "tokenizer.model",
        "spiece.model",
        "sentencepiece.bpe.model",
        "chat_template.jinja",
        "chat_template.json",
    }
)


class ModelExportError(ValueError):
    """An export that cannot be done as asked (bad options, missing checkpoint)."""


def model_version_export(
    *,
    version: ModelVersion,
    out: str | os.PathLike[str],
    format: str = "onnx",
    quantize: str | None = None,
    dtype: str | None = None,
) -> dict[str, Any]:
    """Write ``version``'s model to ``out`` (a directory, written atomically); returns a summary.

    ``onnx``: the float32 graph for ONNX Runtime; ``quantize="int8"`` stores its matrices as
    weight-only int8, ``"int8-dynamic"`` multiplies in int8
    (see :mod:`scoring.reward_model.onnx_backend`).
    ``hf``: the checkpoint with its weights cast to ``dtype`` (bf16 by default, for GPUs).
    Either way the directory holds :data:`EXPORT_MARKER`, which names every file the export
    wrote: a later export replaces only such a directory, and only while it holds nothing else.
    """
    if format not in FORMATS:
        raise ModelExportError(f"format must be one of {FORMATS}, got {format!r}")
    if quantize is not None and format != "onnx":
        raise ModelExportError("--quantize applies to the onnx format only")
    if dtype is not None and format != "hf":
        raise ModelExportError("--dtype applies to the hf format only")
    dtype = dtype or "bfloat16"
    if format == "hf" and dtype not in HF_DTYPES:
        raise ModelExportError(f"dtype must be one of {HF_DTYPES}, got {dtype!r}")
    checkpoint = Path(version.checkpoint)
    if not (checkpoint / "config.json").is_file():
        raise ModelExportError(f"version {version.number} has no checkpoint at {checkpoint}")
    final_path = Path(out).absolute()
    _check_out(final_path, checkpoint)

    import torch

    from scoring.reward_model import RewardModel
    from scoring.reward_model.checkpoint import save_checkpoint
    from scoring.reward_model.files import (
        fsync_directory,
        move_into_place,
        remove_stale_siblings,
    )
    from scoring.reward_model.onnx_backend import ONNX_FILE, OnnxExportError, export_onnx

    model = RewardModel.load(checkpoint, device="cpu")
    summary: dict[str, Any] = {
        "campaign": version.campaign.name,
        "version": version.number,
        "format": format,
        "quantization": quantize,
        "dtype": dtype if format == "hf" else (quantize or "float32"),
        "path": str(final_path),
        "bytes": None,
    }
    final_path.parent.mkdir(parents=True, exist_ok=True)
    # Written (each format atomically) under a hidden sibling name, marked, then renamed into
    # place: ``out`` holds a whole, marked export or what it held before.
    # A killed export leaves its staging directory (and, inside a save, that directory's own
    # staging sibling, hence the second prefix): a whole copy of the weights each.
    staging_prefix = f".{final_path.name}.export-"
    remove_stale_siblings(final_path.parent, staging_prefix, f".{staging_prefix}")
    staging = final_path.with_name(f"{staging_prefix}{uuid.uuid4().hex}")
    try:
        if format == "onnx":
            try:
                export_onnx(model, staging, quantize=quantize)
            except OnnxExportError as error:
                raise ModelExportError(str(error)) from error
            weights = staging / ONNX_FILE
        else:
            model.model.to(getattr(torch, dtype))
            save_checkpoint(model.model, model.tokenizer, staging)
            weights = staging / "model.safetensors"
        summary["bytes"] = weights.stat().st_size if weights.is_file() else None
        # export_onnx and save_checkpoint already gave the directory the umask's modes.
        _write_marker(staging, summary)
        _check_out(final_path, checkpoint)  # again: ``out`` may have changed meanwhile
        move_into_place(staging, final_path)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    fsync_directory(final_path.parent)
    return summary


def _write_marker(directory: Path, summary: dict[str, Any]) -> None:
    """What the export is, and every file it wrote (the marker apart)."""
    files = sorted(path.name for path in directory.iterdir())
    marker = {
        "format": summary["format"],
        "campaign": summary["campaign"],
        "version": summary["version"],
        "quantization": summary["quantization"],
        "dtype": summary["dtype"],
        "files": files,
    }
    with (directory / EXPORT_MARKER).open("w", encoding="utf-8") as handle:
        handle.write(json.dumps(marker, indent=2))
        handle.flush()
        os.fsync(handle.fileno())


def _check_out(out: Path, checkpoint: Path) -> None:
    """Refuse an ``out`` whose replacement would destroy something that is not an export: the
    model store (every version's checkpoint), or an existing file or directory that is not an
    earlier export holding only its own files. An earlier export there is replaced."""
    target = out.resolve()
    for store in (Path(settings.ARBITER["MODEL_DIR"]).resolve(), checkpoint.resolve()):
        if target == store or store in target.parents or target in store.parents:
            raise ModelExportError(
                f"{out} overlaps the model store ({store}); export to a directory outside it"
            )
    if not target.exists() and not target.is_symlink():
        return
    if not target.is_dir():
        raise ModelExportError(f"{out} exists and is not a directory")
    if any(target.iterdir()) and not _is_earlier_export(target):
        raise ModelExportError(
            f"{out} is a non-empty directory that no export wrote, or holds more than an "
            f"export's own files (which its {EXPORT_MARKER} names); give a new or empty directory"
        )


def _is_earlier_export(path: Path) -> bool:
    """Whether ``path`` holds an export and nothing else: its marker and the files the marker
    names (or, from before the marker, an ONNX export's own files), all plain files."""
    from scoring.reward_model.onnx_backend import MANIFEST_FILE, is_onnx_model

    try:
        marker = json.loads((path / EXPORT_MARKER).read_text("utf-8"))
    except FileNotFoundError:
        # ONNX exports written before the marker existed: arbiter_onnx.json and known names.
        if not is_onnx_model(path):
            return False
        allowed: set[str] = {*_LEGACY_ONNX_FILES, MANIFEST_FILE}
    except (OSError, ValueError):
        return False
    else:
        files = marker.get("files") if isinstance(marker, dict) else None
        if not isinstance(files, list) or not all(isinstance(name, str) for name in files):
            return False
        allowed = {EXPORT_MARKER, *files}
    return all(
        entry.name in allowed and entry.is_file() and not entry.is_symlink()
        for entry in path.iterdir()
    )
