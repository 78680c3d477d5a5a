"""Review 15: reads that walked a whole table to find a few rows.

Each test seeds a small and a large table (INSERT ... SELECT generate_series, then ANALYZE)
and measures the rows a query's scans read with EXPLAIN ANALYZE: what it reads must not grow
with the table. Drawing a gold pair reads the campaign's gold pairs, not every pair nor the
annotator's history; the members page counts labels set aside from those labels alone; a
count of pairs by status, gold apart, reads one index and no pair row."""

from __future__ import annotations

import random
import re
from typing import Any

import pytest
from django.db import connection
from django.db.models import Count
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from annotation.models import Assignment, Pair
from annotation.services.assignments import assignment_next
from annotation.services.members import member_add
from tests.factories import CampaignFactory, UserFactory

# Pairs carry long texts (conversations, responses): rows as wide as real ones, so that the
# planner weighs a table scan as it would in production.
_PAD = "x" * 400


@pytest.fixture(scope="module", autouse=True)
def _tables_left_as_found(django_db_blocker):
    """After the module, VACUUM the seeded tables: the tests' rollback removes their rows but
    not the pages nor the row counts ANALYZE wrote, and later tests' plans (tiny tables) would
    be made for tables of tens of thousands of rows."""
    yield
    with django_db_blocker.unblock(), connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE annotation_pair, annotation_assignment, annotation_label")


def seed_pairs(
    campaign_id: int,
    n: int,
    *,
    start: int = 0,
    status: str = Pair.Status.COMPLETE,
    is_gold: bool = False,
    consensus_outcome: str = "preference",
    labels_count: int = 3,
) -> None:
    """``n`` pairs of the campaign in one statement (settled and labelled, unless told)."""
    with connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO annotation_pair (
                conversation, response_a, response_b, source, external_id, content_hash,
                task_category, objectivity, controversiality, desired_attributes,
                annotation_guideline, is_gold, gold_preference, status, priority,
                priority_reason, slots_taken, slot_cap, labels_count, provenance, curation,
                created_at, campaign_id, consensus_outcome, consensus_preference
            )
            SELECT
                jsonb_build_array(
                    jsonb_build_object('role', 'user', 'content', 'q' || g || %(pad)s)
                ),
                'a' || g || %(pad)s, 'b' || g || %(pad)s, '', '', md5(%(tag)s || g),
                '', '', '', '', '', %(gold)s, CASE WHEN %(gold)s THEN 1 END, %(status)s, 0,
                '', %(labels)s, 3, %(labels)s, CASE WHEN %(labels)s > 0 THEN 'majority' ELSE '' END,
                '', now(), %(campaign)s, %(outcome)s, 1
            FROM generate_series(%(start)s + 1, %(start)s + %(n)s) AS g
            """,
            {
                "pad": _PAD,
                "tag": f"c{campaign_id}-{is_gold}-",
                "gold": is_gold,
                "status": status,
                "campaign": campaign_id,
                "start": start,
                "n": n,
                "outcome": consensus_outcome,
                "labels": labels_count,
            },
        )


def seed_labels(
    campaign_id: int, annotator_ids: list[int], *, set_aside: bool = False, kind: str = "regular"
) -> None:
    """A submitted assignment and its label for each pair of the campaign and each annotator
    who has none there yet, in pair order, the annotators interleaved (as labels arrive)."""
    with connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO annotation_assignment (status, kind, swapped, leased_at,
                lease_expires_at, finished_at, model_view_shown, annotator_id, campaign_id,
                pair_id)
            SELECT 'submitted', %(kind)s, false, now() - interval '2 days',
                   now() - interval '2 days', now() - interval '2 days', false, u.annotator,
                   %(campaign)s, p.id
            FROM annotation_pair p CROSS JOIN unnest(%(annotators)s::int[]) AS u(annotator)
            WHERE p.campaign_id = %(campaign)s
              AND NOT EXISTS (SELECT 1 FROM annotation_assignment x
                              WHERE x.pair_id = p.id AND x.annotator_id = u.annotator)
            ORDER BY p.id, u.annotator
            """,
            {"annotators": annotator_ids, "campaign": campaign_id, "kind": kind},
        )
        cursor.execute(
            """
            INSERT INTO annotation_label (preference, rationale, flag_unsafe, flag_broken,
                flag_cannot_judge, is_retest, is_gold_check, shown_first, created_at,
                annotator_id, assignment_id, campaign_id, pair_id, set_aside,
                aspect_ratings, outcome)
            SELECT 1, '', false, false, false, false, a.kind = 'gold', 'a',
                   now() - interval '2 days', a.annotator_id, a.id, a.campaign_id, a.pair_id,
                   %(aside)s, '{}', 'preference'
            FROM annotation_assignment a
            WHERE a.campaign_id = %(campaign)s AND a.annotator_id = ANY(%(annotators)s::int[])
              AND NOT EXISTS (SELECT 1 FROM annotation_label l WHERE l.assignment_id = a.id)
            ORDER BY a.id
            """,
            {"annotators": annotator_ids, "campaign": campaign_id, "aside": set_aside},
        )


def analyze() -> None:
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE annotation_pair, annotation_assignment, annotation_label")


def explain(sql: str, params: Any = None) -> str:
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN (ANALYZE, FORMAT TEXT) " + sql, params)
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


def rows_read_by(captured: list[dict[str, str]]) -> int:
    """The rows read by the plain SELECTs of a captured block, each run again under EXPLAIN
    ANALYZE (the logged SQL has its parameters inlined)."""
    selects = [
        query["sql"]
        for query in captured
        if query["sql"].lstrip().upper().startswith("SELECT")
        and "FOR UPDATE" not in query["sql"]
        and "/* prepared */" not in query["sql"]  # logged with placeholders; they read by key
    ]
    return sum(rows_read(explain(sql)) for sql in selects)


def _gold_draw_rows(pool: int) -> int:
    # A members-only campaign with a qualification: a new member is served gold pairs only,
    # 30 of them among a pool of ordinary pairs.
    campaign = CampaignFactory(open_to_all=False, qualification_gold_count=5)
    seed_pairs(campaign.pk, 30, is_gold=True)
    seed_pairs(campaign.pk, pool, start=1000, status=Pair.Status.QUEUED, labels_count=0)
    analyze()
    annotator = UserFactory()
    member_add(campaign=campaign, user=annotator)
    campaign.refresh_from_db()
    with CaptureQueriesContext(connection) as queries:
        assignment = assignment_next(campaign=campaign, annotator=annotator, rng=random.Random(0))
    assert assignment is not None and assignment.kind == Assignment.Kind.GOLD
    assert assignment.pair.is_gold
    return rows_read_by(queries.captured_queries)


@pytest.mark.django_db
def test_drawing_a_gold_pair_reads_the_campaigns_gold_pairs_not_every_pair():
    small = _gold_draw_rows(500)
    large = _gold_draw_rows(20_000)
    assert large < 10 * max(small, 1), (small, large)


def _gold_check_rows(history: int) -> int:
    # Every `next` draws a gold check first (gold_share 1): an annotator with ``history``
    # labels, 30 gold pairs of which they had 10.
    campaign = CampaignFactory(gold_share=1.0)
    annotator = UserFactory()
    seed_pairs(campaign.pk, history)
    seed_pairs(campaign.pk, 10, start=history, is_gold=True)
    seed_labels(campaign.pk, [annotator.pk])
    seed_pairs(campaign.pk, 20, start=history + 10, is_gold=True)
    analyze()
    with CaptureQueriesContext(connection) as queries:
        assignment = assignment_next(campaign=campaign, annotator=annotator, rng=random.Random(0))
    assert assignment is not None and assignment.kind == Assignment.Kind.GOLD
    assert (
        assignment.pair_id
        > Pair.objects.filter(campaign=campaign, is_gold=True)
        .order_by("id")
        .values_list("id", flat=True)[9]
    )  # one they had not had
    return rows_read_by(queries.captured_queries)


@pytest.mark.django_db
def test_drawing_a_gold_check_does_not_read_the_annotators_history():
    small = _gold_check_rows(300)
    large = _gold_check_rows(20_000)
    assert large < 10 * max(small, 1), (small, large)


def _members_page_rows(client, pairs: int) -> int:
    campaign = CampaignFactory()
    annotators = [UserFactory() for _ in range(3)]
    for annotator in annotators:
        member_add(campaign=campaign, user=annotator)
    seed_pairs(campaign.pk, pairs)
    seed_labels(campaign.pk, [annotator.pk for annotator in annotators])
    # Two of the last annotator's labels are set aside (quarantined before they settled).
    seed_pairs(campaign.pk, 2, start=pairs, status=Pair.Status.QUEUED, labels_count=0)
    seed_labels(campaign.pk, [annotators[2].pk], set_aside=True)
    analyze()
    with CaptureQueriesContext(connection) as queries:
        response = client.get(reverse("campaign-members", args=[campaign.pk]))
    assert response.status_code == 200
    rows = {row["user"].pk: row for row in response.context["rows"]}
    assert [rows[a.pk]["labels_set_aside"] for a in annotators] == [0, 0, 2]
    return rows_read_by(queries.captured_queries)


@pytest.mark.django_db
def test_the_members_page_counts_labels_set_aside_without_reading_every_label(client):
    client.force_login(
        UserFactory(is_staff=True, is_superuser=True),
        backend="django.contrib.auth.backends.ModelBackend",
    )
    small = _members_page_rows(client, 300)
    large = _members_page_rows(client, 10_000)
    assert large < 10 * max(small, 1), (small, large)


@pytest.mark.django_db(transaction=True)
def test_pairs_by_status_gold_apart_are_counted_from_the_index_alone():
    """The counts behind the workspace's and the dashboard's progress (COUNT(*) by status and
    is_gold) can read pair_campaign_status_gold alone, once VACUUM has marked the pages
    all-visible (autovacuum does so for a pool that rests), instead of every wide pair row."""
    campaign = CampaignFactory()
    seed_pairs(campaign.pk, 20_000, status=Pair.Status.POOLED, labels_count=0)
    seed_pairs(campaign.pk, 30, start=20_000, is_gold=True)
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE annotation_pair")
    counts = (
        Pair.objects.filter(campaign=campaign)
        .order_by()
        .values_list("status", "is_gold")
        .annotate(n=Count("*"))
    )
    assert set(counts) == {("pooled", False, 20_000), ("complete", True, 30)}
    sql, params = counts.query.sql_with_params()
    plan = explain(sql, params)
    assert "Index Only Scan using pair_campaign_status_gold" in plan, plan
    # A few heap visits when another session's transaction kept VACUUM from marking a page
    # (the suite runs beside others); not one per pair.
    fetches = int(re.search(r"Heap Fetches: (\d+)", plan).group(1))
    assert fetches < 200, plan
