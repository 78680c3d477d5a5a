"""Review 18: the Django admin and campaign creation hold the rules the settings API holds.
The admin let the item kind and scale change after pairs were stored under them, and dropped
or rescaled an aspect that labels rate; creation took up to 32,767 annotators per pair (a
change is capped at 1,000) and worded a 0 as the database constraint's name."""

from __future__ import annotations

import json

import pytest
from django.contrib import admin
from django.test import RequestFactory

from annotation.models import Campaign
from annotation.services.assignments import assignment_next
from annotation.services.labels import LabelInput, label_submit
from tests.annotation.test_per_pair_change_admin import _change_in_admin
from tests.conftest import api_client_for
from tests.factories import CampaignFactory, PairFactory, UserFactory

pytestmark = pytest.mark.django_db

HELPFUL = {"name": "helpfulness", "label": "Helpfulness", "scale_min": 1, "scale_max": 5}


def _admin_form_fields(campaign: Campaign) -> set[str]:
    request = RequestFactory().get("/")
    request.user = UserFactory(is_staff=True, is_superuser=True)
    return set(admin.site._registry[Campaign].get_form(request, campaign)().fields)


def test_the_item_kind_and_scale_are_read_only_in_the_admin_once_there_are_pairs(client):
    campaign = CampaignFactory(scale="five_point")
    assert {"item_kind", "scale"} <= _admin_form_fields(campaign)
    _change_in_admin(client, campaign, scale="binary")
    assert campaign.scale == "binary"  # no pairs yet: it may change

    PairFactory(campaign=campaign)
    assert not {"item_kind", "scale"} & _admin_form_fields(campaign)
    _change_in_admin(client, campaign, scale="five_point", item_kind="ranking")
    assert (campaign.scale, campaign.item_kind) == ("binary", "pair")


def test_the_admin_refuses_to_drop_an_aspect_that_labels_rate(client):
    honesty = {**HELPFUL, "name": "honesty", "label": "Honesty"}
    campaign = CampaignFactory(aspects=[HELPFUL, honesty])
    PairFactory(campaign=campaign)
    assignment = assignment_next(campaign=campaign, annotator=UserFactory())
    assert assignment is not None
    label_submit(
        assignment=assignment,
        data=LabelInput(preference=1, aspect_ratings={"helpfulness": {"a": 4, "b": 2}}),
    )

    page = _change_in_admin(client, campaign, aspects=json.dumps([honesty])).content.decode()

    assert "labels already rate helpfulness" in page
    assert campaign.aspects == [HELPFUL, honesty]
    # honesty, which no label rates, may go
    _change_in_admin(client, campaign, aspects=json.dumps([HELPFUL]))
    assert campaign.aspects == [HELPFUL]


@pytest.mark.parametrize("per_pair", [0, 1001, 32_767])
def test_creating_a_campaign_refuses_an_overlap_a_change_would_refuse(admin_user, per_pair):
    api = api_client_for(admin_user)
    refused = api.post(
        "/api/campaigns", {"name": "n", "annotators_per_pair": per_pair}, format="json"
    )
    assert refused.status_code == 400, refused.content
    assert "annotators_per_pair" in refused.content.decode()
    assert "constraint" not in refused.content.decode().lower()
    assert not Campaign.objects.exists()
    created = api.post("/api/campaigns", {"name": "n", "annotators_per_pair": 1000}, format="json")
    assert created.status_code == 201, created.content
