"""Changing a submitted label: PUT /api/assignments/{id}/label, within the campaign's grace
period and never after an expert decided; consensus and escalations follow, history keeps
the values replaced."""

from __future__ import annotations

import math
from datetime import timedelta

import pytest
import time_machine
from django.utils import timezone

from annotation.errors import InvalidLabel
from annotation.models import Assignment, Evidence, Label, Pair, Rewrite
from annotation.services.assignments import assignment_next
from annotation.services.labels import LabelInput, label_change, label_submit
from reviewers.models import Adjudication, Escalation
from reviewers.services.adjudications import adjudication_resolve
from reviewers.services.escalations import escalation_claim
from tests.conftest import api_client_for
from tests.factories import PairFactory
from tests.reviewers.factories import user_with_role

pytestmark = pytest.mark.django_db


def url(assignment: Assignment) -> str:
    return f"/api/assignments/{assignment.pk}/label"


def submit(user, campaign, canonical: int, **extra) -> Assignment:
    """The user's next pair, labelled through the API with a canonical preference."""
    client = api_client_for(user)
    body = client.post(f"/api/campaigns/{campaign.pk}/next").json()
    assignment = Assignment.objects.get(pk=body["assignment"]["id"])
    shown = -canonical if assignment.swapped else canonical
    response = client.post(url(assignment), {"preference": shown, **extra}, format="json")
    assert response.status_code == 201, response.content
    return assignment


def change(user, assignment: Assignment, canonical: int, **extra):
    shown = -canonical if assignment.swapped else canonical
    return api_client_for(user).put(url(assignment), {"preference": shown, **extra}, format="json")


@pytest.fixture
def trio(db):
    return [user_with_role(f"ann{n}") for n in range(3)]


def test_an_annotator_changes_their_label_and_history_keeps_both(campaign, annotator_a):
    PairFactory(campaign=campaign)
    assignment = submit(annotator_a, campaign, 1, rationale="first thought", confidence=2)

    response = change(annotator_a, assignment, -2, rationale="A is wrong", confidence=5)

    assert response.status_code == 200
    assert response.json()["id"] == assignment.label.pk
    label = Label.objects.get(assignment=assignment)
    assert (label.preference, label.rationale, label.confidence) == (-2, "A is wrong", 5)
    assert label.changed_at is not None
    (previous,) = label.history
    assert (previous["preference"], previous["rationale"], previous["confidence"]) == (
        1,
        "first thought",
        2,
    )
    change(annotator_a, assignment, 0)
    label.refresh_from_db()
    assert [entry["preference"] for entry in label.history] == [1, -2]
    assert label.preference == 0


def test_the_rewrite_follows_the_changed_label(campaign, annotator_a):
    """A change replaces the label's rewrite, or withdraws it when it carries none; the
    label's history keeps the one replaced (canonical side)."""
    campaign.allow_rewrites = True
    campaign.save()
    PairFactory(campaign=campaign)
    assignment = submit(annotator_a, campaign, 1, rewrite={"text": "draft", "based_on": "a"})
    side = "b" if assignment.swapped else "a"

    fixed = change(annotator_a, assignment, 1, rewrite={"text": "fixed", "based_on": "a"})
    assert fixed.status_code == 200
    assert list(Rewrite.objects.values_list("text", "based_on")) == [("fixed", side)]
    assert change(annotator_a, assignment, 1).status_code == 200
    assert not Rewrite.objects.exists()

    history = Label.objects.get(assignment=assignment).history
    assert [entry.get("rewrite") for entry in history] == [
        {"text": "draft", "based_on": side},
        {"text": "fixed", "based_on": side},
    ]


def test_a_change_after_the_grace_period_is_refused(campaign, annotator_a):
    campaign.label_change_minutes = 10
    campaign.save()
    PairFactory(campaign=campaign)
    assignment = submit(annotator_a, campaign, 1)
    with time_machine.travel(timezone.now() + timedelta(minutes=9, seconds=50)):
        assert change(annotator_a, assignment, 2).status_code == 200
    with time_machine.travel(timezone.now() + timedelta(minutes=10, seconds=5)):
        response = change(annotator_a, assignment, -1)
    assert response.status_code == 409
    assert response.json()["code"] == "label_locked"
    assert Label.objects.get(assignment=assignment).preference == 2  # the refused change is lost


def test_someone_elses_assignment_is_not_found(campaign, annotator_a, annotator_b):
    PairFactory(campaign=campaign)
    assignment = submit(annotator_a, campaign, 1)
    assert change(annotator_b, assignment, -1).status_code == 404
    assert Label.objects.get(assignment=assignment).preference == 1


def test_an_assignment_without_a_label_has_nothing_to_change(campaign, annotator_a):
    PairFactory(campaign=campaign)
    body = api_client_for(annotator_a).post(f"/api/campaigns/{campaign.pk}/next").json()
    assignment = Assignment.objects.get(pk=body["assignment"]["id"])
    assert change(annotator_a, assignment, 1).status_code == 409


def test_bad_input_is_a_400_and_changes_nothing(campaign, annotator_a):
    campaign.scale = "binary"
    campaign.save()
    PairFactory(campaign=campaign)
    assignment = submit(annotator_a, campaign, 1)
    assert change(annotator_a, assignment, 0).status_code == 400  # no ties on a binary scale
    assert Label.objects.get(assignment=assignment).history is None


def test_a_change_that_drops_the_rationale_is_refused_once_a_model_was_consulted(
    campaign, annotator_a
):
    PairFactory(campaign=campaign)
    client = api_client_for(annotator_a)
    body = client.post(f"/api/campaigns/{campaign.pk}/next").json()
    assignment = Assignment.objects.get(pk=body["assignment"]["id"])
    Evidence.objects.create(assignment=assignment, kind=Evidence.Kind.LLM, payload={})
    response = client.post(url(assignment), {"preference": 1, "rationale": "mine"}, format="json")
    assert response.status_code == 201, response.content

    response = change(annotator_a, assignment, 1, rationale="  ")

    assert response.status_code == 400
    assert "rationale of your own" in response.content.decode()
    assert Label.objects.get(assignment=assignment).rationale == "mine"


def test_seconds_spent_beyond_a_day_is_a_400_on_submit_and_on_change(campaign, annotator_a):
    PairFactory.create_batch(2, campaign=campaign)
    client = api_client_for(annotator_a)
    body = client.post(f"/api/campaigns/{campaign.pk}/next").json()
    refused = client.post(
        f"/api/assignments/{body['assignment']['id']}/label",
        {"preference": 1, "seconds_spent": 1e308},
        format="json",
    )
    assert refused.status_code == 400
    assert "seconds_spent" in refused.json()
    assignment = submit(annotator_a, campaign, 1, seconds_spent=86_400)
    # Twice 1e308 would sum to inf, which neither JSON nor the quality figures can hold.
    assert change(annotator_a, assignment, 1, seconds_spent=1e308).status_code == 400
    assert change(annotator_a, assignment, 2, seconds_spent=60).status_code == 200
    assert Label.objects.get(assignment=assignment).seconds_spent == 86_460


@pytest.mark.parametrize("seconds", [math.inf, math.nan, 1e308])
def test_the_service_refuses_seconds_spent_that_is_not_finite_or_beyond_a_day(
    campaign, annotator_a, seconds
):
    PairFactory(campaign=campaign)
    assignment = assignment_next(campaign=campaign, annotator=annotator_a)
    with pytest.raises(InvalidLabel, match="seconds_spent"):
        label_submit(assignment=assignment, data=LabelInput(preference=1, seconds_spent=seconds))
    label_submit(assignment=assignment, data=LabelInput(preference=1, seconds_spent=10))
    with pytest.raises(InvalidLabel, match="seconds_spent"):
        label_change(assignment=assignment, data=LabelInput(preference=1, seconds_spent=seconds))
    assert Label.objects.get(assignment=assignment).seconds_spent == 10


def test_a_change_that_settles_a_dispute_withdraws_its_escalation(campaign, trio):
    pair = PairFactory(campaign=campaign)
    submit(trio[0], campaign, 2)
    second = submit(trio[1], campaign, 1)
    last = submit(trio[2], campaign, -2)
    pair.refresh_from_db()
    assert pair.status == Pair.Status.ESCALATED
    escalation = Escalation.objects.get(pair=pair)

    assert change(trio[2], last, 1).status_code == 200

    pair.refresh_from_db()
    escalation.refresh_from_db()
    assert (pair.status, pair.consensus_preference) == (Pair.Status.COMPLETE, 1)
    assert escalation.status == Escalation.Status.WITHDRAWN
    # And back: a change that reopens the dispute (2, -2, 1 again) escalates the pair again.
    assert change(trio[1], second, -2).status_code == 200
    pair.refresh_from_db()
    assert pair.status == Pair.Status.ESCALATED
    assert Escalation.objects.filter(pair=pair, status=Escalation.Status.OPEN).count() == 1


def test_no_change_once_an_expert_decided(campaign, trio, expert):
    pair = PairFactory(campaign=campaign)
    submit(trio[0], campaign, 2)
    submit(trio[1], campaign, 0)
    last = submit(trio[2], campaign, -2)
    escalation = Escalation.objects.get(pair=pair)
    escalation_claim(escalation=escalation, expert=expert)
    adjudication_resolve(
        escalation=escalation,
        expert=expert,
        decision=Adjudication.Decision.PREFERENCE,
        preference=-1,
        note="B is right.",
    )

    response = change(trio[2], last, 2)

    assert response.status_code == 409
    assert "expert" in response.json()["detail"]
    pair.refresh_from_db()
    assert (pair.status, pair.consensus_preference) == (Pair.Status.RESOLVED, -1)


def test_the_workspace_change_form_starts_from_the_labels_rewrite(client, campaign, annotator_a):
    """A change without a rewrite withdraws it: the change page fills the rewrite box (side as
    shown), so changing only the preference in the browser keeps it."""
    from django.urls import reverse

    campaign.allow_rewrites = True
    campaign.save()
    PairFactory(campaign=campaign)
    assignment = submit(annotator_a, campaign, 1, rewrite={"text": "draft", "based_on": "a"})
    client.force_login(annotator_a)
    page = client.get(reverse("assignment-page", args=[assignment.pk])).content.decode()
    assert "data-rewrite-text" in page and ">draft</textarea>" in page
    assert 'value="a" data-rewrite-base checked' in page  # "a" as shown, whatever the swap
    # The browser posts the form as shown, the preference changed and the rewrite as filled.
    shown_preference = -2 if assignment.swapped else 2
    response = client.post(
        reverse("assignment-label-change", args=[assignment.pk]),
        {"preference": str(shown_preference), "rewrite_text": "draft", "rewrite_based_on": "a"},
    )
    assert response.status_code in (200, 302)
    label = Label.objects.get(assignment=assignment)
    assert label.preference == 2
    side = "b" if assignment.swapped else "a"
    assert list(Rewrite.objects.values_list("text", "based_on")) == [("draft", side)]
