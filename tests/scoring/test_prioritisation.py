"""Error-driven prioritisation: the k rule, nearest neighbours, priorities, reasons, escalations.

The scores and vectors are written by hand, so every expected neighbour and priority is known.
"""

from __future__ import annotations

import numpy as np
import pytest

from annotation.models import Pair
from reviewers.models import Escalation
from scoring.jobs.runner import JobContext, job_claim, job_create
from scoring.loop.embeddings import PairVectors, pair_embeddings_store
from scoring.loop.prioritisation import pool_prioritise
from scoring.loop.retrieval import nearest_neighbours, normalise_rows, retrieval_count
from scoring.loop.vector_store import vector_store
from scoring.models import ModelVersion, PairScore, Retrieval
from tests.factories import CampaignFactory, PairFactory

KEY = "test-encoder"
DIM = 4


@pytest.mark.parametrize(
    ("p", "expected"),
    [(0.0, 8), (0.23, 8), (0.4999, 8), (0.5, 8), (0.6, 3), (0.75, 2), (0.875, 1), (0.9, 0),
     (1.0, 0)],
)
def test_the_number_of_neighbours_follows_the_skywork_rule(p, expected):
    assert retrieval_count(p, 8) == expected


def test_the_rule_scales_with_the_configured_k():
    assert retrieval_count(0.1, 4) == 4
    assert retrieval_count(0.6, 20) == 8


def test_it_rejects_a_probability_out_of_range():
    with pytest.raises(ValueError, match="p_agree must be a probability, got 1.2"):
        retrieval_count(1.2)


def test_exact_and_faiss_search_find_the_same_neighbours(monkeypatch):
    rng = np.random.default_rng(0)
    pool = normalise_rows(rng.normal(size=(300, 16)))
    queries = normalise_rows(rng.normal(size=(7, 16)))
    exact_indices, exact_similarities = nearest_neighbours(queries, pool, 5)
    monkeypatch.setattr("scoring.loop.retrieval.EXACT_SEARCH_MAX_POOL", 10)
    faiss_indices, faiss_similarities = nearest_neighbours(queries, pool, 5)
    brute = np.argsort(-(queries @ pool.T), axis=1)[:, :5]
    np.testing.assert_array_equal(exact_indices, brute)
    np.testing.assert_array_equal(faiss_indices, brute)
    np.testing.assert_allclose(exact_similarities, faiss_similarities, rtol=1e-5)


def test_a_small_pool_gives_fewer_neighbours():
    indices, similarities = nearest_neighbours(np.eye(2, dtype=np.float32), np.eye(2)[:1], 8)
    assert indices.shape == (2, 1) and similarities.shape == (2, 1)


def _embed(pair: Pair, direction: list[float]) -> None:
    context = normalise_rows(np.array([direction], dtype=np.float32))
    pair_embeddings_store(
        vectors=PairVectors(
            np.array([pair.pk]), context, np.zeros((1, DIM)), np.zeros((1, DIM))
        ),
        key=KEY,
    )


def _judged(campaign, *, preference: int, p_a_better: float, direction, version, **fields):
    pair = PairFactory(
        campaign=campaign,
        status=Pair.Status.COMPLETE,
        consensus_preference=preference,
        provenance=fields.pop("provenance", Pair.Provenance.UNANIMOUS),
        labels_count=3,
        slots_taken=3,
        **fields,
    )
    _embed(pair, direction)
    PairScore.objects.create(
        pair=pair, model_version=version, reward_a=0.0, reward_b=0.0, p_a_better=p_a_better
    )
    return pair


def _pooled(campaign, direction, **fields):
    pair = PairFactory(campaign=campaign, status=Pair.Status.POOLED, **fields)
    _embed(pair, direction)
    return pair


@pytest.fixture
def setup(db):
    campaign = CampaignFactory(retrieval_k=2)
    version = ModelVersion.objects.create(
        campaign=campaign, number=1, base="test", checkpoint="/nowhere",
        metrics={"encoder": KEY}, is_active=True,
    )
    job = job_create(campaign=campaign, kind="score")
    context = JobContext(job_claim(job_id=job.pk, worker="test").job)
    return campaign, version, context


def test_pool_pairs_near_a_mispredicted_pair_move_up_with_a_reason(setup):
    campaign, version, context = setup
    # Humans prefer B; the model gives A 0.77, so it agrees with p = 0.23.
    wrong = _judged(campaign, preference=-1, p_a_better=0.77, direction=[1, 0, 0, 0],
                    version=version)
    near = _pooled(campaign, [1, 0.1, 0, 0])
    nearer = _pooled(campaign, [1, 0.05, 0, 0])
    far = _pooled(campaign, [0, 0, 1, 0])
    summary = pool_prioritise(version=version, context=context)
    assert summary["mispredicted"] == 1 and summary["retrieved"] == 2
    near.refresh_from_db(); nearer.refresh_from_db(); far.refresh_from_db()  # noqa: E702
    assert near.priority == pytest.approx(0.77) and nearer.priority == pytest.approx(0.77)
    assert far.priority == 0.0 and far.priority_reason == ""
    assert f"similar to pair {wrong.pk}" in near.priority_reason
    assert "mispredicted at p = 0.23" in near.priority_reason
    retrieval = Retrieval.objects.get(pair=nearer)
    assert retrieval.similar_to == wrong and retrieval.p == pytest.approx(0.23)
    assert retrieval.job == context.job and retrieval.similarity > 0.99


def test_confidently_right_pairs_pull_nothing_and_weakly_right_ones_pull_fewer(setup):
    campaign, version, context = setup
    # retrieval_k = 2: p = 0.95 pulls int(2 * 0.05) = 0; p = 0.6 pulls int(2 * 0.4) = 0 too.
    _judged(campaign, preference=1, p_a_better=0.95, direction=[1, 0, 0, 0], version=version)
    _judged(campaign, preference=1, p_a_better=0.6, direction=[0, 1, 0, 0], version=version)
    _pooled(campaign, [1, 0, 0, 0])
    _pooled(campaign, [0, 1, 0, 0])
    summary = pool_prioritise(version=version, context=context)
    assert summary["sources"] == 0 and summary["retrieved"] == 0
    assert not Pair.objects.filter(campaign=campaign, priority__gt=0).exists()
    campaign.retrieval_k = 8
    campaign.save()
    summary = pool_prioritise(version=ModelVersion.objects.get(pk=version.pk), context=context)
    # With k = 8: p = 0.6 pulls int(8 * 0.4) = 3 (only 2 exist), p = 0.95 pulls none.
    assert summary["sources"] == 1 and summary["retrieved"] == 2
    reasons = set(Pair.objects.filter(priority__gt=0).values_list("priority_reason", flat=True))
    assert all("low confidence at p = 0.60" in reason for reason in reasons)


def test_the_worst_mistake_decides_a_shared_neighbours_priority(setup):
    campaign, version, context = setup
    _judged(campaign, preference=1, p_a_better=0.4, direction=[1, 0, 0, 0], version=version)
    worst = _judged(campaign, preference=1, p_a_better=0.1, direction=[1, 1, 0, 0],
                    version=version)
    shared = _pooled(campaign, [1, 0.5, 0, 0])
    pool_prioritise(version=version, context=context)
    shared.refresh_from_db()
    assert shared.priority == pytest.approx(0.9)
    assert f"similar to pair {worst.pk}" in shared.priority_reason
    assert Retrieval.objects.filter(pair=shared).count() == 1


def test_a_higher_priority_set_before_is_kept(setup):
    campaign, version, context = setup
    _judged(campaign, preference=1, p_a_better=0.3, direction=[1, 0, 0, 0], version=version)
    manual = _pooled(campaign, [1, 0, 0, 0], priority=5.0, priority_reason="admin: urgent")
    pool_prioritise(version=version, context=context)
    manual.refresh_from_db()
    assert manual.priority == 5.0 and manual.priority_reason == "admin: urgent"


def test_gold_pairs_steer_retrieval_unless_excluded(setup):
    campaign, version, context = setup
    gold = PairFactory(campaign=campaign, status=Pair.Status.COMPLETE, is_gold=True,
                       gold_preference=1, consensus_preference=1,
                       provenance=Pair.Provenance.GOLD)
    _embed(gold, [0, 0, 0, 1])
    PairScore.objects.create(pair=gold, model_version=version, reward_a=0, reward_b=1,
                             p_a_better=0.2)
    target = _pooled(campaign, [0, 0, 0, 1])
    assert pool_prioritise(version=version, context=context, include_gold=False)["retrieved"] == 0
    assert pool_prioritise(version=version, context=context)["retrieved"] == 1
    target.refresh_from_db()
    assert f"similar to pair {gold.pk}" in target.priority_reason


def test_only_untouched_pool_pairs_are_retrieved(setup):
    campaign, version, context = setup
    _judged(campaign, preference=1, p_a_better=0.1, direction=[1, 0, 0, 0], version=version)
    in_annotation = PairFactory(campaign=campaign, status=Pair.Status.IN_ANNOTATION,
                                slots_taken=1)
    _embed(in_annotation, [1, 0, 0, 0])
    queued_untouched = PairFactory(campaign=campaign, status=Pair.Status.QUEUED)
    _embed(queued_untouched, [1, 0, 0.1, 0])
    pool_prioritise(version=version, context=context)
    in_annotation.refresh_from_db(); queued_untouched.refresh_from_db()  # noqa: E702
    assert in_annotation.priority == 0.0
    assert queued_untouched.priority == pytest.approx(0.9)


def test_a_confident_model_contradicting_a_unanimous_label_opens_one_escalation(setup):
    campaign, version, context = setup
    unanimous = _judged(campaign, preference=1, p_a_better=0.05, direction=[1, 0, 0, 0],
                        version=version)
    majority = _judged(campaign, preference=1, p_a_better=0.05, direction=[0, 1, 0, 0],
                       version=version, provenance=Pair.Provenance.MAJORITY)
    unsure = _judged(campaign, preference=1, p_a_better=0.2, direction=[0, 0, 1, 0],
                     version=version)
    assert pool_prioritise(version=version, context=context)["escalated"] == 1
    escalation = Escalation.objects.get()
    assert escalation.pair == unanimous
    assert escalation.reason == Escalation.Reason.MODEL_CONTRADICTION
    assert not Escalation.objects.filter(pair__in=[majority, unsure]).exists()
    # Scoring again does not escalate the same pair twice.
    assert pool_prioritise(version=version, context=context)["escalated"] == 0


def test_the_contradiction_rule_can_be_switched_off(setup):
    campaign, version, context = setup
    campaign.escalation_rules = {**campaign.escalation_rules, "model_contradiction": False}
    campaign.save()
    _judged(campaign, preference=1, p_a_better=0.01, direction=[1, 0, 0, 0], version=version)
    version = ModelVersion.objects.select_related("campaign").get(pk=version.pk)
    assert pool_prioritise(version=version, context=context)["escalated"] == 0
    assert not Escalation.objects.exists()


def test_pool_pairs_imported_after_scoring_wait_for_the_next_run(setup):
    campaign, version, context = setup
    _judged(campaign, preference=1, p_a_better=0.1, direction=[1, 0, 0, 0], version=version)
    embedded = _pooled(campaign, [0, 1, 0, 0])
    late = PairFactory(campaign=campaign, status=Pair.Status.POOLED)  # no vectors yet
    assert pool_prioritise(version=version, context=context)["retrieved"] == 1
    embedded.refresh_from_db(); late.refresh_from_db()  # noqa: E702
    assert embedded.priority > 0 and late.priority == 0.0


def test_an_approximate_index_pulls_in_the_exact_nearest_pool_pairs(setup, settings):
    """Above ``INDEX_EXACT_MAX`` the campaign's index is IVF with 8-bit codes; the pairs pulled
    in are still the exact nearest pooled ones in a crowd of near-duplicates, with their exact
    cosine (candidates re-ranked against the stored vectors; with ``INDEX_REFINE`` 1, the
    index's own top 8, one of them is another copy)."""
    settings.ARBITER = {
        **settings.ARBITER,
        "INDEX_EXACT_MAX": 100,
        "INDEX_NPROBE": 4,
        "INDEX_REFINE": 8,
    }
    campaign, version, context = setup
    campaign.retrieval_k = 8
    campaign.save(update_fields=["retrieval_k"])
    rng = np.random.default_rng(3)
    dim = 64
    direction = normalise_rows(rng.normal(size=(1, dim)))
    wrong = _judged(campaign, preference=1, p_a_better=0.1, direction=direction[0].tolist(),
                    version=version)
    pool = PairFactory.create_batch(1000, campaign=campaign, status=Pair.Status.POOLED)
    pool_ids = np.array([pair.pk for pair in pool])
    # 300 noisy copies of the mispredicted pair's context, 700 unrelated pairs.
    context_vectors = normalise_rows(rng.normal(size=(1000, dim)))
    context_vectors[:300] = normalise_rows(direction + 0.02 * rng.normal(size=(300, dim)))
    pair_embeddings_store(
        vectors=PairVectors(pool_ids, context_vectors, np.zeros((1000, DIM)),
                            np.zeros((1000, DIM))),
        key=KEY,
    )
    summary = pool_prioritise(version=version, context=context)
    assert summary["retrieved"] == 8
    # Exact cosine between the stored vectors (8-bit with a scale per row, as written).
    stored = vector_store(KEY).load([wrong.pk, *pool_ids], blocks=("context",))["context"]
    exact = stored[1:] @ stored[0]
    nearest = set(pool_ids[np.argsort(-exact)[:8]].tolist())
    pulled = dict(Retrieval.objects.filter(job=context.job).values_list("pair_id", "similarity"))
    assert set(pulled) == nearest
    by_id = dict(zip(pool_ids.tolist(), exact.tolist(), strict=True))
    for pair_id, similarity in pulled.items():
        assert similarity == pytest.approx(by_id[pair_id], abs=1e-5)
    assert "retrieval index: ivf, 1000 vectors" in "\n".join(
        context.job.log_lines.values_list("message", flat=True)
    )


def test_a_job_run_again_keeps_one_retrieval_row_per_pulled_pair(setup):
    # A loop job whose worker was lost after the prioritisation committed runs its finishing
    # stage again: it added a second set of rows, doubling the counts and reasons shown.
    campaign, version, context = setup
    _judged(campaign, preference=-1, p_a_better=0.77, direction=[1, 0, 0, 0], version=version)
    near = _pooled(campaign, [1, 0.1, 0, 0])
    _pooled(campaign, [1, 0.05, 0, 0])
    first = pool_prioritise(version=version, context=context)
    again = pool_prioritise(version=version, context=context)
    assert first["retrieved"] == again["retrieved"] == 2
    assert Retrieval.objects.filter(job=context.job).count() == 2
    assert Retrieval.objects.filter(pair=near).count() == 1
