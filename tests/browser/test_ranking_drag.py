"""Ranking by dragging: responses take ranks 1..K in their new order (real Chromium)."""

from __future__ import annotations

import pytest
from django.urls import reverse

from annotation.models import Assignment, ItemKind, Label
from annotation.rankings import ranking_to_canonical
from tests.browser.test_ranking_keyboard import ranking_item
from tests.browser_support import log_in_with_session
from tests.factories import CampaignFactory

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True),
]


def test_dragging_a_response_to_the_top_ranks_every_response_in_order(
    page, browser_context, live_server, annotator_a, watched
):
    campaign = CampaignFactory(item_kind=ItemKind.RANKING)
    ranking_item(campaign, 1)
    log_in_with_session(browser_context, live_server, annotator_a)
    page.goto(live_server.url + reverse("campaign-detail", args=[campaign.pk]))
    page.wait_for_selector("#pair[data-assignment][data-ready] [data-ranking]")

    # Drop the fourth response on the upper half of the first: it goes first.
    page.drag_and_drop("#response-3", "#response-0", target_position={"x": 20, "y": 5})
    ranks = [page.input_value(f"select[name=rank_{position}]") for position in range(4)]
    assert ranks == ["2", "3", "4", "1"]
    cards = page.eval_on_selector_all("[data-rank-card]", "cards => cards.map(c => c.id)")
    assert cards == ["response-3", "response-0", "response-1", "response-2"]
    page.keyboard.press("Enter")
    page.wait_for_selector("#pair[data-ready] >> text=Nothing left to judge")
    assert watched.page_errors == []

    label = Label.objects.get(annotator=annotator_a)
    assignment = Assignment.objects.get(pk=label.assignment_id)
    assert label.ranking == ranking_to_canonical(
        [[3], [0], [1], [2]], display_order=assignment.display_order
    )
