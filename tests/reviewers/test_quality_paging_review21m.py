"""``GET /api/campaigns/{id}/quality`` comes a page at a time like the API's other lists: the
body a list of the stored report's rows by user name (then id), ``limit``, the Link header."""

from __future__ import annotations

import re

import pytest
from django.urls import reverse

from tests.conftest import api_client_for
from tests.factories import CampaignFactory, PairFactory
from tests.reviewers.factories import add_label, user_with_role

pytestmark = pytest.mark.django_db

LINK = re.compile(r'<([^>]+)>; rel="(\w+)"')
NAMES = ["ann-e", "ann-a", "ann-d", "ann-b", "ann-c"]  # labelled in this order


def _links(response) -> dict[str, str]:
    return {rel: url for url, rel in LINK.findall(response.get("Link", ""))}


@pytest.fixture
def campaign():
    campaign = CampaignFactory()
    pair = PairFactory(campaign=campaign)
    for name in NAMES:
        add_label(pair, user_with_role(name), 1, seconds=10)
    return campaign


def test_the_quality_rows_come_a_page_at_a_time_by_user_name(admin_user, campaign):
    client = api_client_for(admin_user)
    url = reverse("api-annotator-quality", args=[campaign.pk])
    first = client.get(url, {"limit": 2})
    assert first.status_code == 200
    assert [row["username"] for row in first.json()] == ["ann-a", "ann-b"]
    assert set(_links(first)) == {"next"} and "limit=2" in _links(first)["next"]
    second = client.get(_links(first)["next"])
    assert [row["username"] for row in second.json()] == ["ann-c", "ann-d"]
    assert set(_links(second)) == {"next", "prev", "first"}
    last = client.get(_links(second)["next"])
    assert [row["username"] for row in last.json()] == ["ann-e"]
    assert set(_links(last)) == {"prev", "first"}
    back = client.get(_links(last)["prev"])
    assert [row["username"] for row in back.json()] == ["ann-c", "ann-d"]
    # The rows are the report's, as before: every figure, the median time among them.
    assert back.json()[0]["median_seconds"] == 10 and "flag_reasons" in back.json()[0]
    # One page, all of them, by default: no Link header.
    whole = client.get(url)
    assert [row["username"] for row in whole.json()] == sorted(NAMES)
    assert "Link" not in whole


def test_bad_quality_paging_parameters_are_a_400(admin_user, campaign):
    client = api_client_for(admin_user)
    url = reverse("api-annotator-quality", args=[campaign.pk])
    for params in (
        {"limit": 0},
        {"limit": 501},
        {"after": "not-a-cursor"},
        {"after": "WzEsMl0"},  # [1,2]: a user name must be a string
        {"after": "x", "before": "y"},
    ):
        assert client.get(url, params).status_code == 400, params
