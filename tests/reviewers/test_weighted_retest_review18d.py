"""Review 18d: a weighted (Dawid–Skene) re-estimate that turns a pair's verdict to another
direction checks the pair's re-test against the new verdict, as its submit was checked
against the old one; a second run opens nothing new."""

from __future__ import annotations

import pytest

from annotation.models import Assignment, Campaign, Pair
from annotation.services.pair_state import pairs_settle_weighted
from reviewers.models import Escalation
from reviewers.services.weighted_consensus import campaign_consensus_reestimate
from tests.factories import CampaignFactory, PairFactory
from tests.reviewers.factories import judge, judged_pair
from tests.reviewers.test_weighted_consensus import ACCURACIES, _campaign, _label_campaign

pytestmark = pytest.mark.django_db

CONTRADICTION = Escalation.Reason.RETEST_CONTRADICTION


def _reliabilities_learned(**rules):
    """A weighted campaign whose re-estimate has learned three good annotators and an
    adversarial one (``ACCURACIES``), every pair settled by it; re-tests on from now on."""
    campaign = _campaign(**rules)
    _truth, users = _label_campaign(campaign, accuracies=ACCURACIES, pairs=60, seed=5)
    result = campaign_consensus_reestimate(campaign_id=campaign.pk)
    assert result is not None
    assert (
        result.accuracy[users[-1].pk] < 0.3 and min(result.accuracy[u.pk] for u in users[:3]) > 0.7
    )
    # From now on a settled pair gets a re-test, and no gold check gets in the way.
    Campaign.objects.filter(pk=campaign.pk).update(retest_share=1.0, gold_share=0.0)
    campaign.refresh_from_db()
    return campaign, users


def _majority_b_retest_b(campaign, users) -> Pair:
    """A fresh pair the majority settles B (a good annotator and the adversary say B, another
    good one A), and whose re-test (the third good annotator) agrees: B. The weighted fit
    reads the adversary's B as evidence for A."""
    good_1, good_2, good_3, adversary = users
    pair = PairFactory(campaign=campaign)
    for user, said in ((good_1, 1), (good_2, -1), (adversary, -1)):
        assert judge(campaign, user, said).pair_id == pair.pk
    retest = judge(campaign, good_3, -1)
    assert retest.is_retest and retest.pair_id == pair.pk
    assert Assignment.objects.get(pk=retest.assignment_id).kind == Assignment.Kind.RETEST
    pair.refresh_from_db()
    assert (pair.status, pair.provenance, pair.consensus_preference) == (
        Pair.Status.COMPLETE,
        Pair.Provenance.MAJORITY,
        -1,
    )
    assert not Escalation.objects.filter(pair=pair).exists()
    return pair


def test_a_reestimate_that_turns_the_verdict_against_the_retest_escalates_it_once():
    campaign, users = _reliabilities_learned()
    pair = _majority_b_retest_b(campaign, users)

    result = campaign_consensus_reestimate(campaign_id=campaign.pk)

    assert result is not None and result.pairs_settled >= 1
    pair.refresh_from_db()
    assert (pair.status, pair.provenance, pair.consensus_preference) == (
        Pair.Status.ESCALATED,
        Pair.Provenance.DAWID_SKENE,
        1,
    )
    escalation = Escalation.objects.get(pair=pair, status=Escalation.Status.OPEN)
    assert (escalation.reason, escalation.detail) == (CONTRADICTION, "re-test said -1, consensus 1")
    # The other pairs' verdicts kept their direction: their re-tests (none) were not touched.
    assert Escalation.objects.filter(campaign=campaign, reason=CONTRADICTION).count() == 1

    again = campaign_consensus_reestimate(campaign_id=campaign.pk)

    assert again is not None and again.pairs_settled == 0 and again.escalated == 0
    assert Escalation.objects.filter(pair=pair).count() == 1
    escalation.refresh_from_db()
    assert (escalation.status, escalation.reason) == (Escalation.Status.OPEN, CONTRADICTION)


def test_the_campaigns_rule_off_leaves_the_flipped_pair_complete():
    campaign, users = _reliabilities_learned(retest_contradiction=False)
    pair = _majority_b_retest_b(campaign, users)

    campaign_consensus_reestimate(campaign_id=campaign.pk)

    pair.refresh_from_db()
    assert (pair.status, pair.provenance, pair.consensus_preference) == (
        Pair.Status.COMPLETE,
        Pair.Provenance.DAWID_SKENE,
        1,
    )
    assert not Escalation.objects.filter(pair=pair).exists()


def test_settling_reports_only_the_pairs_whose_verdict_changed_direction():
    campaign = CampaignFactory(annotators_per_pair=3)
    pair = judged_pair(campaign, [-1, -1, 1])
    assert (pair.status, pair.consensus_preference) == (Pair.Status.COMPLETE, -1)
    reported: list[list[int]] = []

    # Stronger, same direction (B): a change, but nothing to re-check.
    assert pairs_settle_weighted(rows=[(pair.pk, -2, 0.9)], direction_changed=reported.append) == 1
    assert reported == []
    # Now A: reported once; the same verdict again changes and reports nothing.
    assert pairs_settle_weighted(rows=[(pair.pk, 1, 0.8)], direction_changed=reported.append) == 1
    assert pairs_settle_weighted(rows=[(pair.pk, 1, 0.8)], direction_changed=reported.append) == 0
    assert reported == [[pair.pk]]
