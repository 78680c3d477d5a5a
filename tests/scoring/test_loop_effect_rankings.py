"""The loop-effect panel's hit rate judges a ranking item as prioritisation does: by every
pair its consensus ranking expands into (the campaign's rule), from the reward of every
response, not by responses 0 and 1 alone; an item whose humans tied 0 and 1 still counts.
A/B pairs keep their rule (the stored preference against p(A better))."""

from __future__ import annotations

import math
from typing import Any

import pytest

from annotation.models import ItemKind, Pair, Round
from annotation.rankings import first_two_preference
from scoring.dashboard.loop_effect import loop_effect
from scoring.jobs.runner import JobContext, job_claim, job_create
from scoring.loop.prioritisation import pool_prioritise
from scoring.models import ModelVersion, PairScore
from tests.factories import CampaignFactory, PairFactory, ranking_item

pytestmark = pytest.mark.django_db


def _sigmoid(value: float) -> float:
    return 1.0 / (1.0 + math.exp(-value))


def _setup(*, rule: str = "all_pairs", item_kind: str = ItemKind.RANKING):
    campaign = CampaignFactory(item_kind=item_kind, ranking_expansion=rule)
    version = ModelVersion.objects.create(
        campaign=campaign,
        number=1,
        base="t",
        checkpoint="/nowhere",
        metrics={"encoder": "loop-effect-rankings"},
        is_active=True,
    )
    round_ = Round.objects.create(campaign=campaign, number=1, chosen_by_version=1)
    return campaign, version, round_


def _item(round_: Round, n: int, ranking: list[list[int]], **fields: Any) -> Pair:
    settled: dict[str, Any] = {
        "status": Pair.Status.COMPLETE,
        "labels_count": 3,
        "slots_taken": 3,
        "provenance": Pair.Provenance.UNANIMOUS,
        "consensus_ranking": ranking,
        "consensus_preference": first_two_preference(ranking),
        "disagreement": 0.0,
        "round": round_,
        "selection": Pair.Selection.PRIORITY,
    }
    return ranking_item(round_.campaign, n=n, size=3, **{**settled, **fields})


def _score(pair: Pair, version: ModelVersion, rewards: list[float], *, keep_all: bool = True):
    PairScore.objects.create(
        pair=pair,
        model_version=version,
        reward_a=rewards[0],
        reward_b=rewards[1],
        p_a_better=_sigmoid(rewards[0] - rewards[1]),
        # A score written before every response's reward was kept holds none.
        rewards=rewards if keep_all else None,
    )


def _priority(campaign) -> dict:
    (report,) = loop_effect(campaign=campaign)["rounds"]
    return report["slices"]["priority"]


def test_a_model_right_on_the_first_two_but_misordering_a_later_pair_mispredicted_the_item():
    campaign, version, round_ = _setup()
    # Humans: 0 > 1 > 2. The model: 0 above 1 (right), but 2 above 1 (wrong).
    item = _item(round_, 1, [[0], [1], [2]])
    _score(item, version, [2.0, 0.0, 1.0])
    # The model orders every pair right.
    right = _item(round_, 2, [[0], [1], [2]])
    _score(right, version, [2.0, 1.0, 0.0])

    priority = _priority(campaign)

    assert (priority["judged"], priority["scored"], priority["mispredicted"]) == (2, 2, 1), priority
    assert priority["hit_rate"] == 0.5


def test_an_item_whose_humans_tied_responses_0_and_1_is_counted():
    campaign, version, round_ = _setup()
    # Humans: 0 and 1 tied at the top, 2 worst (preference 0); the model ranks 2 above 1.
    wrong = _item(round_, 1, [[0, 1], [2]])
    assert wrong.consensus_preference == 0
    _score(wrong, version, [1.0, 0.0, 0.5])
    # Same tie, the model puts 2 below both: right.
    right = _item(round_, 2, [[0, 1], [2]])
    _score(right, version, [1.0, 0.0, -1.0])
    # Every response tied: no chosen/rejected pair, no side, not judged.
    _item(round_, 3, [[0, 1, 2]])

    priority = _priority(campaign)

    assert (priority["judged"], priority["scored"], priority["mispredicted"]) == (2, 2, 1), priority


def test_the_campaigns_expansion_rule_decides_which_pairs_count():
    # best_vs_each takes 0 > 1 and 0 > 2 only: the model's 2 above 1 is no miss there.
    campaign, version, round_ = _setup(rule="best_vs_each")
    item = _item(round_, 1, [[0], [1], [2]])
    _score(item, version, [2.0, 0.0, 1.0])

    priority = _priority(campaign)

    assert (priority["scored"], priority["mispredicted"]) == (1, 0), priority


def test_a_score_without_every_reward_judges_the_pairs_it_can():
    campaign, version, round_ = _setup()
    # Only rewards 0 and 1 kept: 0 > 1 is the one pair it can judge, and the model got it wrong.
    wrong = _item(round_, 1, [[0], [1], [2]])
    _score(wrong, version, [0.0, 1.0, 9.0], keep_all=False)
    # Humans tied 0 and 1: no expanded pair has both rewards, so the item is judged, unscored.
    tied = _item(round_, 2, [[0, 1], [2]])
    _score(tied, version, [0.0, 1.0, 9.0], keep_all=False)

    priority = _priority(campaign)

    assert (priority["judged"], priority["scored"], priority["mispredicted"]) == (2, 1, 1), priority


def test_an_escalated_ranking_is_not_settled_and_a_resolved_one_is():
    campaign, version, round_ = _setup()
    escalated = _item(round_, 1, [[0], [1], [2]], status=Pair.Status.ESCALATED)
    _score(escalated, version, [2.0, 0.0, 1.0])
    resolved = _item(
        round_,
        2,
        [[0, 1], [2]],
        status=Pair.Status.RESOLVED,
        provenance=Pair.Provenance.ADJUDICATED,
    )
    _score(resolved, version, [1.0, 0.0, 0.5])

    priority = _priority(campaign)

    assert (priority["judged"], priority["mispredicted"]) == (1, 1), priority
    # Disagreement still counts every labelled item of the slice.
    assert priority["disagreement_n"] == 2


def test_the_hit_rate_and_prioritisation_call_the_same_items_mispredicted():
    campaign, version, round_ = _setup()
    cases = [
        ([[0], [1], [2]], [2.0, 0.0, 1.0]),  # a later pair misordered
        ([[0], [1], [2]], [2.0, 1.0, 0.0]),  # every pair right
        ([[0, 1], [2]], [1.0, 0.0, 0.5]),  # 0 and 1 tied, 2 above 1
        ([[0, 1], [2]], [1.0, 0.0, -1.0]),  # 0 and 1 tied, right
        ([[2], [0, 1]], [0.0, 0.5, 1.0]),  # 0 and 1 tied below 2, right
        ([[1], [0], [2]], [1.0, 0.0, -1.0]),  # the first two reversed
    ]
    for n, (ranking, rewards) in enumerate(cases):
        _score(_item(round_, n, ranking), version, rewards)
    job = job_create(campaign=campaign, kind="score")
    claim = job_claim(job_id=job.pk, worker="t")
    assert claim.job is not None

    summary = pool_prioritise(version=version, context=JobContext(claim.job))
    priority = _priority(campaign)

    assert (priority["scored"], priority["mispredicted"]) == (6, 3), priority
    assert (summary["judged"], summary["mispredicted"]) == (6, 3), summary


def test_ab_pairs_keep_their_rule():
    campaign, version, round_ = _setup(item_kind=ItemKind.PAIR)
    for preference, p_a in ((1, 0.9), (1, 0.2), (-1, 0.2), (-1, 0.5), (0, 0.1)):
        pair = PairFactory(
            campaign=campaign,
            round=round_,
            selection=Pair.Selection.RANDOM,
            status=Pair.Status.COMPLETE,
            provenance=Pair.Provenance.MAJORITY,
            consensus_preference=preference,
            disagreement=0.2,
        )
        PairScore.objects.create(
            pair=pair, model_version=version, reward_a=0.0, reward_b=0.0, p_a_better=p_a
        )

    (report,) = loop_effect(campaign=campaign)["rounds"]
    random_ = report["slices"]["random"]

    # The tie is no side; p = 0.5 is a miss, as in accuracy.
    assert (random_["judged"], random_["scored"], random_["mispredicted"]) == (4, 4, 2), random_
