"""Consensus with "both bad" and "both good" labels: pure maths, then the real submit path."""

from __future__ import annotations

import pytest
from django.urls import reverse

from annotation.models import BothBadRoute, Campaign, Outcome, Pair
from annotation.services.assignments import assignment_next
from annotation.services.labels import LabelInput, label_submit
from reviewers.consensus import consensus_of, escalation_reasons
from reviewers.models import Escalation
from tests.factories import CampaignFactory, PairFactory, UserFactory

# --- pure --------------------------------------------------------------------------------------


def test_a_majority_of_both_bad_settles_as_both_bad_with_no_preference():
    consensus = consensus_of([0, 0, 1], outcomes=["both_bad", "both_bad", "preference"])
    assert (consensus.preference, consensus.outcome) == (0, "both_bad")
    assert consensus.provenance == "majority"


def test_both_bad_and_ties_without_a_majority_of_either_settle_as_a_plain_tie():
    consensus = consensus_of([0, 0, 0], outcomes=["both_bad", "preference", "both_good"])
    assert (consensus.preference, consensus.outcome) == (0, "preference")


def test_a_preference_majority_is_not_turned_into_both_bad():
    consensus = consensus_of([1, 2, 0], outcomes=["preference", "preference", "both_bad"])
    assert (consensus.preference, consensus.outcome) == (2, "preference")


def test_both_bad_escalates_only_when_the_campaign_routes_it_to_an_expert():
    consensus = consensus_of([0, 0, 0], outcomes=["both_bad"] * 3)
    assert escalation_reasons(consensus, flags=[], rules={}) == []
    reasons = escalation_reasons(consensus, flags=[], rules={}, both_bad_to_expert=True)
    assert [reason for reason, _ in reasons] == [Escalation.Reason.BOTH_BAD]


# --- through label_submit ------------------------------------------------------------------------


def _judge(campaign: Campaign, vote: int | str):
    user = UserFactory()
    assignment = assignment_next(campaign=campaign, annotator=user)
    assert assignment is not None
    if isinstance(vote, str):
        data = LabelInput(preference=0, outcome=vote)
    else:
        data = LabelInput(preference=-vote if assignment.swapped else vote)
    return label_submit(assignment=assignment, data=data)


def _judged(campaign: Campaign, votes: list[int | str]) -> Pair:
    pair = PairFactory(campaign=campaign)
    for vote in votes:
        _judge(campaign, vote)
    pair.refresh_from_db()
    return pair


@pytest.mark.django_db
def test_a_pair_whose_labels_say_both_bad_completes_as_both_bad(campaign):
    pair = _judged(campaign, ["both_bad", "both_bad", 1])
    assert pair.status == Pair.Status.COMPLETE
    assert (pair.consensus_preference, pair.consensus_outcome) == (0, Outcome.BOTH_BAD)
    assert not Escalation.objects.filter(pair=pair).exists()


@pytest.mark.django_db
def test_both_good_is_kept_apart_from_a_tie(campaign):
    assert _judged(campaign, ["both_good"] * 3).consensus_outcome == Outcome.BOTH_GOOD
    assert _judged(campaign, [0, 0, "both_good"]).consensus_outcome == Outcome.PREFERENCE


@pytest.mark.django_db
def test_both_bad_routed_to_an_expert_escalates_the_pair():
    campaign = CampaignFactory(both_bad_route=BothBadRoute.EXPERT)
    pair = _judged(campaign, ["both_bad", "both_bad", "both_bad"])
    assert pair.status == Pair.Status.ESCALATED
    assert pair.consensus_outcome == Outcome.BOTH_BAD
    escalation = Escalation.objects.get(pair=pair)
    assert escalation.reason == Escalation.Reason.BOTH_BAD


def _both_bad_escalation(aspect: str, rating: int) -> Escalation:
    """A pair three annotators found both bad, rating A's ``aspect``, sent to the experts."""
    campaign = CampaignFactory(
        both_bad_route=BothBadRoute.EXPERT,
        aspects=[{"name": aspect, "label": aspect.title(), "scale_min": 0, "scale_max": 2}],
    )
    pair = PairFactory(campaign=campaign)
    for _ in range(3):
        assignment = assignment_next(campaign=campaign, annotator=UserFactory())
        assert assignment is not None
        label_submit(
            assignment=assignment,
            data=LabelInput(
                preference=0, outcome="both_bad", aspect_ratings={aspect: {"a": rating}}
            ),
        )
    return Escalation.objects.get(pair=pair)


@pytest.mark.django_db
def test_the_expert_sees_both_bad_labels_and_their_aspect_ratings(client, expert):
    escalation = _both_bad_escalation("honesty", 0)
    client.force_login(expert)
    text = client.get(reverse("escalation-review", args=[escalation.pk])).content.decode()
    assert text.count("Both bad") >= 3
    assert 'data-testid="aspect-ratings"' in text
    assert "honesty: A 0 · B –" in text or "honesty: A – · B 0" in text


@pytest.mark.django_db
def test_an_aspect_named_like_a_dict_method_shows_on_the_review_page(client, expert):
    escalation = _both_bad_escalation("items", 2)
    client.force_login(expert)
    response = client.get(reverse("escalation-review", args=[escalation.pk]))
    assert response.status_code == 200
    text = response.content.decode()
    assert "items: A 2 · B –" in text or "items: A – · B 2" in text
