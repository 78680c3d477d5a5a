"""The annotator quality page (``/campaigns/<id>/quality/``) lists its annotators 100 a page,
by user name then id as the quality API pages them, with Previous/Next/First links, a
user-name filter and "flagged only" kept across pages; the dashboard's annotators panel shows
the worst few and sends the admin to that page for the rest."""

from __future__ import annotations

import re
from html import unescape
from urllib.parse import parse_qs, urlsplit

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import reverse

from scoring.dashboard.views import DASHBOARD_ANNOTATORS
from tests.factories import CampaignFactory, PairFactory
from tests.reviewers.factories import add_label, user_with_role

pytestmark = pytest.mark.django_db
User = get_user_model()


def _campaign_of(count: int, admin):
    """A campaign whose ``count`` annotators a000, a001, ... each labelled one pair, created
    in shuffled order (so that ids do not follow names), and a client signed in as its admin."""
    campaign = CampaignFactory()
    pair = PairFactory(campaign=campaign)
    names = [f"a{n:03d}" for n in range(count)]
    shuffled = names[1::2] + names[0::2]
    User.objects.bulk_create([User(username=name) for name in shuffled])
    for user in User.objects.filter(username__in=names):
        add_label(pair, user, 1, seconds=10)
    client = Client()
    client.force_login(admin)
    return campaign, names, client


def _shown(response) -> list[str]:
    return re.findall(r'<tr data-username="([^"]+)"', response.content.decode())


def _link(response, testid: str) -> str | None:
    found = re.search(rf'<a href="([^"]*)"[^>]*data-testid="{testid}"', response.content.decode())
    return unescape(found.group(1)) if found else None


def _url(campaign, query: str | None = None) -> str:
    return reverse("annotator-quality", args=[campaign.pk]) + (query or "")


def test_a_page_shows_100_of_250_annotators_by_user_name_with_page_links(
    admin_user, django_assert_max_num_queries
):
    campaign, names, client = _campaign_of(250, admin_user)
    client.get(_url(campaign))  # computes and stores the report on a miss
    with django_assert_max_num_queries(8):
        first = client.get(_url(campaign))
    assert first.status_code == 200
    assert _shown(first) == names[:100]
    assert _link(first, "quality-previous") is None and _link(first, "quality-first") is None
    assert b"250 annotators, 100 a page, by user name." in first.content
    second = client.get(_url(campaign, _link(first, "quality-next")))
    assert _shown(second) == names[100:200]
    assert _link(second, "quality-first") == "?"
    last = client.get(_url(campaign, _link(second, "quality-next")))
    assert _shown(last) == names[200:] and _link(last, "quality-next") is None
    back = client.get(_url(campaign, _link(last, "quality-previous")))
    assert _shown(back) == names[100:200]
    assert _shown(client.get(_url(campaign, _link(back, "quality-first")))) == names[:100]


def test_the_user_name_filter_is_kept_across_pages(admin_user):
    campaign, names, client = _campaign_of(250, admin_user)
    first = client.get(_url(campaign, "?q=1"))
    wanted = [name for name in names if "1" in name]
    assert len(wanted) > 100 and _shown(first) == wanted[:100]
    next_query = _link(first, "quality-next")
    assert parse_qs(urlsplit(next_query).query)["q"] == ["1"]
    following = client.get(_url(campaign, next_query))
    assert _shown(following) == wanted[100:]
    for testid in ("quality-previous", "quality-first"):
        assert parse_qs(urlsplit(_link(following, testid)).query)["q"] == ["1"]
    assert b'value="1"' in first.content
    # Case-insensitive, as the members page's filter.
    assert _shown(client.get(_url(campaign, "?q=A24"))) == names[240:250]
    none = client.get(_url(campaign, "?q=nobody"))
    assert _shown(none) == [] and "No annotator whose user name contains" in none.content.decode()


def test_flagged_only_lists_the_flagged_annotators(admin_user):
    campaign = CampaignFactory(quality_threshold=0.6)
    gold = [PairFactory(campaign=campaign, is_gold=True, gold_preference=1) for _ in range(5)]
    sloppy, careful = user_with_role("sloppy"), user_with_role("careful")
    for pair in gold:
        add_label(pair, sloppy, -1, kind="gold")
        add_label(pair, careful, 1, kind="gold")
    client = Client()
    client.force_login(admin_user)
    assert _shown(client.get(_url(campaign))) == ["careful", "sloppy"]
    flagged = client.get(_url(campaign, "?flagged=1"))
    assert _shown(flagged) == ["sloppy"]
    assert "1 flagged annotator" in flagged.content.decode()


def test_an_edited_cursor_or_filter_answers_400(admin_user):
    campaign, _names, client = _campaign_of(3, admin_user)
    assert client.get(_url(campaign, "?after=not-a-cursor")).status_code == 400
    assert client.get(_url(campaign, "?before=WyJhIl0")).status_code == 400  # ["a"]: too short
    assert client.get(_url(campaign, "?q=a%00b")).status_code == 400
    assert client.get(_url(campaign, "?after=x&before=y")).status_code == 400


def test_the_dashboard_shows_the_worst_few_and_links_to_the_quality_page_for_the_rest(
    admin_user,
):
    campaign, _names, client = _campaign_of(DASHBOARD_ANNOTATORS + 5, admin_user)
    page = client.get(reverse("campaign-dashboard", args=[campaign.pk])).content.decode()
    table = page.split('class="table dash-annotators"', 1)[1].split("</table>", 1)[0]
    assert table.count("<tr") == DASHBOARD_ANNOTATORS + 1  # and the header row
    more = re.search(r'data-testid="annotators-more">(.*?)</p>', page, re.S)
    assert more and "5 more annotators" in more.group(1)
    assert reverse("annotator-quality", args=[campaign.pk]) in more.group(1)
