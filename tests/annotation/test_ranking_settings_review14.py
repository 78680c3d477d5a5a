"""Settings that name an A/B pair's sides have no meaning on a ranking campaign (review 14).

Rewrites and aspect ratings name responses "a" and "b"; on a ranking item those were the
first two responses as shown (display_order[0] and [1]) but were stored through the A/B
``swapped`` flag as canonical responses 0 and 1, so the export paired a rewrite, and the
ratings went, to responses the annotator never judged. Dawid-Skene's re-estimate settles an
A-versus-B verdict and was never asked for on ranking items. Campaign.clean refuses the three
settings on a ranking campaign, and a label refuses a rewrite or aspect ratings on a ranking
item (campaigns saved before the rule), storing nothing.
"""

from __future__ import annotations

from typing import Any

import pytest
from django.core.exceptions import ValidationError
from django.test import Client

from annotation.importers import content_hash
from annotation.models import Assignment, Campaign, ConsensusRule, ItemKind, Label, Pair, Rewrite
from tests.conftest import api_client_for
from tests.factories import CampaignFactory, PairFactory

pytestmark = pytest.mark.django_db

ASPECTS = [{"name": "helpful", "label": "Helpful", "scale_min": 1, "scale_max": 5}]
TEXTS = ["zero", "one", "two", "three"]


def _refusal(**fields: Any) -> dict[str, list[str]]:
    campaign = Campaign(name="ranked", item_kind=ItemKind.RANKING, **fields)
    with pytest.raises(ValidationError) as caught:
        campaign.full_clean()
    return caught.value.message_dict


def test_a_ranking_campaign_refuses_rewrites():
    errors = _refusal(allow_rewrites=True)
    assert "ranking campaign" in " ".join(errors["allow_rewrites"])


def test_a_ranking_campaign_refuses_aspect_ratings():
    errors = _refusal(aspects=ASPECTS)
    assert "for A/B pairs" in " ".join(errors["aspects"])


def test_a_ranking_campaign_refuses_the_dawid_skene_rule():
    errors = _refusal(consensus_rule=ConsensusRule.DAWID_SKENE)
    assert "ranking campaign" in " ".join(errors["consensus_rule"])


def test_the_settings_stay_allowed_where_they_mean_something():
    Campaign(name="ranked", item_kind=ItemKind.RANKING).full_clean()
    Campaign(
        name="paired",
        item_kind=ItemKind.PAIR,
        allow_rewrites=True,
        aspects=ASPECTS,
        consensus_rule=ConsensusRule.DAWID_SKENE,
    ).full_clean()


def test_the_campaign_api_refuses_a_ranking_campaign_with_dawid_skene(admin_user):
    response = api_client_for(admin_user).post(
        "/api/campaigns",
        {"name": "ranked", "item_kind": "ranking", "consensus_rule": "dawid_skene"},
        format="json",
    )
    assert response.status_code == 400, response.content
    assert "consensus_rule" in response.content.decode()
    assert not Campaign.objects.filter(name="ranked").exists()


def _leased_ranking_item(user: Any, **campaign_fields: Any) -> tuple[Campaign, Assignment]:
    """A ranking campaign saved as before the rule (the factory skips clean), one item with
    four responses, leased by `user` and shown in reverse."""
    campaign = CampaignFactory(item_kind=ItemKind.RANKING, annotators_per_pair=1, **campaign_fields)
    conversation = [{"role": "user", "content": "Rank these."}]
    PairFactory(
        campaign=campaign,
        conversation=conversation,
        response_a=TEXTS[0],
        response_b=TEXTS[1],
        responses=[{"content": text, "model": ""} for text in TEXTS],
        content_hash=content_hash(conversation, "k", "wise"),
    )
    client = api_client_for(user)
    body = client.post(f"/api/campaigns/{campaign.pk}/next").json()
    Assignment.objects.filter(pk=body["assignment"]["id"]).update(
        display_order=[3, 2, 1, 0], swapped=False
    )
    body = client.post(f"/api/campaigns/{campaign.pk}/next").json()
    assert body["pair"]["response_a"] == "three"
    return campaign, Assignment.objects.get(pk=body["assignment"]["id"])


def _label_url(assignment: Assignment) -> str:
    return f"/api/assignments/{assignment.pk}/label"


def test_a_rewrite_on_a_ranking_item_is_refused_and_nothing_is_stored(annotator_a):
    _campaign, assignment = _leased_ranking_item(annotator_a, allow_rewrites=True)
    response = api_client_for(annotator_a).post(
        _label_url(assignment),
        {"ranking": [[1], [2], [3], [0]], "rewrite": {"text": "three, corrected", "based_on": "a"}},
        format="json",
    )
    assert response.status_code == 400, response.content
    assert "rewrite" in response.json()["detail"]
    assert not Label.objects.exists() and not Rewrite.objects.exists()
    assignment.refresh_from_db()
    assert assignment.status == Assignment.Status.ACTIVE
    assert Pair.objects.get().labels_count == 0


def test_aspect_ratings_on_a_ranking_item_are_refused_and_nothing_is_stored(annotator_a):
    _campaign, assignment = _leased_ranking_item(annotator_a, aspects=ASPECTS)
    response = api_client_for(annotator_a).post(
        _label_url(assignment),
        {"ranking": [[0], [1], [2], [3]], "aspect_ratings": {"helpful": {"a": 5, "b": 1}}},
        format="json",
    )
    assert response.status_code == 400, response.content
    assert response.json()["code"] == "invalid_aspect_rating"
    assert not Label.objects.exists()
    assignment.refresh_from_db()
    assert assignment.status == Assignment.Status.ACTIVE


def test_a_changed_ranking_label_cannot_bring_a_rewrite_or_aspect_ratings(annotator_a):
    _campaign, assignment = _leased_ranking_item(annotator_a, allow_rewrites=True, aspects=ASPECTS)
    client = api_client_for(annotator_a)
    first = client.post(_label_url(assignment), {"ranking": [[0], [1], [2], [3]]}, format="json")
    assert first.status_code == 201, first.content
    for extra in (
        {"rewrite": {"text": "three, corrected", "based_on": "a"}},
        {"aspect_ratings": {"helpful": {"a": 5, "b": 1}}},
    ):
        changed = client.put(
            _label_url(assignment), {"ranking": [[3], [2], [1], [0]], **extra}, format="json"
        )
        assert changed.status_code == 400, changed.content
    label = Label.objects.get()
    assert label.aspect_ratings == {} and not Rewrite.objects.exists()
    assert label.ranking == [[3], [2], [1], [0]]  # canonical of shown [[0], [1], [2], [3]]


def test_a_ranking_campaign_saved_before_the_rule_offers_no_rewrite_or_aspects(annotator_a, expert):
    from annotation.services.rewrites import InvalidRewrite, rewrite_by_expert

    campaign, assignment = _leased_ranking_item(annotator_a, allow_rewrites=True, aspects=ASPECTS)
    body = api_client_for(annotator_a).post(f"/api/campaigns/{campaign.pk}/next").json()
    assert body["judgment"]["aspects"] == [] and body["judgment"]["allow_rewrites"] is False
    client = Client()
    client.force_login(annotator_a)
    response = client.get(f"/assignments/{assignment.pk}/")
    assert response.status_code == 200
    page = response.content.decode()
    assert "data-ranking" in page  # the ranking form is there
    assert "data-rewrite" not in page and "data-aspects" not in page
    with pytest.raises(InvalidRewrite):
        rewrite_by_expert(pair=assignment.pair, expert=expert, text="better", based_on="a")
    assert not Rewrite.objects.exists()
    # An A/B campaign with the same settings still offers both.
    pairs = CampaignFactory(allow_rewrites=True, aspects=ASPECTS)
    assert pairs.takes_rewrites and pairs.takes_aspect_ratings
