"""The automatic retrain and round close when a round's last pairs have no one left to take
them (skipped by every member, or their annotators removed)."""

from __future__ import annotations

import pytest

from annotation.models import Pair
from annotation.services.assignments import assignment_next, assignment_skip
from annotation.services.members import member_add, member_remove
from scoring.loop.rounds import round_close, rounds_check_completion
from scoring.models import Job
from tests.scoring.loop_support import label_queue, make_loop_campaign

pytestmark = pytest.mark.django_db


def _members_only_campaign(*annotators):  # noqa: ANN001, ANN202
    campaign = make_loop_campaign(
        labelled=2,
        pooled=2,
        gold=0,
        auto_retrain=True,
        open_to_all=False,
        annotators_per_pair=1,
    )
    for annotator in annotators:
        member_add(campaign=campaign, user=annotator)
    return campaign


def test_a_round_whose_last_pair_every_member_skipped_starts_the_retrain(
    annotator_a, annotator_b, django_capture_on_commit_callbacks
):
    campaign = _members_only_campaign(annotator_a, annotator_b)
    first = assignment_next(campaign=campaign, annotator=annotator_a)
    assignment_skip(assignment=first)
    second = assignment_next(campaign=campaign, annotator=annotator_b)
    assignment_skip(assignment=second)
    # Both members skipped one pair each; they label everything else the engine serves.
    label_queue(campaign, [annotator_a, annotator_b])
    (stuck,) = Pair.objects.filter(campaign=campaign, status=Pair.Status.IN_ANNOTATION)
    assert (stuck.pk, stuck.slots_taken, stuck.labels_count) == (first.pair_id, 0, 0)
    with django_capture_on_commit_callbacks(execute=False):
        started = rounds_check_completion()
    assert len(started) == 1
    assert Job.objects.get(pk=started[0]).kind == Job.Kind.LOOP


def test_a_round_nobody_touched_since_it_opened_does_not_start_a_retrain(
    annotator_a, django_capture_on_commit_callbacks
):
    # No active member at all: nothing can progress, but nothing did either; a retrain would
    # close the round, train on nothing new and open the same pairs again, every minute.
    campaign = _members_only_campaign(annotator_a)
    member_remove(campaign=campaign, user_id=annotator_a.pk)
    with django_capture_on_commit_callbacks(execute=False):
        assert rounds_check_completion() == []


def test_a_pair_a_member_still_holds_keeps_the_round_open(
    annotator_a, annotator_b, django_capture_on_commit_callbacks
):
    campaign = _members_only_campaign(annotator_a)
    held = assignment_next(campaign=campaign, annotator=annotator_a)
    assert held is not None
    label_queue(campaign, [annotator_b])  # not a member: served nothing
    with django_capture_on_commit_callbacks(execute=False):
        assert rounds_check_completion() == []


def test_closing_a_round_returns_a_pair_whose_every_lease_lapsed_to_the_pool(
    annotator_a, annotator_b
):
    campaign = _members_only_campaign(annotator_a, annotator_b)
    skipped = assignment_next(campaign=campaign, annotator=annotator_a)
    assignment_skip(assignment=skipped)
    pair = Pair.objects.get(pk=skipped.pair_id)
    assert pair.status == Pair.Status.IN_ANNOTATION and pair.slots_taken == 0
    closed = round_close(campaign=campaign)
    assert closed is not None and closed.returned_to_pool == 2
    pair.refresh_from_db()
    assert (pair.status, pair.round_id, pair.selection) == (
        Pair.Status.POOLED,
        None,
        Pair.Selection.NONE,
    )
