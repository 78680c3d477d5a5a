"""Review 21C: a weighted (Dawid–Skene) re-estimate settles the escalated pairs it now settles
clearly, when all they wait for is a verdict (no majority, or an earlier posterior below the
campaign's threshold) and no expert holds a claim on them; everything else stays with the
experts."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from annotation.models import Campaign, Pair
from annotation.roles import Role
from reviewers.errors import AlreadyDecided
from reviewers.models import Escalation
from reviewers.services.escalations import escalation_claim, escalation_open
from reviewers.services.weighted_consensus import campaign_consensus_reestimate
from tests.factories import PairFactory
from tests.reviewers.factories import judge, user_with_role
from tests.reviewers.test_weighted_consensus import ACCURACIES, _campaign, _label_campaign

pytestmark = pytest.mark.django_db

NO_MAJORITY = Escalation.Reason.NO_MAJORITY
LOW_POSTERIOR = Escalation.Reason.LOW_POSTERIOR


def _learned(**rules):
    """A three-point weighted campaign whose re-estimate has learned three good annotators and
    an adversarial one (``ACCURACIES``); no gold checks or re-tests from now on."""
    campaign = _campaign(scale="three_point", **rules)
    _truth, users = _label_campaign(campaign, accuracies=ACCURACIES, pairs=60, seed=5)
    result = campaign_consensus_reestimate(campaign_id=campaign.pk)
    assert result is not None
    assert result.accuracy[users[-1].pk] < 0.3
    Campaign.objects.filter(pk=campaign.pk).update(gold_share=0.0, retest_share=0.0)
    campaign.refresh_from_db()
    return campaign, users


def _split_three_ways(campaign, users, *, flags=()) -> Pair:
    """A fresh pair labelled A, tie, B: no majority, so the labels escalate it. The weighted
    fit reads it as A: a good annotator said A, and the adversary's B is evidence for A."""
    good_1, good_2, _good_3, adversary = users
    pair = PairFactory(campaign=campaign)
    for user, said, its_flags in ((good_1, 1, ()), (good_2, 0, flags), (adversary, -1, ())):
        assert judge(campaign, user, said, flags=its_flags).pair_id == pair.pk
    pair.refresh_from_db()
    assert (pair.status, pair.provenance) == (Pair.Status.ESCALATED, Pair.Provenance.UNRESOLVED)
    return pair


def test_a_clear_weighted_verdict_takes_an_unclaimed_no_majority_pair_out_of_the_queue():
    campaign, users = _learned(posterior_threshold=0.8)
    pair = _split_three_ways(campaign, users)
    escalation = Escalation.objects.get(pair=pair, status=Escalation.Status.OPEN)
    assert escalation.reason == NO_MAJORITY

    campaign_consensus_reestimate(campaign_id=campaign.pk)

    pair.refresh_from_db()
    assert (pair.status, pair.provenance, pair.consensus_preference) == (
        Pair.Status.COMPLETE,
        Pair.Provenance.DAWID_SKENE,
        1,
    )
    assert pair.consensus_posterior is not None and pair.consensus_posterior >= 0.8
    escalation.refresh_from_db()
    assert escalation.status == Escalation.Status.WITHDRAWN
    # An expert who opens it now is told why there is nothing to decide.
    expert = user_with_role("late-expert", Role.EXPERT)
    with pytest.raises(AlreadyDecided, match="weighted consensus"):
        escalation_claim(escalation=escalation, expert=expert)
    # A re-run changes nothing and opens nothing.
    again = campaign_consensus_reestimate(campaign_id=campaign.pk)
    assert again is not None and again.pairs_settled == 0 and again.escalated == 0
    assert Escalation.objects.filter(pair=pair).count() == 1


def test_a_pair_an_expert_has_claimed_stays_with_the_expert():
    campaign, users = _learned(posterior_threshold=0.8)
    pair = _split_three_ways(campaign, users)
    escalation = Escalation.objects.get(pair=pair, status=Escalation.Status.OPEN)
    expert = user_with_role("reviewing-expert", Role.EXPERT)
    escalation_claim(escalation=escalation, expert=expert)

    campaign_consensus_reestimate(campaign_id=campaign.pk)

    pair.refresh_from_db()
    escalation.refresh_from_db()
    assert (pair.status, pair.provenance) == (Pair.Status.ESCALATED, Pair.Provenance.UNRESOLVED)
    assert (escalation.status, escalation.claimed_by_id) == (Escalation.Status.OPEN, expert.pk)


def test_an_expired_claim_holds_nothing_back():
    campaign, users = _learned(posterior_threshold=0.8)
    pair = _split_three_ways(campaign, users)
    escalation = Escalation.objects.get(pair=pair, status=Escalation.Status.OPEN)
    expert = user_with_role("gone-expert", Role.EXPERT)
    escalation_claim(escalation=escalation, expert=expert, now=timezone.now() - timedelta(hours=2))

    campaign_consensus_reestimate(campaign_id=campaign.pk)

    escalation.refresh_from_db()
    assert (escalation.status, escalation.claimed_by_id) == (Escalation.Status.WITHDRAWN, None)


def test_a_reason_beyond_the_verdict_keeps_the_pair_with_the_experts():
    campaign, users = _learned(posterior_threshold=0.8)
    pair = _split_three_ways(campaign, users, flags=("unsafe",))
    escalation = Escalation.objects.get(pair=pair, status=Escalation.Status.OPEN)
    assert "flagged" in escalation.detail

    campaign_consensus_reestimate(campaign_id=campaign.pk)

    pair.refresh_from_db()
    escalation.refresh_from_db()
    assert pair.status == Pair.Status.ESCALATED
    assert escalation.status == Escalation.Status.OPEN


def test_without_a_posterior_threshold_no_verdict_counts_as_clear():
    campaign, users = _learned()
    pair = _split_three_ways(campaign, users)

    campaign_consensus_reestimate(campaign_id=campaign.pk)

    pair.refresh_from_db()
    assert pair.status == Pair.Status.ESCALATED
    assert Escalation.objects.get(pair=pair).status == Escalation.Status.OPEN


def test_a_low_posterior_escalation_leaves_once_the_threshold_is_met():
    campaign, users = _learned(posterior_threshold=0.8)
    pair = Pair.objects.filter(
        campaign=campaign, status=Pair.Status.COMPLETE, provenance=Pair.Provenance.DAWID_SKENE
    ).first()
    assert pair is not None and pair.consensus_posterior >= 0.8
    # An earlier estimate, on fewer labels, found it unclear.
    escalation_open(pair=pair, reason=LOW_POSTERIOR, detail="weighted consensus posterior 0.61")
    # And a pair whose low posterior came with a manual escalation stays.
    other = (
        Pair.objects.filter(
            campaign=campaign, status=Pair.Status.COMPLETE, provenance=Pair.Provenance.DAWID_SKENE
        )
        .exclude(pk=pair.pk)
        .first()
    )
    assert other is not None
    escalation_open(pair=other, reason=LOW_POSTERIOR, detail="weighted consensus posterior 0.6")
    escalation_open(pair=other, reason=Escalation.Reason.MANUAL, detail="look at this one")

    campaign_consensus_reestimate(campaign_id=campaign.pk)

    pair.refresh_from_db()
    other.refresh_from_db()
    assert pair.status == Pair.Status.COMPLETE
    assert Escalation.objects.get(pair=pair).status == Escalation.Status.WITHDRAWN
    assert other.status == Pair.Status.ESCALATED
    assert Escalation.objects.get(pair=other).status == Escalation.Status.OPEN
