"""Pinned query counts on the annotator's hot path: a change that adds a query fails here.

As Zulip pins them (``assert_database_query_count``): each count is exact, and includes the
hot path's server-side prepared statements (``annotation.prepared_reads`` logs them into
Django's query log while a capture runs). Raise a pin only with a reason in the commit.
"""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from rest_framework.test import APIClient

from annotation.models import Assignment, Label
from annotation.roles import Role
from annotation.services.members import member_add
from annotation.services.users import user_create
from tests.factories import CampaignFactory, PairFactory

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.skipif(connection.vendor != "postgresql", reason="pinned on PostgreSQL"),
]

# Queries per API call, token read included (the token cache is off in these tests).
NEXT_QUERIES = 5
LABEL_QUERIES = 6  # the annotators per pair read again under the pair's row lock
LABEL_CLOSING_THE_PAIR_QUERIES = 8  # the label that completes a pair runs consensus


@pytest.fixture
def token_client(settings):
    # Every call reads its token, as the first call in each few seconds does.
    settings.ARBITER = {**settings.ARBITER, "TOKEN_CACHE_SECONDS": 0}

    def client_for(username: str) -> APIClient:
        _user, _password, token = user_create(username=username, role=Role.ANNOTATOR)
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
        return client

    return client_for


def prepared(queries) -> list[str]:  # noqa: ANN001
    return [query["sql"] for query in queries if query["sql"].endswith("/* prepared */")]


def test_next_and_label_take_their_pinned_queries_prepared_statements_included(
    token_client, django_assert_num_queries
):
    campaign = CampaignFactory(annotators_per_pair=3)
    PairFactory.create_batch(2, campaign=campaign)
    client = token_client("pinned")
    with django_assert_num_queries(NEXT_QUERIES) as next_queries:
        response = client.post(f"/api/campaigns/{campaign.pk}/next")
    assert response.status_code == 200
    assert prepared(next_queries.captured_queries), "the prepared statements were not counted"
    assignment_id = response.json()["assignment"]["id"]
    with django_assert_num_queries(LABEL_QUERIES) as label_queries:
        response = client.post(
            f"/api/assignments/{assignment_id}/label", {"preference": 1}, format="json"
        )
    assert response.status_code == 201
    assert prepared(label_queries.captured_queries)
    assert Label.objects.filter(assignment_id=assignment_id).exists()


def test_the_label_that_completes_a_pair_runs_consensus_in_its_pinned_queries(
    token_client, django_assert_num_queries
):
    campaign = CampaignFactory(annotators_per_pair=3)
    pair = PairFactory(campaign=campaign)
    clients = [token_client(f"voter-{n}") for n in range(3)]
    assignment_ids = [
        client.post(f"/api/campaigns/{campaign.pk}/next").json()["assignment"]["id"]
        for client in clients
    ]
    for client, assignment_id in zip(clients[:2], assignment_ids[:2], strict=True):
        client.post(f"/api/assignments/{assignment_id}/label", {"preference": 1}, format="json")
    with django_assert_num_queries(LABEL_CLOSING_THE_PAIR_QUERIES):
        response = clients[2].post(
            f"/api/assignments/{assignment_ids[2]}/label", {"preference": 1}, format="json"
        )
    assert response.status_code == 201
    pair.refresh_from_db()
    assert pair.consensus_preference is not None
    assert Assignment.objects.filter(pair=pair, status=Assignment.Status.SUBMITTED).count() == 3


def test_a_member_of_a_members_only_campaign_takes_the_same_pinned_queries(
    token_client, django_assert_num_queries
):
    # The membership is read in the statement that reads the campaign (next) or the
    # assignment (label): members-only campaigns cost no extra query.
    campaign = CampaignFactory(annotators_per_pair=3, open_to_all=False)
    PairFactory.create_batch(2, campaign=campaign)
    client = token_client("member")
    member_add(campaign=campaign, user=get_user_model().objects.get(username="member"))
    with django_assert_num_queries(NEXT_QUERIES):
        response = client.post(f"/api/campaigns/{campaign.pk}/next")
    assert response.status_code == 200
    assignment_id = response.json()["assignment"]["id"]
    with django_assert_num_queries(LABEL_QUERIES):
        response = client.post(
            f"/api/assignments/{assignment_id}/label", {"preference": 1}, format="json"
        )
    assert response.status_code == 201
    outsider = token_client("outsider")
    assert outsider.post(f"/api/campaigns/{campaign.pk}/next").status_code == 404
