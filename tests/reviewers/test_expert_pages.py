"""The expert queue and review page (htmx) and the escalation API."""

from __future__ import annotations

import pytest
from django.urls import reverse

from annotation.models import CampaignMember, Evidence, Pair
from annotation.roles import Role
from annotation.services.members import member_add
from reviewers.models import Adjudication, Escalation
from scoring.models import ModelVersion, PairScore
from tests.conftest import api_client_for
from tests.factories import CampaignFactory
from tests.reviewers.factories import judged_pair, user_with_role

pytestmark = pytest.mark.django_db


@pytest.fixture
def disputed(campaign):
    """A pair labelled 2 / 0 / -1 by three named annotators, with evidence and a model score."""
    annotators = [user_with_role(name) for name in ("ursula", "victor", "wanda")]
    pair = judged_pair(campaign, [2, 0, -1], users=annotators, rationale="my reason")
    first_label = pair.labels.order_by("id").first()
    Evidence.objects.create(
        assignment=first_label.assignment,
        label=first_label,
        kind=Evidence.Kind.SEARCH,
        payload={"query": "boiling point of water at altitude", "results": [1, 2]},
    )
    version = ModelVersion.objects.create(
        campaign=campaign, number=3, base="tiny", checkpoint="/tmp/x", is_active=True
    )
    PairScore.objects.create(
        pair=pair, model_version=version, reward_a=1.5, reward_b=0.2, p_a_better=0.786
    )
    return Escalation.objects.get(pair=pair), annotators


def _logged_in(client, user):
    client.force_login(user)
    return client


def test_experts_see_labels_without_knowing_who_gave_them(client, expert, disputed):
    escalation, annotators = disputed
    page = _logged_in(client, expert).get(reverse("escalation-review", args=[escalation.pk]))
    assert page.status_code == 200
    text = page.content.decode()
    for number in (1, 2, 3):
        assert f"Annotator {number}" in text
    for annotator in annotators:
        assert annotator.username not in text
    assert "my reason" in text
    assert "boiling point of water at altitude" in text
    assert "0.786" in text and "Model v3" in text
    assert escalation.pair.response_a in text and escalation.pair.response_b in text


def test_admins_see_who_gave_each_label(client, admin_user, disputed):
    escalation, annotators = disputed
    page = _logged_in(client, admin_user).get(reverse("escalation-review", args=[escalation.pk]))
    text = page.content.decode()
    for annotator in annotators:
        assert annotator.username in text


def test_the_detail_api_hides_identities_from_experts_only(expert, admin_user, disputed):
    escalation, annotators = disputed
    url = reverse("api-escalation-detail", args=[escalation.pk])
    as_expert = api_client_for(expert).get(url).json()
    assert [label["name"] for label in as_expert["labels"]] == [
        "Annotator 1",
        "Annotator 2",
        "Annotator 3",
    ]
    assert all(label["username"] is None for label in as_expert["labels"])
    for annotator in annotators:
        assert annotator.username not in str(as_expert)
    assert as_expert["labels"][0]["evidence"][0]["kind"] == "search"
    assert as_expert["prediction"]["p_a_better"] == pytest.approx(0.786)
    as_admin = api_client_for(admin_user).get(url).json()
    assert {label["username"] for label in as_admin["labels"]} == {a.username for a in annotators}


@pytest.mark.parametrize(
    ("method", "name"),
    [
        ("get", "expert-queue"),
        ("get", "escalation-review"),
        ("post", "escalation-claim"),
        ("post", "escalation-release"),
        ("post", "escalation-adjudicate"),
        ("post", "escalation-promote-gold"),
    ],
)
def test_annotators_cannot_reach_expert_pages(client, disputed, method, name):
    escalation, annotators = disputed
    args = [] if name == "expert-queue" else [escalation.pk]
    client = _logged_in(client, annotators[0])
    response = getattr(client, method)(reverse(name, args=args))
    assert response.status_code == 404
    escalation.refresh_from_db()
    assert escalation.claimed_by is None


def test_annotators_cannot_reach_the_escalation_api(disputed):
    escalation, annotators = disputed
    client = api_client_for(annotators[0])
    assert client.get(reverse("api-escalations")).status_code == 404
    assert client.get(reverse("api-escalation-detail", args=[escalation.pk])).status_code == 404
    assert client.post(reverse("api-escalation-claim", args=[escalation.pk])).status_code == 404
    adjudicate = reverse("api-escalation-adjudicate", args=[escalation.pk])
    body = {"decision": "discard", "note": "x"}
    assert client.post(adjudicate, body, format="json").status_code == 404
    escalation.refresh_from_db()
    assert escalation.status == Escalation.Status.OPEN and escalation.claimed_by is None


def test_the_queue_sorts_oldest_or_most_disputed_first(client, expert, campaign):
    mild = judged_pair(campaign, [1, 0, -1])  # no majority, disagreement 1/6
    strong = judged_pair(campaign, [2, 2, -2])  # opposite directions, 2/3
    client = _logged_in(client, expert)
    oldest = client.get(reverse("expert-queue"))
    text = oldest.content.decode()
    assert text.index(f"Pair {mild.pk}<") < text.index(f"Pair {strong.pk}<")
    disputed = client.get(reverse("expert-queue") + "?order=disputed", HTTP_HX_REQUEST="true")
    fragment = disputed.content.decode()
    assert "<html" not in fragment and 'id="queue-table"' in fragment
    assert fragment.index(f"Pair {strong.pk}<") < fragment.index(f"Pair {mild.pk}<")
    api = api_client_for(expert).get(
        reverse("api-escalations"), {"campaign": campaign.pk, "order": "disputed"}
    )
    assert [row["pair"] for row in api.json()] == [strong.pk, mild.pk]


def test_an_expert_claims_and_decides_through_the_pages(client, expert, disputed):
    escalation, _ = disputed
    client = _logged_in(client, expert)
    claimed = client.post(reverse("escalation-claim", args=[escalation.pk]), HTTP_HX_REQUEST="true")
    assert claimed.status_code == 200
    assert 'id="decision-panel"' in claimed.content.decode()
    assert "Record final decision" in claimed.content.decode()
    decided = client.post(
        reverse("escalation-adjudicate", args=[escalation.pk]),
        {"verdict": "-1", "note": "B is correct about altitude."},
    )
    assert decided.status_code == 302
    pair = Pair.objects.get(pk=escalation.pair_id)
    assert (pair.consensus_preference, pair.provenance) == (-1, Pair.Provenance.ADJUDICATED)
    page = client.get(reverse("escalation-review", args=[escalation.pk])).content.decode()
    assert "This decision is final" in page and "Record final decision" not in page


def test_the_api_claim_is_exclusive_and_the_decision_final(expert, disputed):
    escalation, _ = disputed
    other = user_with_role("frank", Role.EXPERT)
    claim_url = reverse("api-escalation-claim", args=[escalation.pk])
    first = api_client_for(expert).post(claim_url)
    assert first.status_code == 200 and first.json()["claim"]["mine"] is True
    second = api_client_for(other).post(claim_url)
    assert second.status_code == 409 and second.json()["code"] == "claim_unavailable"
    queue = api_client_for(other).get(reverse("api-escalations")).json()
    assert queue[0]["claim"]["holder"] == "another expert"
    adjudicate = reverse("api-escalation-adjudicate", args=[escalation.pk])
    decided = api_client_for(expert).post(
        adjudicate, {"decision": "preference", "preference": 1, "note": "A."}, format="json"
    )
    assert decided.status_code == 201
    assert decided.json()["expert"] == expert.username
    again = api_client_for(expert).post(
        adjudicate, {"decision": "discard", "note": "changed my mind"}, format="json"
    )
    assert again.status_code == 409 and again.json()["code"] == "already_decided"
    assert Adjudication.objects.count() == 1
    assert api_client_for(expert).get(reverse("api-escalations")).json() == []


def test_a_later_label_elsewhere_does_not_disturb_the_review(client, expert, campaign):
    # The queue shows open escalations only; a complete, undisputed pair never appears.
    judged_pair(campaign, [1, 1, 1])
    page = _logged_in(client, expert).get(reverse("expert-queue")).content.decode()
    assert "Nothing to review" in page


def test_experts_see_each_campaign_separately(expert):
    one, two = CampaignFactory(), CampaignFactory()
    judged_pair(one, [1, 0, -1])
    pair_two = judged_pair(two, [1, 0, -1])
    rows = api_client_for(expert).get(reverse("api-escalations"), {"campaign": two.pk}).json()
    assert [row["pair"] for row in rows] == [pair_two.pk]


def test_the_queue_and_the_nav_name_no_campaign_the_expert_cannot_open(client, expert):
    secret = CampaignFactory(open_to_all=False, name="Secret Project X")
    hidden = judged_pair(secret, [1, 0, -1])
    Pair.objects.filter(pk=hidden.pk).update(task_category="bioweapons-redteam")
    _logged_in(client, expert)
    html = client.get(reverse("expert-queue")).content.decode()
    assert "Secret Project X" not in html and "bioweapons-redteam" not in html
    assert 'data-testid="nav-expert-queue">Expert queue</a>' in html  # no count to see
    # A member who reviews it sees all three.
    member_add(campaign=secret, user=expert, role=CampaignMember.Role.EXPERT)
    html = client.get(reverse("expert-queue")).content.decode()
    assert "Secret Project X" in html and "bioweapons-redteam" in html
    assert 'aria-label="1 open"' in html


def test_a_desired_attributes_list_shows_one_item_a_line(client, expert, disputed):
    """An imported list is stored one item a line (an item may hold commas); the page keeps
    the lines apart, escaped."""
    escalation, _ = disputed
    Pair.objects.filter(pk=escalation.pair_id).update(
        desired_attributes="concise\ncites sources, with <links>"
    )
    page = _logged_in(client, expert).get(reverse("escalation-review", args=[escalation.pk]))
    assert "concise<br>cites sources, with &lt;links&gt;" in page.content.decode()
