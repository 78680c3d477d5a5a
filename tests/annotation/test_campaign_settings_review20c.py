"""Review 20c: campaign settings the database refuses are refused first, naming the field.

A NUL character in a text of the JSON settings (an allowed attribute value, an aspect's label
or any key of an aspect) passed every check, and PostgreSQL's jsonb refused it on the save: a
500 from PATCH /api/campaigns/{id} and from the Django admin. A fraction outside the bounds of
the table's check constraints (agreement target, qualification threshold, the quarantine
minimums) was a 400 saying only "__all__: Constraint … is violated", where the README
promises a 400 naming the field. Real requests, services and database."""

from __future__ import annotations

import json

import pytest

from annotation.models import Campaign
from annotation.services.campaigns import SETTINGS_FIELDS
from tests.annotation.test_per_pair_change_admin import _change_in_admin
from tests.conftest import api_client_for
from tests.factories import CampaignFactory

pytestmark = pytest.mark.django_db

HELPFUL = {"name": "helpfulness", "label": "Helpfulness", "scale_min": 1, "scale_max": 5}
NUL_SETTINGS = [
    pytest.param("attribute_schema", {"task_category": ["math\x00"]}, id="allowed-value"),
    pytest.param("aspects", [{**HELPFUL, "label": "Help\x00fulness"}], id="aspect-label"),
    pytest.param("aspects", [{**HELPFUL, "note\x00": "x"}], id="aspect-key"),
]


def _settings(campaign: Campaign) -> dict:
    fresh = Campaign.objects.get(pk=campaign.pk)
    return {name: getattr(fresh, name) for name in SETTINGS_FIELDS}


@pytest.mark.parametrize(("field", "value"), NUL_SETTINGS)
def test_a_nul_character_in_a_json_setting_is_a_400_naming_it(admin_user, field, value):
    campaign = CampaignFactory()
    before = _settings(campaign)

    response = api_client_for(admin_user).patch(
        f"/api/campaigns/{campaign.pk}", {field: value, "guidelines": "new"}, format="json"
    )

    assert response.status_code == 400, response.content
    body = response.json()
    assert body["code"] == "invalid_campaign"
    assert body["detail"].startswith(f"{field}: ")
    assert "NUL character" in body["detail"]
    assert _settings(campaign) == before  # all or nothing: the guidelines stayed too


@pytest.mark.parametrize(("field", "value"), NUL_SETTINGS)
def test_the_admin_shows_a_nul_character_as_the_fields_error(client, field, value):
    campaign = CampaignFactory(aspects=[HELPFUL])

    page = _change_in_admin(client, campaign, **{field: json.dumps(value)}).content.decode()

    assert "holds a NUL character" in page
    assert campaign.aspects == [HELPFUL]
    assert campaign.attribute_schema == {}


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("agreement_target", 1.5),
        ("agreement_target", -2),
        ("qualification_threshold", 2),
        ("quarantine_min_gold_accuracy", -0.5),
        ("quarantine_min_agreement", 1.01),
    ],
)
def test_a_fraction_out_of_range_is_a_400_naming_its_field(admin_user, field, value):
    campaign = CampaignFactory()
    before = _settings(campaign)

    response = api_client_for(admin_user).patch(
        f"/api/campaigns/{campaign.pk}", {field: value}, format="json"
    )

    assert response.status_code == 400, response.content
    detail = response.json()["detail"]
    assert detail.startswith(f"{field}: "), detail
    assert "between" in detail
    assert _settings(campaign) == before


def test_the_bounds_themselves_are_taken(admin_user):
    campaign = CampaignFactory()
    bounds = {
        "agreement_target": -1.0,
        "qualification_threshold": 1.0,
        "quarantine_min_gold_accuracy": 0.0,
        "quarantine_min_agreement": 1.0,
    }

    response = api_client_for(admin_user).patch(
        f"/api/campaigns/{campaign.pk}", bounds, format="json"
    )

    assert response.status_code == 200, response.content
    assert {name: _settings(campaign)[name] for name in bounds} == bounds
