"""Iteration helpers the standard library gains only in Python 3.12."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from itertools import islice
from typing import TypeVar

T = TypeVar("T")


def batched(items: Iterable[T], size: int) -> Iterator[tuple[T, ...]]:
    """Successive tuples of ``size`` items (the last may be shorter): itertools.batched."""
    if size < 1:
        raise ValueError("size must be at least one")
    iterator = iter(items)
    while batch := tuple(islice(iterator, size)):
        yield batch
