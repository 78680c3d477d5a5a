"""Pinned query counts for verdicts: consensus on a disputed pair, claim and adjudication.

Exact counts, prepared statements included (see tests/annotation/test_query_counts.py).
"""

from __future__ import annotations

import pytest
from django.db import connection
from django.urls import reverse

from annotation.models import Pair
from reviewers.models import Adjudication, Escalation
from reviewers.services.consensus import pair_consensus_update
from tests.conftest import api_client_for
from tests.reviewers.factories import judged_pair

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.skipif(connection.vendor != "postgresql", reason="pinned on PostgreSQL"),
]

CONSENSUS_QUERIES = 7  # recomputing a disputed pair's consensus (escalation already open)
CLAIM_QUERIES = 5
ADJUDICATE_QUERIES = 11


def test_recomputing_consensus_takes_its_pinned_queries(campaign, django_assert_num_queries):
    pair = judged_pair(campaign, [2, 0, -1])
    assert Escalation.objects.filter(pair=pair, status=Escalation.Status.OPEN).exists()
    with django_assert_num_queries(CONSENSUS_QUERIES):
        pair_consensus_update(pair=Pair.objects.get(pk=pair.pk))
    assert Escalation.objects.filter(pair=pair).count() == 1


def test_claim_and_adjudication_take_their_pinned_queries(
    campaign, expert, django_assert_num_queries
):
    escalation = Escalation.objects.get(pair=judged_pair(campaign, [2, 0, -1]))
    client = api_client_for(expert)
    with django_assert_num_queries(CLAIM_QUERIES):
        claimed = client.post(reverse("api-escalation-claim", args=[escalation.pk]))
    assert claimed.status_code == 200
    with django_assert_num_queries(ADJUDICATE_QUERIES):
        decided = client.post(
            reverse("api-escalation-adjudicate", args=[escalation.pk]),
            {"decision": "preference", "preference": 1, "note": "A answers."},
            format="json",
        )
    assert decided.status_code == 201
    assert Adjudication.objects.filter(escalation=escalation).count() == 1
