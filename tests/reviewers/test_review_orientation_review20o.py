"""What the expert reads is in one orientation, or says which.

Before, a decided ranking item's page said the decision as an A/B verdict (its ``preference``,
response 0 against response 1: "A"), not the ranking the expert recorded; and an annotator's
rationale, written of the responses as they saw them (B on the left as "A", or the responses in
a shuffled order as "Response 1, 2, ..."), stood beside verdicts converted to canonical order
with nothing telling the expert that its "A" was the canonical B.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from annotation.importers import content_hash
from annotation.models import Assignment, ItemKind, Label, Pair
from reviewers.models import Escalation
from reviewers.services.adjudications import adjudication_resolve
from reviewers.services.escalations import escalation_claim
from tests.conftest import api_client_for
from tests.factories import CampaignFactory, PairFactory
from tests.reviewers.factories import add_label, user_with_role

pytestmark = pytest.mark.django_db


def _ranking_escalation(display_orders: list[list[int]]) -> Escalation:
    campaign = CampaignFactory(item_kind=ItemKind.RANKING)
    conversation = [{"role": "user", "content": "Rank them."}]
    item = PairFactory(
        campaign=campaign,
        conversation=conversation,
        responses=[{"content": f"reply number {k}", "model": ""} for k in range(4)],
        content_hash=content_hash(conversation, "orientation", "review20o"),
        status=Pair.Status.ESCALATED,
    )
    now = timezone.now()
    for number, order in enumerate(display_orders):
        annotator = user_with_role(f"ranker{number}")
        assignment = Assignment.objects.create(
            campaign=campaign,
            pair=item,
            annotator=annotator,
            status=Assignment.Status.SUBMITTED,
            swapped=False,
            leased_at=now,
            lease_expires_at=now + timedelta(minutes=15),
            finished_at=now,
            display_order=order,
        )
        Label.objects.create(
            assignment=assignment,
            campaign=campaign,
            pair=item,
            annotator=annotator,
            preference=1,
            ranking=[[0], [1], [2], [3]],
            rationale="Response 1 is best.",
            shown_first="a",
        )
    return Escalation.objects.create(campaign=campaign, pair=item, reason="no_majority")


def test_a_decided_ranking_item_shows_the_ranking_decided_not_an_a_b_verdict(client, expert):
    escalation = _ranking_escalation([[0, 1, 2, 3]])
    escalation_claim(escalation=escalation, expert=expert)
    adjudication_resolve(
        escalation=escalation,
        expert=expert,
        decision="preference",
        ranking=[[1], [0, 2], [3]],
        note="2 is right",
    )
    client.force_login(expert)
    page = client.get(reverse("escalation-review", args=[escalation.pk])).content.decode()
    decided = page.split("Decided by", 1)[1].split("This decision is final", 1)[0]
    assert "<strong>2 &gt; 1 = 3 &gt; 4</strong>" in decided


def test_a_ranking_label_says_in_what_order_its_annotator_saw_the_responses(client, expert):
    escalation = _ranking_escalation([[2, 0, 3, 1], [0, 1, 2, 3]])
    client.force_login(expert)
    page = client.get(reverse("escalation-review", args=[escalation.pk])).content.decode()
    # Only the label whose annotator saw a shuffled order has the note.
    assert page.count('data-testid="shown-as"') == 1
    assert "Saw the responses in the order 3, 1, 4, 2: their Response 1 is Response 3" in page

    labels = api_client_for(expert).get(f"/api/escalations/{escalation.pk}").json()["labels"]
    assert [label["display_order"] for label in labels] == [[2, 0, 3, 1], [0, 1, 2, 3]]


def test_a_rationale_written_with_b_on_the_left_is_marked_for_the_expert(client, expert, campaign):
    pair = PairFactory(campaign=campaign, status=Pair.Status.ESCALATED)
    saw_b_first = add_label(pair, user_with_role("lefty"), -1, shown_first="b")
    saw_b_first.rationale = "A is right: B invents a date."  # their A: the canonical B
    saw_b_first.save(update_fields=["rationale"])
    add_label(pair, user_with_role("righty"), 1, shown_first="a")
    escalation = Escalation.objects.create(campaign=campaign, pair=pair, reason="no_majority")

    client.force_login(expert)
    page = client.get(reverse("escalation-review", args=[escalation.pk])).content.decode()
    assert page.count('data-testid="shown-as"') == 1
    first_label = page.split("Annotator 1", 1)[1].split("Annotator 2", 1)[0]
    assert "Saw B on the left, as A: in the rationale, A means B here and B means A." in (
        first_label
    )

    labels = api_client_for(expert).get(f"/api/escalations/{escalation.pk}").json()["labels"]
    assert [label["shown_first"] for label in labels] == ["b", "a"]
    assert [label["display_order"] for label in labels] == [None, None]
