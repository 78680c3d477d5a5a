"""The API's growing lists come a page at a time, as the expert queue does: the body a list,
``limit`` (1-500, default 100), the neighbouring pages in the Link header (``core.paging``)."""

from __future__ import annotations

import base64
import re

import pytest
from django.contrib.auth import get_user_model

from annotation.models import Outcome, Pair
from annotation.services.members import member_add
from scoring.models import ExportSnapshot, Job, ModelVersion
from tests.conftest import api_client_for
from tests.factories import CampaignFactory

pytestmark = pytest.mark.django_db

LINK = re.compile(r'<([^>]+)>; rel="(\w+)"')


def links(response) -> dict[str, str]:
    return {rel: url for url, rel in LINK.findall(response.get("Link", ""))}


def walk(client, url: str, **params) -> tuple[list[list], list[dict[str, str]]]:
    """Every page from the first, following rel="next"; each page's body and links."""
    pages, rels = [], []
    response = client.get(url, params)
    while True:
        assert response.status_code == 200, response.content
        pages.append(response.json())
        rels.append(links(response))
        if "next" not in rels[-1]:
            return pages, rels
        response = client.get(rels[-1]["next"])


def test_members_come_a_page_at_a_time_by_user_name(admin_user):
    campaign = CampaignFactory()
    names = [f"user{n:02d}" for n in range(7)]
    for name in reversed(names):
        member_add(campaign=campaign, user=get_user_model().objects.create_user(username=name))
    client = api_client_for(admin_user)
    url = f"/api/campaigns/{campaign.pk}/members"

    pages, rels = walk(client, url, limit=3)
    assert [[row["username"] for row in page] for page in pages] == [
        names[0:3],
        names[3:6],
        names[6:7],
    ]
    assert set(rels[0]) == {"next"}
    assert set(rels[1]) == {"next", "prev", "first"}
    assert set(rels[2]) == {"prev", "first"}
    assert "limit=3" in rels[1]["next"]
    # Back from the last page: the one before it.
    back = client.get(rels[2]["prev"])
    assert [row["username"] for row in back.json()] == names[3:6]
    # One page, all of them, by default: no Link header.
    whole = client.get(url)
    assert [row["username"] for row in whole.json()] == names
    assert "Link" not in whole


def test_a_page_of_members_reads_a_bounded_number_of_queries(
    admin_user, django_assert_max_num_queries
):
    campaign = CampaignFactory()
    for n in range(30):
        member_add(campaign=campaign, user=get_user_model().objects.create_user(username=f"u{n}"))
    client = api_client_for(admin_user)
    with django_assert_max_num_queries(12):
        response = client.get(f"/api/campaigns/{campaign.pk}/members", {"limit": 5})
    assert len(response.json()) == 5


def test_bad_paging_parameters_are_a_400(admin_user):
    campaign = CampaignFactory()
    client = api_client_for(admin_user)
    url = f"/api/campaigns/{campaign.pk}/members"
    assert client.get(url, {"limit": 0}).status_code == 400
    assert client.get(url, {"limit": 501}).status_code == 400
    assert client.get(url, {"after": "a", "before": "b"}).status_code == 400
    nul = base64.urlsafe_b64encode(b'["a\\u0000",1]').decode()  # a NUL in the name
    for cursor in ["not-a-cursor", "WzFd", "W3RydWUsMV0", nul]:  # junk, [1], [true,1]
        response = client.get(url, {"after": cursor})
        assert response.status_code == 400, cursor
        assert "follow the page links" in response.json()["detail"]


def _job(campaign, kind=Job.Kind.EXPORT) -> Job:
    return Job.objects.create(campaign=campaign, kind=kind)


def test_exports_past_the_hundredth_are_reachable(admin_user):
    campaign = CampaignFactory()
    for version in range(1, 106):
        ExportSnapshot.objects.create(
            job=_job(campaign), campaign=campaign, version=version, format="jsonl"
        )
    pages, _rels = walk(api_client_for(admin_user), f"/api/campaigns/{campaign.pk}/exports")
    assert [len(page) for page in pages] == [100, 5]
    assert [row["version"] for page in pages for row in page] == list(range(105, 0, -1))


def test_model_versions_come_newest_first_a_page_at_a_time(admin_user):
    campaign = CampaignFactory()
    for number in range(1, 6):
        ModelVersion.objects.create(campaign=campaign, number=number, base="b", checkpoint="c")
    pages, _rels = walk(
        api_client_for(admin_user), f"/api/campaigns/{campaign.pk}/model-versions", limit=2
    )
    assert [[row["number"] for row in page] for page in pages] == [[5, 4], [3, 2], [1]]


def test_the_rewrite_queue_past_fifty_is_reachable(admin_user):
    from tests.factories import PairFactory

    campaign = CampaignFactory()
    pairs = [
        PairFactory(
            campaign=campaign, status=Pair.Status.COMPLETE, consensus_outcome=Outcome.BOTH_BAD
        )
        for _ in range(55)
    ]
    pages, _rels = walk(
        api_client_for(admin_user), f"/api/campaigns/{campaign.pk}/rewrite-queue", limit=20
    )
    assert [row["id"] for page in pages for row in page] == [pair.pk for pair in pairs]


def test_the_schema_documents_the_paging(admin_user):
    schema = api_client_for(admin_user).get("/api/schema/", {"format": "json"}).json()
    paged = [
        "/api/campaigns/{campaign_id}/members",
        "/api/campaigns/{campaign_id}/exports",
        "/api/campaigns/{campaign_id}/model-versions",
        "/api/campaigns/{campaign_id}/evaluation-sets",
        "/api/evaluation-sets",
        "/api/campaigns/{campaign_id}/rewrite-queue",
        "/api/escalations",
        "/api/campaigns/{campaign_id}/quality",
    ]
    for path in paged:
        operation = schema["paths"][path]["get"]
        names = {parameter["name"] for parameter in operation["parameters"]}
        assert {"limit", "after", "before"} <= names, path
        assert "Link" in operation["responses"]["200"]["headers"], path
        assert (
            operation["responses"]["200"]["content"]["application/json"]["schema"]["type"]
            == "array"
        ), path
