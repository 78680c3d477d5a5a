"""An annotator removed from a members-only campaign while a pair is on their screen: the
submit answers 404, and the page says to reload instead of "try again" (which the server
refuses every time)."""

from __future__ import annotations

import pytest
from django.urls import reverse

from annotation.models import Label
from annotation.services.members import member_add, member_remove
from tests.browser_support import log_in_with_session
from tests.factories import CampaignFactory, PairFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_a_submit_after_removal_says_to_reload_not_to_try_again(
    browser_context, live_server, annotator_a, watched
):
    campaign = CampaignFactory(open_to_all=False)
    PairFactory(campaign=campaign)
    member_add(campaign=campaign, user=annotator_a)
    log_in_with_session(browser_context, live_server, annotator_a)
    page = browser_context.new_page()
    page.goto(f"{live_server.url}{reverse('campaign-detail', args=[campaign.pk])}")
    page.wait_for_selector("#pair[data-assignment][data-ready]")

    member_remove(campaign=campaign, user_id=annotator_a.pk)
    page.keyboard.press("1")
    with page.expect_response(lambda response: response.request.method == "POST") as posted:
        page.keyboard.press("Enter")
    assert posted.value.status == 404
    alert = page.wait_for_selector("[data-client-error]")
    text = alert.inner_text()
    assert "Reload the page" in text and "try again" not in text
    assert not Label.objects.exists()
