"""A ranking item with no clear best stays without a consensus when the campaign turns the
``no_majority`` escalation off, as an A/B pair with no majority does: the switch decides
whether an expert is asked, not whether a verdict exists."""

from __future__ import annotations

from typing import Any

import pytest

from annotation.importers import content_hash
from annotation.models import Assignment, ItemKind, Pair
from annotation.rankings import ranking_to_shown
from reviewers.models import Escalation
from tests.conftest import api_client_for
from tests.factories import CampaignFactory, PairFactory

RULES_OFF = {"no_majority": False, "opposite_directions": False, "flags": False}


def _submit(user: Any, campaign: Any, canonical: list[list[int]]) -> None:
    body = api_client_for(user).post(f"/api/campaigns/{campaign.pk}/next").json()
    assignment = Assignment.objects.get(pk=body["assignment"]["id"])
    shown = ranking_to_shown(canonical, display_order=assignment.display_order or [])
    response = api_client_for(user).post(
        f"/api/assignments/{assignment.pk}/label", {"ranking": shown}, format="json"
    )
    assert response.status_code == 201, response.content


@pytest.mark.django_db
def test_a_ranking_with_no_clear_best_gets_no_consensus_when_the_rule_is_off(
    annotator_a, annotator_b, annotator_c
):
    campaign = CampaignFactory(
        item_kind=ItemKind.RANKING, annotators_per_pair=3, escalation_rules=RULES_OFF
    )
    conversation = [{"role": "user", "content": "Rank these."}]
    item = PairFactory(
        campaign=campaign,
        conversation=conversation,
        responses=[{"content": f"r{n}", "model": ""} for n in range(4)],
        content_hash=content_hash(conversation, "k", "wise"),
    )
    # Each of responses 0, 1 and 2 is best for one label of three: no clear best.
    for user, canonical in (
        (annotator_a, [[0], [1], [2], [3]]),
        (annotator_b, [[1], [2], [0], [3]]),
        (annotator_c, [[2], [0], [1], [3]]),
    ):
        _submit(user, campaign, canonical)
    item.refresh_from_db()
    assert not Escalation.objects.filter(pair=item).exists()  # the rule is off
    assert item.status == Pair.Status.COMPLETE
    assert item.provenance == Pair.Provenance.UNRESOLVED
    assert item.consensus_ranking is None
    assert item.consensus_preference is None


@pytest.mark.django_db
def test_a_ranking_with_a_clear_best_still_settles_with_the_rule_off(
    annotator_a, annotator_b, annotator_c
):
    campaign = CampaignFactory(
        item_kind=ItemKind.RANKING, annotators_per_pair=3, escalation_rules=RULES_OFF
    )
    conversation = [{"role": "user", "content": "Rank those."}]
    item = PairFactory(
        campaign=campaign,
        conversation=conversation,
        responses=[{"content": f"s{n}", "model": ""} for n in range(3)],
        content_hash=content_hash(conversation, "k", "wise"),
    )
    for user, canonical in (
        (annotator_a, [[0], [1], [2]]),
        (annotator_b, [[0], [2], [1]]),
        (annotator_c, [[1], [0], [2]]),
    ):
        _submit(user, campaign, canonical)
    item.refresh_from_db()
    assert item.status == Pair.Status.COMPLETE
    assert item.provenance == Pair.Provenance.MAJORITY
    assert item.consensus_ranking is not None and item.consensus_ranking[0] == [0]
