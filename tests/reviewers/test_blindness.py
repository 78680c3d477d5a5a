"""Blindness: nothing an annotator can reach reveals other people's labels before they submit."""

from __future__ import annotations

import pytest
from django.urls import reverse

from annotation.models import Assignment
from annotation.roles import Role
from reviewers.models import Escalation
from tests.conftest import api_client_for
from tests.factories import PairFactory
from tests.reviewers.factories import judge, user_with_role

pytestmark = pytest.mark.django_db

SECRET = "ALICE-SECRET-RATIONALE"
# Keys that would carry someone else's judgement, the pair's consensus or its known answer.
FORBIDDEN_KEYS = {
    "rationale",
    "consensus_preference",
    "provenance",
    "disagreement",
    "silver_preference",
    "gold_preference",
    "is_gold",
    "annotator",
    "username",
    "flags",
}


def _leaks(value) -> set[str]:
    """Forbidden keys anywhere in a JSON body; "labels" is allowed only as a count."""
    if isinstance(value, dict):
        found = set(value) & FORBIDDEN_KEYS
        if "labels" in value and not isinstance(value["labels"], int):
            found.add("labels")
        return found | {key for item in value.values() for key in _leaks(item)}
    if isinstance(value, list):
        return {key for item in value for key in _leaks(item)}
    return set()


@pytest.fixture
def half_labelled(campaign):
    """alice has labelled the only pair (with a rationale and a flag); bob is about to."""
    pair = PairFactory(campaign=campaign, silver_preference=2)
    alice, bob = user_with_role("alice-annotator"), user_with_role("bob-annotator")
    judge(campaign, alice, -2, rationale=SECRET, flags=["unsafe"])
    return pair, alice, bob


def test_the_next_pair_shows_nothing_of_earlier_labels(campaign, half_labelled):
    pair, alice, bob = half_labelled
    response = api_client_for(bob).post(reverse("api-next", args=[campaign.pk]))
    assert response.status_code == 200
    body = response.json()
    assert Assignment.objects.get(pk=body["assignment"]["id"]).pair_id == pair.pk
    text = response.content.decode()
    assert SECRET not in text and alice.username not in text
    assert not _leaks(body)


def test_progress_counts_only_and_speaks_for_the_asker(campaign, half_labelled):
    _, alice, bob = half_labelled
    response = api_client_for(bob).get(reverse("api-progress", args=[campaign.pk]))
    assert response.status_code == 200
    text = response.content.decode()
    assert SECRET not in text and alice.username not in text
    assert not _leaks(response.json())
    assert response.json()["mine"]["submitted"] == 0


def test_the_submit_answer_echoes_only_the_submitters_label(campaign, half_labelled):
    _, alice, bob = half_labelled
    client = api_client_for(bob)
    assignment = client.post(reverse("api-next", args=[campaign.pk])).json()["assignment"]
    response = client.post(
        reverse("api-label", args=[assignment["id"]]), {"preference": 1}, format="json"
    )
    assert response.status_code == 201
    assert response.json()["preference"] == 1
    text = response.content.decode()
    assert SECRET not in text and alice.username not in text
    assert not _leaks(response.json())


def test_nobody_can_submit_or_skip_on_someone_elses_assignment(campaign, half_labelled):
    _, alice, bob = half_labelled
    theirs = Assignment.objects.get(annotator=alice)
    client = api_client_for(bob)
    label_url = reverse("api-label", args=[theirs.pk])
    assert client.post(label_url, {"preference": 1}, format="json").status_code == 404
    assert client.post(reverse("api-skip", args=[theirs.pk])).status_code == 404


def test_the_campaign_page_shows_no_labels(client, campaign, half_labelled):
    _, alice, bob = half_labelled
    client.force_login(bob)
    page = client.get(reverse("campaign-detail", args=[campaign.pk]))
    assert page.status_code == 200
    assert SECRET.encode() not in page.content and alice.username.encode() not in page.content


def test_annotators_cannot_reach_any_reviewer_route(campaign, half_labelled):
    pair, _, bob = half_labelled
    judge(campaign, bob, 2)
    judge(campaign, user_with_role("carol-annotator"), 0)  # no majority: escalated
    escalation = Escalation.objects.get(pair=pair)
    client = api_client_for(bob)
    reads = [
        reverse("api-campaign-agreement", args=[campaign.pk]),
        reverse("api-annotator-quality", args=[campaign.pk]),
        reverse("api-escalations"),
        reverse("api-escalation-detail", args=[escalation.pk]),
    ]
    for url in reads:
        response = client.get(url)
        assert response.status_code == 404, url
        assert SECRET not in response.content.decode()
    writes = [
        reverse("api-escalation-claim", args=[escalation.pk]),
        reverse("api-escalation-release", args=[escalation.pk]),
        reverse("api-pair-gold", args=[pair.pk]),
    ]
    for url in writes:
        assert client.post(url, {}, format="json").status_code == 404, url
    # Experts can read it all; that is what the role is for.
    expert = user_with_role("erin-expert", Role.EXPERT)
    detail = api_client_for(expert).get(reverse("api-escalation-detail", args=[escalation.pk]))
    assert SECRET in detail.content.decode()
