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
- A campaign's index reads the campaign's own part files (their names record it) and the
  untagged ones written before parts named their campaign, never the parts of the other
  campaigns sharing the encoder. It holds the pairs the caller's ``members`` accepts
  (prioritisation: those still in the pool). It is extended with each such part written
  since it was saved (only its members), and rebuilt from all of them (a new IVF training;
  pairs that left the pool since are dropped) when it holds more than twice the vectors it
  was trained on, when it outgrows the exact threshold, or when it holds more than twice as
  many vectors as the caller's count of members (``live``: the pool shrinks as pairs are
  labelled, and a pair that left it never comes back). With no part file yet there is no
  index to save: its width comes from the first vectors.
- 8-bit codes cannot tell apart neighbours whose similarities differ by less than their
  step (a crowd of near-duplicates: the 1M benchmark's 0.912 recall@8 without this), so an IVF
  search is refined: it takes ``INDEX_REFINE`` × k candidates (8 by default) and ranks them by
  exact inner product against the stored vectors, read row by row from the part files (a
  search batch holds its candidates' vectors, never the pool's). IVF-Flat with the same lists
  and ``nprobe`` finds the whole true top 8 on such a crowd (measured: the lost recall is the
  codes', not the lists'), so ``nprobe`` stays where it was.
- Pairs leave the pool (labelled) without leaving the index until its next rebuild (at the
  latest once they are half of it): searches
  ask for more neighbours than needed and keep the hits the caller accepts
  (``search_filtered``), asking again with a 4× wider net for queries that came back short
  until they are full or the whole index was seen. A query an IVF probe cannot fill (its
  lists hold too few accepted pairs) or still short at ``_FETCH_MAX`` neighbours is answered
  by an exact scan of the index's part files, one part at a time; a query left short after
  that has fewer than k accepted pairs in the whole index, and is logged. A pair whose
  vectors are in two part files (racing writers, a taken-over shard's old parts) is in the
  index twice; a search keeps its best hit only, so it takes one of a query's k places.

Files: ``enc-…/index-c<campaign>-<ns>.faiss`` plus ``index-c<campaign>.json`` (which parts it
holds, what it was trained on), each written to a temporary name and renamed; a reader never
sees half an index. Two saves racing (a job taken over while its old worker still runs): the
meta written last wins and one index file is left (``_save``). A process keeps the
``_CACHE_MAX`` indexes it used last, each until its files change.
"""

from __future__ import annotations

import json
import logging
import math
import tempfile
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from django.conf import settings

from scoring.loop.vector_store import VectorStore, part_holds_campaign, vector_store

logger = logging.getLogger(__name__)

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
# Which rows of the named part belong in the index (each part's membership queried once).
Kept = Callable[[str, np.ndarray], np.ndarray]
# The subset of these ids a search may return (e.g. still in the pool).
Accept = Callable[[np.ndarray], np.ndarray]
# Exact top-``keep`` accepted (ids, similarities) of each query, over every indexed vector.
Scan = Callable[[np.ndarray, int, Accept], tuple[list[np.ndarray], list[np.ndarray]]]


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

    def search(self, queries: np.ndarray, k: int, accept: Accept) -> tuple[np.ndarray, np.ndarray]:
        """Top ``k`` accepted ids per query and their similarities: an IVF index's candidates
        re-ranked by exact inner product against the stored vectors; an exact index's as
        they are (it holds the stored vectors themselves). Queries the index cannot fill
        are answered by an exact scan of its parts."""
        store = vector_store(self.key)
        parts = list(self.meta["parts"])

        def scan(queries: np.ndarray, keep: int, accept: Accept) -> Any:
            return _scan_parts(store, parts, queries, keep, accept)

        if self.meta["kind"] != "ivf":
            return search_filtered(self.index, queries, k, accept, scan=scan)

        def stored(ids: np.ndarray) -> np.ndarray:
            vectors: np.ndarray = store.load(ids, blocks=("context",))["context"]
            return vectors

        return search_filtered(
            self.index,
            queries,
            k,
            accept,
            exact_vectors=stored,
            refine=refine_setting(),
            scan=scan,
        )


# The indexes this process used last, most recent at the end. Two: a worker prioritises one
# campaign at a time, and an index is up to ~400 MB at 1M pairs (an exact one of 50,000 ×
# 384 is 77 MB), so one per campaign served would grow with the campaigns.
_CACHE: OrderedDict[str, LoadedIndex] = OrderedDict()
_CACHE_MAX = 2
_LOCK = threading.Lock()


def _cache_get(cache_key: str) -> LoadedIndex | None:
    loaded = _CACHE.get(cache_key)
    if loaded is not None:
        _CACHE.move_to_end(cache_key)
    return loaded


def _cache_put(cache_key: str, loaded: LoadedIndex) -> None:
    _CACHE[cache_key] = loaded
    _CACHE.move_to_end(cache_key)
    while len(_CACHE) > _CACHE_MAX:
        _CACHE.popitem(last=False)


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


def _train_streaming(store: VectorStore, parts: list[str], kept: Kept, total: int) -> Any:
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
        chosen = part["context"][kept(str(name), part["ids"])]
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


def _add_parts(store: VectorStore, index: Any, parts: list[str], kept: Kept) -> int:
    added = 0
    for name in parts:
        part = store.read_part(name, ("context",))
        keep = kept(name, part["ids"])
        if keep.any():
            index.add_with_ids(
                np.ascontiguousarray(part["context"][keep], dtype=np.float32),
                part["ids"][keep],
            )
            added += int(keep.sum())
    return added


def _save(store: VectorStore, campaign_id: int, index: Any, meta: dict[str, Any]) -> None:
    """Write the index to a local file and move it into place: no copy of it in memory (at
    1M pairs it is ~400 MB). Then name it in the meta and remove the files it replaces.

    Two saves may race (a job taken over while its old worker still runs): the meta written
    last wins. Each save marks its file once the meta has named it, then reads the meta
    again: a save that finds another file named removes its own; the one named removes every
    marked file the meta no longer names, so whichever order they ran in, one file is left.
    """
    import faiss

    stem = f"index-c{campaign_id}-{time.time_ns():020d}-{uuid.uuid4().hex[:6]}"
    name = f"{stem}{_INDEX_SUFFIX}"
    with tempfile.TemporaryDirectory(prefix="arbiter-index-") as local:
        faiss.write_index(index, f"{local}/index.faiss")
        store.put_file(f"{local}/index.faiss", name)
    previous = (meta.get("file") or "") if meta else ""
    meta["file"] = name
    store._atomic_write(_meta_path(store, campaign_id), json.dumps(meta).encode())
    store._atomic_write(f"{store.path}/{stem}{_NAMED_SUFFIX}", b"")
    if _named_file(store, campaign_id) != name:
        _remove_index_file(store, name)  # a racing save's meta came after: nothing names it
        return
    if previous and previous != name:
        _remove_index_file(store, previous)
    _remove_superseded_indexes(store, campaign_id, keep=name)
    _remove_orphan_indexes(store, campaign_id, keep=name)
    store.remove_stale_temporaries(older_than_ns=_ORPHAN_AGE_NS)


_INDEX_SUFFIX = ".faiss"
# Beside an index file once a meta has named it (written after the meta): a marked file the
# meta no longer names is superseded for good, whereas an unmarked one may be a racing save's
# that its meta has yet to name.
_NAMED_SUFFIX = ".named"


def _named_file(store: VectorStore, campaign_id: int) -> str | None:
    meta = _read_meta(store, campaign_id)
    return str(meta["file"]) if meta is not None and meta.get("file") else None


def _remove_index_file(store: VectorStore, name: str) -> None:
    """Remove an index file and its mark; either may be gone already (two saves race to
    them)."""
    for path in (name, name.removesuffix(_INDEX_SUFFIX) + _NAMED_SUFFIX):
        try:
            store.fs.rm(f"{store.path}/{path}")
        except FileNotFoundError:
            pass


def _remove_superseded_indexes(store: VectorStore, campaign_id: int, *, keep: str) -> None:
    """Remove the marked index files the meta no longer names: their meta was written before
    their mark, so a meta read after seeing the mark that names another file has replaced
    theirs for good (a file is named once, by its own save)."""
    for marker in store.fs.glob(f"{store.path}/index-c{campaign_id}-*{_NAMED_SUFFIX}"):
        name = marker.rsplit("/", 1)[-1].removesuffix(_NAMED_SUFFIX) + _INDEX_SUFFIX
        if name != keep and _named_file(store, campaign_id) != name:
            _remove_index_file(store, name)


# An index file is an orphan once no meta names it: a process killed between writing the file
# and its meta leaves one (~400 MB at 1M pairs). Only those older than this are removed, so a
# concurrent save's fresh file is never taken from under it.
_ORPHAN_AGE_NS = 3600 * 10**9


def _remove_orphan_indexes(store: VectorStore, campaign_id: int, *, keep: str) -> None:
    now = time.time_ns()
    for path in store.fs.glob(f"{store.path}/index-c{campaign_id}-*{_INDEX_SUFFIX}"):
        name = path.rsplit("/", 1)[-1]
        stamp = name.removeprefix(f"index-c{campaign_id}-").split("-", 1)[0]
        if name != keep and stamp.isdigit() and now - int(stamp) > _ORPHAN_AGE_NS:
            _remove_index_file(store, name)


def _load(store: VectorStore, name: str) -> Any:
    faiss = _faiss()

    with tempfile.TemporaryDirectory(prefix="arbiter-index-") as local:
        index = faiss.read_index(store.local_copy(name, f"{local}/index.faiss"))
    if hasattr(index, "nprobe"):
        index.nprobe = nprobe_setting()
    return index


def _membership(members: Members) -> Kept:
    """Which rows of a part are members, each part's membership queried once per build (a
    rebuild counts them, then adds them), kept as one bit a row."""
    memo: dict[str, np.ndarray] = {}

    def kept(name: str, ids: np.ndarray) -> np.ndarray:
        if name in memo:
            return np.unpackbits(memo[name], count=len(ids)).astype(bool)
        mask = np.isin(ids, members(ids)) if len(ids) else np.zeros(0, dtype=bool)
        memo[name] = np.packbits(mask)
        return mask

    return kept


def _saved_index(
    store: VectorStore, campaign_id: int, names: Sequence[str], cache_key: str, key: str
) -> tuple[dict[str, Any] | None, LoadedIndex | None]:
    """The saved meta (None when there is none to extend) and its index, loaded unless this
    process holds it already."""
    retries = 2  # a racing save can replace the file between reading the meta and the file
    while True:
        meta = _read_meta(store, campaign_id)
        if meta is not None and not set(meta["parts"]).issubset(names):
            meta = None  # its parts were deleted: start again
        if meta is not None and not meta["parts"]:
            meta = None  # saved before any part existed (older code): its width was a guess
        loaded = _cache_get(cache_key)
        if meta is None or (loaded is not None and loaded.meta.get("file") == meta["file"]):
            return meta, loaded
        try:
            return meta, LoadedIndex(_load(store, meta["file"]), meta, key)
        except FileNotFoundError:
            if not retries:
                # Named but gone (removed by hand, or as an orphan from under a save paused
                # for an hour): build it again rather than fail every run.
                logger.warning("index file %s is missing: rebuilding", meta["file"])
                return None, None
            retries -= 1


def campaign_index(
    *, key: str, campaign_id: int, members: Members, live: int | None = None
) -> LoadedIndex:
    """The campaign's index for encoder ``key`` of the pairs ``members`` accepts, extended or
    rebuilt as needed, and saved. Reads only the campaign's own parts and untagged ones.

    ``live``: how many pairs ``members`` accepts now (prioritisation: the pool's size), where
    the caller knows it from one count. An index holding more than twice that many vectors
    is rebuilt, keeping only the members (``_shrunk``)."""
    store = vector_store(key)
    kept = _membership(members)

    with _LOCK:
        catalogue = store.refresh()
        parts = [part for part in catalogue.parts if part_holds_campaign(part.name, campaign_id)]
        names = [part.name for part in parts]
        if not names:
            # No vector yet (or no encoder directory at all): nothing to search, and nothing
            # saved, so the first vectors give the index its width.
            return _empty_index(key)
        cache_key = f"{store.path}|{campaign_id}"
        meta, loaded = _saved_index(store, campaign_id, names, cache_key, key)
        indexed = set(meta["parts"]) if meta is not None else set()  # once: 20,000 parts
        new = [name for name in names if name not in indexed]
        shrunk = loaded is not None and live is not None and _shrunk(loaded.size, live)
        if loaded is not None and meta is not None and not new and not shrunk:
            _cache_put(cache_key, loaded)
            return loaded
        previous_file = (meta or {}).get("file")
        index: Any = None
        saved: dict[str, Any] = {}
        if shrunk:
            # Mostly pairs that left the pool: rebuilt from the parts rather than extended,
            # and let go of first (see below).
            _CACHE.pop(cache_key, None)
            loaded = None
        if loaded is not None and meta is not None:
            index = loaded.index
            # Extended in place: if adding or saving fails halfway, the object holds vectors
            # its metadata does not list, and a retry would add them again. Forgotten until
            # saved, so a retry reloads the index from its file. Extended before the rebuild
            # check, so only the members count: an untagged part holds other campaigns' pairs
            # too. A rebuild then reads them again; it is rare.
            _CACHE.pop(cache_key, None)
            _add_parts(store, index, new, kept)
            if _outgrown(meta, int(index.ntotal)):
                # Let go before the rebuild: the old index and its replacement, each ~3.9 GB
                # at 10M pairs, would otherwise be held together.
                index = loaded = None
            else:
                saved = {**meta, "parts": names}
        if index is None:
            total = sum(int(kept(part.name, part.ids).sum()) for part in parts)
            if total <= exact_max():
                faiss = _faiss()
                index = faiss.IndexIDMap2(faiss.IndexFlatIP(_dim(store, names[0])))
                kind = "exact"
            else:
                index = _train_streaming(store, names, kept, total)
                kind = "ivf"
            _add_parts(store, index, names, kept)
            saved = {
                "kind": kind,
                "trained_on": int(index.ntotal),
                "parts": names,
                "file": previous_file,
            }
        _save(store, campaign_id, index, saved)
        loaded = LoadedIndex(index, saved, key)
        _cache_put(cache_key, loaded)
        return loaded


def _outgrown(meta: dict[str, Any], size: int) -> bool:
    """Whether an index of ``size`` vectors is rebuilt: an exact one past the exact threshold,
    an IVF one past twice the vectors its lists were trained on."""
    if meta["kind"] == "exact":
        return size > exact_max()
    return size > 2 * max(meta["trained_on"], 1)


def _shrunk(size: int, live: int) -> bool:
    """Whether an index of ``size`` vectors is rebuilt because the members now number less
    than half of it. Pairs leave the pool as they are labelled and never come back, so
    without this an index only grew: late in a campaign it held mostly labelled pairs, and a
    search widened through them (1,024 queries over a 200,000-vector IVF index: 20 s with
    1% of it still in the pool and 65 s with 0.1%, against 0.1 s and 0.04 s over an index of
    the pool alone), while a worker held the whole index in memory. Each rebuild at least
    halves the index, so a campaign's pool rebuilds it at most log2(pool) times."""
    return size > 2 * max(live, 0)


def _empty_index(key: str) -> LoadedIndex:
    """An index of no vectors, not saved (its width is unknown until a vector exists)."""
    faiss = _faiss()
    meta = {"kind": "exact", "trained_on": 0, "parts": [], "file": None}
    return LoadedIndex(faiss.IndexIDMap2(faiss.IndexFlatIP(1)), meta, key)


def _dim(store: VectorStore, part: str) -> int:
    return int(store.read_part(part, ("context",))["context"].shape[1])


# (query, neighbour) slots one faiss call returns (ids, similarities and flags: ~27 MB), and
# the neighbours one query is widened to; past that it is answered by a scan of the parts.
_HITS_PER_CALL = 1 << 21
_FETCH_MAX = 1 << 17


def search_filtered(
    index: Any,
    queries: np.ndarray,
    k: int,
    accept: Accept,
    *,
    exact_vectors: ExactVectors | None = None,
    refine: int = 1,
    scan: Scan | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Top ``k`` distinct accepted ids per query (-1 padded) and their similarities.

    ``accept(ids)`` returns the subset of ids that may be returned (e.g. still in the pool).
    An id the index holds more than once (its pair is in two part files) keeps its first,
    best hit only, so it fills one of the ``k`` places.
    Asks for ``max(4k + 16, refine * k)`` neighbours, then 4× more for queries still short of
    ``k`` until they are full or have seen the whole index, in calls of at most
    ``_HITS_PER_CALL`` slots. A query the index cannot widen further (an IVF probe's lists
    exhausted, or ``_FETCH_MAX`` neighbours asked) is answered by ``scan`` when given. With
    ``exact_vectors``, the first ``refine * k`` accepted candidates of each query are ranked
    by exact inner product against the vectors it returns, and the similarities returned are
    those exact ones. Queries left short of ``k`` are logged.
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
    unreached: list[int] = []  # short, and no wider search of the index can fill them
    fetch = min(max(4 * k + 16, keep), index.ntotal)
    while len(todo):
        short: list[int] = []
        group = max(1, _HITS_PER_CALL // fetch)
        for start in range(0, len(todo), group):
            rows = todo[start : start + group]
            similarities, ids = index.search(queries[rows], fetch)
            ok = np.isin(ids, accept(np.unique(ids[ids >= 0])))
            for row, query in enumerate(rows):
                hits = np.nonzero(ok[row])[0]
                # A pair stored in two parts is in the index twice: its best hit counts, once.
                _, first = np.unique(ids[row][hits], return_index=True)
                hits = hits[np.sort(first)][:keep]
                candidates[query] = ids[row][hits]
                approximate[query] = similarities[row][hits]
                if len(candidates[query]) >= k:
                    continue
                if (ids[row] < 0).any() or fetch >= _FETCH_MAX:
                    # Padded: an IVF search returned all its probed lists hold.
                    unreached.append(int(query))
                elif fetch < index.ntotal:
                    short.append(int(query))
                # else the whole index was seen: it holds fewer than k accepted pairs.
        todo = np.array(short, dtype=np.int64)
        fetch = min(fetch * 4, index.ntotal, _FETCH_MAX)
    if scan is not None and unreached:
        found, exact = scan(queries[unreached], keep, accept)
        for query, ids_found, similarity in zip(unreached, found, exact, strict=True):
            candidates[query], approximate[query] = ids_found, similarity
    if exact_vectors is not None:
        approximate = _exact_similarities(queries, candidates, exact_vectors)
    for row_out, (found_ids, similarity) in enumerate(zip(candidates, approximate, strict=True)):
        best = np.argsort(-similarity, kind="stable")[:k]
        out_ids[row_out, : len(best)] = found_ids[best]
        out_sim[row_out, : len(best)] = similarity[best]
    left_short = int(((out_ids >= 0).sum(axis=1) < k).sum())
    if left_short:
        logger.info(
            "%d of %d queries found fewer than %d accepted neighbours in an index of %d "
            "vectors (no more accepted pairs near them)",
            left_short,
            len(queries),
            k,
            index.ntotal,
        )
    return out_ids, out_sim


_SCAN_ROWS = 2048  # a part's rows compared with the queries at once


def _scan_parts(
    store: VectorStore, parts: Sequence[str], queries: np.ndarray, keep: int, accept: Accept
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Exact top-``keep`` accepted ids of each query (and their similarities, best first)
    over these parts, read one at a time: memory holds a part and ``keep`` per query, never
    the pool. A pair stored in several parts counts once: only its first copy in the
    catalogue is compared."""
    best_ids = np.full((len(queries), keep), -1, dtype=np.int64)
    best_sim = np.full((len(queries), keep), -np.inf, dtype=np.float32)
    catalogue = store.catalogue
    position = {part.name: number for number, part in enumerate(catalogue.parts)}
    for name in parts:
        part = store.read_part(name, ("context",))
        ids = part["ids"]
        here = position.get(name)
        wanted = np.ones(len(ids), dtype=bool)
        if here is not None:
            known, part_of, row_of = catalogue.locate(ids)
            first_copy = (part_of == here) & (row_of == np.arange(len(ids)))
            wanted = ~known | first_copy
        if wanted.any():
            wanted &= np.isin(ids, accept(ids[wanted]))
        rows = np.nonzero(wanted)[0]
        for start in range(0, len(rows), _SCAN_ROWS):
            chunk = rows[start : start + _SCAN_ROWS]
            similarity = queries @ part["context"][chunk].T
            merged_sim = np.concatenate([best_sim, similarity], axis=1)
            merged_ids = np.concatenate(
                [best_ids, np.broadcast_to(ids[chunk], (len(queries), len(chunk)))], axis=1
            )
            top = np.argpartition(-merged_sim, keep - 1, axis=1)[:, :keep]
            best_sim = np.take_along_axis(merged_sim, top, axis=1)
            best_ids = np.take_along_axis(merged_ids, top, axis=1)
    found: list[np.ndarray] = []
    exact: list[np.ndarray] = []
    for row_ids, row_sim in zip(best_ids, best_sim, strict=True):
        order = np.argsort(-row_sim, kind="stable")
        order = order[row_ids[order] >= 0]
        found.append(row_ids[order])
        exact.append(row_sim[order])
    return found, exact


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
