"""Handing memory that malloc keeps after frees back to the operating system."""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
from collections.abc import Callable


def release_freed_memory() -> None:
    """Hand memory that malloc keeps after frees back to the OS (glibc only; a no-op elsewhere).

    Forward and backward passes over ever-changing shapes leave freed blocks in glibc's arenas:
    MiniLM embedding chunk after chunk held 1.3 GB where a trim brings it back to 0.55 GB (a
    20,000-pair loop run peaked at 2.6 GB, benchmarks/loop_scale.py), and one epoch of full
    MiniLM training on 2,012 hh-rlhf pairs grew to 3.7 GB in bf16 (2.3 GB in float32) where a
    trim every 10 steps held 1.5 GB, at a cost in speed (packed_training trims once, after)."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    # Looked up once per process: find_library runs ldconfig.
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):  # not glibc
        return None
