"""Device choice and mixed precision: CUDA when present, bf16 autocast where it pays.

A model's precision is how it scores: ``"bf16"`` (autocast on a bf16-capable GPU, float32
elsewhere) or ``"float32"`` (float32 everywhere). Training autocasts to bf16 by default on such a
GPU and on a CPU with bf16 units, AMX or AVX-512 BF16 (:func:`trains_in_bf16_by_default`);
weights stay float32.
"""

from __future__ import annotations

import contextlib
import os

import torch


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    if device is not None:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def usable_cpus() -> int:
    """The CPU cores this process may run on: its affinity, which a container's cpuset limits
    (``os.cpu_count`` counts the whole machine's)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def check_processes_fit(processes: int, *, cuda: bool) -> None:
    """Refuse more training processes than the host has GPUs (one per rank) or, on a CPU host,
    cores: every rank loads a whole model and runs torch's threads, so 64 gloo ranks on 2 cores
    only exhaust memory. ValueError names both numbers."""
    if processes <= 1:
        return
    if cuda and processes > torch.cuda.device_count():
        raise ValueError(f"{processes} processes asked, {torch.cuda.device_count()} GPUs here")
    if not cuda and processes > usable_cpus():
        raise ValueError(f"{processes} processes asked, {usable_cpus()} CPU cores here")


def supports_bf16(device: torch.device) -> bool:
    return device.type == "cuda" and bool(torch.cuda.is_bf16_supported())


# The CPUID checks for bf16 matrix units, which torch.cpu exposes only under private names.
_CPU_BF16_CHECKS = ("_is_amx_tile_supported", "_is_avx512_bf16_supported")


def cpu_has_bf16_units() -> bool:
    """Whether this CPU multiplies bf16 matrices in hardware: Intel AMX tiles or AVX-512 BF16
    dot products (AMD Zen 4 and later, Intel Cooper Lake and later). A 2048x384x1536 matmul ran
    10x faster in bf16 than in float32 on the AMX dev machine, 4.1x on the AVX-512 BF16 one;
    elsewhere bf16 is emulated."""
    checks = (getattr(torch.cpu, name, None) for name in _CPU_BF16_CHECKS)
    return any(bool(check()) for check in checks if check is not None)


def trains_in_bf16_by_default(device: torch.device) -> bool:
    return supports_bf16(device) or (device.type == "cpu" and cpu_has_bf16_units())


def training_bf16(requested: bool | None, device: torch.device) -> bool:
    """Whether training on ``device`` autocasts to bf16: ``requested`` (a ``precision``
    setting), or the device's default when None. A GPU without bf16 is refused up front."""
    if requested is None:
        return trains_in_bf16_by_default(device)
    if requested and device.type == "cuda" and not supports_bf16(device):
        raise ValueError("This GPU has no bf16 arithmetic: train with precision float32 or auto.")
    return requested


def training_autocast(
    device: torch.device, bf16: bool
) -> contextlib.AbstractContextManager[object]:
    """bf16 autocast over float32 weights on a GPU or a CPU when ``bf16``; else nothing."""
    if bf16 and device.type in ("cuda", "cpu"):
        autocast: contextlib.AbstractContextManager[object] = torch.autocast(
            device_type=device.type, dtype=torch.bfloat16
        )
        return autocast
    return contextlib.nullcontext()


PRECISIONS = ("bf16", "float32")


def autocast_for(
    device: torch.device, precision: str = "bf16"
) -> contextlib.AbstractContextManager[object]:
    # Scoring: a CPU scores in float32 even where it has bf16 units (2.3x faster with 99%
    # agreement on the AVX-512 BF16 dev machine, benchmarks/deploy.py), so a version's scores do
    # not depend on which CPU scored them; elsewhere CPU bf16 is emulated and slow besides.
    if precision == "bf16" and supports_bf16(device):
        autocast: contextlib.AbstractContextManager[object] = torch.autocast(
            device_type="cuda", dtype=torch.bfloat16
        )
        return autocast
    return contextlib.nullcontext()
