"""The vector catalogue finds each pair's oldest copy (part and row) however its parts
arrived: one refresh of everything, or a part at a time as scoring shards write them (kept as
a few sorted runs, merged as a binary counter carries, rather than every id re-sorted at each
refresh)."""

from __future__ import annotations

import numpy as np
import pytest

from scoring.loop.vector_store import VectorCatalogue, _Part


def _parts(rng: np.random.Generator, count: int) -> list[_Part]:
    # Ids drawn from a small range: many pairs stored in several parts (a rescored pair).
    return [
        _Part(f"part-{number:04d}", rng.integers(0, 3000, size=int(rng.integers(0, 300))))
        for number in range(count)
    ]


def _oldest_copies(parts: list[_Part]) -> dict[int, tuple[int, int]]:
    oldest: dict[int, tuple[int, int]] = {}
    for number, part in enumerate(parts):
        for row, pair_id in enumerate(part.ids.tolist()):
            oldest.setdefault(pair_id, (number, row))
    return oldest


@pytest.mark.parametrize("seed", range(5))
def test_locate_finds_the_oldest_copy_whatever_the_order_of_refreshes(seed):
    rng = np.random.default_rng(seed)
    parts = _parts(rng, 120)
    whole, piecewise = VectorCatalogue(), VectorCatalogue()
    whole.extend(parts)
    start = 0
    while start < len(parts):
        step = int(rng.integers(1, 6))
        piecewise.extend(parts[start : start + step])
        start += step
    assert len(piecewise.runs) <= 2 * int(np.log2(sum(len(p.ids) for p in parts) + 1))

    oldest = _oldest_copies(parts)
    queries = np.arange(-5, 3005, dtype=np.int64)
    for catalogue in (whole, piecewise):
        found, part_of, row_of = catalogue.locate(queries)
        for pair_id, hit, part, row in zip(queries, found, part_of, row_of, strict=True):
            assert bool(hit) == (int(pair_id) in oldest)
            if hit:
                assert (int(part), int(row)) == oldest[int(pair_id)]
        assert len(catalogue) == sum(len(part.ids) for part in parts)
        assert catalogue.distinct == len(oldest)


def test_an_empty_catalogue_finds_nothing():
    catalogue = VectorCatalogue()
    catalogue.extend([_Part("empty", np.zeros(0, dtype=np.int64))])
    found, _, _ = catalogue.locate(np.array([1, 2], dtype=np.int64))
    assert not found.any() and len(catalogue) == 0 and catalogue.distinct == 0
