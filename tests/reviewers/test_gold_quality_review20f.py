"""Review 20f: gold checks on a pair an expert decided pass as ordinary work after the submit
too; a member added again after a removal starts a fresh quarantine window; the ranking
re-test agreement streams its rows."""

from __future__ import annotations

import random
import tracemalloc

import pytest
from django.utils import timezone

from annotation.models import Assignment, Campaign, CampaignMember, ItemKind, Label, Pair
from annotation.selectors import last_changeable_assignment
from annotation.services.assignments import assignment_next
from annotation.services.labels import LabelInput, label_change, label_submit
from annotation.services.members import member_add, member_remove
from reviewers.selectors.quality import retest_agreement
from reviewers.services.gold import pair_promote_gold
from tests.factories import CampaignFactory, PairFactory
from tests.reviewers.factories import judged_pair, user_with_role

pytestmark = [pytest.mark.django_db]


# --- 1. a gold check on a decided pair is not told apart by its label's lock ---------------


def _decided_gold_pair(campaign: Campaign) -> Pair:
    pair = PairFactory(
        campaign=campaign,
        status=Pair.Status.RESOLVED,
        provenance=Pair.Provenance.ADJUDICATED,
        consensus_preference=1,
    )
    return pair_promote_gold(pair=pair)


def test_a_gold_check_on_a_pair_an_expert_decided_can_be_changed_like_any_label():
    campaign = CampaignFactory(gold_share=1.0, label_change_minutes=10)
    pair = _decided_gold_pair(campaign)
    assert (pair.is_gold, pair.status) == (True, Pair.Status.RESOLVED)
    annotator = user_with_role("ann")
    check = assignment_next(campaign=campaign, annotator=annotator, rng=random.Random(1))
    assert (check.pair_id, check.kind) == (pair.pk, Assignment.Kind.GOLD)
    label_submit(assignment=check, data=LabelInput(preference=-1))

    # The workspace's Back link points at the pair just judged, as after any regular pair.
    previous = last_changeable_assignment(
        campaign=campaign, user=annotator, now=timezone.now()
    )
    assert previous is not None and previous.pk == check.pk

    # And the change goes through, rather than "An expert has decided this pair".
    label_change(assignment=check, data=LabelInput(preference=1))
    label = Label.objects.get(assignment=check)
    assert label.preference == (-1 if check.swapped else 1)
    assert len(label.history) == 1
    pair.refresh_from_db()  # the gold answer and the expert's decision stand
    assert (pair.gold_preference, pair.consensus_preference, pair.status) == (
        1,
        1,
        Pair.Status.RESOLVED,
    )


def test_a_regular_label_on_a_decided_pair_stays_locked():
    campaign = CampaignFactory(annotators_per_pair=1, label_change_minutes=10)
    annotator = user_with_role("reg")
    pair = PairFactory(campaign=campaign)
    assignment = assignment_next(campaign=campaign, annotator=annotator)
    assert assignment.pair_id == pair.pk
    label_submit(assignment=assignment, data=LabelInput(preference=1))
    Pair.objects.filter(pk=pair.pk).update(status=Pair.Status.RESOLVED)
    assert last_changeable_assignment(campaign=campaign, user=annotator, now=timezone.now()) is None


# --- 2. added again after a removal: a fresh quarantine window ------------------------------


def _state(campaign: Campaign, user) -> str:
    return CampaignMember.objects.get(campaign=campaign, user=user).state


def test_a_member_added_again_is_not_quarantined_on_the_ended_memberships_labels():
    campaign = CampaignFactory(
        open_to_all=False,
        annotators_per_pair=3,
        quarantine_min_agreement=0.6,
        quarantine_min_checks=2,
        quarantine_window=10,
    )
    g1, g2, bad = (user_with_role(name) for name in ("g1", "g2", "bad"))
    for user in (g1, g2, bad):
        member_add(campaign=campaign, user=user)
    for _ in range(2):
        judged_pair(campaign, [1, 1, -1], users=[g1, g2, bad])
    assert _state(campaign, bad) == CampaignMember.State.QUARANTINED

    # The admin removes them and adds them again (instead of restoring them).
    member_remove(campaign=campaign, user_id=bad.pk)
    campaign = Campaign.objects.get(pk=campaign.pk)
    member_add(campaign=campaign, user=bad)
    assert _state(campaign, bad) == CampaignMember.State.ACTIVE

    # One label agreeing with the others: judged on this membership's labels only (too few
    # yet), not 1 of 3 with the two that quarantined them before.
    campaign = Campaign.objects.get(pk=campaign.pk)
    judged_pair(campaign, [1, 1, 1], users=[g1, g2, bad])
    assert _state(campaign, bad) == CampaignMember.State.ACTIVE

    # A bad label of the new membership: 1 of 2 agreeing (below 0.6), quarantined again.
    campaign = Campaign.objects.get(pk=campaign.pk)
    judged_pair(campaign, [1, 1, -1], users=[g1, g2, bad])
    assert _state(campaign, bad) == CampaignMember.State.QUARANTINED
    member = CampaignMember.objects.get(campaign=campaign, user=bad)
    latest = member.transitions.latest("at", "id")
    assert (latest.figures["agreement_checks"], latest.figures["agreeing"]) == (2, 1)


# --- 3. the ranking re-test agreement streams its rows --------------------------------------


def test_the_ranking_retest_agreement_holds_a_chunk_of_rows_not_all_of_them():
    campaign = CampaignFactory(item_kind=ItemKind.RANKING)
    annotator = user_with_role("rt")
    responses = [{"content": f"r{i}", "model": ""} for i in range(9)]
    consensus = [[i] for i in range(9)]
    n = 6_000
    pairs = Pair.objects.bulk_create(
        PairFactory.build(
            campaign=campaign,
            responses=responses,
            consensus_ranking=consensus,
            consensus_preference=1,
            provenance=Pair.Provenance.UNANIMOUS,
            status=Pair.Status.COMPLETE,
        )
        for _ in range(n)
    )
    now = timezone.now()
    assignments = Assignment.objects.bulk_create(
        Assignment(
            campaign=campaign,
            pair=pair,
            annotator=annotator,
            kind=Assignment.Kind.RETEST,
            status=Assignment.Status.SUBMITTED,
            swapped=False,
            leased_at=now,
            lease_expires_at=now,
            finished_at=now,
        )
        for pair in pairs
    )
    agreeing = [[i] for i in range(9)]
    contradicting = [[8], *([i] for i in range(8))]
    Label.objects.bulk_create(
        Label(
            assignment=assignment,
            campaign=campaign,
            pair=assignment.pair,
            annotator=annotator,
            preference=1,
            ranking=contradicting if index % 4 == 0 else agreeing,
            is_retest=True,
            created_at=now,
        )
        for index, assignment in enumerate(assignments)
    )
    tracemalloc.start()
    try:
        figures = retest_agreement(campaign=campaign)
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert figures == {"n": n, "agreeing": n - n // 4, "rate": 0.75}
    # All the rows held at once: about 2.3 KB a row (27 MB for 12,000); streamed: about 1 MB.
    assert peak < 5_000_000, peak
