"""Review 16 (rlp, finding 1): a ranking item is scored and judged by all its responses.

Pool scoring stores the reward of every response of a verified ranking item; prioritisation
takes p of such an item over the pairs its consensus expands into (the campaign's rule, as
training reads it): the lowest p of those pairs, so one misordered pair makes it a source, and
an item whose humans tied responses 0 and 1 is judged like any other.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from annotation.models import ItemKind, Pair
from annotation.rankings import first_two_preference
from reviewers.models import Escalation
from scoring.jobs.runner import JobContext, job_claim, job_create
from scoring.loop.embeddings import PairVectors, pair_embeddings_store
from scoring.loop.judged_pairs import training_pairs
from scoring.loop.model_jobs import job_run_inline
from scoring.loop.prioritisation import pool_prioritise
from scoring.loop.requests import scoring_request
from scoring.loop.retrieval import normalise_rows, retrieval_count
from scoring.models import Job, ModelVersion, PairScore
from tests.factories import CampaignFactory, ranking_item

KEY = "review16-encoder"
DIM = 4


def _sigmoid(value: float) -> float:
    return 1.0 / (1.0 + math.exp(-value))


def _embed(pair: Pair, direction: list[float]) -> None:
    context = normalise_rows(np.array([direction], dtype=np.float32))
    pair_embeddings_store(
        vectors=PairVectors(np.array([pair.pk]), context, np.zeros((1, DIM)), np.zeros((1, DIM))),
        key=KEY,
    )


def _item(campaign, n: int, *, ranking=None, size: int = 3, **fields) -> Pair:
    texts = [f"answer {n}.{k} " + "detail " * k for k in range(size)]
    verified = {}
    if ranking is not None:
        verified = {
            "status": Pair.Status.COMPLETE,
            "labels_count": 3,
            "slots_taken": 3,
            "provenance": fields.pop("provenance", Pair.Provenance.UNANIMOUS),
            "consensus_ranking": ranking,
            # What the consensus stores: response 0 against response 1.
            "consensus_preference": first_two_preference(ranking),
        }
    return ranking_item(
        campaign, n=n, texts=texts, **{"status": Pair.Status.POOLED, **verified, **fields}
    )


def _setup(*, rule: str = "all_pairs", k: int = 2):
    campaign = CampaignFactory(item_kind=ItemKind.RANKING, ranking_expansion=rule, retrieval_k=k)
    version = ModelVersion.objects.create(
        campaign=campaign,
        number=1,
        base="t",
        checkpoint="/nowhere",
        metrics={"encoder": KEY},
        is_active=True,
    )
    job = job_create(campaign=campaign, kind="score")
    claim = job_claim(job_id=job.pk, worker="t")
    assert claim.job is not None
    context = JobContext(claim.job)
    return campaign, version, context


def _score(pair: Pair, version: ModelVersion, rewards: list[float]) -> None:
    PairScore.objects.create(
        pair=pair,
        model_version=version,
        reward_a=rewards[0],
        reward_b=rewards[1],
        p_a_better=_sigmoid(rewards[0] - rewards[1]),
        rewards=rewards,
    )


# --- Prioritisation, scores written by hand -------------------------------------------------


@pytest.mark.django_db
def test_an_item_whose_humans_tied_its_first_two_responses_is_judged_and_a_source():
    campaign, version, context = _setup()
    # Humans: 0 and 1 tied at the top, 2 worst; the model ranks 2 above 1.
    judged = _item(campaign, 1, ranking=[[0, 1], [2]])
    _embed(judged, [1, 0, 0, 0])
    _score(judged, version, [1.0, 0.0, 0.5])
    near = _item(campaign, 2)
    _embed(near, [1, 0.05, 0, 0])
    assert len(training_pairs(campaign=campaign)) == 2  # 0 > 2 and 1 > 2
    summary = pool_prioritise(version=version, context=context)
    assert summary["judged"] == 1 and summary["mispredicted"] == 1, summary
    assert summary["sources"] == 1 and summary["retrieved"] == 1, summary
    near.refresh_from_db()
    # p is the worst of the expanded pairs: 1 > 2 at sigmoid(0 - 0.5).
    assert near.priority == pytest.approx(1 - _sigmoid(-0.5))
    assert f"similar to pair {judged.pk}" in near.priority_reason


@pytest.mark.django_db
def test_a_model_right_on_the_first_two_but_wrong_on_a_later_response_pulls_neighbours():
    campaign, version, context = _setup()
    judged = _item(campaign, 1, ranking=[[0], [1], [2]])
    _embed(judged, [1, 0, 0, 0])
    # 0 over 1 by a wide margin (p(A better) = 0.98), but 2 above both.
    _score(judged, version, [4.0, 0.0, 6.0])
    near = _item(campaign, 2)
    _embed(near, [1, 0.05, 0, 0])
    summary = pool_prioritise(version=version, context=context)
    assert summary["mispredicted"] == 1 and summary["retrieved"] == 1, summary
    near.refresh_from_db()
    assert near.priority == pytest.approx(1 - _sigmoid(0.0 - 6.0))


@pytest.mark.django_db
@pytest.mark.parametrize(("rule", "mispredicted"), [("best_vs_each", 0), ("all_pairs", 1)])
def test_p_comes_from_the_pairs_the_campaigns_rule_trains(rule, mispredicted):
    campaign, version, context = _setup(rule=rule, k=8)
    judged = _item(campaign, 1, ranking=[[0], [1], [2]])
    _embed(judged, [1, 0, 0, 0])
    # best_vs_each trains 0 > 1 and 0 > 2 (both right); all_pairs adds 1 > 2 (wrong).
    _score(judged, version, [2.0, 0.0, 1.0])
    _embed(_item(campaign, 2), [1, 0.05, 0, 0])
    summary = pool_prioritise(version=version, context=context)
    assert summary["judged"] == 1 and summary["mispredicted"] == mispredicted, summary
    worst = _sigmoid(1.0) if rule == "best_vs_each" else _sigmoid(-1.0)
    assert summary["sources"] == int(retrieval_count(worst, 8) > 0)


@pytest.mark.django_db
def test_a_confident_mistake_on_a_later_response_of_a_unanimous_item_escalates():
    campaign, version, context = _setup()
    judged = _item(campaign, 1, ranking=[[0], [1], [2]])
    _embed(judged, [1, 0, 0, 0])
    _score(judged, version, [5.0, 4.0, 9.0])  # 0 > 1 right; 2 ranked first, confidently
    summary = pool_prioritise(version=version, context=context)
    assert summary["escalated"] == 1, summary
    assert Escalation.objects.filter(
        pair=judged, reason=Escalation.Reason.MODEL_CONTRADICTION
    ).exists()


@pytest.mark.django_db
def test_an_item_with_every_response_tied_is_not_judged():
    campaign, version, context = _setup()
    judged = _item(campaign, 1, ranking=[[0, 1, 2]])
    _embed(judged, [1, 0, 0, 0])
    _score(judged, version, [0.0, 1.0, 2.0])
    assert pool_prioritise(version=version, context=context)["judged"] == 0


@pytest.mark.django_db
def test_a_score_without_every_responses_reward_is_judged_on_the_pairs_it_covers():
    """Rows scored before per-response rewards existed hold responses 0 and 1 only."""
    campaign, version, context = _setup()
    judged = _item(campaign, 1, ranking=[[1], [0], [2]])
    _embed(judged, [1, 0, 0, 0])
    PairScore.objects.create(
        pair=judged,
        model_version=version,
        reward_a=1.0,
        reward_b=0.0,
        p_a_better=_sigmoid(1.0),
    )
    near = _item(campaign, 2)
    _embed(near, [1, 0.05, 0, 0])
    summary = pool_prioritise(version=version, context=context)
    assert summary["judged"] == 1 and summary["mispredicted"] == 1, summary
    near.refresh_from_db()
    assert near.priority == pytest.approx(_sigmoid(1.0))


@pytest.mark.django_db
def test_a_response_without_a_finite_reward_decides_none_of_the_items_pairs():
    campaign, version, context = _setup()
    judged = _item(campaign, 1, ranking=[[2], [0], [1]])
    _embed(judged, [1, 0, 0, 0])
    # Response 2's reward overflowed (stored as null): only 0 > 1 is left, and it is right.
    _score(judged, version, [3.0, 0.0, None])
    summary = pool_prioritise(version=version, context=context)
    assert summary["judged"] == 1 and summary["mispredicted"] == 0, summary


# --- Pool scoring with a real (tiny) checkpoint ---------------------------------------------


def _scored_campaign(tmp_path, *, mode: str):
    from scoring.reward_model import build_tiny_reward_model

    campaign = CampaignFactory(
        item_kind=ItemKind.RANKING, ranking_expansion="all_pairs", retrieval_k=8
    )
    checkpoint = build_tiny_reward_model(tmp_path / "v1", seed=3)
    version = ModelVersion.objects.create(
        campaign=campaign,
        number=1,
        base=str(checkpoint),
        checkpoint=str(checkpoint),
        mode=mode,
        metrics={"encoder": f"{KEY}-{mode}-{campaign.pk}"},
        is_active=True,
    )
    tied = _item(campaign, 1, ranking=[[0, 1], [2, 3]], size=4)
    strict = _item(campaign, 2, ranking=[[2], [0], [1]], provenance=Pair.Provenance.MAJORITY)
    pooled = [_item(campaign, 10 + n, size=4) for n in range(3)]
    job = job_run_inline(job=scoring_request(campaign=campaign, enqueue=False))
    assert job.status == Job.Status.SUCCEEDED, job.error
    return version, job, (tied, strict), pooled


@pytest.mark.django_db
@pytest.mark.parametrize("mode", ["full", "head"])
def test_pool_scoring_stores_every_responses_reward_of_a_verified_ranking_item(tmp_path, mode):
    from scoring.reward_model import RewardModel

    version, job, judged, pooled = _scored_campaign(tmp_path, mode=mode)
    model = RewardModel.load(version.checkpoint)
    # Head mode reads responses 0 and 1 from the cached (8/12-bit) features: close, not equal.
    tolerance = 1e-4 if mode == "full" else 0.1
    expected_judged = 0
    for item in judged:
        score = PairScore.objects.get(pair=item, model_version=version)
        texts = [response["content"] for response in item.responses]
        expected = model.score_batch([(item.conversation, text) for text in texts])
        assert score.rewards is not None and len(score.rewards) == len(texts)
        np.testing.assert_allclose(score.rewards, expected, atol=tolerance)
        assert score.rewards[:2] == [score.reward_a, score.reward_b]
        assert score.p_a_better == pytest.approx(_sigmoid(score.reward_a - score.reward_b))
        expected_judged += 1
    # The unlabelled pool keeps two rewards a pair: no forward over its other responses.
    assert not PairScore.objects.filter(pair__in=pooled, rewards__isnull=False).exists()
    assert PairScore.objects.filter(pair__in=pooled).count() == len(pooled)
    prioritisation = job.result["prioritisation"]
    # The tied item (consensus_preference 0) is judged too.
    assert prioritisation["judged"] == expected_judged == 2, prioritisation
    assert job.result["scoring"]["judged"] == 2
