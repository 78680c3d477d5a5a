"""Review 16 of the retrieval index: a rebuild keeps only the pool, a source behind a crowd of
pairs that left the pool still pulls its k, a campaign's index reads only its own (and
untagged) part files, two racing saves of one index both succeed and leave one file, and a
process keeps a bounded number of loaded indexes."""

from __future__ import annotations

import logging
import multiprocessing as mp
import traceback
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
from scoring.loop.vector_index import build_index, campaign_index, search_filtered
from scoring.loop.vector_store import VectorStore, part_name_campaign, vector_store
from scoring.models import ModelVersion, PairScore, Retrieval
from tests.factories import CampaignFactory

KEY = "review16-encoder"
DIM = 8


def _blocks(rng: np.random.Generator, n: int, dim: int = DIM) -> dict[str, np.ndarray]:
    return {
        "context": normalise_rows(rng.normal(size=(n, dim))),
        "a": rng.normal(size=(n, 4)),
        "b": rng.normal(size=(n, 4)),
    }


@pytest.fixture(autouse=True)
def _fresh_cache():
    vector_index._CACHE.clear()
    yield
    vector_index._CACHE.clear()


@pytest.fixture
def vector_root(settings, tmp_path):
    settings.ARBITER = {**settings.ARBITER, "VECTOR_ROOT": str(tmp_path)}
    return tmp_path


# --- Pool pairs in the campaign's database ------------------------------------------------


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


_LABELLED = {
    "status": Pair.Status.COMPLETE,
    "labels_count": 3,
    "slots_taken": 3,
}


def _campaign_with_a_mispredicted_source(direction: np.ndarray):
    campaign = CampaignFactory(retrieval_k=8)
    version = ModelVersion.objects.create(
        campaign=campaign,
        number=1,
        base="t",
        checkpoint="/nowhere",
        metrics={"encoder": KEY},
        is_active=True,
    )
    source = _pairs(
        campaign,
        1,
        0,
        **_LABELLED,
        provenance=Pair.Provenance.UNANIMOUS,
        consensus_preference=1,
    )
    _embed(source, direction[None, :])
    PairScore.objects.create(
        pair=source[0], model_version=version, reward_a=0, reward_b=0, p_a_better=0.1
    )  # mispredicted: k = 8
    return campaign, version


def _context(campaign) -> JobContext:
    claim = job_claim(job_id=job_create(campaign=campaign, kind="score").pk, worker="t")
    assert claim.job is not None
    return JobContext(claim.job)


@pytest.mark.django_db
def test_a_rebuild_drops_the_pairs_that_left_the_pool(vector_root, settings):
    # The index held every pair of the campaign, and a rebuild added them all again: it only
    # filled up with labelled pairs over the campaign's life (201 vectors for 110 pool pairs).
    settings.ARBITER = {**settings.ARBITER, "INDEX_EXACT_MAX": 150}
    rng = np.random.default_rng(0)
    campaign, version = _campaign_with_a_mispredicted_source(rng.normal(size=DIM))
    pool = _pairs(campaign, 100, 1, status=Pair.Status.POOLED)
    _embed(pool, rng.normal(size=(100, DIM)))
    context = _context(campaign)
    pool_prioritise(version=version, context=context)
    first_file = next(iter(vector_index._CACHE.values())).meta["file"]
    Pair.objects.filter(pk__in=[pair.pk for pair in pool[:90]]).update(**_LABELLED)
    more = _pairs(campaign, 100, 200, status=Pair.Status.POOLED)
    _embed(more, rng.normal(size=(100, DIM)))

    pool_prioritise(version=version, context=context)  # 200 vectors > 150: rebuilt

    loaded = next(iter(vector_index._CACHE.values()))
    in_pool = Pair.objects.filter(campaign=campaign, status=Pair.Status.POOLED).count()
    assert loaded.meta["file"] != first_file
    assert loaded.size == loaded.meta["trained_on"] == in_pool == 110


@pytest.mark.django_db
def test_a_source_behind_a_crowd_that_left_the_pool_pulls_its_k(vector_root):
    rng = np.random.default_rng(1)
    base = rng.normal(size=DIM)
    campaign, version = _campaign_with_a_mispredicted_source(base)
    crowd = _pairs(campaign, 3200, 1, status=Pair.Status.POOLED)
    _embed(crowd, base[None, :] + 0.01 * rng.normal(size=(3200, DIM)))
    pool = _pairs(campaign, 50, 5000, status=Pair.Status.POOLED)
    _embed(pool, base[None, :] + 0.5 * rng.normal(size=(50, DIM)))
    # Pool pairs far from the source keep the labelled crowd under half of the index, which
    # is therefore not rebuilt (review 20e: an index over half of whose pairs left the pool is).
    far = _pairs(campaign, 3200, 10_000, status=Pair.Status.POOLED)
    _embed(far, -base[None, :] + 0.5 * rng.normal(size=(3200, DIM)))
    context = _context(campaign)
    pool_prioritise(version=version, context=context)  # the crowd is indexed
    # The whole crowd is labelled: no rebuild until new vectors arrive.
    Pair.objects.filter(pk__in=[pair.pk for pair in crowd]).update(**_LABELLED)

    summary = pool_prioritise(version=version, context=context)

    assert summary["retrieved"] == 8, summary
    assert next(iter(vector_index._CACHE.values())).size == 6450
    pulled = Retrieval.objects.filter(job=context.job).values_list("pair_id", flat=True)
    assert set(pulled) <= {pair.pk for pair in pool}


def test_an_exact_search_widens_to_the_whole_index():
    # Four widenings (48, 192, 768, 3,072 neighbours) found none of the accepted pairs behind
    # 3,200 rejected ones.
    rng = np.random.default_rng(2)
    query = normalise_rows(rng.normal(size=(1, DIM)))
    crowd = normalise_rows(query + 0.01 * rng.normal(size=(3200, DIM)))
    far = normalise_rows(query + 0.5 * rng.normal(size=(50, DIM)))
    index = build_index(np.concatenate([crowd, far]), np.arange(3250), exact=True)
    wanted = np.arange(3200, 3250)

    found, _ = search_filtered(index, query, 8, lambda ids: np.intersect1d(ids, wanted))

    truth = 3200 + np.argsort(-(far @ query[0]))[:8]
    assert found[0].tolist() == truth.tolist()


def test_an_ivf_search_whose_probed_lists_hold_no_accepted_pair_scans_the_parts(
    vector_root, settings, caplog
):
    # The accepted pairs sit in lists the probe never reaches: widening the net cannot find
    # them, the scan of the index's parts does (exactly, and each pair once though stored
    # twice); a query the whole index cannot fill is logged.
    settings.ARBITER = {**settings.ARBITER, "INDEX_EXACT_MAX": 100, "INDEX_NPROBE": 1}
    rng = np.random.default_rng(3)
    store = vector_store("enc-probe")
    query = normalise_rows(rng.normal(size=(1, DIM)))
    crowd = normalise_rows(query + 0.05 * rng.normal(size=(2000, DIM)))
    far = normalise_rows(-query + 0.3 * rng.normal(size=(30, DIM)))
    store.append(ids=np.arange(2000), blocks={**_blocks(rng, 2000), "context": crowd})
    store.append(ids=np.arange(2000, 2030), blocks={**_blocks(rng, 30), "context": far})
    store.append(ids=np.arange(2000, 2010), blocks={**_blocks(rng, 10), "context": far[:10]})
    loaded = campaign_index(key="enc-probe", campaign_id=1, members=lambda ids: ids)
    assert loaded.meta["kind"] == "ivf" and loaded.size == 2040
    wanted = np.arange(2000, 2030)

    found, similarity = loaded.search(query, 8, lambda ids: np.intersect1d(ids, wanted))

    stored = store.load(wanted, blocks=("context",))["context"]
    truth = 2000 + np.argsort(-(stored @ query[0]))[:8]
    assert found[0].tolist() == truth.tolist()
    np.testing.assert_allclose(similarity[0], np.sort(stored @ query[0])[::-1][:8], atol=1e-5)

    three = np.array([2003, 2017, 2029])
    with caplog.at_level(logging.INFO, logger="scoring.loop.vector_index"):
        found, _ = loaded.search(query, 8, lambda ids: np.intersect1d(ids, three))
    assert sorted(found[0][found[0] >= 0].tolist()) == three.tolist()
    assert "1 of 1 queries found fewer than 8 accepted neighbours" in caplog.text


# --- Part files per campaign --------------------------------------------------------------


def _index_work(root: Path, settings, monkeypatch, other_parts: int) -> tuple[int, int, int, int]:
    """Parts read and membership queries of a 10-pair campaign's index build and its next
    extension, beside another campaign that writes ``other_parts`` parts before each."""
    settings.ARBITER = {**settings.ARBITER, "VECTOR_ROOT": str(root)}
    vector_index._CACHE.clear()
    rng = np.random.default_rng(4)
    store = vector_store("enc-shared")
    store.append(ids=np.arange(0, 10), blocks=_blocks(rng, 10), campaign_id=1)
    for part in range(other_parts):
        start = 1000 + part * 100
        store.append(ids=np.arange(start, start + 100), blocks=_blocks(rng, 100), campaign_id=2)
    reads: list[str] = []
    queries: list[int] = []
    real_read = VectorStore.read_part

    def counting_read(self, name, blocks=("context",)):
        reads.append(name)
        return real_read(self, name, blocks)

    monkeypatch.setattr(VectorStore, "read_part", counting_read)

    def members(ids: np.ndarray) -> np.ndarray:
        queries.append(len(ids))
        return ids[ids < 1000]

    assert campaign_index(key="enc-shared", campaign_id=1, members=members).size == 10
    built = (len(reads), len(queries))
    reads.clear()
    queries.clear()
    for part in range(other_parts):
        start = 100_000 + part * 100
        store.append(ids=np.arange(start, start + 100), blocks=_blocks(rng, 100), campaign_id=2)
    store.append(ids=np.arange(10, 12), blocks=_blocks(rng, 2), campaign_id=1)
    assert campaign_index(key="enc-shared", campaign_id=1, members=members).size == 12
    monkeypatch.undo()
    return (*built, len(reads), len(queries))


def test_a_campaigns_index_reads_only_its_own_parts(tmp_path, settings, monkeypatch):
    # A 10-pair campaign's build read 7 parts beside a 500-pair campaign and 52 beside a
    # 5,000-pair one (and its next run every part the other wrote meanwhile).
    beside_small = _index_work(tmp_path / "small", settings, monkeypatch, 5)
    beside_large = _index_work(tmp_path / "large", settings, monkeypatch, 50)

    # The build reads its one part twice (its width, then its vectors) and asks once.
    assert beside_small == beside_large == (2, 1, 1, 1)


def test_untagged_parts_written_before_are_still_read(vector_root):
    rng = np.random.default_rng(5)
    store = vector_store("enc-upgraded")
    store.append(ids=np.arange(0, 20), blocks=_blocks(rng, 20))  # untagged: older code
    store.append(ids=np.arange(20, 30), blocks=_blocks(rng, 10), campaign_id=1)
    store.append(ids=np.arange(30, 40), blocks=_blocks(rng, 10), campaign_id=2)

    loaded = campaign_index(key="enc-upgraded", campaign_id=1, members=lambda ids: ids[ids < 30])

    assert loaded.size == 30 and len(loaded.meta["parts"]) == 2


def test_a_part_name_records_its_campaign_and_an_untagged_one_none():
    assert part_name_campaign("part-01796642523520540762-4149a0ff-c12.npz") == 12
    assert part_name_campaign("part-01796642523520540762-4149a0ff.npz") is None
    # A random part that reads like a campaign is no tag.
    assert part_name_campaign("part-01796642523520540762-c1234567.npz") is None


@pytest.mark.django_db
def test_stored_embeddings_are_written_one_part_per_campaign(vector_root):
    ours, theirs = CampaignFactory(), CampaignFactory()
    pairs = _pairs(ours, 3, 0) + _pairs(theirs, 2, 10)
    rng = np.random.default_rng(6)

    _embed(pairs, rng.normal(size=(5, DIM)))

    store = vector_store(KEY)
    catalogue = store.refresh()
    by_campaign = {
        part_name_campaign(part.name): set(part.ids.tolist()) for part in catalogue.parts
    }
    assert by_campaign == {
        ours.pk: {pair.pk for pair in pairs[:3]},
        theirs.pk: {pair.pk for pair in pairs[3:]},
    }


# --- Two saves at once --------------------------------------------------------------------


def _extend_in_a_child(key: str, barrier, out) -> None:
    vector_index._CACHE.clear()
    real_put = VectorStore.put_file

    def put_then_wait(self, local_path, name):
        real_put(self, local_path, name)
        barrier.wait(timeout=30)  # both wrote their file; both now write the meta

    VectorStore.put_file = put_then_wait  # type: ignore[method-assign]  # this process only
    try:
        loaded = campaign_index(key=key, campaign_id=1, members=lambda ids: ids)
        out.put(("ok", loaded.size))
    except BaseException as error:  # noqa: BLE001 - reported to the parent
        out.put(("error", f"{type(error).__name__}: {error}\n{traceback.format_exc()[-600:]}"))


def test_two_racing_extensions_of_one_index_both_succeed_and_leave_one_file(vector_root):
    # The second removal of the replaced file raised FileNotFoundError, and the losing save's
    # file stayed (an orphan of ~400 MB at 1M pairs, removed only an hour later).
    rng = np.random.default_rng(7)
    store = vector_store("enc-race")
    store.append(ids=np.arange(0, 50), blocks=_blocks(rng, 50))
    assert campaign_index(key="enc-race", campaign_id=1, members=lambda ids: ids).size == 50
    store.append(ids=np.arange(50, 100), blocks=_blocks(rng, 50))
    context = mp.get_context("fork")
    barrier, out = context.Barrier(2), context.Queue()
    children = [
        context.Process(target=_extend_in_a_child, args=("enc-race", barrier, out))
        for _ in range(2)
    ]
    for child in children:
        child.start()
    results = [out.get(timeout=60) for _ in children]
    for child in children:
        child.join(timeout=30)

    assert results == [("ok", 100), ("ok", 100)]
    files = sorted(path.name for path in vector_root.rglob("index-c1-*.faiss"))
    assert files == [vector_index._read_meta(store, 1)["file"]]
    vector_index._CACHE.clear()
    assert campaign_index(key="enc-race", campaign_id=1, members=lambda ids: ids).size == 100


def test_a_save_from_a_meta_another_save_has_replaced_leaves_one_file(vector_root):
    # The order the forked test cannot force: one save ends (its meta read back names its
    # file), then a second, started from the same meta, replaces it. The second removed the
    # old file again (FileNotFoundError) and never the first's.
    rng = np.random.default_rng(9)
    store = vector_store("enc-stale")
    store.append(ids=np.arange(0, 20), blocks=_blocks(rng, 20))
    loaded = campaign_index(key="enc-stale", campaign_id=1, members=lambda ids: ids)
    started_from = dict(loaded.meta)

    vector_index._save(store, 1, loaded.index, dict(started_from))
    vector_index._save(store, 1, loaded.index, dict(started_from))

    files = sorted(path.name for path in vector_root.rglob("index-c1-*.faiss"))
    assert files == [vector_index._read_meta(store, 1)["file"]]


def test_an_index_file_gone_from_under_its_meta_is_built_again(vector_root):
    rng = np.random.default_rng(10)
    store = vector_store("enc-lost")
    store.append(ids=np.arange(0, 20), blocks=_blocks(rng, 20))
    named = campaign_index(key="enc-lost", campaign_id=1, members=lambda ids: ids).meta["file"]
    (Path(store.path) / named).unlink()
    vector_index._CACHE.clear()

    again = campaign_index(key="enc-lost", campaign_id=1, members=lambda ids: ids)

    assert again.size == 20 and again.meta["file"] != named


# --- The loaded indexes a process keeps ---------------------------------------------------


def test_a_process_keeps_only_the_indexes_it_used_last(vector_root):
    rng = np.random.default_rng(8)
    store = vector_store("enc-cache")
    for campaign in range(1, 6):
        lo = campaign * 1000
        store.append(ids=np.arange(lo, lo + 100), blocks=_blocks(rng, 100))

    def index_of(campaign: int):
        lo = campaign * 1000
        return campaign_index(
            key="enc-cache",
            campaign_id=campaign,
            members=lambda ids: ids[(ids >= lo) & (ids < lo + 1000)],
        )

    for campaign in range(1, 6):
        index_of(campaign)
    assert len(vector_index._CACHE) == 2  # was one per campaign used, for good
    assert [key.rsplit("|", 1)[1] for key in vector_index._CACHE] == ["4", "5"]
    # A use makes an index the most recent: the next new one evicts the other.
    again = index_of(4)
    assert again is vector_index._CACHE[f"{store.path}|4"]
    index_of(1)
    assert [key.rsplit("|", 1)[1] for key in vector_index._CACHE] == ["4", "1"]
