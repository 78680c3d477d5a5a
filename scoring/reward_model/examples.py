"""The unit of training and evaluation data: one judged pair."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, overload

import numpy as np

from .formatting import Conversation


@dataclass(frozen=True)
class PreferenceExample:
    """A conversation and two candidate final assistant turns, ``chosen`` preferred.

    ``margin`` (optional, reward units) asks training for r(chosen) − r(rejected) ≥ margin, e.g.
    larger for "much better" than for "slightly better" (Llama 2's margin loss).
    """

    conversation: Conversation
    chosen: str
    rejected: str
    category: str | None = None
    margin: float | None = None


# A PreferenceExample, or a plain tuple (conversation, chosen, rejected[, category[, margin]]).
ExampleLike = PreferenceExample | tuple[Any, ...]


def as_preference_examples(examples: Iterable[ExampleLike]) -> list[PreferenceExample]:
    return [
        example if isinstance(example, PreferenceExample) else PreferenceExample(*example)
        for example in examples
    ]


def example_chunks(
    examples: Sequence[ExampleLike], size: int
) -> Iterator[tuple[int, list[PreferenceExample]]]:
    """``(start, examples[start:start + size])`` over the whole sequence. Training reads its
    examples only this way, so a sequence that reads its texts on demand (from the database, or
    :class:`JsonlExamples` from a file) is never held whole: a training set of 16K-token
    conversations is tens of GB of text."""
    for start in range(0, len(examples), size):
        yield start, as_preference_examples(examples[start : start + size])


def write_jsonl_examples(path: str | os.PathLike[str], examples: Sequence[ExampleLike]) -> None:
    """``examples`` as JSON lines, a chunk at a time (what :class:`JsonlExamples` reads)."""
    with open(path, "w", encoding="utf-8") as handle:
        for _start, chunk in example_chunks(examples, 1024):
            for example in chunk:
                row = {
                    "conversation": [dict(turn) for turn in example.conversation],
                    "chosen": example.chosen,
                    "rejected": example.rejected,
                    "category": example.category,
                    "margin": example.margin,
                }
                handle.write(json.dumps(row) + "\n")


class JsonlExamples(Sequence[PreferenceExample]):
    """The examples of a JSON-lines file, read from disk when indexed: only the lines' offsets
    (8 bytes a pair) stay in memory, so each rank of a distributed training holds a chunk of the
    texts at a time rather than all of them."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = path
        offsets = [0]
        with open(path, "rb") as handle:
            for line in handle:
                offsets.append(offsets[-1] + len(line))
        self._offsets = np.asarray(offsets, dtype=np.int64)

    def __len__(self) -> int:
        return len(self._offsets) - 1

    @overload
    def __getitem__(self, index: int) -> PreferenceExample: ...

    @overload
    def __getitem__(self, index: slice) -> list[PreferenceExample]: ...

    def __getitem__(self, index: int | slice) -> PreferenceExample | list[PreferenceExample]:
        if isinstance(index, slice):
            start, stop, step = index.indices(len(self))
            if step != 1:
                return [self[position] for position in range(start, stop, step)]
            return self._read(start, stop)
        position = index + len(self) if index < 0 else index
        if not 0 <= position < len(self):
            raise IndexError(index)
        return self._read(position, position + 1)[0]

    def __iter__(self) -> Iterator[PreferenceExample]:
        for _start, chunk in example_chunks(self, 1024):
            yield from chunk

    def _read(self, start: int, stop: int) -> list[PreferenceExample]:
        if start >= stop:
            return []
        with open(self.path, "rb") as handle:
            handle.seek(int(self._offsets[start]))
            data = handle.read(int(self._offsets[stop] - self._offsets[start]))
        examples = []
        for line in data.splitlines():
            row = json.loads(line)
            examples.append(
                PreferenceExample(
                    row["conversation"],
                    row["chosen"],
                    row["rejected"],
                    row.get("category"),
                    row.get("margin"),
                )
            )
        return examples
