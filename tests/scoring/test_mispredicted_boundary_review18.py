"""Review 18: one rule says which pairs the model mispredicted, for prioritisation (its
sources' k, its count, its reasons) and for the dashboard's hit rate alike: p <= 0.5, where
p is the model's probability of the humans' side; at exactly 0.5 it has no preference, a
miss."""

from __future__ import annotations

import math

import pytest

from annotation.models import ItemKind, Pair, Round
from annotation.rankings import first_two_preference
from scoring.dashboard.loop_effect import loop_effect
from scoring.jobs.runner import JobContext, job_claim, job_create
from scoring.loop.prioritisation import pool_prioritise, reason_text
from scoring.loop.retrieval import agreement_of, is_mispredicted, retrieval_count
from scoring.models import ModelVersion, PairScore
from tests.factories import CampaignFactory, PairFactory, ranking_item

JUST_ABOVE = math.nextafter(0.5, 1.0)
JUST_BELOW = math.nextafter(0.5, 0.0)


def test_the_boundary_is_a_miss_and_the_next_float_up_is_not():
    assert is_mispredicted(0.5)
    assert is_mispredicted(JUST_BELOW)
    assert not is_mispredicted(JUST_ABOVE)
    # Either side the humans chose: no preference is a miss.
    assert is_mispredicted(agreement_of(0.5, 1)) and is_mispredicted(agreement_of(0.5, -1))
    assert not is_mispredicted(agreement_of(0.2, -1))


def test_a_pair_at_the_boundary_pulls_the_full_k_and_is_called_mispredicted():
    assert retrieval_count(0.5, 8) == 8
    assert retrieval_count(JUST_ABOVE, 8) == 3  # int(8 * (1 - p)): a weak right answer
    assert retrieval_count(JUST_BELOW, 8) == 8
    assert "mispredicted at p = 0.50" in reason_text(source_id=1, p=0.5, similarity=0.9)
    assert "low confidence" in reason_text(source_id=1, p=JUST_ABOVE, similarity=0.9)


def _setup(item_kind: str):
    campaign = CampaignFactory(item_kind=item_kind, ranking_expansion="all_pairs")
    version = ModelVersion.objects.create(
        campaign=campaign,
        number=1,
        base="t",
        checkpoint="/nowhere",
        metrics={"encoder": "review18-boundary"},
        is_active=True,
    )
    round_ = Round.objects.create(campaign=campaign, number=1, chosen_by_version=1)
    return campaign, version, round_


def _counts(campaign, version) -> tuple[int, int]:
    """(prioritisation's count of mispredicted pairs, the hit rate's) for the same version."""
    job = job_create(campaign=campaign, kind="score")
    claim = job_claim(job_id=job.pk, worker="t")
    assert claim.job is not None
    summary = pool_prioritise(version=version, context=JobContext(claim.job))
    (report,) = loop_effect(campaign=campaign)["rounds"]
    priority = report["slices"]["priority"]
    assert summary["judged"] == priority["scored"]
    return summary["mispredicted"], priority["mispredicted"]


@pytest.mark.django_db
def test_prioritisation_and_the_hit_rate_count_an_ab_pair_at_0_5_alike():
    campaign, version, round_ = _setup(ItemKind.PAIR)
    # Two pairs the model has no preference on (one per side the humans chose), one it gets
    # right and one it gets wrong.
    for preference, p_a in ((1, 0.5), (-1, 0.5), (1, 0.9), (1, 0.2)):
        pair = PairFactory(
            campaign=campaign,
            round=round_,
            selection=Pair.Selection.PRIORITY,
            status=Pair.Status.COMPLETE,
            provenance=Pair.Provenance.MAJORITY,
            consensus_preference=preference,
            disagreement=0.2,
        )
        PairScore.objects.create(
            pair=pair, model_version=version, reward_a=0.0, reward_b=0.0, p_a_better=p_a
        )
    assert _counts(campaign, version) == (3, 3)


@pytest.mark.django_db
def test_prioritisation_and_the_hit_rate_count_a_ranking_item_it_ties_alike():
    campaign, version, round_ = _setup(ItemKind.RANKING)
    # Humans: 0 > 1 > 2. The model gives 0 and 1 the same reward: no preference between them.
    ranking = [[0], [1], [2]]
    item = ranking_item(
        campaign,
        n=1,
        size=3,
        status=Pair.Status.COMPLETE,
        labels_count=3,
        slots_taken=3,
        provenance=Pair.Provenance.UNANIMOUS,
        consensus_ranking=ranking,
        consensus_preference=first_two_preference(ranking),
        disagreement=0.0,
        round=round_,
        selection=Pair.Selection.PRIORITY,
    )
    PairScore.objects.create(
        pair=item,
        model_version=version,
        reward_a=1.0,
        reward_b=1.0,
        p_a_better=0.5,
        rewards=[1.0, 1.0, 0.0],
    )
    assert _counts(campaign, version) == (1, 1)
