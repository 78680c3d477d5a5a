"""Creating a campaign from the product: the site admin's page and API (it took the Django
admin before, with raw JSON fields among the first things a new team saw)."""

from __future__ import annotations

import pytest
from django.test import Client

from annotation.models import Campaign
from tests.conftest import api_client_for

pytestmark = pytest.mark.django_db


def _client(user) -> Client:
    client = Client()
    client.force_login(user, backend="django.contrib.auth.backends.ModelBackend")
    return client


def test_a_site_admin_creates_a_campaign_on_its_page_and_goes_on_to_import(admin_user):
    client = _client(admin_user)
    home = client.get("/").content.decode()
    assert 'href="/campaigns/new/"' in home
    assert client.get("/campaigns/new/").status_code == 200
    response = client.post(
        "/campaigns/new/",
        {
            "name": "  Helpfulness v1 ",
            "scale": "binary",
            "item_kind": "pair",
            "annotators_per_pair": "3",
            "gold_share": "0.1",
            "retest_share": "0",
            "round_size": "200",
            "consensus_rule": "majority",
            "guidelines": "Prefer the **honest** answer.",
        },
    )
    campaign = Campaign.objects.get(name="Helpfulness v1")
    assert response.status_code == 302
    assert response["Location"] == f"/campaigns/{campaign.pk}/import/"
    assert (campaign.scale, campaign.gold_share, campaign.round_size) == ("binary", 0.1, 200)
    assert campaign.open_to_all is False and campaign.created_by == admin_user
    followed = client.get(response["Location"]).content.decode()
    assert "Campaign Helpfulness v1 created" in followed


def test_the_page_shows_what_is_wrong_and_creates_nothing(admin_user):
    Campaign.objects.create(name="taken")
    client = _client(admin_user)
    base = {
        "scale": "binary",
        "item_kind": "pair",
        "annotators_per_pair": "3",
        "gold_share": "0",
        "retest_share": "0",
        "round_size": "10",
        "consensus_rule": "majority",
    }
    taken = client.post("/campaigns/new/", {**base, "name": "taken"})
    assert taken.status_code == 400 and "already exists" in taken.content.decode()
    bad = client.post("/campaigns/new/", {**base, "name": "x", "gold_share": "1.5"})
    assert bad.status_code == 400
    zero = client.post("/campaigns/new/", {**base, "name": "y", "round_size": "0"})
    assert zero.status_code == 400 and "at least one pair" in zero.content.decode()
    assert Campaign.objects.count() == 1


def test_others_cannot_reach_the_page(annotator_a, expert):
    for user in (annotator_a, expert):
        assert _client(user).get("/campaigns/new/").status_code == 404
        assert _client(user).post("/campaigns/new/", {"name": "z"}).status_code == 404
    assert not Campaign.objects.filter(name="z").exists()


def test_the_api_creates_a_campaign_and_refuses_clearly(admin_user, annotator_a):
    api = api_client_for(admin_user)
    created = api.post("/api/campaigns", {"name": "api-made", "scale": "five_point"}, format="json")
    assert created.status_code == 201, created.content
    assert created.data["name"] == "api-made" and created.data["annotators_per_pair"] == 3
    assert Campaign.objects.get(pk=created.data["id"]).created_by == admin_user
    again = api.post("/api/campaigns", {"name": "api-made"}, format="json")
    assert again.status_code == 409 and again.json()["code"] == "campaign_exists"
    bad = api.post("/api/campaigns", {"name": "b", "retest_share": -1}, format="json")
    assert bad.status_code == 400
    nameless = api.post("/api/campaigns", {"scale": "binary"}, format="json")
    assert nameless.status_code == 400
    unknown = api.post("/api/campaigns", {"name": "c", "scale": "ten_point"}, format="json")
    assert unknown.status_code == 400
    forbidden = api_client_for(annotator_a).post("/api/campaigns", {"name": "d"}, format="json")
    assert forbidden.status_code == 403
    assert set(Campaign.objects.values_list("name", flat=True)) == {"api-made"}
