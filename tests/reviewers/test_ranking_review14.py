"""Review 14, ranking items: a re-test is judged on the whole ranking (not response 0 against
response 1), and a ranking item cannot be made gold (its answer would be a ranking, not a side).
"""

from __future__ import annotations

import random

import pytest

from annotation.models import Assignment, ItemKind, Pair
from annotation.rankings import ranking_to_shown
from annotation.services.assignments import assignment_next
from annotation.services.labels import LabelInput, label_submit
from reviewers.agreement.rankings import ranking_disagreement
from reviewers.errors import GoldNotAllowed
from reviewers.models import Escalation
from reviewers.services.gold import pair_mark_gold, pair_promote_gold
from scoring.datasets.export import ExportFilters, export_rows
from tests.conftest import api_client_for
from tests.factories import CampaignFactory, UserFactory, ranking_item

pytestmark = pytest.mark.django_db

CONSENSUS = [[0], [1], [2], [3]]


def _rank(user, campaign, canonical, *, flags=()) -> Assignment:
    """The user takes their next assignment and ranks it (canonical indices)."""
    assignment = assignment_next(campaign=campaign, annotator=user, rng=random.Random(7))
    assert assignment is not None, f"no work for {user}"
    assert assignment.display_order is not None
    shown = ranking_to_shown(canonical, display_order=assignment.display_order)
    label_submit(
        assignment=assignment,
        data=LabelInput(preference=None, ranking=shown, flags=tuple(flags)),
    )
    return assignment


def _retested(consensus, retest, *, flags=(), rules=None):
    """A ranking item three annotators rank ``consensus``; a fourth re-tests it with ``retest``.
    Returns the item and its escalations."""
    campaign = CampaignFactory(
        item_kind=ItemKind.RANKING,
        annotators_per_pair=3,
        retest_share=1.0,
        **({} if rules is None else {"escalation_rules": rules}),
    )
    item = ranking_item(campaign)
    for user in UserFactory.create_batch(3):
        _rank(user, campaign, consensus)
    item.refresh_from_db()
    assert item.consensus_ranking == consensus
    assert item.status == Pair.Status.IN_ANNOTATION  # the re-test slot is open
    assignment = _rank(UserFactory(), campaign, retest, flags=flags)
    assert assignment.kind == Assignment.Kind.RETEST
    item.refresh_from_db()
    return item, list(Escalation.objects.filter(pair=item))


# --- 1. Re-tests of ranking items -------------------------------------------------------------


def test_a_retest_that_ranks_the_consensus_worst_response_best_escalates():
    # 0 and 1 keep their order (0 above 1), so a 0-vs-1 check sees agreement.
    retest = [[3], [2], [0], [1]]
    item, escalations = _retested(CONSENSUS, retest)
    assert [e.reason for e in escalations] == [Escalation.Reason.RETEST_CONTRADICTION]
    escalation = escalations[0]
    assert escalation.detail == "re-test ranked 3 best, consensus 0 best"
    expected = ranking_disagreement([CONSENSUS] * 3 + [retest], 4)
    assert escalation.disagreement == pytest.approx(expected)
    assert item.status == Pair.Status.ESCALATED


def test_a_retest_that_only_swaps_responses_0_and_1_does_not_escalate():
    consensus = [[2], [0], [1], [3]]
    item, escalations = _retested(consensus, [[2], [1], [0], [3]])
    assert escalations == []
    assert item.status == Pair.Status.COMPLETE


def test_a_retest_whose_best_group_shares_a_response_with_the_consensus_best_does_not_escalate():
    item, escalations = _retested(CONSENSUS, [[3, 0], [2], [1]])
    assert escalations == []
    assert item.status == Pair.Status.COMPLETE


def test_a_retest_best_group_of_ties_naming_no_consensus_best_escalates_with_both_groups():
    consensus = [[0, 2], [1], [3]]
    retest = [[1, 3], [0], [2]]
    _item, escalations = _retested(consensus, retest)
    assert [(e.reason, e.detail) for e in escalations] == [
        (
            Escalation.Reason.RETEST_CONTRADICTION,
            "re-test ranked 1 = 3 best, consensus 0 = 2 best",
        )
    ]


def test_the_retest_contradiction_switch_turns_the_ranking_check_off():
    item, escalations = _retested(
        CONSENSUS, [[3], [2], [1], [0]], rules={"retest_contradiction": False}
    )
    assert escalations == []
    assert item.status == Pair.Status.COMPLETE


def test_a_flagged_ranking_retest_escalates_as_flagged_with_the_ranking_disagreement():
    retest = [[0], [2], [1], [3]]
    _item, escalations = _retested(CONSENSUS, retest, flags=("unsafe",))
    assert [(e.reason, e.detail) for e in escalations] == [
        (Escalation.Reason.FLAGGED, "re-test flags: unsafe")
    ]
    expected = ranking_disagreement([CONSENSUS] * 3 + [retest], 4)
    assert escalations[0].disagreement == pytest.approx(expected)


# --- 2. No gold on ranking items ---------------------------------------------------------------


def _settled_item(campaign, **fields) -> Pair:
    defaults = {
        "status": Pair.Status.COMPLETE,
        "labels_count": 3,
        "provenance": Pair.Provenance.MAJORITY,
        "consensus_ranking": [[0], [1], [2], [3]],
        "consensus_preference": 1,
        "disagreement": 0.2,
    }
    return ranking_item(campaign, **{**defaults, **fields})


def _ranked_export(campaign):
    return [
        (row["ranking_pair"]["first_index"], row["ranking_pair"]["second_index"], row["provenance"])
        for ranked, row in export_rows(campaign=campaign, filters=ExportFilters())
        if ranked
    ]


def test_the_api_refuses_gold_on_a_ranking_item_and_the_export_keeps_its_consensus(admin_user):
    campaign = CampaignFactory(item_kind=ItemKind.RANKING, ranking_expansion="adjacent")
    item = _settled_item(campaign)
    before = _ranked_export(campaign)
    response = api_client_for(admin_user).post(
        f"/api/pairs/{item.pk}/gold", {"preference": -1}, format="json"
    )
    assert response.status_code == 400, response.content
    body = response.json()
    assert body["code"] == "gold_not_allowed"
    assert "ranking item has no A/B gold answer" in str(body)
    item.refresh_from_db()
    assert not item.is_gold and item.gold_preference is None
    assert item.provenance == Pair.Provenance.MAJORITY and item.consensus_preference == 1
    assert item.consensus_ranking == [[0], [1], [2], [3]]
    assert _ranked_export(campaign) == before
    assert {provenance for *_pair, provenance in before} == {"majority"}


def test_the_api_refuses_to_promote_an_adjudicated_ranking_item_to_gold(admin_user):
    campaign = CampaignFactory(item_kind=ItemKind.RANKING)
    item = _settled_item(
        campaign, status=Pair.Status.RESOLVED, provenance=Pair.Provenance.ADJUDICATED
    )
    response = api_client_for(admin_user).post(f"/api/pairs/{item.pk}/gold", {}, format="json")
    assert response.status_code == 400, response.content
    assert response.json()["code"] == "gold_not_allowed"
    item.refresh_from_db()
    assert not item.is_gold and item.provenance == Pair.Provenance.ADJUDICATED


def test_the_gold_services_refuse_aranking_item():
    campaign = CampaignFactory(item_kind=ItemKind.RANKING)
    item = _settled_item(campaign)
    with pytest.raises(GoldNotAllowed, match="ranking item has no A/B gold answer"):
        pair_mark_gold(pair=item, preference=1)
    adjudicated = _settled_item(
        campaign, n=1, status=Pair.Status.RESOLVED, provenance=Pair.Provenance.ADJUDICATED
    )
    with pytest.raises(GoldNotAllowed, match="ranking item has no A/B gold answer"):
        pair_promote_gold(pair=adjudicated)
    assert not Pair.objects.filter(campaign=campaign, is_gold=True).exists()
