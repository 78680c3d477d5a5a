"""The workspace page of a ranking campaign, without JavaScript: one rank select per response,
in the assignment's display order, posted with the label form."""

from __future__ import annotations

import re

import pytest
from django.urls import reverse

from annotation.importers import content_hash
from annotation.models import Assignment, ItemKind, Label
from tests.factories import CampaignFactory, PairFactory


@pytest.fixture
def ranking_page(db, client, annotator_a):
    campaign = CampaignFactory(item_kind=ItemKind.RANKING)
    conversation = [{"role": "user", "content": "Rank the answers."}]
    PairFactory(
        campaign=campaign,
        conversation=conversation,
        responses=[
            {"content": f"answer number {k}", "model": f"hidden-model-{k}"} for k in range(4)
        ],
        content_hash=content_hash(conversation, "ranking", "page"),
    )
    client.force_login(annotator_a)
    response = client.get(reverse("campaign-detail", args=[campaign.pk]))
    assert response.status_code == 200
    assignment = Assignment.objects.get(annotator=annotator_a)
    return client, assignment, response.content.decode()


def test_the_page_shows_each_response_with_its_rank_control_in_display_order(ranking_page):
    _client, assignment, html = ranking_page
    shown = [int(k) for k in re.findall(r"answer number (\d)", html)]
    assert shown == assignment.display_order
    for position in range(4):
        assert f'name="rank_{position}" form="label-form"' in html
    assert "annotation/ranking.js" in html
    assert 'name="preference"' not in html  # no A/B buttons
    # Blind to the models (a name random tokens cannot contain by chance, unlike "m0").
    assert "hidden-model" not in html


def test_posting_ranks_stores_the_canonical_ranking(ranking_page):
    client, assignment, _html = ranking_page
    url = reverse("assignment-label", args=[assignment.pk])
    incomplete = client.post(url, {"rank_0": "1", "rank_1": "2", "rank_2": "", "rank_3": "1"})
    assert incomplete.status_code == 422
    assert "Give every response a rank" in incomplete.content.decode()
    assert not Label.objects.exists()

    response = client.post(url, {"rank_0": "2", "rank_1": "1", "rank_2": "3", "rank_3": "1"})
    assert response.status_code == 302
    order = assignment.display_order
    label = Label.objects.get()
    assert label.ranking == [sorted([order[1], order[3]]), [order[0]], [order[2]]]

    # Back on the pair's own page, the ranks given are selected again (for a change).
    page = client.get(reverse("assignment-page", args=[assignment.pk])).content.decode()
    for position, rank in enumerate(["2", "1", "3", "1"]):
        select = re.search(rf'name="rank_{position}".*?</select>', page, re.S)
        assert select is not None
        assert f'<option value="{rank}" selected>' in select.group(0)


@pytest.mark.parametrize("odd", ["²", "٣", "1" * 5000, "0", "5", "-1", " 1"])
def test_a_rank_other_than_one_to_the_number_of_responses_is_a_form_error(ranking_page, odd):
    client, assignment, _html = ranking_page
    url = reverse("assignment-label", args=[assignment.pk])
    response = client.post(url, {"rank_0": odd, "rank_1": "1", "rank_2": "2", "rank_3": "3"})
    assert response.status_code == 422
    assert "Give every response a rank" in response.content.decode()
    assert not Label.objects.exists()
