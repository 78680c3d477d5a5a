"""The retrieval index: a pair whose vectors are in two part files (racing writers, a taken-over
shard's old parts) counts once among a source's k neighbours, and a campaign index with many
part files and nothing new is returned at once."""

from __future__ import annotations

import time

import numpy as np

from annotation.models import Pair
from scoring.jobs.runner import JobContext, job_claim, job_create
from scoring.loop import vector_index
from scoring.loop.embeddings import PairVectors, pair_embeddings_store
from scoring.loop.prioritisation import pool_prioritise
from scoring.loop.retrieval import normalise_rows
from scoring.loop.vector_index import build_index, campaign_index, search_filtered
from scoring.loop.vector_store import VectorCatalogue, VectorStore, _Part
from scoring.models import ModelVersion, PairScore, Retrieval
from tests.factories import CampaignFactory, PairFactory

KEY = "review-encoder"
DIM = 4


def _every(candidates: np.ndarray) -> np.ndarray:
    return candidates


# --- A pair embedded twice ----------------------------------------------------------------


def _embed(pair: Pair, direction: list[float]) -> None:
    context = normalise_rows(np.array([direction], dtype=np.float32))
    pair_embeddings_store(
        vectors=PairVectors(np.array([pair.pk]), context, np.zeros((1, DIM)), np.zeros((1, DIM))),
        key=KEY,
    )


def test_a_pair_embedded_twice_takes_one_of_its_sources_k_neighbour_slots(db, settings, tmp_path):
    settings.ARBITER = {**settings.ARBITER, "VECTOR_ROOT": str(tmp_path)}
    campaign = CampaignFactory(retrieval_k=2)
    version = ModelVersion.objects.create(
        campaign=campaign,
        number=1,
        base="test",
        checkpoint="/nowhere",
        metrics={"encoder": KEY},
        is_active=True,
    )
    job = job_create(campaign=campaign, kind="score")
    context = JobContext(job_claim(job_id=job.pk, worker="test").job)
    wrong = PairFactory(
        campaign=campaign,
        status=Pair.Status.COMPLETE,
        consensus_preference=1,
        provenance=Pair.Provenance.UNANIMOUS,
        labels_count=3,
        slots_taken=3,
    )
    _embed(wrong, [1, 0, 0, 0])
    PairScore.objects.create(
        pair=wrong, model_version=version, reward_a=0, reward_b=0, p_a_better=0.1
    )
    nearest = PairFactory(campaign=campaign, status=Pair.Status.POOLED)
    second = PairFactory(campaign=campaign, status=Pair.Status.POOLED)
    _embed(nearest, [1, 0.05, 0, 0])
    _embed(nearest, [1, 0.05, 0, 0])  # a second part file with the same pair
    _embed(second, [1, 0.2, 0, 0])
    summary = pool_prioritise(version=version, context=context)
    assert summary["retrieved"] == 2, summary
    pulled = set(Retrieval.objects.filter(job=job).values_list("pair_id", flat=True))
    assert pulled == {nearest.pk, second.pk}


def test_an_exact_search_looks_past_a_crowd_of_copies_of_one_id():
    # Id 0 stored 40 times (more than the first fetch of 4k + 16 = 32), then ids 1..6.
    rng = np.random.default_rng(0)
    query = normalise_rows(rng.normal(size=(1, 8)))
    others = normalise_rows(query + 0.1 * np.arange(1, 7)[:, None] * rng.normal(size=(6, 8)))
    vectors = np.concatenate([np.repeat(query, 40, axis=0), others])
    ids = np.concatenate([np.zeros(40, dtype=np.int64), np.arange(1, 7)])
    index = build_index(vectors, ids, exact=True)
    found, similarity = search_filtered(index, query, 4, _every)
    truth = np.argsort(-(vectors[40:] @ query[0]))[:3] + 1
    assert found[0].tolist() == [0, *truth.tolist()]
    assert np.all(np.diff(similarity[0]) <= 0)


def test_an_ivf_search_refined_against_the_stored_vectors_returns_each_pair_once(
    settings, tmp_path
):
    settings.ARBITER = {
        **settings.ARBITER,
        "VECTOR_ROOT": str(tmp_path),
        "INDEX_EXACT_MAX": 100,
        "INDEX_NPROBE": 16,
    }
    rng = np.random.default_rng(1)
    dim = 16
    store = VectorStore("enc-twice", str(tmp_path))
    vectors = normalise_rows(rng.normal(size=(1200, dim)))
    queries = normalise_rows(rng.normal(size=(5, dim)))
    vectors[:40] = normalise_rows(np.repeat(queries, 8, axis=0) + 0.05 * rng.normal(size=(40, dim)))
    blocks = {"context": vectors, "a": np.zeros((1200, 2)), "b": np.zeros((1200, 2))}
    store.append(ids=np.arange(1200), blocks=blocks)
    # The pairs nearest the queries written again: a taken-over shard's old parts.
    store.append(ids=np.arange(40), blocks={name: block[:40] for name, block in blocks.items()})
    loaded = campaign_index(key="enc-twice", campaign_id=1, members=lambda ids: ids)
    assert loaded.meta["kind"] == "ivf" and loaded.size == 1240
    found, _ = loaded.search(queries, 8, _every)
    stored = store.load(np.arange(1200), blocks=("context",))["context"]
    truth = np.argsort(-(queries @ stored.T), axis=1)[:, :8]
    for row, expected in zip(found, truth, strict=True):
        assert len(set(row.tolist())) == 8, row
        assert set(row.tolist()) == set(expected.tolist())


# --- Many part files, nothing new ---------------------------------------------------------


class _ManyPartsStore:
    """A store whose catalogue lists 20,000 parts: writing and listing that many real files
    takes half a minute, and only the catalogue's names matter to this path."""

    path = "/nowhere/enc"

    def __init__(self, names: list[str]) -> None:
        self.catalogue = VectorCatalogue(parts=[_Part(n, np.zeros(0, np.int64)) for n in names])

    def refresh(self) -> VectorCatalogue:
        return self.catalogue


def test_a_campaign_index_with_20000_parts_and_nothing_new_is_returned_at_once(monkeypatch):
    names = [f"part-{i:020d}-abcdef12.npz" for i in range(20_000)]
    store = _ManyPartsStore(names)
    meta = {"kind": "ivf", "trained_on": 5_000_000, "parts": names, "file": "index.faiss"}
    monkeypatch.setattr(vector_index, "vector_store", lambda key: store)
    monkeypatch.setattr(vector_index, "_read_meta", lambda store, campaign_id: dict(meta))
    loaded = vector_index.LoadedIndex(index=object(), meta=dict(meta), key="k")
    monkeypatch.setitem(vector_index._CACHE, f"{store.path}|1", loaded)
    started = time.monotonic()
    assert campaign_index(key="k", campaign_id=1, members=_every) is loaded
    assert time.monotonic() - started < 2.0  # 18 s when each name rebuilt the set of parts
