"""Prioritisation's neighbour search (``_retrieve``) keeps one pull per retrieved pool pair as
hits arrive, rather than a table of every hit: the pulls must be exactly those of a plain
reference over all hits, however often the hits are reduced on the way (``_REDUCE_AT``)."""

from __future__ import annotations

import numpy as np
import pytest

from scoring.loop import prioritisation


class _Index:
    """A fake index: each search returns seeded ids (some -1: fewer neighbours than asked)
    and similarities from a small set, so ties are common."""

    meta = {"kind": "fake"}
    size = 0

    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        self.answers: list[tuple[np.ndarray, np.ndarray]] = []

    def search(self, queries, k, accept):
        ids = self.rng.integers(1, 40, (len(queries), k)).astype(np.int64)
        ids[self.rng.random((len(queries), k)) < 0.1] = -1
        sim = self.rng.choice(np.array([0.25, 0.5, 0.75], dtype=np.float32), (len(queries), k))
        self.answers.append((ids, sim))
        return ids, sim


class _Context:
    def check(self):
        pass

    def log(self, message):
        pass


def _reference(ids, p, k, missing, answers):
    """For each pool pair, the first hit with the highest 1 - p, then similarity."""
    best: dict[int, tuple[float, float, int, float]] = {}
    searched = [i for i in range(len(ids)) if int(ids[i]) not in missing]
    row = 0
    for hit_ids, hit_sim in answers:
        for q in range(len(hit_ids)):
            source = searched[row]
            row += 1
            for rank in range(int(k[source])):
                pool_id = int(hit_ids[q, rank])
                if pool_id < 0:
                    continue
                pull = (1.0 - float(p[source]), float(hit_sim[q, rank]))
                if pool_id not in best or pull > best[pool_id][:2]:
                    best[pool_id] = (*pull, int(ids[source]), float(p[source]))
    return sorted((pool_id, *pull) for pool_id, pull in best.items())


@pytest.mark.parametrize("reduce_at", [1, 5, 10**9])
@pytest.mark.parametrize("seed", range(5))
def test_pulls_match_a_plain_reference_however_often_reduced(monkeypatch, seed, reduce_at):
    rng = np.random.default_rng(seed)
    n = 300
    ids = np.sort(rng.choice(np.arange(1000, 5000), n, replace=False)).astype(np.int64)
    # 0.1 and the next float after it differ, but their 1 - p (the boost) is equal: a tie.
    p = rng.choice(np.array([0.05, 0.1, np.nextafter(0.1, 1.0), 0.45, 0.5, 0.7]), n)
    k = rng.integers(1, 5, n).astype(np.int64)
    missing = set(rng.choice(ids, 20, replace=False).tolist())
    index = _Index(seed)
    monkeypatch.setattr(prioritisation, "_BATCH", 7)
    monkeypatch.setattr(prioritisation, "_REDUCE_AT", reduce_at, raising=False)
    monkeypatch.setattr(
        prioritisation,
        "pair_embeddings_missing",
        lambda *, pair_ids, key: [i for i in pair_ids if i in missing],
    )
    monkeypatch.setattr(prioritisation, "campaign_index", lambda **kwargs: index)
    monkeypatch.setattr(
        prioritisation,
        "pair_context_load",
        lambda *, pair_ids, key: np.zeros((len(pair_ids), 2), dtype=np.float32),
    )

    pulls = prioritisation._retrieve(
        key="fake",
        campaign_id=1,
        sources=(ids, p, k),
        pool=None,
        pool_size=40,
        context=_Context(),
    )

    got = sorted(
        zip(
            pulls.pool_ids.tolist(),
            pulls.boost.tolist(),
            pulls.similarity.tolist(),
            pulls.source_ids.tolist(),
            pulls.p.tolist(),
            strict=True,
        )
    )
    assert got == _reference(ids, p, k, missing, index.answers)
    assert pulls.pool_ids.tolist() == sorted(pulls.pool_ids.tolist())
    assert pulls.boost.dtype == pulls.p.dtype == pulls.similarity.dtype == np.float64
