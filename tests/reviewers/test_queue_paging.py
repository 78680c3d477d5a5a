"""The expert queue page pages through every open escalation (keyset: "after"/"before" the
sort key of a row), keeping the order, campaign and domain across pages."""

from __future__ import annotations

import html
import re

import pytest
from django.urls import reverse

from reviewers.models import Escalation
from reviewers.views import QUEUE_PAGE_SIZE
from tests.factories import CampaignFactory
from tests.reviewers.factories import open_escalations

pytestmark = pytest.mark.django_db

PAIR_IN_ROW = re.compile(r">Pair (\d+)</(?:button|a)>")


def _pairs(page: str) -> list[int]:
    return [int(pk) for pk in PAIR_IN_ROW.findall(page)]


def _link(page: str, testid: str) -> str | None:
    found = re.search(rf'<a href="\?([^"]*)"[^>]*data-testid="{testid}"', page)
    return html.unescape(found.group(1)) if found else None


def _get(client, query: str = "", **headers) -> str:
    response = client.get(reverse("expert-queue") + (f"?{query}" if query else ""), **headers)
    assert response.status_code == 200, response.content[:500]
    return response.content.decode()


def test_escalations_past_the_first_page_are_reached_by_its_next_link(client, expert):
    campaign = CampaignFactory()
    escalations = open_escalations(campaign, QUEUE_PAGE_SIZE + 5)
    oldest_first = [e.pair_id for e in sorted(escalations, key=lambda e: e.pk)]
    client.force_login(expert)

    first = _get(client)
    assert _pairs(first) == oldest_first[:QUEUE_PAGE_SIZE]
    assert f"{QUEUE_PAGE_SIZE + 5} open escalations" in first
    assert _link(first, "queue-previous") is None and _link(first, "queue-first") is None

    second = _get(client, _link(first, "queue-next"))
    assert _pairs(second) == oldest_first[QUEUE_PAGE_SIZE:]  # escalation 201 to 205
    assert _link(second, "queue-next") is None
    assert _link(second, "queue-first") == "order=oldest"

    back = _get(client, _link(second, "queue-previous"))
    assert _pairs(back) == oldest_first[:QUEUE_PAGE_SIZE]


def test_the_filters_and_order_are_kept_across_pages(client, expert):
    campaign, other = CampaignFactory(), CampaignFactory()
    # Three disagreement levels (ties broken by age, then id), in the campaign and domain
    # filtered on, amid escalations of another domain and another campaign.
    levels = (0.9, 0.6, 0.3)
    wanted = open_escalations(
        campaign, QUEUE_PAGE_SIZE + 3, category="math", disagreement=lambda i: levels[i % 3]
    )
    open_escalations(campaign, 4, category="code", disagreement=lambda i: 1.0)
    open_escalations(other, 4, category="math", disagreement=lambda i: 1.0)
    expected = [e.pair_id for e in sorted(wanted, key=lambda e: (-e.disagreement, e.pk))]
    client.force_login(expert)

    first = _get(client, f"order=disputed&campaign={campaign.pk}&domain=math")
    next_query = _link(first, "queue-next")
    assert f"campaign={campaign.pk}" in next_query
    assert "domain=math" in next_query and "order=disputed" in next_query
    # htmx swaps the table only, and its links keep the filters too.
    second = _get(client, next_query, HTTP_HX_REQUEST="true")
    assert "<html" not in second and 'id="queue-table"' in second
    assert _pairs(first) + _pairs(second) == expected
    assert f"campaign={campaign.pk}" in _link(second, "queue-previous")
    assert _link(second, "queue-first") == f"order=disputed&campaign={campaign.pk}&domain=math"


def test_a_page_starts_after_its_cursor_even_when_rows_before_were_decided(client, expert):
    campaign = CampaignFactory()
    escalations = sorted(open_escalations(campaign, QUEUE_PAGE_SIZE + 2), key=lambda e: e.pk)
    client.force_login(expert)
    next_query = _link(_get(client), "queue-next")
    # Ten escalations of the first page are decided meanwhile: the next page still starts
    # right after the last one shown, nothing skipped.
    Escalation.objects.filter(pk__in=[e.pk for e in escalations[:10]]).update(
        status=Escalation.Status.RESOLVED
    )
    assert _pairs(_get(client, next_query)) == [e.pair_id for e in escalations[-2:]]


@pytest.mark.parametrize(
    "query",
    [
        "after=abc",
        "after=1_2_3",  # another order's cursor
        "order=disputed&after=1_2",
        "order=disputed&after=nan_1_2",
        "after=99999999999999999999_1",
        "after=1_99999999999999999999",
        "after=1_2&before=1_3",
        "before=1.5_2",
    ],
)
def test_a_cursor_that_is_not_a_queue_position_is_refused(client, expert, query):
    client.force_login(expert)
    response = client.get(reverse("expert-queue") + f"?{query}")
    assert response.status_code == 400
    assert b"not a position in this queue" in response.content or b"not both" in response.content


def test_a_deep_page_reads_one_page_of_rows(client, expert, django_assert_max_num_queries):
    campaign = CampaignFactory()
    open_escalations(campaign, QUEUE_PAGE_SIZE + 1)
    client.force_login(expert, backend="django.contrib.auth.backends.ModelBackend")
    next_query = _link(_get(client), "queue-next")
    # The first page's queries (13, see test_scale_review15) and one more: is there a page
    # before this one.
    with django_assert_max_num_queries(14) as queries:
        page = _get(client, next_query)
    assert len(_pairs(page)) == 1
    rows_query = next(q["sql"] for q in queries.captured_queries if "LIMIT 201" in q["sql"])
    assert "OFFSET" not in rows_query
