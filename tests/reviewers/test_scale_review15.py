"""Review 15: the quarantine measure, the rewrite queue and the expert queue page at scale.

A label's quarantine figures read a bounded number of the annotator's labels whatever their
history (and nothing for a measure that is off); the rewrite queue reads its "both bad" pairs,
not every settled pair; the expert queue page runs as many queries for 30 rows held by other
experts as for 3."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from annotation.models import Pair
from annotation.roles import Role
from annotation.services.assignments import assignment_next
from annotation.services.labels import LabelInput, label_submit
from reviewers.models import Escalation
from reviewers.selectors.queue import rewrite_queue
from reviewers.services.member_quality import rolling_figures
from tests.annotation.test_scale_review15 import (  # noqa: F401 - the fixture too
    _tables_left_as_found,
    analyze,
    explain,
    rows_read,
    rows_read_by,
    seed_labels,
    seed_pairs,
)
from tests.factories import CampaignFactory, PairFactory, UserFactory
from tests.reviewers.factories import user_with_role

pytestmark = pytest.mark.django_db


def _submit_rows(history: int) -> int:
    """Rows read by one label's submit, agreement quarantine on (gold accuracy off), for an
    annotator with ``history`` earlier labels on settled pairs."""
    campaign = CampaignFactory(quarantine_min_agreement=0.5, annotators_per_pair=3)
    annotators = [UserFactory() for _ in range(3)]
    seed_pairs(campaign.pk, history)
    seed_labels(campaign.pk, [annotator.pk for annotator in annotators])
    seed_pairs(campaign.pk, 3, start=history, status=Pair.Status.QUEUED, labels_count=0)
    analyze()
    assignment = assignment_next(campaign=campaign, annotator=annotators[0])
    assert assignment is not None
    with CaptureQueriesContext(connection) as queries:
        label_submit(assignment=assignment, data=LabelInput(preference=1))
    return rows_read_by(queries.captured_queries)


def test_a_submit_under_quarantine_does_not_read_the_annotators_whole_history():
    small = _submit_rows(100)
    large = _submit_rows(10_000)
    assert large < 10 * max(small, 1), (small, large)


def _figures_rows(history: int) -> tuple[int, dict]:
    """Rows read by the rolling figures (both measures on) of an annotator with no gold check
    and ``history`` labels, all on pairs still waiting for an expert (none settled)."""
    campaign = CampaignFactory(
        quarantine_min_agreement=0.5, quarantine_min_gold_accuracy=0.5, quarantine_window=20
    )
    annotator = UserFactory()
    seed_pairs(campaign.pk, history, status=Pair.Status.ESCALATED)
    seed_labels(campaign.pk, [annotator.pk])
    analyze()
    with CaptureQueriesContext(connection) as queries:
        figures = rolling_figures(campaign=campaign, annotator_id=annotator.pk)
    return rows_read_by(queries.captured_queries), figures


def test_the_rolling_figures_read_a_bounded_window_of_labels():
    small, figures = _figures_rows(100)
    assert (figures["gold_checks"], figures["agreement_checks"]) == (0, 0)
    large, figures = _figures_rows(5_000)
    assert (figures["gold_checks"], figures["agreement_checks"]) == (0, 0)
    assert large < 10 * max(small, 1), (small, large)


def test_agreement_looks_for_settled_labels_among_the_last_ten_windows_only():
    campaign = CampaignFactory(quarantine_min_agreement=0.5, quarantine_window=2)
    annotator = UserFactory()
    # The annotator's 3 oldest labels are on settled pairs, the 20 after them (ten windows)
    # on pairs still waiting for an expert: the settled ones are out of reach.
    seed_pairs(campaign.pk, 3)
    seed_pairs(campaign.pk, 20, start=3, status=Pair.Status.ESCALATED)
    seed_labels(campaign.pk, [annotator.pk])
    figures = rolling_figures(campaign=campaign, annotator_id=annotator.pk)
    assert (figures["agreement_checks"], figures["agreeing"]) == (0, 0)
    # One label fewer on waiting pairs (19): the newest settled one is within reach again.
    Pair.objects.filter(campaign=campaign, status=Pair.Status.ESCALATED).order_by("-id")[
        :1
    ].get().delete()
    figures = rolling_figures(campaign=campaign, annotator_id=annotator.pk)
    assert (figures["agreement_checks"], figures["agreeing"]) == (1, 1)


def test_a_measure_that_is_off_costs_no_query(django_assert_num_queries):
    campaign = CampaignFactory(quarantine_min_agreement=0.5)  # gold accuracy off
    annotator = UserFactory()
    seed_pairs(campaign.pk, 4, is_gold=True)  # gold checks, answered right
    seed_labels(campaign.pk, [annotator.pk], kind="gold")
    with django_assert_num_queries(1):  # agreement's only
        figures = rolling_figures(campaign=campaign, annotator_id=annotator.pk)
    assert (figures["gold_checks"], figures["gold_accuracy"]) == (0, None)
    campaign.quarantine_min_gold_accuracy = 0.5
    with django_assert_num_queries(2):
        figures = rolling_figures(campaign=campaign, annotator_id=annotator.pk)
    assert (figures["gold_checks"], figures["gold_correct"]) == (4, 4)
    # Gold checks are no agreement checks.
    assert figures["agreement_checks"] == 0


def _rewrite_queue_rows(settled: int) -> int:
    campaign = CampaignFactory(allow_rewrites=True, both_bad_route="rewrite")
    seed_pairs(campaign.pk, 20, consensus_outcome="both_bad")  # the queue
    seed_pairs(campaign.pk, settled, start=100)  # ordinary settled pairs
    analyze()
    queue = rewrite_queue(campaign=campaign)
    assert len(list(queue)) == 20
    sql, params = queue.query.sql_with_params()
    return rows_read(explain(sql, params))


def test_the_rewrite_queue_reads_its_both_bad_pairs_not_every_settled_pair():
    small = _rewrite_queue_rows(500)
    large = _rewrite_queue_rows(20_000)
    assert large < 10 * max(small, 1), (small, large)


def test_the_expert_queue_page_asks_the_viewers_roles_once(client, django_assert_max_num_queries):
    campaign = CampaignFactory()  # open to all
    viewer = user_with_role("viewer", Role.EXPERT)
    holder = user_with_role("holder", Role.EXPERT)
    # A session's user, as browsers sign in: no roles remembered with it.
    client.force_login(viewer, backend="django.contrib.auth.backends.ModelBackend")
    soon = timezone.now() + timedelta(hours=1)
    for n in (3, 30):
        Escalation.objects.all().delete()
        for pair in PairFactory.create_batch(n, campaign=campaign, status=Pair.Status.ESCALATED):
            Escalation.objects.create(
                campaign=campaign,
                pair=pair,
                reason="disagreement",
                claimed_by=holder,
                claim_expires_at=soon,
            )
        # 13: the page with its held-back note (the viewer's domains, one count); the
        # viewer's roles are read once (RolesOncePerRequestMiddleware).
        with django_assert_max_num_queries(13):
            response = client.get("/experts/queue/")
        assert response.status_code == 200
        assert response.content.count(b"another expert") == n


def test_the_escalations_api_asks_a_session_viewers_roles_once(client):
    """The API called from a signed-in browser session (no roles remembered with its user)
    read the viewer's roles once per escalation another expert held."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    campaign = CampaignFactory()
    viewer = user_with_role("viewer", Role.EXPERT)
    holder = user_with_role("holder", Role.EXPERT)
    client.force_login(viewer, backend="django.contrib.auth.backends.ModelBackend")
    soon = timezone.now() + timedelta(hours=1)
    counts = {}
    for n in (3, 30):
        Escalation.objects.all().delete()
        for pair in PairFactory.create_batch(n, campaign=campaign, status=Pair.Status.ESCALATED):
            Escalation.objects.create(
                campaign=campaign,
                pair=pair,
                reason="disagreement",
                claimed_by=holder,
                claim_expires_at=soon,
            )
        with CaptureQueriesContext(connection) as queries:
            response = client.get("/api/escalations")
        assert response.status_code == 200
        assert [row["claim"]["holder"] for row in response.json()] == ["another expert"] * n
        counts[n] = len(queries.captured_queries)
    assert counts[30] == counts[3]
