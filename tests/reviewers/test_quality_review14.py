"""A quarantined annotator's labels count in no consensus: they cannot change one either, and
the quality page does not compare their set-aside labels with a consensus."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from annotation.errors import LabelLocked
from annotation.models import Assignment, CampaignMember, Label, Pair
from annotation.services.labels import LabelInput, label_change
from annotation.services.members import member_add
from reviewers.annotator_report import annotator_report
from reviewers.selectors.quality import annotator_quality
from tests.factories import CampaignFactory, PairFactory
from tests.reviewers.factories import judge, judged_pair, user_with_role

pytestmark = pytest.mark.django_db


def _watched():
    return CampaignFactory(
        open_to_all=False,
        annotators_per_pair=3,
        quarantine_min_agreement=0.6,
        quarantine_min_checks=2,
        quarantine_window=10,
    )


def _members(campaign):
    users = [user_with_role(name) for name in ("g1", "g2", "g3", "bad")]
    for user in users:
        member_add(campaign=campaign, user=user)
    return users


def test_a_quarantined_annotator_cannot_change_a_label_that_counts_in_consensus():
    campaign = _watched()
    g1, g2, _g3, bad = _members(campaign)
    settled = judged_pair(campaign, [1, 1, 1], users=[g1, g2, bad])
    assert settled.provenance == Pair.Provenance.UNANIMOUS
    judged_pair(campaign, [1, 1, -1], users=[g1, g2, bad])  # 1 of 2 agree < 0.6
    member = CampaignMember.objects.get(campaign=campaign, user=bad)
    assert member.state == CampaignMember.State.QUARANTINED
    assignment = Assignment.objects.get(pair=settled, annotator=bad)
    with pytest.raises(LabelLocked, match="quarantined"):
        label_change(
            assignment=assignment, data=LabelInput(preference=1 if assignment.swapped else -1)
        )
    settled.refresh_from_db()
    assert settled.provenance == Pair.Provenance.UNANIMOUS


def test_set_aside_labels_are_not_compared_with_a_consensus():
    campaign = _watched()
    g1, g2, g3, bad = _members(campaign)
    judged_pair(campaign, [1, 1, -1], users=[g1, g2, bad])  # settled, bad disagrees
    third = PairFactory(campaign=campaign)
    assert judge(campaign, g1, 1).pair_id == third.pk
    assert judge(campaign, bad, 1).pair_id == third.pk  # unsettled yet; it will agree
    urgent = PairFactory(campaign=campaign, priority=10)
    for user, preference in ((g2, 1), (g3, 1), (bad, -1)):
        assert judge(campaign, user, preference).pair_id == urgent.pk
    member = CampaignMember.objects.get(campaign=campaign, user=bad)
    assert member.state == CampaignMember.State.QUARANTINED
    assert Label.objects.get(pair=third, annotator=bad).set_aside
    for user in (g2, g3):  # the others settle the third pair without bad's label
        assert judge(campaign, user, 1).pair_id == third.pk
    third.refresh_from_db()
    assert third.status == Pair.Status.COMPLETE
    row = next(r for r in annotator_quality(campaign=campaign) if r["annotator_id"] == bad.pk)
    assert (row["labels"], row["consensus_labels"]) == (3, 2)
    now = timezone.now()
    rows = annotator_report(
        start=now - timedelta(days=1), end=now + timedelta(days=1), campaign_id=campaign.pk
    )
    (period,) = [entry for entry in rows if entry.annotator_id == bad.pk]
    # bad disagreed with both verdicts their counted labels are in; the set-aside label agrees
    # with the third pair's, but it counted in no consensus: 0 of 2, not 1 of 3.
    assert period.labels == 3 and period.consensus_agreement == 0.0
