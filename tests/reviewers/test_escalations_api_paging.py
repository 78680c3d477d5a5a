"""GET /api/escalations pages the expert queue as the queue page does (keyset: ``after`` /
``before``, the sort key of a row), the neighbouring pages' URLs in the Link header keeping the
order, campaign, domain and limit; the body stays a list of escalations."""

from __future__ import annotations

import re
from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from annotation.roles import Role
from reviewers.models import Escalation
from tests.conftest import api_client_for
from tests.factories import CampaignFactory
from tests.reviewers.factories import open_escalations, user_with_role

pytestmark = pytest.mark.django_db

LINK = re.compile(r'<([^>]*)>; rel="(\w+)"')


def _links(response) -> dict[str, str]:
    return {rel: url for url, rel in LINK.findall(response.headers.get("Link", ""))}


def _get(client, url: str, params: dict | None = None):
    response = client.get(url, params or {})
    assert response.status_code == 200, response.content[:500]
    return response


def _ids(response) -> list[int]:
    return [row["id"] for row in response.json()]


def test_the_link_header_leads_past_the_first_page_and_back(expert):
    escalations = sorted(open_escalations(CampaignFactory(), 7), key=lambda e: e.pk)
    oldest_first = [e.pk for e in escalations]
    client = api_client_for(expert)

    first = _get(client, reverse("api-escalations"), {"limit": 3})
    assert _ids(first) == oldest_first[:3]
    assert set(_links(first)) == {"next"}  # no page before the first
    second = _get(client, _links(first)["next"])
    assert _ids(second) == oldest_first[3:6]
    assert set(_links(second)) == {"next", "prev", "first"}
    last = _get(client, _links(second)["next"])
    assert _ids(last) == oldest_first[6:]
    assert "next" not in _links(last)

    assert _ids(_get(client, _links(last)["prev"])) == oldest_first[3:6]
    assert _ids(_get(client, _links(second)["prev"])) == oldest_first[:3]
    assert _ids(_get(client, _links(last)["first"])) == oldest_first[:3]
    # Absolute URLs, as a client follows them.
    assert _links(first)["next"].startswith("http://testserver/api/escalations?")


def test_the_filters_order_and_limit_are_kept_across_pages(expert):
    campaign, other = CampaignFactory(), CampaignFactory()
    levels = (0.9, 0.6, 0.3)
    wanted = open_escalations(campaign, 8, category="math", disagreement=lambda i: levels[i % 3])
    # Amid escalations of another domain and another campaign, more disputed than all.
    open_escalations(campaign, 3, category="code", disagreement=lambda i: 1.0)
    open_escalations(other, 3, category="math", disagreement=lambda i: 1.0)
    expected = [e.pk for e in sorted(wanted, key=lambda e: (-e.disagreement, e.pk))]
    client = api_client_for(expert)

    params = {"order": "disputed", "campaign": campaign.pk, "domain": "math", "limit": 3}
    response = _get(client, reverse("api-escalations"), params)
    seen = _ids(response)
    while "next" in _links(response):
        query = parse_qs(urlsplit(_links(response)["next"]).query)
        assert {name: query[name] for name in params} == {
            name: [str(value)] for name, value in params.items()
        }
        response = _get(client, _links(response)["next"])
        assert len(_ids(response)) <= 3
        seen += _ids(response)
    assert seen == expected


def test_no_escalation_is_skipped_when_earlier_ones_are_decided_between_requests(expert):
    escalations = sorted(open_escalations(CampaignFactory(), 12), key=lambda e: e.pk)
    client = api_client_for(expert)
    first = _get(client, reverse("api-escalations"), {"limit": 5})
    assert _ids(first) == [e.pk for e in escalations[:5]]
    # Four of the first page are decided meanwhile, the last one shown (the cursor's own row)
    # among them: the next page still starts right after it.
    decided = [escalations[0].pk, escalations[1].pk, escalations[2].pk, escalations[4].pk]
    Escalation.objects.filter(pk__in=decided).update(status=Escalation.Status.RESOLVED)
    second = _get(client, _links(first)["next"])
    assert _ids(second) == [e.pk for e in escalations[5:10]]
    assert _ids(_get(client, _links(second)["next"])) == [e.pk for e in escalations[10:]]


def test_the_deprecated_offset_still_answers_its_rows_without_links(expert):
    escalations = sorted(open_escalations(CampaignFactory(), 5), key=lambda e: e.pk)
    client = api_client_for(expert)
    response = _get(client, reverse("api-escalations"), {"offset": 2, "limit": 2})
    assert _ids(response) == [e.pk for e in escalations[2:4]]
    assert "Link" not in response.headers
    # offset=0 is the first page, with its links.
    response = _get(client, reverse("api-escalations"), {"offset": 0, "limit": 2})
    assert _ids(response) == [e.pk for e in escalations[:2]] and "next" in _links(response)


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("after=abc", "after is not a position in this queue"),
        ("after=1_2_3", "after is not a position in this queue"),  # another order's cursor
        ("order=disputed&after=1_2", "after is not a position in this queue"),
        ("order=disputed&after=nan_1_2", "after is not a position in this queue"),
        ("after=99999999999999999999_1", "after is not a position in this queue"),
        ("after=1_99999999999999999999", "after is not a position in this queue"),
        ("before=1.5_2", "before is not a position in this queue"),
        ("after=1_2&before=1_3", "Give after or before, not both."),
        ("offset=3&after=1_2", "Give offset (deprecated) or a cursor (after, before), not both."),
    ],
)
def test_a_cursor_that_is_not_a_queue_position_is_a_clear_400(expert, query, message):
    open_escalations(CampaignFactory(), 2)
    response = api_client_for(expert).get(f"{reverse('api-escalations')}?{query}")
    assert response.status_code == 400
    assert message in str(response.json())


def test_a_deep_page_reads_one_page_of_rows_in_as_many_queries_as_the_second(
    client, django_assert_max_num_queries
):
    campaign = CampaignFactory()
    escalations = open_escalations(campaign, 40)
    # Claims held by another expert: the viewer's roles are read once a page, not a row.
    holder = user_with_role("holder", Role.EXPERT)
    Escalation.objects.filter(pk__in=[e.pk for e in escalations]).update(
        claimed_by=holder, claim_expires_at=timezone.now() + timedelta(hours=1)
    )
    viewer = user_with_role("viewer", Role.EXPERT)
    client.force_login(viewer, backend="django.contrib.auth.backends.ModelBackend")
    with CaptureQueriesContext(connection) as on_first:
        response = _get(client, reverse("api-escalations"), {"limit": 4})
    pages = [_links(response)["next"]]
    while "next" in _links(response):
        response = _get(client, _links(response)["next"])
        pages.append(_links(response).get("next") or "")
    second, deep = pages[0], pages[-3]  # page 2, and page 9 of 10
    with CaptureQueriesContext(connection) as on_second:
        _get(client, second)
    # Past the first page, one query more (is there a page before it?), however deep.
    assert len(on_second.captured_queries) == len(on_first.captured_queries) + 1
    with django_assert_max_num_queries(len(on_second.captured_queries)) as on_deep:
        response = _get(client, deep)
    assert len(_ids(response)) == 4
    assert all(row["claim"]["holder"] == "another expert" for row in response.json())
    rows_query = next(q["sql"] for q in on_deep.captured_queries if "LIMIT 5" in q["sql"])
    assert "OFFSET" not in rows_query
