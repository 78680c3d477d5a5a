"""The training set's token ids in a TokenTable: the same sequences as lists, a tenth of the
memory, and training on it unchanged."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from scoring.reward_model.token_table import TokenTable, TokenTableBuilder


def _sequences(count: int, seed: int = 0) -> list[list[int]]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 150_000, rng.integers(1, 50)).tolist() for _ in range(count)]


def test_it_holds_the_same_sequences_as_lists():
    sequences = _sequences(300)
    table = TokenTable.from_sequences(sequences)
    assert len(table) == 300 and list(table) == sequences
    assert table[-1] == sequences[-1] and table[7] == sequences[7]
    assert list(table[10:20]) == sequences[10:20] and list(table[5:2]) == []
    assert list(table[::7]) == sequences[::7]
    assert table.lengths().tolist() == [len(s) for s in sequences]
    assert table.total_tokens == sum(map(len, sequences))
    joined = TokenTable.concatenate([table, table[:3]])
    assert list(joined) == sequences + sequences[:3]
    with pytest.raises(IndexError):
        table[300]
    assert list(TokenTable.from_sequences([])) == []


def test_it_builds_across_chunks(monkeypatch):
    monkeypatch.setattr(TokenTableBuilder, "_CHUNK_TOKENS", 64)
    sequences = _sequences(200, seed=1)
    assert list(TokenTable.from_sequences(sequences)) == sequences


def test_a_token_costs_a_tenth_of_a_list_of_python_ints():
    sequences = _sequences(2_000, seed=2)
    table = TokenTable.from_sequences(sequences)
    as_lists = sys.getsizeof(sequences) + sum(
        sys.getsizeof(s) + sum(sys.getsizeof(token) for token in s) for s in sequences
    )
    assert table.nbytes * 8 < as_lists
    assert table.nbytes <= 4 * table.total_tokens + 8 * (len(table) + 1)


def test_prepared_pairs_equal_tokenizing_everything_at_once(monkeypatch, tmp_path):
    from scoring.reward_model import PreferenceExample, RewardModel, training_types
    from scoring.reward_model.tiny import build_tiny_reward_model

    model = RewardModel.load(build_tiny_reward_model(tmp_path / "rm"))
    model.max_length = 24
    examples = [
        PreferenceExample(
            [{"role": "user", "content": f"question {i} " * (i % 5 + 1)}],
            f"a good answer {i} " * (i % 9 + 1),
            f"bad {i}",
        )
        for i in range(23)
    ]
    monkeypatch.setattr(training_types, "ENCODE_CHUNK", 4)
    for drop in (False, True):
        prepared = training_types.prepare_pairs(model, examples, drop_overlong=drop)
        chosen = model.encode([(e.conversation, e.chosen) for e in examples])
        rejected = model.encode([(e.conversation, e.rejected) for e in examples])
        overlong = [a or b for a, b in zip(chosen.truncated, rejected.truncated, strict=True)]
        kept = [i for i in range(len(examples)) if not (drop and overlong[i])]
        assert 0 < sum(overlong) < len(examples)  # both kinds are exercised
        assert prepared.kept == kept
        assert list(prepared.chosen_ids) == [chosen.input_ids[i] for i in kept]
        assert list(prepared.rejected_ids) == [rejected.input_ids[i] for i in kept]
        assert prepared.dropped == len(examples) - len(kept)
        assert prepared.truncated == (0 if drop else sum(overlong))


class _ReadOnDemand(list):
    """A sequence of examples that records every read, as the loop's database-backed one."""

    def __init__(self, items):
        super().__init__(items)
        self.reads: list[int] = []

    def __getitem__(self, index):
        result = super().__getitem__(index)
        self.reads.append(len(result) if isinstance(index, slice) else 1)
        return result

    def __iter__(self):
        raise AssertionError("training iterated over every example at once")


def test_training_reads_its_examples_a_chunk_at_a_time(monkeypatch, tmp_path):
    from scoring.reward_model import PreferenceExample, RewardModel, training_types
    from scoring.reward_model.tiny import build_tiny_reward_model

    model = RewardModel.load(build_tiny_reward_model(tmp_path / "rm"))
    examples = _ReadOnDemand(
        [
            PreferenceExample(
                [{"role": "user", "content": f"q {i}"}], f"good {i}", f"bad {i}", None, i / 10
            )
            for i in range(10)
        ]
    )
    monkeypatch.setattr(training_types, "ENCODE_CHUNK", 4)
    prepared = training_types.prepare_pairs(model, examples, drop_overlong=False)
    assert examples.reads == [4, 4, 2]
    assert prepared.kept == list(range(10))
    assert prepared.margins == pytest.approx([i / 10 for i in range(10)])


def test_a_ranks_examples_file_is_read_back_equal_and_on_demand(tmp_path):
    from scoring.reward_model.examples import (
        JsonlExamples,
        PreferenceExample,
        write_jsonl_examples,
    )

    examples = [
        PreferenceExample(
            [{"role": "user", "content": f"question {i}\nwith é and a newline"}],
            f"chosen {i}",
            f"rejected {i}",
            "math" if i % 2 else None,
            0.5 if i % 3 == 0 else None,
        )
        for i in range(7)
    ]
    path = tmp_path / "pairs.jsonl"
    write_jsonl_examples(path, [tuple(vars(example).values()) for example in examples])
    read = JsonlExamples(path)
    assert len(read) == 7
    assert list(read) == examples
    assert read[2:5] == examples[2:5] and read[-1] == examples[-1] and read[::3] == examples[::3]
    assert read[5:99] == examples[5:] and read[7:] == []
    with pytest.raises(IndexError):
        read[7]
