"""The campaign members page lists its members 100 a page, in the members API's keyset order
(user name, then id), with a user-name filter; every action on it comes back to the page it
was taken on."""

from __future__ import annotations

import re
from html import unescape
from urllib.parse import parse_qs, urlsplit

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import reverse

from annotation.models import CampaignMember
from annotation.services.members import member_add, member_quarantine, members_add_usernames
from tests.factories import CampaignFactory, UserFactory

pytestmark = pytest.mark.django_db
User = get_user_model()


def _campaign_of(count: int):
    """A campaign with an admin ("aaa-admin", first in the list) and ``count`` annotators
    named m000, m001, ... created in shuffled order (so that ids do not follow names); every
    tenth annotator quarantined by the admin (a transition with its figures and its "by")."""
    campaign = CampaignFactory(open_to_all=False)
    admin = UserFactory(username="aaa-admin")
    member_add(campaign=campaign, user=admin, role=CampaignMember.Role.ADMIN)
    names = [f"m{n:03d}" for n in range(count)]
    shuffled = names[1::2] + names[0::2]
    User.objects.bulk_create([User(username=name) for name in shuffled])
    members_add_usernames(campaign=campaign, usernames=shuffled, by=admin)
    for member in CampaignMember.objects.filter(
        campaign=campaign, user__username__in=names[::10]
    ).select_related("campaign"):
        member_quarantine(
            member=member, reason="below the bar", figures={"gold_checks": 5}, by=admin
        )
    client = Client()
    client.force_login(admin)
    return campaign, admin, names, client


def _shown(response) -> list[str]:
    return re.findall(r'<tr data-username="([^"]+)"', response.content.decode())


def _link(response, testid: str) -> str | None:
    found = re.search(rf'<a href="([^"]*)"[^>]*data-testid="{testid}"', response.content.decode())
    return unescape(found.group(1)) if found else None


def _page_url(campaign, query: str | None) -> str:
    return reverse("campaign-members", args=[campaign.pk]) + (query or "")


def test_a_page_of_100_among_300_members_reads_a_bounded_number_of_queries(
    django_assert_max_num_queries,
):
    campaign, _admin, names, client = _campaign_of(300)
    everyone = ["aaa-admin", *names]
    with django_assert_max_num_queries(12):
        first = client.get(_page_url(campaign, None))
    assert first.status_code == 200
    assert _shown(first) == everyone[:100]
    assert _link(first, "members-previous") is None and _link(first, "members-first") is None
    second_url = _link(first, "members-next")
    assert second_url and "after=" in second_url
    # A middle page: the same bound, with the quarantined members' transitions on it.
    with django_assert_max_num_queries(12):
        second = client.get(_page_url(campaign, second_url))
    assert _shown(second) == everyone[100:200]
    assert b"quarantined" in second.content and b"(by aaa-admin)" in second.content
    third = client.get(_page_url(campaign, _link(second, "members-next")))
    assert _shown(third) == everyone[200:300]
    last = client.get(_page_url(campaign, _link(third, "members-next")))
    assert _shown(last) == everyone[300:] and _link(last, "members-next") is None
    back = client.get(_page_url(campaign, _link(last, "members-previous")))
    assert _shown(back) == everyone[200:300]
    assert _link(back, "members-first") == "?"
    assert b"301 members, 100 a page." in first.content


def test_the_user_name_filter_pages_too_and_its_links_keep_it():
    campaign, _admin, names, client = _campaign_of(250)
    response = client.get(_page_url(campaign, "?q=1"))
    wanted = [name for name in names if "1" in name]  # m1.., m.1., m..1
    assert len(wanted) > 100 and _shown(response) == wanted[:100]
    following = client.get(_page_url(campaign, _link(response, "members-next")))
    assert _shown(following) == wanted[100:]
    assert parse_qs(urlsplit(_link(following, "members-previous")).query)["q"] == ["1"]
    assert b'value="1"' in response.content
    none = client.get(_page_url(campaign, "?q=nobody"))
    assert _shown(none) == [] and "No member's user name contains" in none.content.decode()


def _second_page(campaign, client):
    """The query of the second page of the members whose name holds "m" (all of them: the
    admin's, "aaa-admin", too), and that page."""
    first = client.get(_page_url(campaign, "?q=m"))
    query = _link(first, "members-next")
    assert parse_qs(urlsplit(query).query)["q"] == ["m"]
    return query, client.get(_page_url(campaign, query))


def test_an_action_on_a_later_page_comes_back_to_that_page():
    campaign, _admin, names, client = _campaign_of(150)
    query, page = _second_page(campaign, client)
    assert _shown(page) == names[99:]
    quarantined = CampaignMember.objects.get(campaign=campaign, user__username="m110")
    # The row's form posts to a URL carrying the page's query...
    action = reverse("campaign-member", args=[campaign.pk, quarantined.user_id])
    assert f'action="{action}{query}"'.replace("&", "&amp;") in page.content.decode()
    # ... and the redirect goes back to that page, which shows the change.
    restored = client.post(action + query, {"action": "restore"})
    assert restored.status_code == 302 and restored.url == _page_url(campaign, query)
    after = client.get(restored.url)
    assert _shown(after) == names[99:]
    assert "m110 is now active." in after.content.decode()
    removed = client.post(
        reverse("campaign-member", args=[campaign.pk, quarantined.user_id]) + query,
        {"action": "remove"},
    )
    assert removed.url == _page_url(campaign, query)
    assert "m110" not in _shown(client.get(removed.url))
    # The forms that add members come back to the page too.
    UserFactory(username="m999")
    added = client.post(
        reverse("campaign-members-change", args=[campaign.pk]) + query,
        {"action": "add", "username": "m999", "role": "annotator"},
    )
    assert added.url == _page_url(campaign, query)
    assert _shown(client.get(added.url))[-1] == "m999"


def test_a_refused_action_shows_the_same_page_with_the_error():
    campaign, admin, names, client = _campaign_of(150)
    query, _page = _second_page(campaign, client)
    response = client.post(
        reverse("campaign-member", args=[campaign.pk, admin.pk]) + query, {"action": "remove"}
    )
    assert response.status_code == 409
    assert _shown(response) == names[99:]
    assert 'data-testid="members-error"' in response.content.decode()
    refused = client.post(
        reverse("campaign-members-change", args=[campaign.pk]) + query,
        {"action": "add", "username": "nobody", "role": "annotator"},
    )
    assert refused.status_code == 400 and _shown(refused) == names[99:]


def test_an_edited_cursor_answers_400_and_changes_nothing():
    campaign, _admin, _names, client = _campaign_of(5)
    assert client.get(_page_url(campaign, "?after=not-a-cursor")).status_code == 400
    assert client.get(_page_url(campaign, "?q=a%00b")).status_code == 400
    member = CampaignMember.objects.get(campaign=campaign, user__username="m001")
    response = client.post(
        reverse("campaign-member", args=[campaign.pk, member.user_id]) + "?after=%00",
        {"action": "remove"},
    )
    assert response.status_code == 400
    assert CampaignMember.objects.filter(pk=member.pk).exists()
