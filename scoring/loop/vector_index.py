"""The retrieval index of a campaign's context vectors: faiss, built once, extended as pairs
arrive, persisted beside the vectors and rebuilt when the pool has grown enough.

- Below ``INDEX_EXACT_MAX`` vectors (50,000 by default) the index is exact
  (``IndexIDMap2(IndexFlatIP)``): as fast as an approximate one at that size.
- Above it, IVF with 8-bit scalar-quantised codes (``IndexIVFScalarQuantizer``, inner product,
  ``nlist ≈ sqrt(n) / 4`` lists trained by 10 k-means iterations on a sample of 64 vectors a
  list drawn from randomly chosen part files, and ``nprobe`` = ``INDEX_NPROBE`` lists searched
  per query): 392 bytes a pair on disk instead of 1,544 for float32 codes, with the recall
  the tests and the benchmark measure. Fewer, longer lists than the usual ``sqrt(n)``: adding
  a vector costs one comparison per list, and a build adds every vector while a round
  searches a few hundred, so at 1M pairs 250 lists need a quarter of the comparisons 1,000
  would, and searching 48 of them stays a few seconds a round.
- The index is extended with each part file written since it was saved (only the campaign's
  pairs in it), and rebuilt from all parts (a new IVF training) when it holds more than twice
  the vectors it was trained on, or when it outgrows the exact threshold (counting the
  campaign's vectors only). With no part file yet there is no index to save: its width comes
  from the first vectors.
- 8-bit codes cannot tell apart neighbours whose similarities differ by less than their
  step (a crowd of near-duplicates: the 1M benchmark's 0.912 recall@8 without this), so an IVF
  search is refined: it takes ``INDEX_REFINE`` × k candidates (8 by default) and ranks them by
  exact inner product against the stored vectors, read row by row from the part files (a
  search batch holds its candidates' vectors, never the pool's). IVF-Flat with the same lists
  and ``nprobe`` finds the whole true top 8 on such a crowd (measured: the lost recall is the
  codes', not the lists'), so ``nprobe`` stays where it was.
- Pairs leave the pool (labelled, queued) without leaving the index: searches ask for more
  neighbours than needed and keep the hits the caller accepts (``search_filtered``), asking
  again with a wider net for queries that came back short. A pair whose vectors are in two
  part files (racing writers, a taken-over shard's old parts) is in the index twice; a search
  keeps its best hit only, so it takes one of a query's k places.

Files: ``enc-…/index-c<campaign>-<ns>.faiss`` plus ``index-c<campaign>.json`` (which parts it
holds, what it was trained on), each written to a temporary name and renamed; a reader never
sees half an index. One process's loaded index is cached until the files change.
"""

from __future__ import annotations

import json
import math
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from django.conf import settings

from scoring.loop.vector_store import VectorStore, vector_store

_SAMPLE_MAX = 100_000
_KMEANS_ITERATIONS = 10


def _sample_size(nlist: int) -> int:
    """Vectors the IVF lists are trained on: 64 a list (faiss wants at least 39), at most
    100,000; k-means on more costs time and gains no recall here."""
    return min(64 * nlist, _SAMPLE_MAX)


def _nlist(n: int) -> int:
    return int(min(max(math.sqrt(n) / 4, 16), 65_536))


# ids of the part's pairs that belong in this campaign's index (a database membership query).
Members = Callable[[np.ndarray], np.ndarray]


def _faiss() -> Any:
    """faiss, with its OpenMP threads set to ``INDEX_THREADS`` (1 by default). On a shared
    or busy host, faiss's spinning OpenMP threads wait for each other: building a 200,000-pair
    index on the 2-core dev machine at load 16 took 14–17 s with 2 threads and 3.8–5.4 s with
    one. Dedicated index hosts can raise it."""
    import faiss

    faiss.omp_set_num_threads(int(settings.ARBITER.get("INDEX_THREADS", 1)))
    return faiss


def exact_max() -> int:
    return int(settings.ARBITER.get("INDEX_EXACT_MAX", 50_000))


def nprobe_setting() -> int:
    return int(settings.ARBITER.get("INDEX_NPROBE", 48))


def refine_setting() -> int:
    return int(settings.ARBITER.get("INDEX_REFINE", 8))


# Float32 vectors of these ids, row-aligned (the exact vectors a search is refined with).
ExactVectors = Callable[[np.ndarray], np.ndarray]


@dataclass
class LoadedIndex:
    index: Any
    meta: dict[str, Any]
    key: str

    @property
    def size(self) -> int:
        return int(self.index.ntotal)

    def search(
        self, queries: np.ndarray, k: int, accept: Callable[[np.ndarray], np.ndarray]
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top ``k`` accepted ids per query and their similarities: an IVF index's candidates
        re-ranked by exact inner product against the stored vectors; an exact index's as
        they are (it holds the stored vectors themselves)."""
        if self.meta["kind"] != "ivf":
            return search_filtered(self.index, queries, k, accept)
        store = vector_store(self.key)

        def stored(ids: np.ndarray) -> np.ndarray:
            vectors: np.ndarray = store.load(ids, blocks=("context",))["context"]
            return vectors

        return search_filtered(
            self.index, queries, k, accept, exact_vectors=stored, refine=refine_setting()
        )


_CACHE: dict[str, LoadedIndex] = {}
_LOCK = threading.Lock()


def _meta_path(store: VectorStore, campaign_id: int) -> str:
    return f"{store.path}/index-c{campaign_id}.json"


def _read_meta(store: VectorStore, campaign_id: int) -> dict[str, Any] | None:
    path = _meta_path(store, campaign_id)
    store.fs.invalidate_cache(store.path)
    if not store.fs.exists(path):
        return None
    return json.loads(store.fs.cat_file(path))


def build_index(vectors: np.ndarray, ids: np.ndarray, *, exact: bool | None = None) -> Any:
    """An index of these vectors (pure: no files), exact below the threshold."""
    faiss = _faiss()
    n, dim = vectors.shape
    exact = n <= exact_max() if exact is None else exact
    index: Any  # faiss's index classes share no typed base
    if exact:
        index = faiss.IndexIDMap2(faiss.IndexFlatIP(dim))
    else:
        nlist = _nlist(n)
        quantizer = faiss.IndexFlatIP(dim)
        index = faiss.IndexIVFScalarQuantizer(
            quantizer, dim, nlist, faiss.ScalarQuantizer.QT_8bit, faiss.METRIC_INNER_PRODUCT
        )
        rng = np.random.default_rng(0)
        sample = vectors[rng.choice(n, size=min(n, _sample_size(nlist)), replace=False)]
        index.cp.niter = _KMEANS_ITERATIONS
        index.train(np.ascontiguousarray(sample, dtype=np.float32))
        index.nprobe = nprobe_setting()
    index.add_with_ids(np.ascontiguousarray(vectors, dtype=np.float32), ids.astype(np.int64))
    return index


def _train_streaming(store: VectorStore, parts: list[str], members: Members, total: int) -> Any:
    """An empty IVF index trained on a sample of the parts' member vectors: every member of
    randomly chosen parts until the sample is large enough (reading a few parts, not all)."""
    faiss = _faiss()

    rng = np.random.default_rng(0)
    nlist = _nlist(total)
    wanted = _sample_size(nlist)
    sample: list[np.ndarray] = []
    taken = 0
    dim = 0
    for name in rng.permutation(np.array(parts, dtype=object)):
        if taken >= wanted:
            break
        part = store.read_part(str(name), ("context",))
        chosen = part["context"][np.isin(part["ids"], members(part["ids"]))]
        dim = chosen.shape[1] if len(chosen) else dim
        sample.append(chosen)
        taken += len(chosen)
    vectors = np.concatenate(sample) if sample else np.zeros((0, dim), dtype=np.float32)
    index = faiss.IndexIVFScalarQuantizer(
        faiss.IndexFlatIP(dim),
        dim,
        nlist,
        faiss.ScalarQuantizer.QT_8bit,
        faiss.METRIC_INNER_PRODUCT,
    )
    index.cp.niter = _KMEANS_ITERATIONS
    index.train(np.ascontiguousarray(vectors, dtype=np.float32))
    index.nprobe = nprobe_setting()
    return index


def _add_parts(store: VectorStore, index: Any, parts: list[str], members: Members) -> int:
    added = 0
    for name in parts:
        part = store.read_part(name, ("context",))
        keep = np.isin(part["ids"], members(part["ids"]))
        if keep.any():
            index.add_with_ids(
                np.ascontiguousarray(part["context"][keep], dtype=np.float32),
                part["ids"][keep],
            )
            added += int(keep.sum())
    return added


def _save(store: VectorStore, campaign_id: int, index: Any, meta: dict[str, Any]) -> None:
    """Write the index to a local file and move it into place: no copy of it in memory (at
    1M pairs it is ~400 MB)."""
    import faiss

    name = f"index-c{campaign_id}-{time.time_ns():020d}-{uuid.uuid4().hex[:6]}.faiss"
    with tempfile.TemporaryDirectory(prefix="arbiter-index-") as local:
        faiss.write_index(index, f"{local}/index.faiss")
        store.put_file(f"{local}/index.faiss", name)
    old = (meta.get("file") or "") if meta else ""
    meta["file"] = name
    store._atomic_write(_meta_path(store, campaign_id), json.dumps(meta).encode())
    if old and old != name:
        store.fs.rm(f"{store.path}/{old}")
    _remove_orphan_indexes(store, campaign_id, keep=name)


# An index file is an orphan once no meta names it: a process killed between writing the file
# and its meta leaves one (~400 MB at 1M pairs). Only those older than this are removed, so a
# concurrent save's fresh file is never taken from under it.
_ORPHAN_AGE_NS = 3600 * 10**9


def _remove_orphan_indexes(store: VectorStore, campaign_id: int, *, keep: str) -> None:
    now = time.time_ns()
    for path in store.fs.glob(f"{store.path}/index-c{campaign_id}-*.faiss"):
        name = path.rsplit("/", 1)[-1]
        stamp = name.removeprefix(f"index-c{campaign_id}-").split("-", 1)[0]
        if name != keep and stamp.isdigit() and now - int(stamp) > _ORPHAN_AGE_NS:
            store.fs.rm(path)


def _load(store: VectorStore, name: str) -> Any:
    faiss = _faiss()

    with tempfile.TemporaryDirectory(prefix="arbiter-index-") as local:
        index = faiss.read_index(store.local_copy(name, f"{local}/index.faiss"))
    if hasattr(index, "nprobe"):
        index.nprobe = nprobe_setting()
    return index


def campaign_index(*, key: str, campaign_id: int, members: Members) -> LoadedIndex:
    """The campaign's index for encoder ``key``, extended or rebuilt as needed, and saved."""
    store = vector_store(key)
    memo: dict[tuple[int, int, int], np.ndarray] = {}
    plain_members = members

    def memo_members(ids: np.ndarray) -> np.ndarray:  # each part's membership queried once
        if not len(ids):
            return ids
        memo_key = (int(ids[0]), int(ids[-1]), len(ids))
        if memo_key not in memo:
            memo[memo_key] = plain_members(ids)
        return memo[memo_key]

    members = memo_members

    with _LOCK:
        catalogue = store.refresh()
        names = [part.name for part in catalogue.parts]
        if not names:
            # No vector yet (or no encoder directory at all): nothing to search, and nothing
            # saved, so the first vectors give the index its width.
            return _empty_index(key)
        meta = _read_meta(store, campaign_id)
        if meta is not None and not set(meta["parts"]).issubset(names):
            meta = None  # its parts were deleted: start again
        if meta is not None and not meta["parts"]:
            meta = None  # saved before any part existed (older code): its width was a guess
        cache_key = f"{store.path}|{campaign_id}"
        loaded = _CACHE.get(cache_key)
        if meta is not None and (loaded is None or loaded.meta.get("file") != meta["file"]):
            loaded = LoadedIndex(_load(store, meta["file"]), meta, key)
        indexed = set(meta["parts"]) if meta is not None else set()  # once: 20,000 parts
        new = [name for name in names if name not in indexed]
        if loaded is not None and meta is not None and not new:
            _CACHE[cache_key] = loaded
            return loaded
        previous_file = (meta or {}).get("file")
        index: Any = None
        saved: dict[str, Any] = {}
        if loaded is not None and meta is not None:
            index = loaded.index
            # Extended in place: if adding or saving fails halfway, the object holds vectors
            # its metadata does not list, and a retry would add them again. Forgotten until
            # saved, so a retry reloads the index from its file. Extended before the rebuild
            # check, so only this campaign's vectors count: the parts hold other campaigns'
            # pairs too (one encoder serves many). A rebuild then reads them again; it is rare.
            _CACHE.pop(cache_key, None)
            _add_parts(store, index, new, members)
            if _outgrown(meta, int(index.ntotal)):
                index = None
            else:
                saved = {**meta, "parts": names}
        if index is None:
            total = sum(len(members(part.ids)) for part in catalogue.parts)
            if total <= exact_max():
                faiss = _faiss()
                index = faiss.IndexIDMap2(faiss.IndexFlatIP(_dim(store, names[0])))
                kind = "exact"
            else:
                index = _train_streaming(store, names, members, total)
                kind = "ivf"
            _add_parts(store, index, names, members)
            saved = {
                "kind": kind,
                "trained_on": int(index.ntotal),
                "parts": names,
                "file": previous_file,
            }
        _save(store, campaign_id, index, saved)
        loaded = LoadedIndex(index, saved, key)
        _CACHE[cache_key] = loaded
        return loaded


def _outgrown(meta: dict[str, Any], size: int) -> bool:
    """Whether an index of ``size`` vectors is rebuilt: an exact one past the exact threshold,
    an IVF one past twice the vectors its lists were trained on."""
    if meta["kind"] == "exact":
        return size > exact_max()
    return size > 2 * max(meta["trained_on"], 1)


def _empty_index(key: str) -> LoadedIndex:
    """An index of no vectors, not saved (its width is unknown until a vector exists)."""
    faiss = _faiss()
    meta = {"kind": "exact", "trained_on": 0, "parts": [], "file": None}
    return LoadedIndex(faiss.IndexIDMap2(faiss.IndexFlatIP(1)), meta, key)


def _dim(store: VectorStore, part: str) -> int:
    return int(store.read_part(part, ("context",))["context"].shape[1])


def search_filtered(
    index: Any,
    queries: np.ndarray,
    k: int,
    accept: Callable[[np.ndarray], np.ndarray],
    *,
    max_rounds: int = 4,
    exact_vectors: ExactVectors | None = None,
    refine: int = 1,
) -> tuple[np.ndarray, np.ndarray]:
    """Top ``k`` distinct accepted ids per query (-1 padded) and their similarities.

    ``accept(ids)`` returns the subset of ids that may be returned (e.g. still in the pool).
    An id the index holds more than once (its pair is in two part files) keeps its first,
    best hit only, so it fills one of the ``k`` places.
    Asks for ``max(4k + 16, refine * k)`` neighbours, then 4× more for queries still short of
    ``k``, up to ``max_rounds`` times or the whole index. With ``exact_vectors``, the first
    ``refine * k`` accepted candidates of each query are ranked by exact inner product
    against the vectors it returns, and the similarities returned are those exact ones.
    """
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    out_ids = np.full((len(queries), k), -1, dtype=np.int64)
    out_sim = np.zeros((len(queries), k), dtype=np.float32)
    if k <= 0 or not len(queries) or index.ntotal == 0:
        return out_ids, out_sim
    keep = k * max(refine, 1) if exact_vectors is not None else k
    candidates: list[np.ndarray] = [np.zeros(0, dtype=np.int64)] * len(queries)
    approximate: list[np.ndarray] = [np.zeros(0, dtype=np.float32)] * len(queries)
    todo = np.arange(len(queries))
    fetch = min(max(4 * k + 16, keep), index.ntotal)
    for _ in range(max_rounds):
        similarities, ids = index.search(queries[todo], fetch)
        ok = np.isin(ids, accept(np.unique(ids[ids >= 0])))
        short = []
        for row, query in enumerate(todo):
            hits = np.nonzero(ok[row])[0]
            # A pair stored in two parts is in the index twice: its best hit counts, once.
            _, first = np.unique(ids[row][hits], return_index=True)
            hits = hits[np.sort(first)][:keep]
            candidates[query] = ids[row][hits]
            approximate[query] = similarities[row][hits]
            if len(candidates[query]) < k and fetch < index.ntotal:
                short.append(query)
        if not short:
            break
        todo = np.array(short)
        fetch = min(fetch * 4, index.ntotal)
    if exact_vectors is not None:
        approximate = _exact_similarities(queries, candidates, exact_vectors)
    for row_out, (found, similarity) in enumerate(zip(candidates, approximate, strict=True)):
        best = np.argsort(-similarity, kind="stable")[:k]
        out_ids[row_out, : len(best)] = found[best]
        out_sim[row_out, : len(best)] = similarity[best]
    return out_ids, out_sim


_REFINE_QUERIES = 256  # queries whose candidates' vectors are held at once


def _exact_similarities(
    queries: np.ndarray, candidates: list[np.ndarray], exact_vectors: ExactVectors
) -> list[np.ndarray]:
    """Exact inner products of each query with its candidates, reading the candidates'
    vectors for ``_REFINE_QUERIES`` queries at a time (each distinct id once)."""
    exact: list[np.ndarray] = []
    for start in range(0, len(queries), _REFINE_QUERIES):
        group = candidates[start : start + _REFINE_QUERIES]
        wanted = np.unique(np.concatenate(group)) if group else np.zeros(0, dtype=np.int64)
        vectors = exact_vectors(wanted) if len(wanted) else np.zeros((0, queries.shape[1]))
        for offset, found in enumerate(group):
            rows = np.searchsorted(wanted, found)
            exact.append((vectors[rows] @ queries[start + offset]).astype(np.float32))
    return exact


def exact_search(queries: np.ndarray, vectors: np.ndarray, ids: np.ndarray, k: int) -> np.ndarray:
    """Exact top-k ids by inner product (the reference the recall is measured against)."""
    faiss = _faiss()

    index = faiss.IndexIDMap2(faiss.IndexFlatIP(vectors.shape[1]))
    index.add_with_ids(np.ascontiguousarray(vectors, dtype=np.float32), ids.astype(np.int64))
    return index.search(np.ascontiguousarray(queries, dtype=np.float32), k)[1]


def recall_at(found: np.ndarray, truth: np.ndarray) -> float:
    """Mean share of the true top-k ids found, per query."""
    k = truth.shape[1]
    hits = [
        len(set(f[f >= 0].tolist()) & set(t.tolist())) / k
        for f, t in zip(found, truth, strict=True)
    ]
    return float(np.mean(hits)) if hits else 1.0


def index_bytes(data: Any) -> int:
    import faiss

    writer = faiss.VectorIOWriter()
    faiss.write_index(data, writer)
    return int(faiss.vector_to_array(writer.data).size)
