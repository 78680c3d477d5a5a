"""Outcomes beyond a preference, per-aspect ratings and rewrites through the label API."""

from __future__ import annotations

import json

import pytest

from annotation.models import Assignment, BothBadRoute, Label, Rewrite, Scale
from tests.conftest import api_client_for
from tests.factories import CampaignFactory, PairFactory

pytestmark = pytest.mark.django_db

ASPECTS = [
    {"name": "helpfulness", "label": "Helpfulness", "scale_min": 1, "scale_max": 5},
    {"name": "harmlessness", "label": "Harmlessness", "scale_min": 1, "scale_max": 3},
]


def _lease(client, campaign, *, swapped: bool | None = None) -> int:
    body = client.post(f"/api/campaigns/{campaign.pk}/next").json()
    assignment_id = body["assignment"]["id"]
    if swapped is not None:
        Assignment.objects.filter(pk=assignment_id).update(swapped=swapped)
    return assignment_id


@pytest.fixture
def rich_campaign(db):
    return CampaignFactory(
        aspects=ASPECTS, allow_rewrites=True, both_bad_route=BothBadRoute.REWRITE
    )


def test_next_tells_the_outcomes_aspects_and_rewrites_a_label_may_hold(rich_campaign, annotator_a):
    PairFactory(campaign=rich_campaign)
    body = api_client_for(annotator_a).post(f"/api/campaigns/{rich_campaign.pk}/next").json()
    assert body["judgment"] == {
        "outcomes": ["preference", "both_bad", "both_good"],
        "aspects": ASPECTS,
        "allow_rewrites": True,
    }


def test_both_bad_is_stored_as_its_own_outcome_with_preference_zero(campaign, annotator_a):
    PairFactory(campaign=campaign)
    client = api_client_for(annotator_a)
    assignment_id = _lease(client, campaign)
    response = client.post(
        f"/api/assignments/{assignment_id}/label", {"outcome": "both_bad"}, format="json"
    )
    assert response.status_code == 201, response.json()
    assert response.json()["outcome"] == "both_bad"
    label = Label.objects.get(assignment_id=assignment_id)
    assert (label.outcome, label.preference) == ("both_bad", 0)


def test_both_good_needs_a_scale_with_a_tie_and_both_outcomes_need_preference_zero(annotator_a):
    binary = CampaignFactory(scale=Scale.BINARY)
    PairFactory.create_batch(2, campaign=binary)
    client = api_client_for(annotator_a)
    assignment_id = _lease(client, binary)
    url = f"/api/assignments/{assignment_id}/label"
    refused = client.post(url, {"outcome": "both_good"}, format="json")
    assert refused.status_code == 400 and refused.json()["code"] == "invalid_label"
    refused = client.post(url, {"outcome": "both_bad", "preference": 1}, format="json")
    assert refused.status_code == 400 and "preference 0" in refused.json()["detail"]
    assert client.post(url, {"outcome": "both_bad"}, format="json").status_code == 201


def test_a_preference_outcome_still_requires_a_preference(campaign, annotator_a):
    PairFactory(campaign=campaign)
    client = api_client_for(annotator_a)
    assignment_id = _lease(client, campaign)
    response = client.post(f"/api/assignments/{assignment_id}/label", {}, format="json")
    assert response.status_code == 400
    assert "preference" in str(response.json())
    assert not Label.objects.exists()


@pytest.mark.parametrize("swapped", [False, True])
def test_aspect_ratings_are_stored_in_canonical_orientation(rich_campaign, annotator_a, swapped):
    PairFactory(campaign=rich_campaign)
    client = api_client_for(annotator_a)
    assignment_id = _lease(client, rich_campaign, swapped=swapped)
    ratings = {"helpfulness": {"a": 5, "b": 2}, "harmlessness": {"a": 3}}
    response = client.post(
        f"/api/assignments/{assignment_id}/label",
        {"preference": 1, "aspect_ratings": ratings},
        format="json",
    )
    assert response.status_code == 201, response.json()
    stored = Label.objects.get(assignment_id=assignment_id).aspect_ratings
    if swapped:  # B was shown on the left as A
        assert stored == {"helpfulness": {"a": 2, "b": 5}, "harmlessness": {"b": 3}}
    else:
        assert stored == ratings


@pytest.mark.parametrize(
    ("ratings", "message"),
    [
        ({"verbosity": {"a": 1}}, "unknown aspect"),
        ({"helpfulness": {"a": 6}}, "between 1 and 5"),
        ({"harmlessness": {"b": 0}}, "between 1 and 3"),
        ({"helpfulness": {"c": 3}}, "unknown response"),
    ],
)
def test_aspect_ratings_off_the_campaign_s_aspects_are_400(
    rich_campaign, annotator_a, ratings, message
):
    PairFactory(campaign=rich_campaign)
    client = api_client_for(annotator_a)
    assignment_id = _lease(client, rich_campaign)
    response = client.post(
        f"/api/assignments/{assignment_id}/label",
        {"preference": 1, "aspect_ratings": ratings},
        format="json",
    )
    assert response.status_code == 400
    assert response.json()["code"] == "invalid_aspect_rating"
    assert message in response.json()["detail"]
    assert not Label.objects.exists()
    assert Assignment.objects.get(pk=assignment_id).status == Assignment.Status.ACTIVE


def test_a_non_integer_rating_is_400(rich_campaign, annotator_a):
    PairFactory(campaign=rich_campaign)
    client = api_client_for(annotator_a)
    assignment_id = _lease(client, rich_campaign)
    response = client.post(
        f"/api/assignments/{assignment_id}/label",
        {"preference": 1, "aspect_ratings": {"helpfulness": {"a": "great"}}},
        format="json",
    )
    assert response.status_code == 400


@pytest.mark.parametrize("swapped", [False, True])
def test_a_rewrite_is_stored_with_the_label_on_the_canonical_side(
    rich_campaign, annotator_a, swapped
):
    pair = PairFactory(campaign=rich_campaign)
    client = api_client_for(annotator_a)
    assignment_id = _lease(client, rich_campaign, swapped=swapped)
    response = client.post(
        f"/api/assignments/{assignment_id}/label",
        {"preference": 1, "rewrite": {"text": "A corrected answer.", "based_on": "a"}},
        format="json",
    )
    assert response.status_code == 201, response.json()
    rewrite = Rewrite.objects.get()
    label = Label.objects.get(assignment_id=assignment_id)
    assert rewrite.pair_id == pair.pk and rewrite.label_id == label.pk
    assert rewrite.author_id == annotator_a.pk and rewrite.text == "A corrected answer."
    assert rewrite.based_on == ("b" if swapped else "a")


def test_a_rewrite_is_refused_where_the_campaign_takes_none(campaign, annotator_a):
    PairFactory(campaign=campaign)
    client = api_client_for(annotator_a)
    assignment_id = _lease(client, campaign)
    response = client.post(
        f"/api/assignments/{assignment_id}/label",
        {"preference": 1, "rewrite": {"text": "Better.", "based_on": "a"}},
        format="json",
    )
    assert response.status_code == 400 and response.json()["code"] == "invalid_rewrite"
    assert not Label.objects.exists() and not Rewrite.objects.exists()


def test_changing_a_label_keeps_its_outcome_and_ratings_in_history(rich_campaign, annotator_a):
    PairFactory(campaign=rich_campaign)
    client = api_client_for(annotator_a)
    assignment_id = _lease(client, rich_campaign, swapped=False)
    url = f"/api/assignments/{assignment_id}/label"
    first = {"outcome": "both_bad", "aspect_ratings": {"helpfulness": {"a": 1, "b": 1}}}
    assert client.post(url, first, format="json").status_code == 201
    changed = client.put(
        url,
        {"preference": -1, "aspect_ratings": {"helpfulness": {"a": 2, "b": 4}}},
        format="json",
    )
    assert changed.status_code == 200, changed.json()
    label = Label.objects.get(assignment_id=assignment_id)
    assert (label.outcome, label.preference) == ("preference", -1)
    assert label.aspect_ratings == {"helpfulness": {"a": 2, "b": 4}}
    assert label.history[0]["outcome"] == "both_bad"
    assert label.history[0]["aspect_ratings"] == {"helpfulness": {"a": 1, "b": 1}}


def test_a_campaign_with_malformed_aspects_does_not_validate(db):
    from django.core.exceptions import ValidationError

    campaign = CampaignFactory.build(aspects=[{"name": "Bad Name"}])
    with pytest.raises(ValidationError):
        campaign.full_clean()


def test_the_raw_labels_export_carries_outcome_and_aspect_ratings(
    rich_campaign, annotator_a, admin_user
):
    PairFactory(campaign=rich_campaign)
    client = api_client_for(annotator_a)
    assignment_id = _lease(client, rich_campaign, swapped=False)
    client.post(
        f"/api/assignments/{assignment_id}/label",
        {"outcome": "both_bad", "aspect_ratings": {"helpfulness": {"a": 1}}},
        format="json",
    )
    response = api_client_for(admin_user).get(f"/api/campaigns/{rich_campaign.pk}/labels.jsonl")
    (row,) = [json.loads(line) for line in b"".join(response.streaming_content).splitlines()]
    assert row["outcome"] == "both_bad" and row["aspect_ratings"] == {"helpfulness": {"a": 1}}
