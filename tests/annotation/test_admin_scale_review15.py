"""The Django admin on campaign-sized tables: no form lists a whole table, changelists run a
fixed number of queries whatever the page's rows, and an unfiltered changelist of a large
table counts from PostgreSQL's statistics instead of COUNT(*) over every row."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from annotation.models import Assignment, Evidence, Pair
from annotation.services.members import member_add, member_quarantine
from core.admin_paging import EstimatedCountPaginator
from reviewers.models import Escalation
from tests.factories import CampaignFactory, PairFactory, UserFactory
from tests.reviewers.factories import add_label

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client(client):
    client.force_login(UserFactory(is_staff=True, is_superuser=True))
    return client


def _get(client, url: str):
    with CaptureQueriesContext(connection) as queries:
        response = client.get(url)
    assert response.status_code == 200, url
    return response, [query["sql"] for query in queries.captured_queries]


def test_evidence_and_code_run_forms_do_not_list_assignments_or_labels(admin_client):
    campaign = CampaignFactory()
    annotator = UserFactory()
    for pair in PairFactory.create_batch(30, campaign=campaign):
        add_label(pair, annotator, 1)
    evidence = Evidence.objects.create(
        assignment=Assignment.objects.first(), kind=Evidence.Kind.SEARCH, payload={}
    )
    for url in (
        "/admin/annotation/evidence/add/",
        f"/admin/annotation/evidence/{evidence.pk}/change/",
        "/admin/annotation/coderun/add/",
    ):
        response, _ = _get(admin_client, url)
        # A raw id box, not one option per assignment or label (kind and status choices only).
        assert response.content.count(b"<option") < 10, url


def _claimed_escalations(campaign, n: int) -> None:
    soon = timezone.now() + timedelta(hours=1)
    for pair in PairFactory.create_batch(n, campaign=campaign, status=Pair.Status.ESCALATED):
        Escalation.objects.create(
            campaign=campaign,
            pair=pair,
            reason="disagreement",
            claimed_by=UserFactory(),
            claim_expires_at=soon,
        )


def test_changelists_run_the_same_queries_for_5_and_40_rows(admin_client):
    campaign = CampaignFactory(open_to_all=False)
    counts = {}
    for n in (5, 40):
        Escalation.objects.all().delete()
        _claimed_escalations(campaign, n)
        for _ in range(n // 5):  # transitions with a "by" and a member
            user = UserFactory()
            member_quarantine(
                member=member_add(campaign=campaign, user=user), reason="test", by=UserFactory()
            )
        counts[n] = (
            len(_get(admin_client, "/admin/reviewers/escalation/")[1]),
            len(_get(admin_client, "/admin/annotation/membertransition/")[1]),
        )
    assert counts[40] == counts[5]


def _whole_table_counts(queries: list[str]) -> list[str]:
    return [sql for sql in queries if sql.startswith("SELECT COUNT(*)") and "WHERE" not in sql]


@pytest.mark.skipif("connection.vendor != 'postgresql'", reason="PostgreSQL's statistics")
def test_an_unfiltered_large_changelist_counts_from_the_statistics(admin_client, monkeypatch):
    campaign = CampaignFactory()
    PairFactory.create_batch(12, campaign=campaign)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE annotation_pair")
    # Small: counted exactly.
    response, queries = _get(admin_client, "/admin/annotation/pair/")
    assert _whole_table_counts(queries) and b"12 pairs" in response.content
    # "Large" (the threshold lowered for the test): the statistics' estimate.
    monkeypatch.setattr(EstimatedCountPaginator, "exact_below", 5)
    response, queries = _get(admin_client, "/admin/annotation/pair/")
    assert not _whole_table_counts(queries)
    assert b"12 pairs" in response.content  # ANALYZE saw every row of this small table
    # A filtered list is counted exactly, as before.
    Pair.objects.filter(pk__in=Pair.objects.order_by("id").values("pk")[:3]).update(is_gold=True)
    response, queries = _get(admin_client, "/admin/annotation/pair/?is_gold__exact=1")
    assert response.context["cl"].result_count == 3
    assert any(sql.startswith("SELECT COUNT(*)") and "WHERE" in sql for sql in queries)
