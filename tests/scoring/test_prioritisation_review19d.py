"""Prioritisation with a non-finite score: a checkpoint whose reward overflowed or went NaN on
some pairs (``pool_scoring._json_rewards`` keeps such a ranking item's reward as null, and
prioritisation leaves out the pairs it would decide) must not fail the loop job for all."""

from __future__ import annotations

import math

import numpy as np
import pytest

from annotation.models import Pair
from scoring.jobs.runner import JobContext, job_claim, job_create
from scoring.loop.embeddings import PairVectors, pair_embeddings_store
from scoring.loop.prioritisation import pool_prioritise
from scoring.loop.retrieval import normalise_rows
from scoring.models import ModelVersion, PairScore
from tests.factories import CampaignFactory, PairFactory

KEY = "test-encoder-review19d"
DIM = 4


def _embed(pair: Pair, direction: list[float]) -> None:
    context = normalise_rows(np.array([direction], dtype=np.float32))
    pair_embeddings_store(
        vectors=PairVectors(np.array([pair.pk]), context, np.zeros((1, DIM)), np.zeros((1, DIM))),
        key=KEY,
    )


@pytest.mark.django_db
def test_a_pair_with_a_non_finite_score_is_left_out_not_fatal():
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
    judged = {
        "status": Pair.Status.COMPLETE,
        "provenance": Pair.Provenance.UNANIMOUS,
        "labels_count": 3,
        "slots_taken": 3,
    }
    broken = PairFactory(campaign=campaign, consensus_preference=1, **judged)
    _embed(broken, [0, 0, 1, 0])
    # Infinity against infinity makes p(A better) NaN.
    PairScore.objects.create(
        pair=broken,
        model_version=version,
        reward_a=math.inf,
        reward_b=math.inf,
        p_a_better=math.nan,
    )
    wrong = PairFactory(campaign=campaign, consensus_preference=-1, **judged)
    _embed(wrong, [1, 0, 0, 0])
    PairScore.objects.create(
        pair=wrong, model_version=version, reward_a=1.0, reward_b=0.0, p_a_better=0.77
    )
    near = PairFactory(campaign=campaign, status=Pair.Status.POOLED)
    _embed(near, [1, 0.1, 0, 0])
    by_broken = PairFactory(campaign=campaign, status=Pair.Status.POOLED)
    _embed(by_broken, [0, 0, 1, 0.1])

    summary = pool_prioritise(version=version, context=context)

    assert summary["judged"] == 1 and summary["sources"] == 1 and summary["retrieved"] == 2
    near.refresh_from_db()
    by_broken.refresh_from_db()
    assert near.priority == pytest.approx(0.77)
    assert f"similar to pair {wrong.pk}" in by_broken.priority_reason  # not the NaN pair's


@pytest.mark.django_db
def test_the_loop_effect_leaves_out_a_pair_the_model_scored_nan():
    """The hit rate judges a slice by prioritisation's rule: a NaN score decides nothing, so it
    is neither a miss nor (as ``p <= 0.5`` being false made it) a hit."""
    from scoring.dashboard.loop_effect import loop_effect
    from scoring.loop.rounds import round_open_next

    campaign = CampaignFactory(round_size=10, random_slice_share=0.0)
    pool = [PairFactory(campaign=campaign, status=Pair.Status.POOLED) for _ in range(10)]
    version = ModelVersion.objects.create(
        campaign=campaign, number=1, base="tiny", checkpoint="/nowhere", is_active=True
    )
    PairScore.objects.bulk_create(
        PairScore(pair=pair, model_version=version, reward_a=1.0, reward_b=0.0, p_a_better=0.9)
        for pair in pool[1:]
    )
    PairScore.objects.create(
        pair=pool[0],
        model_version=version,
        reward_a=math.inf,
        reward_b=math.inf,
        p_a_better=math.nan,
    )
    opened = round_open_next(campaign=campaign)
    # The humans chose B on every pair: the model (A at 0.9) missed each one it decided.
    Pair.objects.filter(round=opened).update(
        status=Pair.Status.COMPLETE,
        consensus_preference=-1,
        provenance=Pair.Provenance.UNANIMOUS,
        disagreement=0.0,
    )

    (report,) = loop_effect(campaign=campaign)["rounds"]

    priority = report["slices"]["priority"]
    assert priority["scored"] == 9 and priority["mispredicted"] == 9, priority
    assert priority["hit_rate"] == 1.0
