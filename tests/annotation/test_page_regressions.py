"""Regressions of the web pages found by crawling the site: links a role cannot follow, ids
that clash or point nowhere, the set-password pages, counts of hidden escalations, the home
page's role notice and the 404 page."""

from __future__ import annotations

import re
from collections import Counter
from html.parser import HTMLParser

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import reverse

from annotation.models import CampaignMember
from annotation.roles import Role
from annotation.services.members import member_add, member_invite
from reviewers.models import Escalation, ExpertSettings
from reviewers.services.escalations import escalation_open
from tests.factories import CampaignFactory, PairFactory, UserFactory
from tests.reviewers.factories import judged_pair, user_with_role

pytestmark = pytest.mark.django_db

ID = re.compile(r'\sid="([^"]+)"')
DESCRIBED_BY = re.compile(r'\saria-describedby="([^"]+)"')


@pytest.fixture(autouse=True)
def private_cache(settings):
    """A cache of this test's own: the dashboard caches its panels."""
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
            "LOCATION": "page-regressions",
        }
    }
    from django.core.cache import cache

    cache.clear()
    yield
    cache.clear()


def _client(user=None) -> Client:
    client = Client()
    if user is not None:
        client.force_login(user, backend="django.contrib.auth.backends.ModelBackend")
    return client


def _html(client: Client, url: str, **extra) -> str:
    response = client.get(url, **extra)
    assert response.status_code == 200, (url, response.status_code)
    return response.content.decode()


def _dangling_descriptions(html: str) -> set[str]:
    ids = set(ID.findall(html))
    referenced = {ref for refs in DESCRIBED_BY.findall(html) for ref in refs.split()}
    return referenced - ids


def _campaign_admin(campaign=None, username="cam"):
    """A user with no site-wide role who is an admin member of the campaign."""
    campaign = campaign or CampaignFactory(open_to_all=False)
    cam = UserFactory(username=username)
    member_add(campaign=campaign, user=cam, role=CampaignMember.Role.ADMIN)
    return campaign, cam


# --- 1: the dashboard's link to the expert queue ------------------------------------------


def test_a_campaign_admin_who_is_no_expert_is_not_offered_the_expert_queue():
    campaign, cam = _campaign_admin()
    client = _client(cam)
    queue = reverse("expert-queue")

    html = _html(client, reverse("campaign-dashboard", args=[campaign.pk]))

    assert f'href="{queue}"' not in html
    assert client.get(queue).status_code == 404  # what the link led to


def test_site_admins_and_expert_members_are_offered_the_expert_queue():
    campaign, _ = _campaign_admin()
    expert_admin = user_with_role("eva", Role.EXPERT)
    member_add(campaign=campaign, user=expert_admin, role=CampaignMember.Role.ADMIN)
    for user in (user_with_role("ada", Role.ADMIN), expert_admin):
        client = _client(user)
        html = _html(client, reverse("campaign-dashboard", args=[campaign.pk]))
        assert f'href="{reverse("expert-queue")}">Open the expert queue' in html
        assert client.get(reverse("expert-queue")).status_code == 200


# --- 2: the members page's forms ----------------------------------------------------------


class _FormsParser(HTMLParser):
    """Per <form> (by order in the page): the ids of its elements and its labels' targets."""

    def __init__(self) -> None:
        super().__init__()
        self.form: int | None = None
        self.count = 0
        self.ids: list[tuple[int | None, str]] = []
        self.label_targets: list[tuple[int | None, str]] = []
        self.buttons: list[dict[str, str | None]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag == "form":
            self.form = self.count
            self.count += 1
        if found.get("id"):
            self.ids.append((self.form, str(found["id"])))
        if tag == "label" and found.get("for"):
            self.label_targets.append((self.form, str(found["for"])))
        if tag == "button":
            self.buttons.append(found)

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self.form = None


def _assert_forms_are_well_labelled(html: str) -> None:
    parsed = _FormsParser()
    parsed.feed(html)
    duplicated = [name for name, n in Counter(i for _, i in parsed.ids).items() if n > 1]
    assert duplicated == []
    where = dict((element_id, form) for form, element_id in parsed.ids)
    assert parsed.label_targets
    for form, target in parsed.label_targets:
        assert where.get(target, "missing") == form, target


def test_the_members_forms_have_ids_of_their_own_and_their_labels_point_inside():
    campaign, cam = _campaign_admin()
    client = _client(cam)

    html = _html(client, reverse("campaign-members", args=[campaign.pk]))

    _assert_forms_are_well_labelled(html)
    for form_id in ("add_username", "bulk_usernames", "group_group", "invite_username"):
        assert f'id="{form_id}"' in html, form_id
    assert 'name="username"' in html and 'name="usernames"' in html  # POST names unchanged

    refused = client.post(
        reverse("campaign-members-change", args=[campaign.pk]),
        {"action": "add", "username": "ghost", "role": "annotator"},
    )
    assert refused.status_code == 400
    _assert_forms_are_well_labelled(refused.content.decode())


def test_the_members_forms_still_add_with_their_usual_names():
    campaign, cam = _campaign_admin()
    UserFactory(username="newcomer")
    added = _client(cam).post(
        reverse("campaign-members-change", args=[campaign.pk]),
        {"action": "add", "username": "newcomer", "role": "annotator"},
    )
    assert added.status_code == 302
    assert CampaignMember.objects.filter(campaign=campaign, user__username="newcomer").exists()


def test_each_member_rows_buttons_name_the_member():
    campaign, cam = _campaign_admin()
    quinn = UserFactory(username="quinn")
    member_add(campaign=campaign, user=quinn)
    CampaignMember.objects.filter(campaign=campaign, user=quinn).update(
        state=CampaignMember.State.QUARANTINED
    )

    parsed = _FormsParser()
    parsed.feed(_html(_client(cam), reverse("campaign-members", args=[campaign.pk])))

    row_buttons = [b for b in parsed.buttons if b.get("value") in {"remove", "admit", "restore"}]
    labels = sorted(str(b.get("aria-label")) for b in row_buttons)
    assert labels == ["Remove cam", "Remove quinn", "Restore quinn"]


# --- 3: aria-describedby points at help text that is on the page ---------------------------


def test_every_described_field_has_its_description_on_the_page(admin_user, expert, tmp_path):
    campaign = CampaignFactory()
    admin = _client(admin_user)
    htmx = {"HTTP_HX_REQUEST": "true"}
    pages = {
        "models": _html(admin, reverse("scoring-campaign-models", args=[campaign.pk])),
        "evaluations": _html(
            admin, reverse("scoring-campaign-evaluations", args=[campaign.pk]), **htmx
        ),
        "dashboard": _html(admin, reverse("campaign-dashboard", args=[campaign.pk])),
        "corpora": _html(admin, reverse("tools-corpora")),
        "settings": _html(_client(expert), reverse("expert-settings")),
    }
    # The review page's decision form, shown to the expert who holds the claim.
    escalation = Escalation.objects.get(pair=judged_pair(campaign, [2, 0, -1]))
    reviewer = _client(expert)
    assert reviewer.post(reverse("escalation-claim", args=[escalation.pk])).status_code in {
        200,
        302,
    }
    pages["review"] = _html(reviewer, reverse("escalation-review", args=[escalation.pk]))
    assert 'name="note"' in pages["review"]

    for name, html in pages.items():
        assert "aria-describedby" in html, name  # the pages do describe fields
        assert _dangling_descriptions(html) == set(), name


def test_forms_shown_again_with_errors_keep_their_descriptions(expert, admin_user):
    page = _client(expert).post(reverse("expert-settings"), {"domains": "x" * 5000})
    html = page.content.decode()
    assert 'aria-invalid="true"' in html
    assert _dangling_descriptions(html) == set()

    campaign = CampaignFactory()
    upload = _client(admin_user).post(
        reverse("scoring-evaluation-set-upload", args=[campaign.pk]),
        {"name": "x"},
        HTTP_HX_REQUEST="true",
    )
    assert upload.status_code == 422  # htmx swaps a 422 (responseHandling), not a 400
    html = upload.content.decode()
    assert 'aria-invalid="true"' in html
    assert _dangling_descriptions(html) == set()


# --- 4: the invited member's set-password pages -------------------------------------------


def test_an_invited_member_sets_a_password_on_the_sites_own_pages():
    campaign, cam = _campaign_admin()
    invitation = member_invite(campaign=campaign, username="newbie", by=cam)
    browser = Client()

    form_page = browser.get(invitation.set_password_path, follow=True)

    assert form_page.status_code == 200 and form_page.context["validlink"]
    html = form_page.content.decode()
    assert "Django site admin" not in html and 'href="/admin/' not in html
    assert "<title>" in html and "Arbiter" in html
    assert 'name="new_password1"' in html
    assert _dangling_descriptions(html) == set()

    set_password_url = form_page.redirect_chain[-1][0]
    mismatch = browser.post(
        set_password_url, {"new_password1": "a-Long-pass-42", "new_password2": "other-42"}
    )
    assert mismatch.status_code == 200
    assert "didn’t match" in mismatch.content.decode() or "match" in mismatch.content.decode()
    assert _dangling_descriptions(mismatch.content.decode()) == set()

    new_password = "a-Long-new-passphrase-42"
    done = browser.post(
        set_password_url,
        {"new_password1": new_password, "new_password2": new_password},
        follow=True,
    )
    assert done.status_code == 200
    done_html = done.content.decode()
    assert "Django site admin" not in done_html and 'href="/admin/' not in done_html
    assert f'href="{reverse("login")}"' in done_html

    member = Client()
    logged_in = member.post(reverse("login"), {"username": "newbie", "password": new_password})
    assert logged_in.status_code == 302
    assert member.get(reverse("home")).context["user"].get_username() == "newbie"


def test_a_used_set_password_link_says_so_on_the_sites_page():
    campaign, cam = _campaign_admin()
    invitation = member_invite(campaign=campaign, username="newbie", by=cam)
    user = get_user_model().objects.get(username="newbie")
    user.set_password("already-set-42")
    user.save()

    page = Client().get(invitation.set_password_path, follow=True)

    assert page.status_code == 200 and page.context["validlink"] is False
    html = page.content.decode()
    assert "Django site admin" not in html and 'href="/admin/' not in html
    assert 'name="new_password1"' not in html


# --- 5: the badge and the domain filter count only what the expert may see -----------------


def _maths_escalation():
    campaign = CampaignFactory()  # the default domain wait
    pair = PairFactory(campaign=campaign, task_category="math")
    escalation = escalation_open(pair=pair, reason=Escalation.Reason.MANUAL, detail="look")
    assert escalation.open_to_all_at is not None
    return escalation


def _badge_and_domains(user) -> tuple[bool, list[str]]:
    html = _html(_client(user), reverse("expert-queue"))
    badge = re.search(r'data-testid="nav-expert-queue">Expert queue(.*?)</a>', html)
    assert badge is not None
    domains = re.findall(r'<option value="([^"]*)"', html)
    return "nav-count" in badge.group(1), domains


def test_the_badge_and_domain_filter_leave_out_escalations_the_expert_cannot_see_yet():
    _maths_escalation()
    coder = user_with_role("coder", Role.EXPERT)
    ExpertSettings.objects.create(user=coder, domains=["code"])
    mathematician = user_with_role("mathematician", Role.EXPERT)
    ExpertSettings.objects.create(user=mathematician, domains=["math"])

    has_badge, domains = _badge_and_domains(coder)
    assert not has_badge
    assert "math" not in domains

    has_badge, domains = _badge_and_domains(mathematician)
    assert has_badge
    assert "math" in domains


# --- 6: the home page's notice of no role --------------------------------------------------


def test_a_campaign_admin_member_is_not_told_they_have_no_role():
    campaign, cam = _campaign_admin()
    html = _html(_client(cam), reverse("home"))
    assert reverse("campaign-members", args=[campaign.pk]) in html
    assert "has no role yet" not in html


def test_a_user_with_no_role_and_no_campaign_is_told_so():
    CampaignFactory(open_to_all=False)
    html = _html(_client(UserFactory(username="nobody")), reverse("home"))
    assert "has no role yet" in html


# --- 7: the 404 page -----------------------------------------------------------------------


def test_a_missing_page_has_the_sites_navigation(annotator_a):
    response = _client(annotator_a).get("/no-such-page/")
    assert response.status_code == 404
    html = response.content.decode()
    assert "<title>Page not found · Arbiter</title>" in html
    assert 'aria-label="Main"' in html and 'class="nav-link"' in html
    assert f'href="{reverse("home")}"' in html


def test_a_missing_page_renders_for_anonymous_visitors():
    response = Client().get("/no-such-page/")
    assert response.status_code == 404
    html = response.content.decode()
    assert "Page not found · Arbiter" in html
    assert 'class="nav-link"' not in html
    assert f'href="{reverse("home")}"' in html
