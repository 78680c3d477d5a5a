"""Memory of a tokenized training set: TokenTable (what training uses) against token lists.

Run: .venv/bin/python benchmarks/training_memory.py [--pairs N] [--max-length L]

Data: hh-rlhf test pairs repeated to N (each copy tagged, so distinct), tokenized by the
default base model's tokenizer (MiniLM, at most L tokens a side, cut from the left as in
training). Two arms in one run: the token lists that training held before (one
``model.encode`` of every chosen side and one of every rejected side, lists of Python ints),
and ``prepare_pairs``, which tokenizes 1,024 examples at a time into TokenTables. For each:
the Python-side peak and the memory still held once built (tracemalloc: every list and int;
numpy's buffers are traced too), per token, and the wall time.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from benchmarks.hh_rlhf_copies import hh_rlhf_copies  # noqa: E402
from scoring.reward_model import RewardModel  # noqa: E402
from scoring.reward_model.hh_rlhf import parse_hh_rlhf_pair  # noqa: E402
from scoring.reward_model.model import default_base_path  # noqa: E402
from scoring.reward_model.training_types import prepare_pairs  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=20_000)
    parser.add_argument("--max-length", type=int, default=512)
    arguments = parser.parse_args()
    model = RewardModel.from_base(default_base_path())
    model.max_length = arguments.max_length
    examples = [
        parse_hh_rlhf_pair(row["chosen"], row["rejected"])
        for row in hh_rlhf_copies(arguments.pairs)
    ]
    print(
        f"{len(examples):,} hh-rlhf pairs, max length {model.max_length}, "
        f"{type(model.model).__name__}"
    )

    def as_lists() -> tuple[Any, int]:
        chosen = model.encode([(e.conversation, e.chosen) for e in examples]).input_ids
        rejected = model.encode([(e.conversation, e.rejected) for e in examples]).input_ids
        return (chosen, rejected), sum(map(len, chosen)) + sum(map(len, rejected))

    def as_tables() -> tuple[Any, int]:
        prepared = prepare_pairs(model, examples, drop_overlong=False)
        return prepared, prepared.tokens

    model.encode([(examples[0].conversation, examples[0].chosen)])  # the tokenizer's first use
    rows = [measure("token lists (before)", as_lists), measure("TokenTable", as_tables)]
    for name, tokens, seconds, peak, held in rows:
        print(
            f"  {name:<22} {tokens:,} tokens  {seconds:6.1f} s  peak {peak / 2**20:8.1f} MiB "
            f"({peak / tokens:5.1f} B/token)  held {held / 2**20:8.1f} MiB "
            f"({held / tokens:5.1f} B/token)"
        )
    (_, _, base_seconds, base_peak, base_held), (_, _, seconds, peak, held) = rows
    print(
        f"  TokenTable against lists: held {base_held / held:.1f}x less, peak "
        f"{base_peak / peak:.1f}x less, time {seconds / base_seconds:.2f}x"
    )


def measure(name: str, build: Callable[[], tuple[Any, int]]) -> tuple[str, int, float, int, int]:
    """(name, tokens, seconds, peak bytes while building, bytes held by the result): timed in
    one run, memory from another under tracemalloc (which slows Python down)."""
    started = time.perf_counter()
    result, tokens = build()
    seconds = time.perf_counter() - started
    del result
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    result, _tokens = build()
    held, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    del result
    return name, tokens, seconds, peak - before, held - before


if __name__ == "__main__":
    main()
