"""Ranking four responses in the workspace with the keyboard only (real Chromium)."""

from __future__ import annotations

import pytest
from django.urls import reverse

from annotation.importers import content_hash
from annotation.models import Assignment, ItemKind, Label
from annotation.rankings import ranking_to_canonical
from tests.browser_support import log_in_with_session, wait_for_next_pair
from tests.factories import CampaignFactory, PairFactory

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True),
]


def ranking_item(campaign, n: int):  # noqa: ANN001, ANN201
    conversation = [{"role": "user", "content": f"Which answer to question {n} is best?"}]
    return PairFactory(
        campaign=campaign,
        conversation=conversation,
        response_a=f"answer {n}.0",
        response_b=f"answer {n}.1",
        responses=[{"content": f"answer {n}.{k}", "model": f"m{k}"} for k in range(4)],
        content_hash=content_hash(conversation, "ranking", str(n)),
    )


def test_an_annotator_ranks_four_responses_with_the_keyboard_only(
    page, browser_context, live_server, annotator_a, watched
):
    campaign = CampaignFactory(item_kind=ItemKind.RANKING)
    ranking_item(campaign, 1)
    ranking_item(campaign, 2)
    log_in_with_session(browser_context, live_server, annotator_a)
    page.goto(live_server.url + reverse("campaign-detail", args=[campaign.pk]))
    page.wait_for_selector("#pair[data-assignment][data-ready] [data-ranking]")
    assert page.locator("[data-rank-card]").count() == 4

    # First item: focus the first response (j), then give each its rank in turn; focus moves
    # on after each digit. Shown 0 -> 2, shown 1 -> 1, shown 2 -> 3, shown 3 -> 1 (a tie).
    first = page.get_attribute("#pair", "data-assignment")
    page.keyboard.press("j")
    assert page.evaluate("document.activeElement.id") == "response-0"
    for key in ("2", "1", "3", "1"):
        page.keyboard.press(key)
    ranks = [page.input_value(f"select[name=rank_{position}]") for position in range(4)]
    assert ranks == ["2", "1", "3", "1"]
    assert page.get_attribute("#response-3", "aria-label") == "Response 4, rank 1"
    # Focus stayed on the last response; back up to the third and make it 4th.
    assert page.evaluate("document.activeElement.id") == "response-3"
    page.keyboard.press("ArrowUp")
    assert page.evaluate("document.activeElement.id") == "response-2"
    page.keyboard.press("4")
    page.keyboard.press("Escape")
    page.keyboard.press("Enter")
    wait_for_next_pair(page, first)
    page.wait_for_selector("#pair[data-ready] [data-ranking]")

    # Second item: nothing focused, so digits rank the unranked responses in turn.
    second = page.get_attribute("#pair", "data-assignment")
    for key in ("4", "3", "2", "1"):
        page.keyboard.press(key)
    page.keyboard.press("Enter")
    page.wait_for_selector("#pair[data-ready] >> text=Nothing left to judge")
    assert watched.page_errors == []

    expected_shown = {
        int(first): [[1, 3], [0], [2]],
        int(second): [[3], [2], [1], [0]],
    }
    labels = Label.objects.filter(annotator=annotator_a)
    assert labels.count() == 2
    for label in labels:
        assignment = Assignment.objects.get(pk=label.assignment_id)
        assert label.ranking == ranking_to_canonical(
            expected_shown[assignment.pk], display_order=assignment.display_order
        )
