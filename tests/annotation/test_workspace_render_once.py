"""The annotator workspace renders each Markdown text of the pair once per request, and a
ranking item (whose workspace shows its K responses, never A and B) neither renders its
mirrored response A and B nor diffs them."""

from __future__ import annotations

import difflib
from collections import Counter

import pytest
from django.urls import reverse

from annotation.models import Assignment, ItemKind
from tests.factories import CampaignFactory, PairFactory, ranking_item

pytestmark = pytest.mark.django_db

TEXTS = [f"Ranked *ws-{k}*" for k in range(4)]


@pytest.fixture
def diffs(monkeypatch) -> list[int]:
    """One entry per diff computed (the standard library's matcher, which render_diff
    runs over the two responses' lines), the real matcher still running."""
    computed: list[int] = []
    original = difflib.SequenceMatcher.get_opcodes

    def counting(self):  # noqa: ANN001, ANN202 - difflib's signature
        computed.append(1)
        return original(self)

    monkeypatch.setattr(difflib.SequenceMatcher, "get_opcodes", counting)
    return computed


@pytest.fixture
def ranking_campaign():
    campaign = CampaignFactory(item_kind=ItemKind.RANKING, guidelines="Campaign rule **ws-guide**")
    ranking_item(campaign, texts=TEXTS, annotation_guideline="Pair rule ws-pairrule")
    return campaign


def _rendered_texts(sources: Counter[str]) -> dict[str, int]:
    return {text: sources[text] for text in TEXTS}


def test_a_ranking_item_renders_each_response_once_and_no_diff(
    client, annotator_a, ranking_campaign, markdown_sources, diffs
):
    client.force_login(annotator_a)
    page = client.get(reverse("campaign-detail", args=[ranking_campaign.pk]))
    assert page.status_code == 200
    html = page.content.decode()
    for k in range(4):
        assert html.count(f"Ranked <em>ws-{k}</em>") == 1
    assert 'name="rank_0"' in html and 'id="response-a"' not in html
    assert _rendered_texts(markdown_sources) == dict.fromkeys(TEXTS, 1)
    assert markdown_sources["Pair rule ws-pairrule"] == 1
    assert markdown_sources["Campaign rule **ws-guide**"] == 1
    assert diffs == []


def test_the_ranking_pair_fragment_renders_each_response_once(
    client, annotator_a, ranking_campaign, markdown_sources, diffs
):
    client.force_login(annotator_a)
    fragment = client.get(
        reverse("campaign-detail", args=[ranking_campaign.pk]), HTTP_HX_REQUEST="true"
    ).content.decode()
    assert 'id="pair"' in fragment and "<html" not in fragment
    for k in range(4):
        assert fragment.count(f"Ranked <em>ws-{k}</em>") == 1
    assert _rendered_texts(markdown_sources) == dict.fromkeys(TEXTS, 1)
    # The fragment shows no guidelines panel, so the campaign's guidelines are not rendered.
    assert markdown_sources["Campaign rule **ws-guide**"] == 0
    assert diffs == []


def test_a_refused_ranking_fragment_renders_each_response_once(
    client, annotator_a, ranking_campaign, markdown_sources, diffs
):
    client.force_login(annotator_a)
    client.get(reverse("campaign-detail", args=[ranking_campaign.pk]))
    assignment = Assignment.objects.get(annotator=annotator_a)
    markdown_sources.clear()
    # Ranks missing: the same pair again, with the form's error, as an htmx fragment.
    refused = client.post(
        reverse("assignment-label", args=[assignment.pk]),
        {"rank_0": "1", "rank_1": "2", "rank_2": "", "rank_3": "1"},
        HTTP_HX_REQUEST="true",
    )
    assert refused.status_code == 422
    assert "Give every response a rank" in refused.content.decode()
    assert _rendered_texts(markdown_sources) == dict.fromkeys(TEXTS, 1)
    assert diffs == []


def test_an_ab_pair_renders_each_response_once_and_its_diff(
    client, annotator_a, markdown_sources, diffs
):
    campaign = CampaignFactory()
    PairFactory(
        campaign=campaign,
        conversation=[{"role": "user", "content": "Prompt ws-prompt?"}],
        response_a="Answer *ws-alpha*",
        response_b="Answer *ws-beta*",
    )
    client.force_login(annotator_a)
    html = client.get(reverse("campaign-detail", args=[campaign.pk])).content.decode()
    assert html.count("Answer <em>ws-alpha</em>") == 1
    assert html.count("Answer <em>ws-beta</em>") == 1
    assert markdown_sources["Answer *ws-alpha*"] == 1
    assert markdown_sources["Answer *ws-beta*"] == 1
    assert markdown_sources["Prompt ws-prompt?"] == 1
    assert 'id="pair-diff"' in html and diffs  # the A/B workspace still offers its diff
