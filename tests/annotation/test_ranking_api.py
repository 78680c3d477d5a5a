"""Ranking items through the API: next shows the responses in a stored random order, label
takes a ranking of shown indices, validates it and stores it canonically; consensus over
rankings, escalation and an expert's ranking."""

from __future__ import annotations

import random
from typing import Any

import pytest

from annotation.importers import content_hash
from annotation.models import Assignment, ItemKind, Label, Pair
from annotation.rankings import ranking_to_shown
from reviewers.models import Escalation
from reviewers.services.adjudications import adjudication_resolve
from reviewers.services.escalations import escalation_claim
from tests.conftest import api_client_for
from tests.factories import CampaignFactory, PairFactory

RESPONSES = ["first", "second", "third", "fourth"]


@pytest.fixture
def ranking_campaign(db):
    return CampaignFactory(item_kind=ItemKind.RANKING, annotators_per_pair=3)


@pytest.fixture
def item(ranking_campaign):
    conversation = [{"role": "user", "content": "Rank these."}]
    return PairFactory(
        campaign=ranking_campaign,
        conversation=conversation,
        response_a=RESPONSES[0],
        response_b=RESPONSES[1],
        responses=[{"content": text, "model": f"m{n}"} for n, text in enumerate(RESPONSES)],
        content_hash=content_hash(conversation, "k", "wise"),
    )


def lease(user: Any, campaign: Any) -> dict[str, Any]:
    response = api_client_for(user).post(f"/api/campaigns/{campaign.pk}/next")
    assert response.status_code == 200
    return response.json()


def submit_canonical(user: Any, campaign: Any, canonical: list[list[int]]) -> Any:
    """Lease the item and rank it as `canonical` says, speaking in shown indices."""
    body = lease(user, campaign)
    assignment = Assignment.objects.get(pk=body["assignment"]["id"])
    shown = ranking_to_shown(canonical, display_order=assignment.display_order or [])
    return api_client_for(user).post(
        f"/api/assignments/{assignment.pk}/label", {"ranking": shown}, format="json"
    )


def test_next_shows_the_responses_in_the_assignments_stored_order(
    ranking_campaign, item, annotator_a
):
    body = lease(annotator_a, ranking_campaign)
    assignment = Assignment.objects.get(pk=body["assignment"]["id"])
    order = assignment.display_order
    assert sorted(order) == [0, 1, 2, 3]
    assert body["pair"]["responses"] == [RESPONSES[index] for index in order]
    assert body["pair"]["response_a"] == RESPONSES[order[0]]
    assert "model" not in str(body["pair"])  # blind: no model names
    # The same lease shows the same order again.
    assert lease(annotator_a, ranking_campaign)["pair"]["responses"] == body["pair"]["responses"]


def test_display_orders_are_random_per_assignment(ranking_campaign, annotator_a):
    orders = set()
    for n in range(12):
        conversation = [{"role": "user", "content": f"Rank {n}."}]
        PairFactory(
            campaign=ranking_campaign,
            conversation=conversation,
            responses=[{"content": f"{n}-{k}", "model": ""} for k in range(4)],
            content_hash=content_hash(conversation, "k", "wise"),
        )
    client = api_client_for(annotator_a)
    for _ in range(12):
        body = client.post(f"/api/campaigns/{ranking_campaign.pk}/next").json()
        assignment = Assignment.objects.get(pk=body["assignment"]["id"])
        orders.add(tuple(assignment.display_order))
        client.post(f"/api/assignments/{assignment.pk}/skip")
    assert len(orders) > 1


@pytest.mark.parametrize(
    ("ranking", "message"),
    [
        ([[0], [1], [2]], "every response must be ranked; missing: 3"),
        ([[0, 1], [1], [2, 3]], "response 1 is ranked more than once"),
        ([[0], [1], [2], [4], [3]], "at most 4"),
        ([[0], [1], [2], [7]], "response index 7 is outside 0..3"),
        ([[0, 1, 2, 3], []], "ranking[1] must be a non-empty list"),
        ([], "ranking must be a non-empty list"),
        # 300,000 repeats of one index: refused at the second (counting every index's
        # repeats, as before, took minutes of a web worker's CPU: quadratic).
        ([[0] * 300_000, [1], [2], [3]], "response 0 is ranked more than once"),
    ],
)
def test_it_rejects_invalid_rankings_with_a_message(
    ranking_campaign, item, annotator_a, ranking, message
):
    body = lease(annotator_a, ranking_campaign)
    response = api_client_for(annotator_a).post(
        f"/api/assignments/{body['assignment']['id']}/label", {"ranking": ranking}, format="json"
    )
    assert response.status_code == 400
    assert message in response.json()["detail"]
    assert not Label.objects.exists()


def test_a_ranking_campaign_needs_a_ranking_and_a_pair_campaign_a_preference(
    ranking_campaign, item, annotator_a, campaign
):
    body = lease(annotator_a, ranking_campaign)
    response = api_client_for(annotator_a).post(
        f"/api/assignments/{body['assignment']['id']}/label", {"preference": 1}, format="json"
    )
    assert response.status_code == 400
    assert "send a ranking" in response.json()["detail"]
    PairFactory(campaign=campaign)
    ab = lease(annotator_a, campaign)
    assert "responses" not in ab["pair"]
    response = api_client_for(annotator_a).post(
        f"/api/assignments/{ab['assignment']['id']}/label", {"ranking": [[0], [1]]}, format="json"
    )
    assert response.status_code == 400
    assert "send a preference" in response.json()["detail"]


def test_a_ranking_is_stored_canonically_under_a_shuffled_display(
    ranking_campaign, item, annotator_a
):
    body = lease(annotator_a, ranking_campaign)
    assignment = Assignment.objects.get(pk=body["assignment"]["id"])
    # Force a known shuffle: position p shows canonical response order[p].
    order = [2, 0, 3, 1]
    Assignment.objects.filter(pk=assignment.pk).update(display_order=order)
    shown = [[1], [0, 3], [2]]  # shown 1 (canonical 0) best; shown 0 and 3 tie; shown 2 worst
    response = api_client_for(annotator_a).post(
        f"/api/assignments/{assignment.pk}/label", {"ranking": shown}, format="json"
    )
    assert response.status_code == 201, response.content
    assert response.json()["ranking"] == shown
    label = Label.objects.get()
    assert label.ranking == [[0], [1, 2], [3]]
    assert label.preference == 1  # canonical 0 above canonical 1


def test_consensus_keeps_ties_and_completes_the_item(
    ranking_campaign, item, annotator_a, annotator_b, annotator_c
):
    for user, canonical in (
        (annotator_a, [[0], [1, 2], [3]]),
        (annotator_b, [[0], [2], [1], [3]]),
        (annotator_c, [[0], [1], [2], [3]]),
    ):
        assert submit_canonical(user, ranking_campaign, canonical).status_code == 201
    item.refresh_from_db()
    assert item.status == Pair.Status.COMPLETE
    # Mean ranks: 0 -> 1, 1 -> 2.5, 2 -> 2.5, 3 -> 4: responses 1 and 2 stay tied.
    assert item.consensus_ranking == [[0], [1, 2], [3]]
    assert item.provenance == Pair.Provenance.MAJORITY
    assert 0 < item.disagreement < 0.2
    assert item.consensus_preference == 1  # response 0 above response 1


def test_contradictory_top_choices_escalate_and_an_expert_decides_a_ranking(
    ranking_campaign, item, annotator_a, annotator_b, annotator_c, expert
):
    for user, canonical in (
        (annotator_a, [[0], [1], [2], [3]]),
        (annotator_b, [[3], [2], [1], [0]]),
        (annotator_c, [[1], [0], [3], [2]]),
    ):
        assert submit_canonical(user, ranking_campaign, canonical).status_code == 201
    item.refresh_from_db()
    assert item.status == Pair.Status.ESCALATED
    # One open escalation per pair: the first reason names it, the others join its detail.
    escalation = Escalation.objects.get(pair=item, status=Escalation.Status.OPEN)
    assert escalation.reason == "no_majority"
    assert "contradictory top choices" in escalation.detail
    assert item.consensus_ranking is None
    escalation_claim(escalation=escalation, expert=expert)
    adjudication = adjudication_resolve(
        escalation=escalation,
        expert=expert,
        decision="preference",
        ranking=[[1], [0, 2], [3]],
        note="1 is the only correct answer",
    )
    assert adjudication.ranking == [[1], [0, 2], [3]]
    assert adjudication.preference == -1
    item.refresh_from_db()
    assert item.status == Pair.Status.RESOLVED
    assert item.provenance == Pair.Provenance.ADJUDICATED
    assert item.consensus_ranking == [[1], [0, 2], [3]]


def test_an_expert_ranking_is_validated(
    ranking_campaign, item, annotator_a, annotator_b, annotator_c, expert
):
    rng = random.Random(4)
    for user in (annotator_a, annotator_b, annotator_c):
        order = [0, 1, 2, 3]
        rng.shuffle(order)
        submit_canonical(user, ranking_campaign, [[order[0]], [order[1]], order[2:]])
    escalation = Escalation.objects.create(
        campaign=ranking_campaign, pair=item, reason=Escalation.Reason.MANUAL
    )
    escalation_claim(escalation=escalation, expert=expert)
    response = api_client_for(expert).post(
        f"/api/escalations/{escalation.pk}/adjudicate",
        {"decision": "preference", "ranking": [[0], [1]], "note": "partial"},
        format="json",
    )
    assert response.status_code == 400
    assert "missing: 2, 3" in response.json()["detail"]
