"""The rewrite step: pairs found "both bad" wait for a corrected answer from an expert."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError

from annotation.models import BothBadRoute, Outcome, Pair, Rewrite
from tests.conftest import api_client_for
from tests.factories import CampaignFactory, PairFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def rewrite_campaign(db):
    return CampaignFactory(allow_rewrites=True, both_bad_route=BothBadRoute.REWRITE)


def test_experts_see_both_bad_pairs_until_one_is_rewritten(rewrite_campaign, expert, annotator_a):
    bad = PairFactory(
        campaign=rewrite_campaign,
        status=Pair.Status.COMPLETE,
        consensus_preference=0,
        consensus_outcome=Outcome.BOTH_BAD,
        provenance=Pair.Provenance.UNANIMOUS,
    )
    PairFactory(campaign=rewrite_campaign, status=Pair.Status.COMPLETE, consensus_preference=0)
    client = api_client_for(expert)
    queue_url = f"/api/campaigns/{rewrite_campaign.pk}/rewrite-queue"
    assert [row["id"] for row in client.get(queue_url).json()] == [bad.pk]

    response = client.post(
        f"/api/pairs/{bad.pk}/rewrites", {"text": "Fixed.", "based_on": "b"}, format="json"
    )
    assert response.status_code == 201, response.json()
    rewrite = Rewrite.objects.get(pk=response.json()["id"])
    assert (rewrite.pair_id, rewrite.author_id, rewrite.based_on) == (bad.pk, expert.pk, "b")
    assert rewrite.label_id is None
    assert client.get(queue_url).json() == []


def test_annotators_cannot_use_the_rewrite_step(rewrite_campaign, annotator_a):
    pair = PairFactory(campaign=rewrite_campaign)
    client = api_client_for(annotator_a)
    assert client.get(f"/api/campaigns/{rewrite_campaign.pk}/rewrite-queue").status_code == 404
    response = client.post(
        f"/api/pairs/{pair.pk}/rewrites", {"text": "Mine.", "based_on": "a"}, format="json"
    )
    assert response.status_code == 404 and not Rewrite.objects.exists()


def test_an_expert_rewrite_is_validated(expert):
    closed = PairFactory(campaign=CampaignFactory(allow_rewrites=False))
    client = api_client_for(expert)
    refused = client.post(
        f"/api/pairs/{closed.pk}/rewrites", {"text": "Fixed.", "based_on": "a"}, format="json"
    )
    assert refused.status_code == 400 and refused.json()["code"] == "invalid_rewrite"
    bad_side = client.post(
        f"/api/pairs/{closed.pk}/rewrites", {"text": "Fixed.", "based_on": "c"}, format="json"
    )
    assert bad_side.status_code == 400


def test_the_rewrite_route_needs_rewrites_allowed():
    campaign = CampaignFactory.build(both_bad_route=BothBadRoute.REWRITE, allow_rewrites=False)
    with pytest.raises(ValidationError):
        campaign.full_clean()
