"""Review 18: a label change that leaves an escalation open re-states it (the reasons that
still hold with their current details and disagreement, those settled left out, an admin's
wording kept), and a changed re-test in a weighted campaign is checked against the weighted
verdict, which it leaves standing."""

from __future__ import annotations

import random

import pytest

from annotation.models import Assignment, ConsensusRule, ItemKind, Pair
from annotation.rankings import ranking_to_shown
from annotation.services.assignments import assignment_next
from annotation.services.labels import LabelInput, label_change, label_submit
from annotation.services.pair_state import pairs_settle_weighted
from reviewers.models import Escalation
from reviewers.services.escalations import escalation_open
from tests.factories import CampaignFactory, PairFactory, ranking_item
from tests.reviewers.factories import judge, relabel, user_with_role

pytestmark = pytest.mark.django_db

OPPOSITE = Escalation.Reason.OPPOSITE_DIRECTIONS
CONTRADICTION = Escalation.Reason.RETEST_CONTRADICTION


def _judged(campaign, regular: list[int], flags=None) -> tuple[Pair, list[Assignment]]:
    """A fresh pair judged by len(regular) annotators (five-point scale, canonical values)."""
    pair = PairFactory(campaign=campaign)
    flags = flags or {}
    assignments = [
        judge(campaign, user_with_role(f"a{n}"), value, flags=flags.get(n, ())).assignment
        for n, value in enumerate(regular)
    ]
    assert all(assignment.pair_id == pair.pk for assignment in assignments)
    return pair, assignments


def _retested(campaign, regular: list[int], said: int):
    pair, assignments = _judged(campaign, regular)
    retest = judge(campaign, user_with_role("retester"), said).assignment
    assert retest.kind == Assignment.Kind.RETEST and retest.pair_id == pair.pk
    return pair, assignments, retest


def _open(pair: Pair) -> Escalation:
    return Escalation.objects.get(pair=pair, status=Escalation.Status.OPEN)


def _changeable(**fields):
    return CampaignFactory(label_change_minutes=30, **fields)


def test_a_dispute_that_stays_open_shows_its_current_disagreement():
    pair, (first, *_others) = _judged(_changeable(), [2, 2, -2])
    opened = _open(pair)
    assert (opened.reason, opened.detail) == (
        OPPOSITE,
        "A and B both chosen; disagreement 0.67 > 0.5",
    )
    relabel(first, 1)  # 1, 2, -2: still opposite directions, less disputed
    escalation = _open(pair)
    assert escalation.pk == opened.pk
    assert (escalation.reason, escalation.detail) == (
        OPPOSITE,
        "A and B both chosen; disagreement 0.54 > 0.5",
    )
    assert escalation.disagreement == pytest.approx(26 / 48)
    assert Escalation.objects.filter(pair=pair).count() == 1


def test_a_retest_still_contradicting_shows_what_it_now_says():
    campaign = _changeable(retest_share=1.0)
    pair, _regular, retest = _retested(campaign, [2, 2, 2], -2)
    opened = _open(pair)
    assert (opened.reason, opened.detail) == (CONTRADICTION, "re-test said -2, consensus 2")
    assert opened.disagreement == pytest.approx(0.5)
    relabel(retest, -1)
    escalation = _open(pair)
    assert escalation.pk == opened.pk
    assert (escalation.reason, escalation.detail) == (
        CONTRADICTION,
        "re-test said -1, consensus 2",
    )
    # The regular labels and the re-test's: 2, 2, 2, -1.
    assert escalation.disagreement == pytest.approx(27 / 96)


def test_a_settled_reason_leaves_the_account_and_the_one_that_holds_leads_it():
    pair, (flagger, *_others) = _judged(_changeable(), [2, 2, 2], flags={0: ("unsafe",)})
    opened = _open(pair)
    assert (opened.reason, opened.detail) == (Escalation.Reason.FLAGGED, "flags: unsafe")
    relabel(flagger, -2)  # no flag any more, but now opposite directions
    escalation = _open(pair)
    assert escalation.pk == opened.pk
    assert (escalation.reason, escalation.detail) == (
        OPPOSITE,
        "A and B both chosen; disagreement 0.67 > 0.5",
    )
    pair.refresh_from_db()
    assert pair.status == Pair.Status.ESCALATED


def test_an_admins_reason_keeps_its_wording_when_the_labels_dispute_settles():
    pair, (first, *_others) = _judged(_changeable(), [2, 2, 2])
    escalation_open(pair=pair, reason=Escalation.Reason.MANUAL, detail="an admin wants a look")
    relabel(first, -2)
    assert _open(pair).detail == (
        "an admin wants a look\nalso: opposite_directions A and B both chosen; "
        "disagreement 0.67 > 0.5"
    )
    relabel(first, -1)  # -1, 2, 2: disagreement 0.38, no dispute of the labels' left
    escalation = _open(pair)
    assert (escalation.reason, escalation.detail) == (
        Escalation.Reason.MANUAL,
        "an admin wants a look",
    )
    pair.refresh_from_db()
    assert pair.status == Pair.Status.ESCALATED
    assert Escalation.objects.filter(pair=pair).count() == 1


def test_a_withdrawn_escalation_keeps_its_text_and_a_new_dispute_opens_a_new_one():
    pair, (first, *_others) = _judged(_changeable(), [2, 2, -2])
    withdrawn = _open(pair)
    relabel(_others[-1], 1)  # 2, 2, 1: settled
    withdrawn.refresh_from_db()
    assert withdrawn.status == Escalation.Status.WITHDRAWN
    relabel(first, -2)  # -2, 2, 1: disputed again
    fresh = _open(pair)
    assert fresh.pk != withdrawn.pk
    assert fresh.detail == "A and B both chosen; disagreement 0.54 > 0.5"
    unchanged = Escalation.objects.get(pk=withdrawn.pk)
    assert (unchanged.status, unchanged.detail, unchanged.disagreement) == (
        Escalation.Status.WITHDRAWN,
        withdrawn.detail,
        withdrawn.disagreement,
    )


def test_a_ranking_retest_still_contradicting_shows_its_current_best():
    campaign = _changeable(item_kind=ItemKind.RANKING, retest_share=1.0)
    item = ranking_item(campaign)
    consensus = [[0], [1], [2], [3]]

    def rank(user, canonical):
        assignment = assignment_next(campaign=campaign, annotator=user, rng=random.Random(7))
        assert assignment is not None and assignment.display_order is not None
        shown = ranking_to_shown(canonical, display_order=assignment.display_order)
        label_submit(assignment=assignment, data=LabelInput(preference=None, ranking=shown))
        return assignment

    for n in range(3):
        rank(user_with_role(f"r{n}"), consensus)
    retest = rank(user_with_role("r3"), [[3], [2], [1], [0]])
    assert retest.kind == Assignment.Kind.RETEST
    assert _open(item).detail == "re-test ranked 3 best, consensus 0 best"
    shown = ranking_to_shown([[2], [3], [1], [0]], display_order=retest.display_order)
    label_change(assignment=retest, data=LabelInput(preference=None, ranking=shown))
    assert _open(item).detail == "re-test ranked 2 best, consensus 0 best"
    assert Escalation.objects.filter(pair=item).count() == 1


# Weighted (Dawid–Skene) campaigns: a changed re-test leaves the weighted verdict standing.


def _weighted_retested():
    """A weighted campaign's pair: regular 1, 1, -1 (the majority: A), a re-test that agreed
    (1), and then the re-estimate's verdict B (-1): it trusts the dissenting annotator."""
    campaign = _changeable(consensus_rule=ConsensusRule.DAWID_SKENE, retest_share=1.0)
    pair, _regular, retest = _retested(campaign, [1, 1, -1], 1)
    pair.refresh_from_db()
    assert (pair.status, pair.provenance, pair.consensus_preference) == (
        Pair.Status.COMPLETE,
        Pair.Provenance.MAJORITY,
        1,
    )
    # What campaign_consensus_reestimate stores for such a verdict, through the same service.
    assert pairs_settle_weighted(rows=[(pair.pk, -1, 0.93)]) == 1
    return pair, retest


def _verdict(pair: Pair) -> tuple[str, str, int | None, float | None]:
    pair.refresh_from_db()
    return pair.status, pair.provenance, pair.consensus_preference, pair.consensus_posterior


def test_a_retest_changed_in_line_with_the_weighted_verdict_escalates_nothing():
    pair, retest = _weighted_retested()
    relabel(retest, -2)  # agrees with the weighted verdict (B), not with the majority (A)
    assert not Escalation.objects.filter(pair=pair).exists()
    assert _verdict(pair) == (Pair.Status.COMPLETE, Pair.Provenance.DAWID_SKENE, -1, 0.93)


def test_a_retest_changed_against_the_weighted_verdict_escalates_and_back_withdraws():
    pair, retest = _weighted_retested()
    relabel(retest, 2)  # agrees with the majority (A), contradicts the weighted verdict (B)
    escalation = _open(pair)
    assert (escalation.reason, escalation.detail) == (CONTRADICTION, "re-test said 2, consensus -1")
    assert _verdict(pair) == (Pair.Status.ESCALATED, Pair.Provenance.DAWID_SKENE, -1, 0.93)
    relabel(retest, -1)
    escalation.refresh_from_db()
    assert escalation.status == Escalation.Status.WITHDRAWN
    assert _verdict(pair) == (Pair.Status.COMPLETE, Pair.Provenance.DAWID_SKENE, -1, 0.93)
