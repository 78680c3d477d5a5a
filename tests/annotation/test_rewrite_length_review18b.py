"""Review 18b: the label API and the expert's rewrite API bound a rewrite's text at twice its
limit (a CRLF line break counts as one: the service counts), but a text over that bound was
refused as "no more than 100000 characters", and their schema's only word on the length was
maxLength 100000; the limit is 50,000, as the service's own refusal says. Both now say so."""

from __future__ import annotations

import pytest
from drf_spectacular.generators import SchemaGenerator

from annotation.models import BothBadRoute, Label, Outcome, Pair, Rewrite
from annotation.services.assignments import assignment_next
from annotation.services.rewrites import REWRITE_MAX_CHARS
from tests.conftest import api_client_for
from tests.factories import CampaignFactory, PairFactory

pytestmark = pytest.mark.django_db

LIMIT_SAID = f"at most {REWRITE_MAX_CHARS:,} characters"
PAST_THE_BOUND = "x" * (2 * REWRITE_MAX_CHARS + 1)


def test_the_label_api_names_the_rewrite_limit_for_a_text_past_its_bound(annotator_a):
    campaign = CampaignFactory(allow_rewrites=True)
    PairFactory(campaign=campaign)
    assignment = assignment_next(campaign=campaign, annotator=annotator_a)
    assert assignment is not None

    response = api_client_for(annotator_a).post(
        f"/api/assignments/{assignment.pk}/label",
        {"preference": 1, "rewrite": {"text": PAST_THE_BOUND, "based_on": "a"}},
        format="json",
    )

    assert response.status_code == 400
    assert LIMIT_SAID in response.content.decode()
    assert str(2 * REWRITE_MAX_CHARS) not in response.content.decode()
    assert not Label.objects.exists()


def test_the_expert_rewrite_api_names_the_limit_for_a_text_past_its_bound(expert):
    campaign = CampaignFactory(allow_rewrites=True, both_bad_route=BothBadRoute.REWRITE)
    pair = PairFactory(
        campaign=campaign,
        status=Pair.Status.COMPLETE,
        consensus_preference=0,
        consensus_outcome=Outcome.BOTH_BAD,
    )

    response = api_client_for(expert).post(
        f"/api/pairs/{pair.pk}/rewrites",
        {"text": PAST_THE_BOUND, "based_on": "a"},
        format="json",
    )

    assert response.status_code == 400
    assert LIMIT_SAID in response.content.decode()
    assert str(2 * REWRITE_MAX_CHARS) not in response.content.decode()
    assert not Rewrite.objects.exists()


def test_the_schema_says_the_rewrite_limit_and_how_it_is_counted():
    components = SchemaGenerator().get_schema(request=None, public=True)["components"]["schemas"]
    for component in ("RewriteIn", "PairRewriteApiInput"):
        text = components[component]["properties"]["text"]
        assert LIMIT_SAID in text["description"].lower(), component
        assert "line break" in text["description"], component
