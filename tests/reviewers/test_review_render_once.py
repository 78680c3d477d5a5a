"""The review page renders each Markdown text of the pair once per request, and shows it once."""

from __future__ import annotations

import pytest
from django.urls import reverse

from annotation.models import Pair
from reviewers.models import Escalation
from tests.factories import PairFactory, ranking_item

pytestmark = pytest.mark.django_db


def _escalated(pair: Pair) -> Escalation:
    pair.status = Pair.Status.ESCALATED
    pair.save(update_fields=["status"])
    return Escalation.objects.create(campaign=pair.campaign, pair=pair, reason="disagreement")


def test_the_review_page_renders_each_response_once(client, expert, campaign, markdown_sources):
    campaign.guidelines = "Campaign rule **qp-guide**"
    campaign.save(update_fields=["guidelines"])
    pair = PairFactory(
        campaign=campaign,
        conversation=[{"role": "user", "content": "Prompt qp-prompt?"}],
        response_a="Answer *qp-alpha*",
        response_b="Answer *qp-beta*",
        annotation_guideline="Pair rule qp-pairrule",
    )
    escalation = _escalated(pair)
    client.force_login(expert)
    html = client.get(reverse("escalation-review", args=[escalation.pk])).content.decode()
    assert html.count("Answer <em>qp-alpha</em>") == 1
    assert html.count("Answer <em>qp-beta</em>") == 1
    assert dict(markdown_sources) == {
        "Prompt qp-prompt?": 1,
        "Answer *qp-alpha*": 1,
        "Answer *qp-beta*": 1,
        "Pair rule qp-pairrule": 1,
        "Campaign rule **qp-guide**": 1,
    }


def test_a_ranking_items_responses_are_each_rendered_once(
    client, expert, campaign, markdown_sources
):
    texts = [f"Ranked *qp-{k}*" for k in range(4)]
    escalation = _escalated(ranking_item(campaign, texts=texts))
    client.force_login(expert)
    html = client.get(reverse("escalation-review", args=[escalation.pk])).content.decode()
    for k in range(4):
        assert html.count(f"Ranked <em>qp-{k}</em>") == 1
    assert {text: markdown_sources[text] for text in texts} == dict.fromkeys(texts, 1)


def test_the_decision_panel_fragment_renders_no_markdown(
    client, expert, campaign, markdown_sources
):
    escalation = _escalated(PairFactory(campaign=campaign))
    client.force_login(expert)
    fragment = client.get(
        reverse("escalation-review", args=[escalation.pk]), HTTP_HX_REQUEST="true"
    ).content.decode()
    assert 'id="decision-panel"' in fragment and "<html" not in fragment
    assert sum(markdown_sources.values()) == 0
