"""The round lifecycle at its edges: opening the next round in a members-only campaign leaves
out a pooled pair every active member already had (skipped, or let its lease lapse; nobody
judges a pair twice), or rounds made of such pairs would never settle a pair and never
complete; and the completion check stays linear on a round of millions of pairs."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from annotation.models import Pair, Round
from annotation.services.assignments import assignment_next, assignment_skip
from annotation.services.members import member_add
from scoring.loop.rounds import round_close, round_open_next, rounds_check_completion
from tests.factories import CampaignFactory
from tests.scoring.loop_support import label_queue, make_loop_campaign

pytestmark = pytest.mark.django_db


def _skip_one_then_label_the_rest(campaign, annotator):  # noqa: ANN001, ANN202
    skipped = assignment_next(campaign=campaign, annotator=annotator)
    assert skipped is not None
    assignment_skip(assignment=skipped)
    label_queue(campaign, [annotator])
    return Pair.objects.get(pk=skipped.pair_id)


@pytest.mark.smoke
def test_a_pair_every_member_skipped_is_not_queued_into_the_next_round(
    annotator_a, django_capture_on_commit_callbacks
):
    campaign = make_loop_campaign(
        labelled=2,
        pooled=2,
        gold=0,
        round_size=1,
        auto_retrain=True,
        open_to_all=False,
        annotators_per_pair=1,
    )
    member_add(campaign=campaign, user=annotator_a)
    skipped = _skip_one_then_label_the_rest(campaign, annotator_a)
    closed = round_close(campaign=campaign)
    assert closed is not None and closed.returned_to_pool == 1
    opened = round_open_next(campaign=campaign)
    assert opened is not None
    # The skipped pair comes first by priority and id; nobody could take it, so the round
    # takes the next pooled pair instead: one the member can judge.
    (queued,) = Pair.objects.filter(round=opened)
    assert queued.pk != skipped.pk
    skipped.refresh_from_db()
    assert skipped.status == Pair.Status.POOLED
    # The round completes once the member labels what it holds.
    assert label_queue(campaign, [annotator_a]) == 1
    with django_capture_on_commit_callbacks(execute=False):
        assert len(rounds_check_completion()) == 1


@pytest.mark.smoke
def test_the_pair_comes_back_for_a_new_member(annotator_a, annotator_b):
    campaign = make_loop_campaign(
        labelled=2, pooled=0, gold=0, round_size=1, open_to_all=False, annotators_per_pair=1
    )
    member_add(campaign=campaign, user=annotator_a)
    skipped = _skip_one_then_label_the_rest(campaign, annotator_a)
    round_close(campaign=campaign)
    # The pool holds only the pair nobody can take: no round opens rather than one that
    # could never complete.
    assert round_open_next(campaign=campaign) is None
    assert not Round.objects.filter(campaign=campaign, status=Round.Status.OPEN).exists()
    member_add(campaign=campaign, user=annotator_b)
    opened = round_open_next(campaign=campaign)
    assert opened is not None
    assert list(Pair.objects.filter(round=opened).values_list("pk", flat=True)) == [skipped.pk]


def test_the_random_slice_skips_it_too(annotator_a):
    campaign = make_loop_campaign(
        labelled=2,
        pooled=3,
        gold=0,
        round_size=10,
        random_slice_share=1.0,
        open_to_all=False,
        annotators_per_pair=1,
    )
    member_add(campaign=campaign, user=annotator_a)
    skipped = _skip_one_then_label_the_rest(campaign, annotator_a)
    round_close(campaign=campaign)
    opened = round_open_next(campaign=campaign)
    assert opened is not None
    queued = set(Pair.objects.filter(round=opened).values_list("pk", flat=True))
    assert len(queued) == 3 and skipped.pk not in queued
    assert set(Pair.objects.filter(round=opened).values_list("selection", flat=True)) == {
        Pair.Selection.RANDOM
    }


def test_the_completion_check_reads_a_large_round_without_a_quadratic_plan(
    django_capture_on_commit_callbacks,
):
    """An import queues every pair it brings into the open round: a round may hold millions.
    The check "has any pair of the round settled" was ``NOT (id IN (the round's unsettled
    ids))``, which PostgreSQL runs as a hashed subplan only while those ids fit in work_mem;
    past that it compares each row with every unsettled id, a quadratic scan run every minute
    (30,000 pairs: 16 s). Here a small work_mem stands in for a round of millions."""
    if connection.vendor != "postgresql":
        pytest.skip("a PostgreSQL plan")
    campaign = CampaignFactory(open_to_all=True, auto_retrain=True)
    current = Round.objects.create(campaign=campaign, number=1)
    Pair.objects.bulk_create(
        Pair(
            campaign=campaign,
            round=current,
            conversation=[],
            response_a="a",
            response_b="b",
            content_hash=f"large-round-{index}",
            status=Pair.Status.QUEUED,
        )
        for index in range(10_000)
    )
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE annotation_pair")  # the planner sees the round's size
        cursor.execute("SET LOCAL work_mem = '64kB'")
    with CaptureQueriesContext(connection) as captured:
        with django_capture_on_commit_callbacks(execute=False):
            assert rounds_check_completion() == []  # nothing settled yet
    plans = []
    with connection.cursor() as cursor:
        for query in captured.captured_queries:
            if query["sql"].lstrip().upper().startswith("SELECT"):
                cursor.execute("EXPLAIN " + query["sql"])
                plans.append("\n".join(row[0] for row in cursor.fetchall()))
    assert plans
    # A NOT IN that does not fit in memory: "NOT (SubPlan n)" over a Materialize.
    assert not [plan for plan in plans if "NOT (SubPlan" in plan], plans
