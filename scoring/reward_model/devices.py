"""Device choice and mixed precision: CUDA when present, bf16 autocast on CUDA only.

A model's precision is ``"bf16"`` (autocast on a bf16-capable GPU, float32 elsewhere) or
``"float32"`` (float32 everywhere).
"""

from __future__ import annotations

import contextlib

import torch


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    if device is not None:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def supports_bf16(device: torch.device) -> bool:
    return device.type == "cuda" and bool(torch.cuda.is_bf16_supported())


PRECISIONS = ("bf16", "float32")


def autocast_for(
    device: torch.device, precision: str = "bf16"
) -> contextlib.AbstractContextManager[object]:
    # CPU bf16 autocast is slow on most CPUs and changes scores; we keep CPU in float32.
    if precision == "bf16" and supports_bf16(device):
        autocast: contextlib.AbstractContextManager[object] = torch.autocast(
            device_type="cuda", dtype=torch.bfloat16
        )
        return autocast
    return contextlib.nullcontext()
