"""Review 18: the workspace offers no Skip for a qualification check (assignment_skip refuses
it, 409), and a skip posted anyway (a stale page) is answered with the refusal's own message,
the pair still open to answer, not with "Your label was not saved" and a closed pair.

The browser test drives real headless Chromium; the others post as htmx does."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from annotation.models import Assignment, Label, Pair
from annotation.services.assignments import assignment_next, assignments_expire
from annotation.services.members import member_add
from tests.browser_support import log_in_with_session
from tests.factories import CampaignFactory, PairFactory
from tests.reviewers.factories import user_with_role

HTMX = {"HX-Request": "true"}


def _qualifying_campaign():  # noqa: ANN202
    campaign = CampaignFactory(
        open_to_all=False, qualification_gold_count=2, qualification_threshold=0.5
    )
    for _ in range(2):
        PairFactory(campaign=campaign, is_gold=True, gold_preference=1, status=Pair.Status.COMPLETE)
    PairFactory(campaign=campaign)
    return campaign


def _qualifying_member_with_a_check(username: str):  # noqa: ANN202
    campaign = _qualifying_campaign()
    user = user_with_role(username)
    member_add(campaign=campaign, user=user)
    check = assignment_next(campaign=campaign, annotator=user)
    assert check is not None and check.kind == Assignment.Kind.GOLD
    return campaign, user, check


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_a_qualification_check_shows_no_skip_and_k_skips_nothing(
    page, browser_context, live_server, watched
):
    campaign, user, check = _qualifying_member_with_a_check("quentin")
    log_in_with_session(browser_context, live_server, user)

    page.goto(f"{live_server.url}{reverse('campaign-detail', args=[campaign.pk])}")
    page.wait_for_selector(f"#pair[data-assignment='{check.pk}'][data-ready]")

    assert page.locator("[data-skip]").count() == 0
    assert page.locator("#skip-form").count() == 0
    assert page.get_by_test_id("no-skip").is_visible()
    assert page.get_by_role("button", name="Submit").is_visible()
    page.keyboard.press("k")  # the skip shortcut finds no button: nothing is posted
    page.wait_for_timeout(300)
    skip_url = reverse("assignment-skip", args=[check.pk])
    assert not [url for url in watched.requests if url.endswith(skip_url)]
    check.refresh_from_db()
    assert check.status == Assignment.Status.ACTIVE
    assert watched.page_errors == []
    assert page.evaluate("window.__cspViolations") == []


@pytest.mark.django_db
def test_a_skip_posted_from_a_stale_page_says_why_and_leaves_the_check_to_answer():
    campaign, user, check = _qualifying_member_with_a_check("quinta")
    browser = Client()
    browser.force_login(user)

    page = browser.post(reverse("assignment-skip", args=[check.pk]), headers=HTMX)

    html = page.content.decode()
    assert page.status_code == 409
    assert "Not skipped." in html and "A qualification check cannot be skipped" in html
    assert "Your label was not saved" not in html
    # Still theirs to answer: the label form is open (not closed, its Submit there), and
    # offers no Skip this time either.
    assert "data-closed" not in html
    assert ">Submit <kbd>" in html
    assert "data-skip" not in html and 'id="skip-form"' not in html
    shown = -1 if check.swapped else 1
    answered = browser.post(
        reverse("assignment-label", args=[check.pk]), {"preference": str(shown)}, headers=HTMX
    )
    assert answered.status_code == 200
    assert Label.objects.filter(assignment=check).exists()


@pytest.mark.django_db
def test_a_skip_refused_because_the_lease_is_gone_closes_the_pair_as_a_skip(annotator_a):
    campaign = CampaignFactory()
    PairFactory(campaign=campaign)
    assignment = assignment_next(campaign=campaign, annotator=annotator_a)
    assert assignment is not None
    assert assignments_expire(now=timezone.now() + timedelta(seconds=campaign.lease_seconds + 60))
    browser = Client()
    browser.force_login(annotator_a)

    page = browser.post(reverse("assignment-skip", args=[assignment.pk]), headers=HTMX)

    html = page.content.decode()
    assert page.status_code == 409
    assert "Not skipped." in html and "no longer active" in html
    assert "Your label was not saved" not in html
    assert "data-closed" in html and "Go to the next pair" in html


@pytest.mark.django_db
def test_an_active_member_s_gold_check_keeps_its_skip(annotator_a):
    """Gold checks pass as ordinary work for an active member: hiding Skip would tell."""
    campaign = CampaignFactory(gold_share=1.0)
    PairFactory(campaign=campaign, is_gold=True, gold_preference=1, status=Pair.Status.COMPLETE)
    browser = Client()
    browser.force_login(annotator_a)

    html = browser.get(reverse("campaign-detail", args=[campaign.pk])).content.decode()

    assert Assignment.objects.get(annotator=annotator_a).kind == Assignment.Kind.GOLD
    assert "data-skip" in html and 'id="skip-form"' in html
    assert 'data-testid="no-skip"' not in html
