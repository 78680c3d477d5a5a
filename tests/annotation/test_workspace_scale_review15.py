"""Review 15: the workspace and the progress API read as many rows whatever the history.

Every pair the workspace showed counted all of the annotator's assignments in the campaign and
looked for the label they may still change among all of them; every call of the progress API
counted all of the campaign's labels. Each scale test seeds a small and a large history
(INSERT ... SELECT generate_series, then ANALYZE) and measures the rows the request's queries
read with EXPLAIN ANALYZE: that must not grow with the history. The counts stay exact."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest
import time_machine
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from annotation import selectors
from annotation.models import Assignment, Label, Pair
from annotation.roles import Role
from annotation.selectors import annotator_counts, campaign_pair_counts_forget
from annotation.services.assignments import assignment_next
from annotation.services.labels import LabelInput, label_submit
from tests.conftest import api_client_for
from tests.factories import CampaignFactory, PairFactory, UserFactory
from tests.reviewers.factories import user_with_role

pytestmark = pytest.mark.django_db

HTMX = {"HX-Request": "true"}
BACKEND = "django.contrib.auth.backends.ModelBackend"
# Pairs carry long texts (conversations, responses): rows as wide as real ones, so that the
# planner weighs a table scan as it would in production.
_PAD = "x" * 400


def seed_pairs(campaign_id: int, n: int, *, start: int = 0, status: str = "complete") -> None:
    """``n`` pairs of the campaign in one statement."""
    labelled = 0 if status == Pair.Status.QUEUED else 3
    with connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO annotation_pair (
                conversation, response_a, response_b, source, external_id, content_hash,
                task_category, objectivity, controversiality, desired_attributes,
                annotation_guideline, is_gold, status, priority, priority_reason, slots_taken,
                slot_cap, labels_count, provenance, curation, created_at, campaign_id,
                consensus_outcome, consensus_preference
            )
            SELECT
                jsonb_build_array(
                    jsonb_build_object('role', 'user', 'content', 'q' || g || %(pad)s)
                ),
                'a' || g || %(pad)s, 'b' || g || %(pad)s, '', '', md5(%(tag)s || g),
                '', '', '', '', '', false, %(status)s, 0, '', %(labelled)s, 3, %(labelled)s,
                CASE WHEN %(labelled)s > 0 THEN 'majority' ELSE '' END, '', now(),
                %(campaign)s, 'preference', 1
            FROM generate_series(%(start)s + 1, %(start)s + %(n)s) AS g
            """,
            {
                "pad": _PAD,
                "tag": f"c{campaign_id}-",
                "status": status,
                "labelled": labelled,
                "campaign": campaign_id,
                "start": start,
                "n": n,
            },
        )


def seed_labels(campaign_id: int, annotator_ids: list[int]) -> None:
    """A submitted assignment and its label, two days old (nothing to change any more), for
    each complete pair of the campaign and each annotator, the annotators interleaved."""
    with connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO annotation_assignment (status, kind, swapped, leased_at,
                lease_expires_at, finished_at, model_view_shown, annotator_id, campaign_id,
                pair_id)
            SELECT 'submitted', 'regular', false, now() - interval '2 days',
                   now() - interval '2 days', now() - interval '2 days', false, u.annotator,
                   %(campaign)s, p.id
            FROM annotation_pair p CROSS JOIN unnest(%(annotators)s::int[]) AS u(annotator)
            WHERE p.campaign_id = %(campaign)s AND p.status = 'complete'
            ORDER BY p.id, u.annotator
            """,
            {"annotators": annotator_ids, "campaign": campaign_id},
        )
        cursor.execute(
            """
            INSERT INTO annotation_label (preference, rationale, flag_unsafe, flag_broken,
                flag_cannot_judge, is_retest, is_gold_check, shown_first, created_at,
                annotator_id, assignment_id, campaign_id, pair_id, set_aside,
                aspect_ratings, outcome)
            SELECT 1, '', false, false, false, false, false, 'a', now() - interval '2 days',
                   a.annotator_id, a.id, a.campaign_id, a.pair_id, false, '{}', 'preference'
            FROM annotation_assignment a
            WHERE a.campaign_id = %(campaign)s AND a.annotator_id = ANY(%(annotators)s::int[])
            ORDER BY a.id
            """,
            {"annotators": annotator_ids, "campaign": campaign_id},
        )
        cursor.execute("ANALYZE annotation_pair, annotation_assignment, annotation_label")


def explain(sql: str) -> str:
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN (ANALYZE, FORMAT TEXT) " + sql)
        return "\n".join(row[0] for row in cursor.fetchall())


def rows_read(plan: str) -> int:
    """Rows the plan's scans produced plus those their filters removed, over all loops."""
    total = 0
    loops = 1
    for line in plan.splitlines():
        node = re.search(r"actual time=[\d.]+\.\.[\d.]+ rows=(\d+) loops=(\d+)", line)
        if node:
            loops = int(node.group(2))
            if re.search(r"(Seq Scan|Index Scan|Index Only Scan|Bitmap Heap Scan)", line):
                total += int(node.group(1)) * loops
        removed = re.search(r"Rows Removed by (?:Filter|Index Recheck): (\d+)", line)
        if removed:
            total += int(removed.group(1)) * loops
    return total


def rows_read_by(captured: list[dict[str, Any]]) -> int:
    """The rows read by the plain SELECTs of a captured block, each run again under EXPLAIN
    ANALYZE (the logged SQL has its parameters inlined)."""
    selects = [
        query["sql"]
        for query in captured
        if query["sql"].lstrip().upper().startswith("SELECT")
        and "FOR UPDATE" not in query["sql"]
        # a prepared read (annotation.prepared_reads) is logged with its placeholders; they
        # read by key
        and "/* prepared */" not in query["sql"]
    ]
    return sum(rows_read(explain(sql)) for sql in selects)


def _label_in_the_workspace(client: Any, history: int) -> tuple[int, str, Assignment]:
    """An annotator who judged ``history`` pairs of the campaign two days ago labels one more
    in the workspace; the rows the submit and the next pair read, the fragment, the pair."""
    campaign = CampaignFactory(annotators_per_pair=3)
    annotator = user_with_role(f"judged-{history}", Role.ANNOTATOR)
    seed_pairs(campaign.pk, history)
    seed_labels(campaign.pk, [annotator.pk])
    seed_pairs(campaign.pk, 3, start=history, status=Pair.Status.QUEUED)  # fresh work
    client.force_login(annotator, backend=BACKEND)
    client.get(reverse("campaign-detail", args=[campaign.pk]), headers=HTMX)  # leases a pair
    assignment = Assignment.objects.get(campaign=campaign, annotator=annotator, status="active")
    with CaptureQueriesContext(connection) as queries:
        response = client.post(
            reverse("assignment-label", args=[assignment.pk]), {"preference": "1"}, headers=HTMX
        )
    assert response.status_code == 200
    return rows_read_by(queries.captured_queries), response.content.decode(), assignment


def test_a_label_in_the_workspace_reads_as_many_rows_after_a_long_history(client):
    small, small_html, _ = _label_in_the_workspace(client, 100)
    large, large_html, labelled = _label_in_the_workspace(client, 5_000)
    # The counter is exact, and Back still offers the label just given.
    assert "<strong>101</strong> judged by you" in small_html
    assert "<strong>5001</strong> judged by you" in large_html
    previous = re.search(r'<a class="previous-pair" href="([^"]+)"', large_html)
    assert previous is not None
    assert previous.group(1) == reverse("assignment-page", args=[labelled.pk])
    # It read the annotator's history twice: 310 rows at 100 pairs, 10,214 at 5,000.
    assert large <= small + 50, (small, large)


def _label(user: Any, campaign: Any) -> Label:
    assignment = assignment_next(campaign=campaign, annotator=user)
    assert assignment is not None
    return label_submit(assignment=assignment, data=LabelInput(preference=1))


def _exact(campaign: Any, user: Any) -> dict[str, int]:
    mine = Assignment.objects.filter(campaign=campaign, annotator=user)
    return {
        "submitted": mine.filter(status=Assignment.Status.SUBMITTED).count(),
        "skipped": mine.filter(status=Assignment.Status.SKIPPED).count(),
    }


def test_the_counter_counts_what_other_clients_labelled_and_skipped(client, annotator_a, campaign):
    PairFactory.create_batch(6, campaign=campaign)
    client.force_login(annotator_a, backend=BACKEND)
    page = client.get(reverse("campaign-detail", args=[campaign.pk]), headers=HTMX)
    assert "<strong>0</strong> judged by you" in page.content.decode()  # the count is kept
    api = api_client_for(annotator_a)
    # The workspace's lease, then two more pairs, labelled through the API; one skipped there.
    for _ in range(3):
        leased = api.post(f"/api/campaigns/{campaign.pk}/next").json()["assignment"]["id"]
        assert (
            api.post(
                f"/api/assignments/{leased}/label", {"preference": 1}, format="json"
            ).status_code
            == 201
        )
    leased = api.post(f"/api/campaigns/{campaign.pk}/next").json()["assignment"]["id"]
    assert api.post(f"/api/assignments/{leased}/skip").status_code == 204
    html = client.get(reverse("campaign-detail", args=[campaign.pk]), headers=HTMX)
    assert "<strong>3</strong> judged by you" in html.content.decode()
    assert "1 skipped" in html.content.decode()
    progress = api.get(f"/api/campaigns/{campaign.pk}/progress").json()
    assert progress["mine"] == {"submitted": 3, "skipped": 1} == _exact(campaign, annotator_a)


def test_a_young_label_below_an_old_one_is_not_left_behind(annotator_a, campaign):
    # A label whose id is below an older one's (a web server whose clock runs ahead, or a
    # submit that committed after a later one): the count kept must not pass over it.
    PairFactory.create_batch(4, campaign=campaign)
    start = timezone.now()
    with time_machine.travel(start, tick=False):
        young = _label(annotator_a, campaign)
        old = _label(annotator_a, campaign)
    Label.objects.filter(pk=old.pk).update(created_at=start - timedelta(days=1))
    assert young.pk < old.pk
    with time_machine.travel(start + timedelta(seconds=1), tick=False):
        assert annotator_counts(campaign=campaign, user=annotator_a)["submitted"] == 2
        assert annotator_counts(campaign=campaign, user=annotator_a)["submitted"] == 2
    with time_machine.travel(start + timedelta(minutes=5), tick=False):  # both settled
        assert annotator_counts(campaign=campaign, user=annotator_a)["submitted"] == 2
        _label(annotator_a, campaign)
        assert annotator_counts(campaign=campaign, user=annotator_a) == _exact(
            campaign, annotator_a
        )
        assert _exact(campaign, annotator_a)["submitted"] == 3


def _progress_rows(pairs: int) -> tuple[int, int]:
    campaign = CampaignFactory()
    annotators = UserFactory.create_batch(3)
    seed_pairs(campaign.pk, pairs)
    seed_labels(campaign.pk, [annotator.pk for annotator in annotators])
    api = api_client_for(user_with_role(f"asks-{pairs}", Role.ANNOTATOR))
    url = f"/api/campaigns/{campaign.pk}/progress"
    assert api.get(url).status_code == 200  # counts and caches
    with CaptureQueriesContext(connection) as queries:
        response = api.get(url)
    assert response.status_code == 200
    return rows_read_by(queries.captured_queries), response.json()["labels"]


def test_the_progress_api_counts_the_labels_once_per_cache_period():
    small, small_labels = _progress_rows(300)
    large, large_labels = _progress_rows(10_000)
    assert (small_labels, large_labels) == (900, 30_000)
    # It counted every label on every call: 903 rows read, then 30,903.
    assert large <= small + 50, (small, large)


def test_the_progress_apis_label_count_follows_the_labels(monkeypatch, annotator_a, campaign):
    PairFactory.create_batch(3, campaign=campaign)
    api = api_client_for(annotator_a)
    url = f"/api/campaigns/{campaign.pk}/progress"
    assert api.get(url).json()["labels"] == 0
    _label(annotator_a, campaign)  # moves no pair on (it needs three labels)
    assert api.get(url).json()["labels"] == 0  # within the cache's 5 s
    now = selectors.time.time()
    monkeypatch.setattr(selectors.time, "time", lambda: now + selectors.PROGRESS_CACHE_SECONDS + 1)
    assert api.get(url).json()["labels"] == 1
    _label(annotator_a, campaign)
    campaign_pair_counts_forget(campaign_id=campaign.pk)  # as a label that moves a pair on
    assert api.get(url).json()["labels"] == 2
