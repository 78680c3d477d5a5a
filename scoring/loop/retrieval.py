"""Nearest neighbours among pair embeddings, and how many to pull per mispredicted pair.

Pure numpy (and faiss for large pools); no ORM, so the rules are tested with plain arrays.
Vectors are L2-normalised, so inner product is cosine similarity.
"""

from __future__ import annotations

import math

import numpy as np

DEFAULT_RETRIEVAL_K = 8
# Below this many pool vectors an exact numpy search is as fast as building an index.
EXACT_SEARCH_MAX_POOL = 50_000
_QUERY_CHUNK = 1024


def agreement_of(p_a_better: float, side: int) -> float:
    """The model's probability of agreeing with a human verdict that picked a side (``side``
    positive: A, negative: B): p(A better), or 1 - p(A better)."""
    return p_a_better if side > 0 else 1.0 - p_a_better


def is_mispredicted(p_agree: float) -> bool:
    """Whether the model missed the humans' side: ``p_agree <= 0.5``. The one rule for
    prioritisation (its sources, their ``k`` and its count) and the dashboard's hit rate.

    At exactly 0.5 the model has no preference (equal rewards, e.g. identical responses, or
    a ranking item's two responses it scores alike), so it did not find the side the humans
    chose: a miss, as held-out accuracy (``scoring.evaluation.maths.subset_counts``) and RewardBench
    count a tie. The same holds for the retrieval: a pair the model cannot order is one it
    has not learned, as much a place to look for more like it as a wrong one, and not a right
    answer held with some doubt (``int(k_max * (1 - p))`` would treat it as one).
    """
    return p_agree <= 0.5


def retrieval_count(p_agree: float, k_max: int = DEFAULT_RETRIEVAL_K) -> int:
    """How many similar pool pairs a verified pair pulls in (Skywork-Reward-V2, Stage 1).

    ``k_max`` when the model mispredicts the human label (``is_mispredicted``: p <= 0.5),
    otherwise ``int(k_max * (1 - p))``: low-confidence agreement still pulls a few, confident
    agreement none.
    """
    if not 0.0 <= p_agree <= 1.0 or math.isnan(p_agree):
        raise ValueError(f"p_agree must be a probability, got {p_agree!r}")
    if k_max < 0:
        raise ValueError("k_max cannot be negative")
    if is_mispredicted(p_agree):
        return k_max
    return int(k_max * (1.0 - p_agree))


def normalise_rows(vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    unit: np.ndarray = vectors / np.maximum(norms, 1e-12)
    return unit


def nearest_neighbours(
    queries: np.ndarray, pool: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` most similar pool rows for each query row, most similar first.

    Both inputs are L2-normalised float32 matrices with the same width. Returns
    ``(indices, similarities)``, each of shape ``(len(queries), min(k, len(pool)))``.
    Exact: numpy for small pools, a flat faiss inner-product index for large ones.
    """
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    pool = np.ascontiguousarray(pool, dtype=np.float32)
    k = min(k, len(pool))
    if k <= 0 or len(queries) == 0:
        empty = np.zeros((len(queries), 0))
        return empty.astype(np.int64), empty.astype(np.float32)
    if queries.shape[1] != pool.shape[1]:
        raise ValueError(f"query width {queries.shape[1]} != pool width {pool.shape[1]}")
    if len(pool) > EXACT_SEARCH_MAX_POOL:
        return _faiss_search(queries, pool, k)
    indices = np.empty((len(queries), k), dtype=np.int64)
    similarities = np.empty((len(queries), k), dtype=np.float32)
    for start in range(0, len(queries), _QUERY_CHUNK):
        block = queries[start : start + _QUERY_CHUNK] @ pool.T
        # argpartition finds the top k in linear time; only those k are then sorted.
        top = np.argpartition(-block, k - 1, axis=1)[:, :k]
        top_scores = np.take_along_axis(block, top, axis=1)
        order = np.argsort(-top_scores, axis=1, kind="stable")
        indices[start : start + len(block)] = np.take_along_axis(top, order, axis=1)
        similarities[start : start + len(block)] = np.take_along_axis(top_scores, order, axis=1)
    return indices, similarities


def _faiss_search(queries: np.ndarray, pool: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    import faiss  # imported here: only large pools need it

    index = faiss.IndexFlatIP(pool.shape[1])
    index.add(pool)
    similarities, indices = index.search(queries, k)
    return indices.astype(np.int64), similarities.astype(np.float32)
