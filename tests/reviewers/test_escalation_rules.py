"""Each escalation rule, fired through the real label submit path."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from annotation.models import Pair
from reviewers.errors import InvalidDecision
from reviewers.models import Escalation
from reviewers.services.adjudications import adjudication_resolve
from reviewers.services.consensus import pair_consensus_update
from reviewers.services.escalations import (
    escalation_claim,
    escalation_model_contradiction,
    escalation_open,
)
from tests.factories import CampaignFactory, PairFactory, UserFactory
from tests.reviewers.factories import judge, judged_pair

pytestmark = pytest.mark.django_db


def _reasons(pair: Pair) -> list[str]:
    return list(Escalation.objects.filter(pair=pair).values_list("reason", flat=True))


def test_a_unanimous_pair_completes_without_escalation(campaign):
    pair = judged_pair(campaign, [2, 1, 2])
    assert (pair.status, pair.provenance, pair.consensus_preference) == (
        Pair.Status.COMPLETE,
        Pair.Provenance.UNANIMOUS,
        2,
    )
    assert _reasons(pair) == []


def test_a_pair_escalates_only_when_all_its_labels_are_in(campaign):
    pair = PairFactory(campaign=campaign)
    first, second, third = UserFactory.create_batch(3)
    judge(campaign, first, 2)
    judge(campaign, second, -2)
    assert _reasons(pair) == []
    judge(campaign, third, 0)
    assert _reasons(pair) == [Escalation.Reason.NO_MAJORITY]


def test_no_majority_escalates_and_leaves_the_pair_unresolved(campaign):
    pair = judged_pair(campaign, [1, 0, -1])
    assert pair.status == Pair.Status.ESCALATED
    assert pair.provenance == Pair.Provenance.UNRESOLVED
    assert pair.consensus_preference is None
    assert _reasons(pair) == [Escalation.Reason.NO_MAJORITY]


def test_opposite_directions_above_the_threshold_escalate(campaign):
    pair = judged_pair(campaign, [2, 2, -2])
    assert pair.provenance == Pair.Provenance.MAJORITY
    assert pair.consensus_preference == 2
    assert pair.status == Pair.Status.ESCALATED
    escalation = Escalation.objects.get(pair=pair)
    assert escalation.reason == Escalation.Reason.OPPOSITE_DIRECTIONS
    assert escalation.disagreement == pytest.approx(2 / 3)


def test_opposite_directions_below_the_threshold_do_not(campaign):
    pair = judged_pair(campaign, [1, 1, -1])  # disagreement 1/6 on five points
    assert pair.status == Pair.Status.COMPLETE
    assert _reasons(pair) == []


def test_the_threshold_is_configurable_per_campaign():
    campaign = CampaignFactory(escalation_rules={"disagreement_threshold": 0.1})
    pair = judged_pair(campaign, [1, 1, -1])
    assert _reasons(pair) == [Escalation.Reason.OPPOSITE_DIRECTIONS]


def test_an_annotator_flag_escalates_even_a_unanimous_pair(campaign):
    pair = PairFactory(campaign=campaign)
    users = UserFactory.create_batch(3)
    judge(campaign, users[0], 1, flags=["unsafe"])
    judge(campaign, users[1], 1)
    judge(campaign, users[2], 2, flags=["cannot_judge"])
    escalation = Escalation.objects.get(pair=pair)
    assert escalation.reason == Escalation.Reason.FLAGGED
    assert "cannot_judge" in escalation.detail and "unsafe" in escalation.detail


def test_several_reasons_share_one_open_escalation(campaign):
    pair = PairFactory(campaign=campaign)
    users = UserFactory.create_batch(3)
    judge(campaign, users[0], 2, flags=["broken"])
    judge(campaign, users[1], -2)
    judge(campaign, users[2], 0)
    escalation = Escalation.objects.get(pair=pair)
    assert escalation.reason == Escalation.Reason.NO_MAJORITY
    assert "also: opposite_directions" not in escalation.detail  # 0.5 is not above 0.5
    assert "also: flagged" in escalation.detail


def test_disabled_rules_do_not_escalate():
    campaign = CampaignFactory(
        escalation_rules={"no_majority": False, "opposite_directions": False, "flags": False}
    )
    pair = PairFactory(campaign=campaign)
    users = UserFactory.create_batch(3)
    for user, preference in zip(users, [2, -2, 0], strict=True):
        judge(campaign, user, preference, flags=["unsafe"])
    pair.refresh_from_db()
    assert pair.status == Pair.Status.COMPLETE
    assert pair.provenance == Pair.Provenance.UNRESOLVED
    assert _reasons(pair) == []


def test_the_deadline_comes_from_the_campaign_rules():
    campaign = CampaignFactory(escalation_rules={"deadline_hours": 5})
    pair = judged_pair(campaign, [1, 0, -1])
    escalation = Escalation.objects.get(pair=pair)
    assert escalation.deadline - escalation.created_at == pytest.approx(
        timedelta(hours=5), abs=timedelta(seconds=2)
    )


def test_the_default_deadline_is_three_days(campaign):
    pair = judged_pair(campaign, [1, 0, -1])
    escalation = Escalation.objects.get(pair=pair)
    assert escalation.deadline - escalation.created_at == pytest.approx(
        timedelta(days=3), abs=timedelta(seconds=2)
    )


def test_a_confident_model_contradicting_a_unanimous_label_escalates(campaign):
    pair = judged_pair(campaign, [1, 2, 1])
    escalation = escalation_model_contradiction(pair=pair, p_agree=0.04, threshold=0.9)
    assert escalation is not None
    assert escalation.reason == Escalation.Reason.MODEL_CONTRADICTION
    pair.refresh_from_db()
    assert pair.status == Pair.Status.ESCALATED


@pytest.mark.parametrize("p_agree", [0.1, 0.5, 0.97])
def test_a_model_that_is_not_confident_the_other_way_does_not(campaign, p_agree):
    pair = judged_pair(campaign, [1, 2, 1])
    assert escalation_model_contradiction(pair=pair, p_agree=p_agree, threshold=0.9) is None
    assert _reasons(pair) == []


def test_the_model_rule_ignores_majority_labels(campaign):
    pair = judged_pair(campaign, [1, 1, -1])
    assert pair.provenance == Pair.Provenance.MAJORITY
    assert escalation_model_contradiction(pair=pair, p_agree=0.01, threshold=0.9) is None


def test_the_model_rule_uses_the_campaign_confidence_and_can_be_off():
    strict = CampaignFactory(escalation_rules={"model_confidence": 0.99})
    pair = judged_pair(strict, [2, 2, 2])
    assert escalation_model_contradiction(pair=pair, p_agree=0.02) is None
    assert escalation_model_contradiction(pair=pair, p_agree=0.005) is not None
    off = CampaignFactory(escalation_rules={"model_contradiction": False})
    other = judged_pair(off, [2, 2, 2])
    assert escalation_model_contradiction(pair=other, p_agree=0.0) is None


def test_the_model_rule_rejects_a_probability_out_of_range(campaign):
    pair = judged_pair(campaign, [2, 2, 2])
    with pytest.raises(InvalidDecision, match="p_agree must be a probability"):
        escalation_model_contradiction(pair=pair, p_agree=1.5, threshold=0.9)


def test_nothing_reopens_a_pair_an_expert_decided(campaign, expert):
    pair = judged_pair(campaign, [1, 0, -1])
    escalation = Escalation.objects.get(pair=pair)
    escalation_claim(escalation=escalation, expert=expert)
    adjudication_resolve(
        escalation=escalation, expert=expert, decision="preference", preference=1, note="A."
    )
    pair.refresh_from_db()
    assert escalation_open(pair=pair, reason=Escalation.Reason.MANUAL) is None
    assert pair_consensus_update(pair=pair) is None
    pair.refresh_from_db()
    assert (pair.status, pair.provenance, pair.consensus_preference) == (
        Pair.Status.RESOLVED,
        Pair.Provenance.ADJUDICATED,
        1,
    )
    assert Escalation.objects.filter(pair=pair, status=Escalation.Status.OPEN).count() == 0


def test_a_reason_added_later_keeps_the_higher_disagreement(campaign):
    pair = judged_pair(campaign, [1, 1, 2])
    first = escalation_open(pair=pair, reason=Escalation.Reason.MANUAL, disagreement=0.1)
    again = escalation_open(
        pair=pair,
        reason=Escalation.Reason.FLAGGED,
        detail="flags: unsafe",
        disagreement=0.4,
        now=timezone.now(),
    )
    assert again.pk == first.pk
    again.refresh_from_db()
    assert again.disagreement == pytest.approx(0.4)
    assert "also: flagged flags: unsafe" in again.detail
