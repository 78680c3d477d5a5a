"""Review 17: a changed re-test label is checked again as its submit was (and a changed regular
label checks the re-test against the consensus it now makes); the expert rewrite API keeps the
text as written and the adjudication ranking is refused whole, not item by item."""

from __future__ import annotations

import random

import pytest
from django.urls import reverse

from annotation.models import Assignment, ItemKind, Pair, Rewrite
from annotation.rankings import ranking_to_shown
from annotation.services.assignments import assignment_next
from annotation.services.labels import LabelInput, label_change, label_submit
from reviewers.models import Escalation
from tests.conftest import api_client_for
from tests.factories import CampaignFactory, PairFactory, ranking_item
from tests.reviewers.factories import judge, judged_pair, relabel, user_with_role

pytestmark = pytest.mark.django_db

CONTRADICTION = Escalation.Reason.RETEST_CONTRADICTION


def _retested(regular: list[int], said: int) -> tuple[Pair, list[Assignment], Assignment]:
    campaign = CampaignFactory(retest_share=1.0, label_change_minutes=30)
    pair = PairFactory.create(campaign=campaign)
    users = [user_with_role(f"u{n}") for n in range(len(regular) + 1)]
    assignments = [
        judge(campaign, user, c).assignment for user, c in zip(users, regular, strict=False)
    ]
    retest = judge(campaign, users[-1], said).assignment
    assert retest.kind == Assignment.Kind.RETEST and retest.pair_id == pair.pk
    return pair, assignments, retest


def _open(pair: Pair) -> list[str]:
    return list(
        Escalation.objects.filter(pair=pair, status=Escalation.Status.OPEN).values_list(
            "reason", flat=True
        )
    )


def test_a_retest_changed_to_contradict_the_consensus_escalates_once_and_back_withdraws():
    pair, _regular, retest = _retested([2, 2, 2], 2)
    assert _open(pair) == []
    relabel(retest, -2)
    pair.refresh_from_db()
    assert _open(pair) == [CONTRADICTION]
    assert pair.status == Pair.Status.ESCALATED
    relabel(retest, -1)  # still contradicts: the same escalation, no second one
    assert Escalation.objects.filter(pair=pair).count() == 1
    # Back in line with the consensus: the escalation it caused is withdrawn, as a regular
    # change withdraws the dispute it no longer makes.
    relabel(retest, 1)
    pair.refresh_from_db()
    assert _open(pair) == []
    assert Escalation.objects.get(pair=pair).status == Escalation.Status.WITHDRAWN
    assert (pair.status, pair.consensus_preference) == (Pair.Status.COMPLETE, 2)


def test_a_retest_changed_to_add_a_flag_escalates():
    pair, _regular, retest = _retested([1, 1, 1], 1)
    relabel(retest, 1, flags=("unsafe",))
    pair.refresh_from_db()
    escalation = Escalation.objects.get(pair=pair)
    assert (escalation.reason, escalation.detail) == (
        Escalation.Reason.FLAGGED,
        "re-test flags: unsafe",
    )
    assert pair.status == Pair.Status.ESCALATED


def test_a_regular_change_that_flips_the_consensus_checks_the_retest_again():
    # A tie (0) by majority, the re-test agrees; one regular label moves the majority to A.
    pair, regular, _retest = _retested([0, 0, 1], 0)
    pair.refresh_from_db()
    assert (pair.status, pair.consensus_preference, _open(pair)) == (Pair.Status.COMPLETE, 0, [])
    relabel(regular[0], 1)
    pair.refresh_from_db()
    assert pair.consensus_preference == 1
    assert _open(pair) == [CONTRADICTION]
    assert pair.status == Pair.Status.ESCALATED
    # And back: the re-test agrees with the consensus again.
    relabel(regular[0], 0)
    pair.refresh_from_db()
    assert (pair.status, pair.consensus_preference, _open(pair)) == (Pair.Status.COMPLETE, 0, [])


def test_a_ranking_retest_changed_to_contradict_the_consensus_escalates():
    campaign = CampaignFactory(
        item_kind=ItemKind.RANKING, retest_share=1.0, label_change_minutes=30
    )
    item = ranking_item(campaign)
    consensus = [[0], [1], [2], [3]]

    def rank(user, canonical):
        assignment = assignment_next(campaign=campaign, annotator=user, rng=random.Random(7))
        assert assignment is not None and assignment.display_order is not None
        shown = ranking_to_shown(canonical, display_order=assignment.display_order)
        return assignment, LabelInput(preference=None, ranking=shown)

    for n in range(3):
        assignment, data = rank(user_with_role(f"r{n}"), consensus)
        label_submit(assignment=assignment, data=data)
    retest, data = rank(user_with_role("r3"), consensus)
    label_submit(assignment=retest, data=data)
    assert retest.kind == Assignment.Kind.RETEST and _open(item) == []
    shown = ranking_to_shown([[3], [2], [1], [0]], display_order=retest.display_order)
    label_change(assignment=retest, data=LabelInput(preference=None, ranking=shown))
    escalation = Escalation.objects.get(pair=item)
    assert escalation.reason == CONTRADICTION
    assert escalation.detail == "re-test ranked 3 best, consensus 0 best"


def test_an_expert_rewrite_keeps_its_indentation(expert):
    campaign = CampaignFactory(allow_rewrites=True)
    pair = PairFactory(campaign=campaign, response_b="def f():\n    return 0\n")
    text = "    def f():\r\n        return 1\r\n"
    response = api_client_for(expert).post(
        f"/api/pairs/{pair.pk}/rewrites", {"text": text, "based_on": "b"}, format="json"
    )
    assert response.status_code == 201, response.json()
    # As written, with the line breaks of the response it corrects.
    assert Rewrite.objects.get(pk=response.json()["id"]).text == (
        "    def f():\n        return 1\n"
    )


def test_an_adjudication_ranking_is_refused_whole_not_item_by_item(expert):
    pair = judged_pair(CampaignFactory(), [2, 0, -1])
    escalation = Escalation.objects.get(pair=pair)
    response = api_client_for(expert).post(
        reverse("api-escalation-adjudicate", args=[escalation.pk]),
        {"decision": "preference", "ranking": [["x"]] * 50_000, "note": "n"},
        format="json",
    )
    assert response.status_code == 400
    assert len(response.content) < 1000, len(response.content)
