"""The loop-effect panel's hit rate counts only settled pairs: an escalated pair's stored
majority is provisional, and a "both bad"/"both good" verdict picks no side."""

from __future__ import annotations

import pytest

from annotation.models import Outcome, Pair
from scoring.dashboard.loop_effect import loop_effect
from scoring.loop.rounds import round_open_next
from scoring.models import ModelVersion, PairScore
from tests.factories import CampaignFactory, PairFactory


def _round_of_ten(db) -> list[Pair]:  # noqa: ANN001 - the pytest-django fixture
    campaign = CampaignFactory(round_size=10, random_slice_share=0.0)
    pool = [PairFactory(campaign=campaign, status=Pair.Status.POOLED) for _ in range(10)]
    version = ModelVersion.objects.create(
        campaign=campaign, number=1, base="tiny", checkpoint="/nowhere"
    )
    # The model that chose the round says A, for every pair.
    PairScore.objects.bulk_create(
        PairScore(pair=p, model_version=version, reward_a=1.0, reward_b=0.0, p_a_better=0.9)
        for p in pool
    )
    opened = round_open_next(campaign=campaign)
    return list(Pair.objects.filter(round=opened).order_by("id"))


def _settle(pairs: list[Pair], **fields: object) -> None:
    Pair.objects.filter(pk__in=[p.pk for p in pairs]).update(**fields)


def _priority_slice(pairs: list[Pair]) -> dict:
    (report,) = loop_effect(campaign=pairs[0].campaign)["rounds"]
    return report["slices"]["priority"]


def test_escalated_pairs_are_not_settled_pairs(db):
    in_round = _round_of_ten(db)
    _settle(
        in_round[:4],
        status=Pair.Status.COMPLETE,
        consensus_preference=1,
        provenance=Pair.Provenance.UNANIMOUS,
        disagreement=0.0,
    )
    _settle(
        in_round[4:],
        status=Pair.Status.ESCALATED,
        consensus_preference=-1,
        provenance=Pair.Provenance.MAJORITY,
        disagreement=0.9,
    )

    priority = _priority_slice(in_round)

    assert priority["judged"] == 4, priority
    assert priority["hit_rate"] == 0.0, priority
    # Disagreement is what escalated them: it still counts every labelled pair of the slice.
    assert priority["disagreement_n"] == 10, priority
    assert priority["disagreement"] == pytest.approx(0.54)


def test_a_resolved_pair_counts_and_a_both_bad_verdict_does_not(db):
    in_round = _round_of_ten(db)
    # An expert settled it against the model: a miss.
    _settle(
        in_round[:1],
        status=Pair.Status.RESOLVED,
        consensus_preference=-1,
        provenance=Pair.Provenance.ADJUDICATED,
        disagreement=0.5,
    )
    # "Both bad" carries preference 0 until a later verdict stores one: never a side.
    _settle(
        in_round[1:2],
        status=Pair.Status.COMPLETE,
        consensus_preference=-1,
        consensus_outcome=Outcome.BOTH_BAD,
        provenance=Pair.Provenance.UNANIMOUS,
        disagreement=0.0,
    )
    # Discarded by an expert: settled, but with no side.
    _settle(
        in_round[2:3],
        status=Pair.Status.DISCARDED,
        consensus_preference=-1,
        provenance=Pair.Provenance.DISCARDED,
        disagreement=0.5,
    )

    priority = _priority_slice(in_round)

    assert (priority["judged"], priority["mispredicted"]) == (1, 1), priority
    assert priority["hit_rate"] == 1.0
