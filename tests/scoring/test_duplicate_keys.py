"""The exact-repeat key set keeps every key across its merges into the sorted array."""

from __future__ import annotations

import random

import pytest

from scoring.datasets.curation import near_duplicates
from scoring.datasets.curation.near_duplicates import EXACT, DuplicateFinder, _KeySet


def test_the_key_set_answers_as_a_set_through_many_merges(monkeypatch) -> None:
    monkeypatch.setattr(_KeySet, "_MIN_RECENT", 8)
    rng = random.Random(7)
    keys = [rng.getrandbits(64) for _ in range(5_000)] + [0, 2**64 - 1]
    keys += keys[:300]  # repeats, some after their first copy was merged
    mine, reference = _KeySet(), set()
    for key in keys:
        assert (key in mine) == (key in reference)
        if key not in mine:
            mine.add_new(key)
            reference.add(key)
    assert len(mine) == len(reference)
    assert len(mine._sorted) > 4_000  # most keys went through merges into the array
    assert all(key in mine for key in reference)
    assert all(rng.getrandbits(64) not in mine for _ in range(1_000))


@pytest.mark.parametrize("minimum", [4, 1 << 16])
def test_the_finder_finds_exact_repeats_past_the_merges(monkeypatch, minimum) -> None:
    monkeypatch.setattr(near_duplicates._KeySet, "_MIN_RECENT", minimum)
    finder = DuplicateFinder(threshold=None)
    conversation = [{"role": "user", "content": "q"}]
    for index in range(200):
        assert finder.check(conversation, f"a{index}", "b") is None
    for index in range(200):
        assert finder.check(conversation, "b", f"a{index}") == EXACT  # A/B order ignored
