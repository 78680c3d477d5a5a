"""The expert's flow in headless Chromium: the navigation counts open escalations, opening one
from the queue claims it, verdict keys as in the workspace, and "Next escalation" (n) after a
decision claims and opens the next one."""

from __future__ import annotations

import pytest

from annotation.models import Pair
from annotation.roles import Role
from reviewers.models import Escalation
from tests.browser_support import log_in_with_session
from tests.factories import CampaignFactory
from tests.reviewers.factories import judged_pair, user_with_role

pytestmark = pytest.mark.browser


def test_an_expert_decides_two_escalations_from_the_keyboard(
    page, browser_context, live_server, watched
):
    expert = user_with_role("erin", Role.EXPERT)
    log_in_with_session(browser_context, live_server, expert)
    campaign = CampaignFactory()
    first = Escalation.objects.get(pair=judged_pair(campaign, [2, 0, -2]))
    second = Escalation.objects.get(pair=judged_pair(campaign, [1, 0, -1]))

    page.goto(f"{live_server.url}/experts/queue/")
    assert page.get_by_test_id("nav-expert-queue").inner_text() == "Expert queue 2"
    page.get_by_role("button", name=f"Pair {first.pair_id}").click()  # opens and claims
    page.get_by_role("button", name="Record final decision").wait_for()
    first.refresh_from_db()
    assert first.claimed_by == expert

    page.keyboard.press("4")  # the fourth verdict: B better
    assert page.is_checked("input[name=verdict][value='-1']")
    page.keyboard.press("r")
    page.keyboard.type("B computes it right.")
    page.keyboard.press("Control+Enter")
    page.get_by_text("This decision is final").wait_for()
    assert page.get_by_test_id("nav-expert-queue").inner_text() == "Expert queue 2"  # not reloaded
    pair = Pair.objects.get(pk=first.pair_id)
    assert (pair.status, pair.consensus_preference) == (Pair.Status.RESOLVED, -1)

    page.keyboard.press("n")
    page.wait_for_url(f"**/escalations/{second.pk}/")
    page.get_by_role("button", name="Record final decision").wait_for()  # claimed for me
    assert page.get_by_test_id("nav-expert-queue").inner_text() == "Expert queue 1"
    page.keyboard.press("5")  # B much better
    page.keyboard.press("r")
    page.keyboard.type("Clearly B.")
    page.keyboard.press("Escape")
    page.keyboard.press("Enter")
    page.get_by_text("This decision is final").wait_for()

    page.keyboard.press("n")  # nothing left: back to the queue, which says so
    page.wait_for_url("**/experts/queue/")
    assert page.get_by_text("No open escalation is waiting for you").is_visible()
    assert page.get_by_test_id("nav-expert-queue").inner_text() == "Expert queue"
    assert page.evaluate("window.__cspViolations") == []
    assert watched.page_errors == []
