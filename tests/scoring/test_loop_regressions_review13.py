"""Review 13 of the loop: a judged pair without vectors does not sink prioritisation, other
campaigns' vectors do not force a campaign's index to be rebuilt, an index made before any
vector existed takes the vectors' width, a finishing stage run again reports the round it
opened, and the loop's and training's numeric parameters refuse values that break them."""

from __future__ import annotations

import numpy as np
import pytest
from django.core.exceptions import ValidationError

from annotation.models import Campaign, Pair, Round
from annotation.services.imports import campaign_get_or_create
from scoring.jobs.runner import JobContext, JobError, JobLost, job_claim, job_create
from scoring.loop import rounds, vector_index
from scoring.loop.embeddings import PairVectors, pair_embeddings_store
from scoring.loop.params import LoopParams, TrainParams
from scoring.loop.prioritisation import pool_prioritise
from scoring.loop.requests import loop_request, training_request
from scoring.loop.retrieval import normalise_rows
from scoring.loop.rounds import round_close_and_advance
from scoring.loop.vector_index import campaign_index
from scoring.loop.vector_store import VectorStore
from scoring.models import Job, ModelVersion, PairScore
from tests.factories import CampaignFactory, PairFactory

KEY = "review13-encoder"
DIM = 4


def _every(ids: np.ndarray) -> np.ndarray:
    return ids


def _blocks(rng: np.random.Generator, n: int, dim: int = 16) -> dict[str, np.ndarray]:
    return {
        "context": normalise_rows(rng.normal(size=(n, dim))),
        "a": rng.normal(size=(n, 4)),
        "b": rng.normal(size=(n, 4)),
    }


@pytest.fixture
def vector_root(settings, tmp_path):
    settings.ARBITER = {**settings.ARBITER, "VECTOR_ROOT": str(tmp_path)}
    return tmp_path


# --- Sources without vectors --------------------------------------------------------------


def _embed(pair: Pair, direction: list[float]) -> None:
    context = normalise_rows(np.array([direction], dtype=np.float32))
    pair_embeddings_store(
        vectors=PairVectors(np.array([pair.pk]), context, np.zeros((1, DIM)), np.zeros((1, DIM))),
        key=KEY,
    )


def _judged(campaign: Campaign, version: ModelVersion, *, p_a_better: float) -> Pair:
    pair = PairFactory(
        campaign=campaign,
        status=Pair.Status.COMPLETE,
        consensus_preference=1,
        provenance=Pair.Provenance.UNANIMOUS,
        labels_count=3,
        slots_taken=3,
    )
    PairScore.objects.create(
        pair=pair, model_version=version, reward_a=0.0, reward_b=0.0, p_a_better=p_a_better
    )
    return pair


def test_a_judged_pair_scored_without_vectors_is_skipped_not_fatal(db, vector_root):
    # A curation job scores silver pairs without computing vectors; such a pair, or one that
    # finished annotation while the shards ran, is judged with a score but no context vector.
    campaign = CampaignFactory(retrieval_k=2)
    version = ModelVersion.objects.create(
        campaign=campaign,
        number=1,
        base="test",
        checkpoint="/nowhere",
        mode="full",
        metrics={"encoder": KEY},
        is_active=True,
    )
    job = job_create(campaign=campaign, kind="score")
    context = JobContext(job_claim(job_id=job.pk, worker="test").job)
    embedded = _judged(campaign, version, p_a_better=0.1)
    _embed(embedded, [1, 0, 0, 0])
    _judged(campaign, version, p_a_better=0.1)  # no vectors
    near = PairFactory(campaign=campaign, status=Pair.Status.POOLED)
    _embed(near, [1, 0.1, 0, 0])

    summary = pool_prioritise(version=version, context=context)

    assert summary["retrieved"] == 1
    near.refresh_from_db()
    assert near.priority == pytest.approx(0.9)
    logged = list(job.log_lines.values_list("message", flat=True))
    assert "skipped 1 sources without context vectors" in logged


# --- The campaign index -------------------------------------------------------------------


def test_other_campaigns_vectors_do_not_force_a_full_rebuild(vector_root, monkeypatch, settings):
    # Campaign 1 (ids below 1000) has 20 vectors in an exact index; campaign 2 shares the
    # encoder and writes 400. Campaign 1's next call adds its one new vector to its index
    # rather than reading every part again.
    settings.ARBITER = {**settings.ARBITER, "INDEX_EXACT_MAX": 300}
    rng = np.random.default_rng(1)
    store = VectorStore("enc-shared", str(vector_root))

    def ours(ids: np.ndarray) -> np.ndarray:
        return ids[ids < 1000]

    store.append(ids=np.arange(0, 20), blocks=_blocks(rng, 20))
    first = campaign_index(key="enc-shared", campaign_id=1, members=ours)
    assert first.meta["kind"] == "exact" and first.size == 20
    first_parts = set(first.meta["parts"])
    for start in range(1000, 1400, 100):
        store.append(ids=np.arange(start, start + 100), blocks=_blocks(rng, 100))
    store.append(ids=np.arange(20, 21), blocks=_blocks(rng, 1))
    shared = vector_index.vector_store("enc-shared")
    read: list[str] = []
    real_read_part = shared.read_part

    def spy(name, blocks=("context",)):
        read.append(name)
        return real_read_part(name, blocks)

    monkeypatch.setattr(shared, "read_part", spy)

    again = campaign_index(key="enc-shared", campaign_id=1, members=ours)

    assert again.size == 21 and again.meta["kind"] == "exact"
    assert not first_parts & set(read), "the parts indexed before were read again: a rebuild"


def test_a_campaigns_own_vectors_past_the_exact_threshold_still_rebuild(vector_root, settings):
    settings.ARBITER = {**settings.ARBITER, "INDEX_EXACT_MAX": 300}
    rng = np.random.default_rng(2)
    store = VectorStore("enc-growing", str(vector_root))
    store.append(ids=np.arange(0, 200), blocks=_blocks(rng, 200))
    assert campaign_index(key="enc-growing", campaign_id=1, members=_every).meta["kind"] == "exact"
    store.append(ids=np.arange(200, 2200), blocks=_blocks(rng, 2000))

    grown = campaign_index(key="enc-growing", campaign_id=1, members=_every)

    assert grown.meta["kind"] == "ivf" and grown.size == 2200
    assert grown.meta["trained_on"] == 2200


def test_an_index_asked_for_before_any_vector_exists_takes_the_real_width_later(vector_root):
    # encoder.json is written but no part yet (cleared parts, or a writer that died before
    # its first part): no index is saved, so the first vectors give it its width.
    VectorStore("enc-empty", str(vector_root))._write_meta()
    empty = campaign_index(key="enc-empty", campaign_id=1, members=_every)
    assert empty.size == 0
    rng = np.random.default_rng(0)
    VectorStore("enc-empty", str(vector_root)).append(ids=np.arange(10), blocks=_blocks(rng, 10))

    later = campaign_index(key="enc-empty", campaign_id=1, members=_every)

    assert later.size == 10 and later.index.d == 16


def test_an_encoder_without_a_directory_has_an_empty_index(vector_root):
    empty = campaign_index(key="enc-never-written", campaign_id=1, members=_every)

    assert empty.size == 0
    hits, _similarity = empty.search(np.ones((1, 16), dtype=np.float32), 3, _every)
    assert (hits == -1).all()
    assert not (vector_root / VectorStore("enc-never-written").path.rsplit("/", 1)[-1]).exists()


def test_an_index_saved_with_no_parts_by_older_code_is_rebuilt(vector_root):
    import faiss

    store = VectorStore("enc-legacy", str(vector_root))
    store._write_meta()
    width_one = faiss.IndexIDMap2(faiss.IndexFlatIP(1))
    meta = {"kind": "exact", "trained_on": 0, "parts": [], "file": None}
    vector_index._save(store, 1, width_one, meta)
    rng = np.random.default_rng(3)
    store.append(ids=np.arange(5), blocks=_blocks(rng, 5))

    loaded = campaign_index(key="enc-legacy", campaign_id=1, members=_every)

    assert loaded.size == 5 and loaded.index.d == 16


# --- The finishing stage ------------------------------------------------------------------


def _finishing_loop_job(campaign: Campaign) -> Job:
    claimed = job_claim(job_id=job_create(campaign=campaign, kind="loop").pk, worker="test")
    job = claimed.job
    assert job is not None
    Job.objects.filter(pk=job.pk).update(stage=Job.Stage.FINISHING)
    job.refresh_from_db()
    return job


def test_a_finishing_stage_run_again_still_reports_the_round_it_opened(db):
    campaign = CampaignFactory(round_size=3, random_slice_share=0.0)
    PairFactory.create_batch(5, campaign=campaign, status=Pair.Status.POOLED)
    job = _finishing_loop_job(campaign)
    first = round_close_and_advance(campaign=campaign, context=JobContext(job))
    assert first["opened_round"] == 1 and first["queued"] == 3
    assert "opened_round_id" not in first  # internal: kept on the row, not shown

    # The worker was lost before job_finish: the stage runs again from the stored row.
    again_job = Job.objects.get(pk=job.pk)
    again = round_close_and_advance(campaign=campaign, context=JobContext(again_job))

    assert Round.objects.filter(campaign=campaign).count() == 1
    assert again.get("opened_round") == 1 and again.get("queued") == 3, again


def test_a_worker_that_lost_the_loop_job_opens_no_round(db):
    campaign = CampaignFactory(round_size=3, random_slice_share=0.0)
    PairFactory.create_batch(5, campaign=campaign, status=Pair.Status.POOLED)
    job = _finishing_loop_job(campaign)
    # Lost after the stage began (its progress write still found the job ours).
    Job.objects.filter(pk=job.pk).update(attempts=job.attempts + 1)

    with pytest.raises(JobLost):
        rounds._loop_round_open(campaign=campaign, context=JobContext(job), size=None)

    assert not Round.objects.filter(campaign=campaign).exists()


# --- Parameters ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("schema", "params", "message"),
    [
        (LoopParams, {"round_size": 0}, "round_size must be a positive whole number"),
        (LoopParams, {"round_size": -5}, "round_size must be a positive whole number"),
        (TrainParams, {"head_l2": -1.0}, "head_l2 must be zero or more"),
        (TrainParams, {"learning_rate": 0}, "learning_rate must be positive"),
        (TrainParams, {"learning_rate": "-1e-5"}, "learning_rate must be positive"),
        (LoopParams, {"head_l2": "-0.5"}, "head_l2 must be zero or more"),
    ],
)
def test_a_parameter_that_would_break_the_loop_or_training_is_refused(schema, params, message):
    with pytest.raises(JobError, match=message) as refused:
        schema.from_params(params)
    assert refused.value.status == 400


def test_zero_head_l2_and_a_positive_round_size_are_accepted():
    assert TrainParams.from_params({"head_l2": 0}).head_l2 == 0
    assert LoopParams.from_params({"round_size": 1}).round_size == 1


def test_a_loop_or_train_request_with_such_a_value_creates_no_job(campaign):
    with pytest.raises(JobError, match="round_size"):
        loop_request(campaign=campaign, params={"round_size": 0}, enqueue=False)
    with pytest.raises(JobError, match="head_l2"):
        training_request(campaign=campaign, params={"head_l2": -1}, enqueue=False)
    assert not Job.objects.filter(campaign=campaign).exists()


def test_a_campaign_refuses_a_round_size_of_zero(db):
    with pytest.raises(ValidationError) as refused:
        campaign_get_or_create(name="empty rounds", round_size=0)
    assert "round_size" in refused.value.message_dict
    assert not Campaign.objects.filter(name="empty rounds").exists()
    Campaign(name="one-pair rounds", round_size=1).full_clean()
