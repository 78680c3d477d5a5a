"""Judgment assistance: the model's view only after submitting, and only if the campaign says so."""

from __future__ import annotations

import pytest

from annotation.models import Assignment, Label
from annotation.services.assignments import assignment_next
from annotation.services.labels import LabelInput, label_submit
from scoring.loop.model_view import model_view_for_assignment
from scoring.models import ModelVersion, PairScore
from tests.conftest import api_client_for
from tests.factories import CampaignFactory, PairFactory


@pytest.fixture
def scored(db, annotator_a):
    campaign = CampaignFactory(reveal_model_after_submit=True)
    pair = PairFactory(campaign=campaign)
    version = ModelVersion.objects.create(
        campaign=campaign, number=1, base="b", checkpoint="/c", is_active=True
    )
    PairScore.objects.create(
        pair=pair, model_version=version, reward_a=2.0, reward_b=0.5, p_a_better=0.8
    )
    assignment = assignment_next(campaign=campaign, annotator=annotator_a)
    return campaign, assignment


def url(assignment: Assignment) -> str:
    return f"/api/assignments/{assignment.pk}/model-view"


def test_it_is_never_shown_before_the_label_is_submitted(scored, annotator_a):
    _campaign, assignment = scored
    assert model_view_for_assignment(assignment) is None
    response = api_client_for(annotator_a).get(url(assignment))
    assert response.status_code == 404
    assignment.refresh_from_db()
    assert not assignment.model_view_shown


@pytest.mark.parametrize(
    ("swapped", "p_left", "prefers", "reward_left", "agrees"),
    [(False, 0.8, "A", 2.0, True), (True, 0.2, "B", 0.5, False)],
)
def test_after_submitting_it_shows_the_view_in_the_annotators_orientation(
    scored, annotator_a, swapped, p_left, prefers, reward_left, agrees
):
    _campaign, assignment = scored
    Assignment.objects.filter(pk=assignment.pk).update(swapped=swapped)
    assignment.refresh_from_db()
    # The annotator picks the side shown on the left; the model gives canonical A 0.8.
    label_submit(assignment=assignment, data=LabelInput(preference=1))
    response = api_client_for(annotator_a).get(url(assignment))
    assert response.status_code == 200
    body = response.json()
    assert body["p_a_better"] == pytest.approx(p_left) and body["prefers"] == prefers
    assert body["reward_a"] == reward_left and body["agrees_with_you"] is agrees
    assert body["model_version"] == 1 and body["confidence"] == pytest.approx(0.8)
    assignment.refresh_from_db()
    assert assignment.model_view_shown


def test_it_stays_hidden_when_the_campaign_does_not_reveal_it(scored, annotator_a):
    campaign, assignment = scored
    campaign.reveal_model_after_submit = False
    campaign.save()
    label_submit(assignment=assignment, data=LabelInput(preference=1))
    assignment = Assignment.objects.select_related("campaign").get(pk=assignment.pk)
    assert model_view_for_assignment(assignment) is None
    assert api_client_for(annotator_a).get(url(assignment)).status_code == 404


def test_nobody_else_can_read_it(scored, annotator_a, annotator_b):
    _campaign, assignment = scored
    label_submit(assignment=assignment, data=LabelInput(preference=1))
    assert api_client_for(annotator_b).get(url(assignment)).status_code == 404


def test_the_workspace_reveals_it_after_submitting_and_records_that(scored, annotator_a, client):
    campaign, assignment = scored
    client.force_login(annotator_a)
    page = client.get(f"/campaigns/{campaign.pk}/")
    assert b"reward model" not in page.content.lower()
    shown = 1 if not assignment.swapped else -1  # the annotator prefers canonical A
    response = client.post(
        f"/assignments/{assignment.pk}/label/",
        {"preference": str(shown), "rationale": "A is right"},
        HTTP_HX_REQUEST="true",
    )
    assert response.status_code == 200
    assert b'data-testid="model-view"' in response.content
    assert b"It agreed with you." in response.content
    assignment.refresh_from_db()
    assert assignment.model_view_shown is True


def test_once_the_view_is_shown_the_label_can_no_longer_change(scored, annotator_a, client):
    # The view is revealed only after a submit so that it cannot sway the label; the change
    # window let an annotator read it and then move the label to the model's side.
    campaign, assignment = scored
    api = api_client_for(annotator_a)
    label_url = f"/api/assignments/{assignment.pk}/label"
    assert api.post(label_url, {"preference": -1}, format="json").status_code == 201
    # Before looking, the grace period applies as usual.
    assert api.put(label_url, {"preference": -2}, format="json").status_code == 200
    assert api.get(url(assignment)).status_code == 200
    changed = api.put(label_url, {"preference": 1}, format="json")
    assert changed.status_code == 409
    assert "model's view" in changed.json()["detail"]
    assignment.refresh_from_db()
    expected = 2 if assignment.swapped else -2  # labels are stored in canonical orientation
    assert Label.objects.get(assignment=assignment).preference == expected
    # The workspace no longer offers the pair to change, and its page says why.
    client.force_login(annotator_a)
    page = client.get(f"/assignments/{assignment.pk}/")
    assert page.status_code == 200
    assert b"seen the model&#x27;s view" in page.content or b"seen the model's view" in page.content
    assert (
        f"/assignments/{assignment.pk}/".encode()
        not in client.get(f"/campaigns/{campaign.pk}/").content
    )


def test_a_score_with_non_finite_rewards_shows_no_view(scored, annotator_a):
    """Review 19: NaN is no JSON number (the strict renderer answered 500)."""
    from scoring.loop.model_view import pair_model_prediction

    _campaign, assignment = scored
    PairScore.objects.filter(pair_id=assignment.pair_id).update(
        reward_a=float("nan"), p_a_better=float("nan")
    )
    label_submit(assignment=assignment, data=LabelInput(preference=1))
    response = api_client_for(annotator_a).get(url(assignment))
    assert response.status_code == 404
    assert pair_model_prediction(pair=assignment.pair) is None
