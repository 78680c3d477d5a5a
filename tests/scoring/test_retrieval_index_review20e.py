"""Review 20e of the retrieval index: an index mostly of pairs that left the pool is rebuilt to
the pool (it only ever grew), and the temporary files of killed writers do not stay for ever."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest

from annotation.importers import content_hash
from annotation.models import Pair
from scoring.jobs.runner import JobContext, job_claim, job_create
from scoring.loop import vector_index
from scoring.loop.embeddings import PairVectors, pair_embeddings_store
from scoring.loop.prioritisation import pool_prioritise
from scoring.loop.retrieval import normalise_rows
from scoring.loop.vector_index import campaign_index
from scoring.loop.vector_store import VectorStore
from scoring.models import ModelVersion, PairScore, Retrieval
from tests.factories import CampaignFactory

KEY = "review20e-encoder"
DIM = 8
_LABELLED = {"status": Pair.Status.COMPLETE, "labels_count": 3, "slots_taken": 3}


@pytest.fixture(autouse=True)
def _fresh_cache():
    vector_index._CACHE.clear()
    yield
    vector_index._CACHE.clear()


@pytest.fixture
def vector_root(settings, tmp_path):
    settings.ARBITER = {**settings.ARBITER, "VECTOR_ROOT": str(tmp_path)}
    return tmp_path


def _pairs(campaign, n: int, start: int, **fields) -> list[Pair]:
    return Pair.objects.bulk_create(
        [
            Pair(
                campaign=campaign,
                conversation=[{"role": "user", "content": f"q{start + i}"}],
                response_a="a",
                response_b="b",
                content_hash=content_hash([{"role": "user", "content": f"q{start + i}"}], "a", "b"),
                slot_cap=3,
                **fields,
            )
            for i in range(n)
        ]
    )


def _embed(pairs: list[Pair], context: np.ndarray) -> None:
    zeros = np.zeros((len(pairs), DIM))
    pair_embeddings_store(
        vectors=PairVectors(
            np.array([pair.pk for pair in pairs]), normalise_rows(context), zeros, zeros
        ),
        key=KEY,
    )


def _campaign_with_pool(rng: np.random.Generator, pool_size: int):
    """A campaign, its version, one mispredicted source (k = 8) and a pool around it."""
    campaign = CampaignFactory(retrieval_k=8)
    version = ModelVersion.objects.create(
        campaign=campaign,
        number=1,
        base="t",
        checkpoint="/nowhere",
        metrics={"encoder": KEY},
        is_active=True,
    )
    direction = rng.normal(size=DIM)
    source = _pairs(
        campaign, 1, 0, **_LABELLED, provenance=Pair.Provenance.UNANIMOUS, consensus_preference=1
    )
    _embed(source, direction[None, :])
    PairScore.objects.create(
        pair=source[0], model_version=version, reward_a=0, reward_b=0, p_a_better=0.1
    )
    pool = _pairs(campaign, pool_size, 1, status=Pair.Status.POOLED)
    _embed(pool, direction[None, :] + rng.normal(size=(pool_size, DIM)))
    return version, pool


def _context(campaign) -> JobContext:
    claim = job_claim(job_id=job_create(campaign=campaign, kind="score").pk, worker="t")
    assert claim.job is not None
    return JobContext(claim.job)


def _held() -> vector_index.LoadedIndex:
    (loaded,) = vector_index._CACHE.values()
    return loaded


@pytest.mark.django_db
def test_an_index_mostly_of_pairs_that_left_the_pool_is_rebuilt_to_the_pool(vector_root):
    # The index was rebuilt only when it grew: labelling emptied the pool while the index kept
    # every pair it ever held, so late in a campaign a search widened through labelled pairs
    # (1,024 queries over 200,000 vectors with 1% still pooled: 20 s instead of 0.1 s) and a
    # worker held the whole campaign's index in memory.
    rng = np.random.default_rng(0)
    version, pool = _campaign_with_pool(rng, 100)
    context = _context(version.campaign)
    pool_prioritise(version=version, context=context)
    assert _held().size == 100
    Pair.objects.filter(pk__in=[pair.pk for pair in pool[:70]]).update(**_LABELLED)

    summary = pool_prioritise(version=version, context=context)  # no new vectors

    in_pool = {pair.pk for pair in pool[70:]}
    assert _held().size == len(in_pool) == 30
    assert summary["retrieved"] == 8
    pulled = set(Retrieval.objects.filter(job=context.job).values_list("pair_id", flat=True))
    assert pulled <= in_pool
    # The saved index is the rebuilt one: a fresh process loads 30 vectors.
    vector_index._CACHE.clear()
    pool_prioritise(version=version, context=context)
    assert _held().size == 30


@pytest.mark.django_db
def test_an_index_whose_pool_lost_less_than_half_is_kept(vector_root):
    rng = np.random.default_rng(1)
    version, pool = _campaign_with_pool(rng, 100)
    context = _context(version.campaign)
    pool_prioritise(version=version, context=context)
    first_file = _held().meta["file"]
    Pair.objects.filter(pk__in=[pair.pk for pair in pool[:50]]).update(**_LABELLED)

    pool_prioritise(version=version, context=context)  # 100 vectors, 50 in the pool

    assert _held().meta["file"] == first_file  # not rebuilt at every labelled pair
    assert _held().size == 100


def test_temporary_files_of_killed_writers_go_once_an_hour_old(vector_root):
    # A writer killed while copying an index into the store (gigabytes at millions of pairs)
    # or writing a part left its ``.tmp-*`` file there for ever: nothing removed them.
    store = VectorStore(KEY, str(vector_root))
    every = lambda part_ids: part_ids  # noqa: E731 - every id is the campaign's
    rng = np.random.default_rng(2)
    zeros = np.zeros((10, DIM))
    blocks = {"context": normalise_rows(rng.normal(size=(10, DIM))), "a": zeros, "b": zeros}
    store.append(ids=np.arange(10), blocks=blocks)
    directory = Path(store.path)
    two_hours = 7200 * 10**9
    old = directory / f".tmp-{time.time_ns() - two_hours:020d}-{'a' * 32}"
    fresh = directory / f".tmp-{time.time_ns():020d}-{'b' * 32}"
    legacy = directory / f".tmp-{'c' * 32}"  # named before names carried their time
    for path in (old, fresh, legacy):
        path.write_bytes(b"half an index")
    stale = time.time() - 7200
    os.utime(legacy, (stale, stale))

    campaign_index(key=KEY, campaign_id=5, members=every)  # builds and saves the index

    left = {path.name for path in directory.glob(".tmp-*")}
    assert left == {fresh.name}  # a write still under way keeps its file
