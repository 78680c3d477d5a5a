"""Writing a model version out for serving: ONNX (optionally INT8) for CPUs, or a half-precision
Hugging Face checkpoint for GPUs."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from django.conf import settings

from scoring.models import ModelVersion

FORMATS = ("onnx", "hf")
HF_DTYPES = ("bfloat16", "float16", "float32")


class ModelExportError(ValueError):
    """An export that cannot be done as asked (bad options, missing checkpoint)."""


def model_version_export(
    *,
    version: ModelVersion,
    out: str | os.PathLike[str],
    format: str = "onnx",
    quantize: str | None = None,
    dtype: str = "bfloat16",
) -> dict[str, Any]:
    """Write ``version``'s model to ``out`` (a directory, written atomically); returns a summary.

    ``onnx``: the float32 graph for ONNX Runtime; ``quantize="int8"`` stores its matrices as
    weight-only int8, ``"int8-dynamic"`` multiplies in int8
    (see :mod:`scoring.reward_model.onnx_backend`).
    ``hf``: the checkpoint with its weights cast to ``dtype`` (bf16 by default, for GPUs).
    """
    if format not in FORMATS:
        raise ModelExportError(f"format must be one of {FORMATS}, got {format!r}")
    if quantize is not None and format != "onnx":
        raise ModelExportError("--quantize applies to the onnx format only")
    if format == "hf" and dtype not in HF_DTYPES:
        raise ModelExportError(f"dtype must be one of {HF_DTYPES}, got {dtype!r}")
    checkpoint = Path(version.checkpoint)
    if not (checkpoint / "config.json").is_file():
        raise ModelExportError(f"version {version.number} has no checkpoint at {checkpoint}")
    _check_out(Path(out), checkpoint)

    import torch

    from scoring.reward_model import RewardModel
    from scoring.reward_model.checkpoint import save_checkpoint
    from scoring.reward_model.onnx_backend import OnnxExportError, export_onnx

    model = RewardModel.load(checkpoint, device="cpu")
    if format == "onnx":
        try:
            path = export_onnx(model, out, quantize=quantize)
        except OnnxExportError as error:
            raise ModelExportError(str(error)) from error
        written = path / "model.onnx"
    else:
        model.model.to(getattr(torch, dtype))
        path = save_checkpoint(model.model, model.tokenizer, out)
        written = path / "model.safetensors"
    return {
        "campaign": version.campaign.name,
        "version": version.number,
        "format": format,
        "quantization": quantize,
        "dtype": dtype if format == "hf" else (quantize or "float32"),
        "path": str(path),
        "bytes": written.stat().st_size if written.is_file() else None,
    }


def _check_out(out: Path, checkpoint: Path) -> None:
    """Refuse an ``out`` whose replacement would destroy something that is not an export: the
    model store (every version's checkpoint), or an existing file or directory that an earlier
    export did not write. An earlier export there is replaced, as the command says."""
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
    if any(target.iterdir()) and not _is_model_directory(target):
        raise ModelExportError(
            f"{out} is a non-empty directory that no export wrote; give a new or empty directory"
        )


def _is_model_directory(path: Path) -> bool:
    """What an earlier export leaves: an ONNX model, or a checkpoint (config and weights)."""
    from scoring.reward_model.onnx_backend import is_onnx_model

    return is_onnx_model(path) or (
        (path / "config.json").is_file() and any(path.glob("*.safetensors"))
    )
