"""Token id sequences kept as one flat int32 array and their offsets.

A training set tokenized into lists of Python ints costs about 40 bytes a token (an 8-byte
pointer and a 28-byte int object for every id above 256, and the list's own slack): 200,000
pairs of 4K-token sides would be about 65 GB before training started. Here a token costs 4
bytes, and a sequence is rebuilt as a list only when a micro-batch takes it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import overload

import numpy as np
import numpy.typing as npt


class TokenTable(Sequence[list[int]]):
    """An immutable sequence of token id lists; ``table[i]`` is the i-th as a list."""

    def __init__(self, ids: npt.NDArray[np.int32], offsets: npt.NDArray[np.int64]) -> None:
        if offsets.ndim != 1 or len(offsets) == 0 or offsets[0] != 0 or offsets[-1] != len(ids):
            raise ValueError("offsets must run from 0 to the number of ids")
        self._ids = ids
        self._offsets = offsets

    @classmethod
    def from_sequences(cls, sequences: Iterable[Sequence[int]]) -> TokenTable:
        builder = TokenTableBuilder()
        builder.extend(sequences)
        return builder.build()

    @classmethod
    def concatenate(cls, tables: Sequence[TokenTable]) -> TokenTable:
        ids = np.concatenate([table._ids for table in tables]) if tables else _no_ids()
        offsets = [np.zeros(1, dtype=np.int64)]
        base = 0
        for table in tables:
            offsets.append(table._offsets[1:] + base)
            base += len(table._ids)
        return cls(ids, np.concatenate(offsets))

    def __len__(self) -> int:
        return len(self._offsets) - 1

    @overload
    def __getitem__(self, index: int) -> list[int]: ...

    @overload
    def __getitem__(self, index: slice) -> TokenTable: ...

    def __getitem__(self, index: int | slice) -> list[int] | TokenTable:
        if isinstance(index, slice):
            start, stop, step = index.indices(len(self))
            if step != 1:
                return TokenTable.from_sequences(self[i] for i in range(start, stop, step))
            first, last = self._offsets[start], self._offsets[max(start, stop)]
            return TokenTable(
                self._ids[first:last], self._offsets[start : max(start, stop) + 1] - first
            )
        position = index + len(self) if index < 0 else index
        if not 0 <= position < len(self):
            raise IndexError("token table index out of range")
        ids: list[int] = self._ids[self._offsets[position] : self._offsets[position + 1]].tolist()
        return ids

    def lengths(self) -> npt.NDArray[np.int64]:
        return np.diff(self._offsets)

    @property
    def total_tokens(self) -> int:
        return len(self._ids)

    @property
    def nbytes(self) -> int:
        return int(self._ids.nbytes + self._offsets.nbytes)


class TokenTableBuilder:
    """Appends sequences a chunk at a time; memory stays about 4 bytes a token as it grows."""

    _CHUNK_TOKENS = 1 << 16

    def __init__(self) -> None:
        self._parts: list[npt.NDArray[np.int32]] = []
        self._pending: list[int] = []
        self._lengths: list[int] = []

    def append(self, sequence: Sequence[int]) -> None:
        self._pending.extend(sequence)
        self._lengths.append(len(sequence))
        if len(self._pending) >= self._CHUNK_TOKENS:
            self._flush()

    def extend(self, sequences: Iterable[Sequence[int]]) -> None:
        for sequence in sequences:
            self.append(sequence)

    def build(self) -> TokenTable:
        self._flush()
        ids = np.concatenate(self._parts) if self._parts else _no_ids()
        offsets = np.zeros(len(self._lengths) + 1, dtype=np.int64)
        np.cumsum(self._lengths, out=offsets[1:])
        return TokenTable(ids, offsets)

    def _flush(self) -> None:
        if self._pending:
            self._parts.append(np.asarray(self._pending, dtype=np.int32))
            self._pending = []


def _no_ids() -> npt.NDArray[np.int32]:
    return np.zeros(0, dtype=np.int32)
