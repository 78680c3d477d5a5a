"""Changing a campaign's annotators per pair once its pairs are in: the pairs in rounds and not
yet settled take the new overlap (raised, or lowered but never below the slots in use), settled
pairs keep what they have, pooled pairs take it when queued, and every pair still reaches a
consensus. Through the service, the engine and the consensus hook (no mocks)."""

from __future__ import annotations

import threading

import pytest
from django.db import connection, connections, transaction
from django.test.utils import CaptureQueriesContext

from annotation.models import Campaign, Pair, Round
from annotation.services.assignments import assignment_next
from annotation.services.campaigns import (
    CampaignInvalid,
    OverlapChange,
    campaign_set_annotators_per_pair,
)
from annotation.services.labels import LabelInput, label_submit
from annotation.services.pair_state import pair_take_slot, pairs_queue
from tests.conftest import start_in_thread, wait_for_a_lock_waiter
from tests.factories import CampaignFactory, PairFactory, UserFactory
from tests.reviewers.factories import judge

pytestmark = [pytest.mark.django_db, pytest.mark.smoke]


def _fresh(pair: Pair) -> Pair:
    pair.refresh_from_db()
    return pair


def _labelled(campaign: Campaign, pair: Pair, n: int) -> list:
    """``n`` new annotators label ``pair`` (the only open one), A better."""
    labels = []
    for user in UserFactory.create_batch(n):
        label = judge(campaign, user, 1)
        assert label.pair_id == pair.pk
        labels.append(label)
    return labels


def test_raising_it_gives_unsettled_pairs_the_new_overlap_and_their_consensus_waits_for_it():
    campaign = CampaignFactory(annotators_per_pair=3)
    settled = PairFactory(campaign=campaign, priority=2)
    _labelled(campaign, settled, 3)
    assert _fresh(settled).status == Pair.Status.COMPLETE
    halfway = PairFactory(campaign=campaign, priority=1)
    _labelled(campaign, halfway, 2)
    untouched = PairFactory(campaign=campaign)

    change = campaign_set_annotators_per_pair(campaign=campaign, annotators_per_pair=5)

    assert (change.old, change.new, change.pairs_unsettled, change.pairs_changed) == (3, 5, 2, 2)
    assert change.pairs_settled_kept == 1
    assert "from 3 to 5" in change.message and "1 settled pair(s) keep" in change.message
    campaign.refresh_from_db()
    assert campaign.annotators_per_pair == 5
    assert (_fresh(halfway).slot_cap, _fresh(untouched).slot_cap) == (5, 5)
    assert (_fresh(settled).slot_cap, settled.status, settled.labels_count) == (3, "complete", 3)
    # The half-labelled pair gets three more labels and settles on all five (not on three,
    # and not stuck at the old cap with no consensus).
    third, fourth, fifth = _labelled(campaign, halfway, 3)
    assert not any(label.is_retest for label in (third, fourth, fifth))
    assert (_fresh(halfway).status, halfway.labels_count) == (Pair.Status.COMPLETE, 5)
    assert halfway.provenance == Pair.Provenance.UNANIMOUS


def test_lowering_it_settles_pairs_on_the_new_overlap_without_extra_labels():
    campaign = CampaignFactory(annotators_per_pair=3)
    pair = PairFactory(campaign=campaign)
    _labelled(campaign, pair, 1)

    change = campaign_set_annotators_per_pair(campaign=campaign, annotators_per_pair=2)

    assert (change.pairs_unsettled, change.pairs_one_more, change.pairs_changed) == (1, 0, 1)
    assert _fresh(pair).slot_cap == 2
    _labelled(campaign, pair, 1)
    assert (_fresh(pair).status, pair.labels_count, pair.slots_taken) == ("complete", 2, 2)
    # No third annotator is sent to it as a re-test nobody asked for.
    assert assignment_next(campaign=campaign, annotator=UserFactory()) is None


def test_a_pair_already_holding_the_lowered_overlap_takes_one_more_label_and_settles():
    campaign = CampaignFactory(annotators_per_pair=3)
    pair = PairFactory(campaign=campaign)
    _labelled(campaign, pair, 2)

    change = campaign_set_annotators_per_pair(campaign=campaign, annotators_per_pair=2)

    # Its cap (3) is already one more than the two labels it holds.
    assert (change.pairs_unsettled, change.pairs_one_more, change.pairs_changed) == (1, 1, 0)
    assert "1 of them already had 2 or more" in change.message
    assert (_fresh(pair).slot_cap, pair.status, pair.provenance) == (3, "in_annotation", "")
    (last,) = _labelled(campaign, pair, 1)
    assert not last.is_retest  # an ordinary label: the pair has no consensus to re-test
    assert (_fresh(pair).status, pair.labels_count) == (Pair.Status.COMPLETE, 3)
    assert pair.provenance == Pair.Provenance.UNANIMOUS


def test_a_lease_out_beyond_the_lowered_overlap_keeps_its_slot_and_the_pair_settles():
    campaign = CampaignFactory(annotators_per_pair=3)
    pair = PairFactory(campaign=campaign)
    _labelled(campaign, pair, 1)
    out = assignment_next(campaign=campaign, annotator=UserFactory())
    assert out is not None and out.pair_id == pair.pk

    campaign_set_annotators_per_pair(campaign=campaign, annotators_per_pair=1)

    assert (_fresh(pair).slot_cap, pair.slots_taken) == (2, 2)  # never below the slots in use
    # No spare slot beside the lease out: its label is the one that settles the pair.
    assert assignment_next(campaign=campaign, annotator=UserFactory()) is None
    label_submit(assignment=out, data=LabelInput(preference=-1 if out.swapped else 1))
    assert _fresh(pair).provenance == Pair.Provenance.UNANIMOUS
    assert (pair.status, pair.labels_count) == (Pair.Status.COMPLETE, 2)
    assert assignment_next(campaign=campaign, annotator=UserFactory()) is None


def test_a_submit_that_read_the_old_overlap_is_judged_under_the_new_one():
    """The request read the campaign (N = 3) before the change to 2 committed: its label is
    judged under the N in force when it commits (read again under the pair's row lock), so
    it settles the pair on 2, with no slot to spare."""
    campaign = CampaignFactory(annotators_per_pair=3)
    pair = PairFactory(campaign=campaign)
    _labelled(campaign, pair, 1)
    stale = assignment_next(campaign=campaign, annotator=UserFactory())
    assert stale is not None
    stale.campaign = Campaign.objects.get(pk=campaign.pk)  # as its request read it

    campaign_set_annotators_per_pair(campaign=campaign, annotators_per_pair=2)
    label_submit(assignment=stale, data=LabelInput(preference=-1 if stale.swapped else 1))

    assert (_fresh(pair).provenance, pair.labels_count) == (Pair.Provenance.UNANIMOUS, 2)
    assert (pair.status, pair.slot_cap) == (Pair.Status.COMPLETE, 2)
    assert assignment_next(campaign=campaign, annotator=UserFactory()) is None


def test_a_re_test_out_when_the_overlap_is_raised_is_still_a_re_test():
    campaign = CampaignFactory(annotators_per_pair=2, retest_share=1.0)
    pair = PairFactory(campaign=campaign)
    _labelled(campaign, pair, 2)
    assert (_fresh(pair).status, pair.slot_cap) == (Pair.Status.IN_ANNOTATION, 3)  # re-test

    change = campaign_set_annotators_per_pair(campaign=campaign, annotators_per_pair=4)

    assert change.pairs_unsettled == 0  # it has its verdict: left as it is
    assert _fresh(pair).slot_cap == 3
    retest = judge(campaign, UserFactory(), 1)
    assert retest.pair_id == pair.pk and retest.is_retest
    assert (_fresh(pair).status, pair.provenance) == ("complete", Pair.Provenance.UNANIMOUS)


def test_pooled_pairs_take_the_overlap_when_a_round_queues_them():
    campaign = CampaignFactory(annotators_per_pair=3)
    pooled = PairFactory(campaign=campaign, status=Pair.Status.POOLED)

    change = campaign_set_annotators_per_pair(campaign=campaign, annotators_per_pair=4)

    assert change.pairs_unsettled == 0 and _fresh(pooled).slot_cap == 3
    opened = Round.objects.create(campaign=campaign, number=1)
    assert pairs_queue(pair_ids=[pooled.pk], round_=opened) == 1
    assert (_fresh(pooled).status, pooled.slot_cap) == (Pair.Status.QUEUED, 4)


def test_the_change_costs_the_same_queries_for_3_and_30_pairs():
    counts = []
    for n in (3, 30):
        campaign = CampaignFactory(annotators_per_pair=3)
        PairFactory.create_batch(n, campaign=campaign)
        PairFactory.create_batch(n, campaign=campaign, status=Pair.Status.IN_ANNOTATION)
        with CaptureQueriesContext(connection) as captured:
            change = campaign_set_annotators_per_pair(campaign=campaign, annotators_per_pair=4)
        assert change.pairs_changed == 2 * n
        assert set(Pair.objects.filter(campaign=campaign).values_list("slot_cap", flat=True)) == {4}
        counts.append(len(captured.captured_queries))
    assert counts[0] == counts[1]


def test_the_same_value_changes_nothing_and_a_bad_one_is_refused():
    campaign = CampaignFactory(annotators_per_pair=3)
    pair = PairFactory(campaign=campaign)
    unchanged = campaign_set_annotators_per_pair(campaign=campaign, annotators_per_pair=3)
    assert unchanged.pairs_changed == 0 and "nothing changed" in unchanged.message
    for bad in (0, -1, 1001):
        with pytest.raises(CampaignInvalid):
            campaign_set_annotators_per_pair(campaign=campaign, annotators_per_pair=bad)
    assert _fresh(pair).slot_cap == 3
    assert Campaign.objects.get(pk=campaign.pk).annotators_per_pair == 3


@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif("connection.vendor != 'postgresql'", reason="row locks")
def test_a_take_in_flight_is_waited_for_and_the_cap_never_falls_below_its_slots():
    """A take holds a pair's second slot (uncommitted) while the overlap is lowered to 1: the
    change waits for it and computes the cap on the pair as the take left it (two slots in
    use, leases out: a cap of 2), not as it read it (one in use: a cap of 1, below the
    slots the take then commits)."""
    campaign = CampaignFactory(annotators_per_pair=3)
    pair = PairFactory(campaign=campaign)
    assert assignment_next(campaign=campaign, annotator=UserFactory()) is not None
    taken, release = threading.Event(), threading.Event()

    def take() -> None:
        try:
            with transaction.atomic():
                assert pair_take_slot(pair_id=pair.pk)
                taken.set()
                release.wait(30)
        finally:
            connections.close_all()

    def change() -> OverlapChange:
        try:
            return campaign_set_annotators_per_pair(campaign=campaign, annotators_per_pair=1)
        finally:
            connections.close_all()

    holder = start_in_thread(take)
    assert taken.wait(10)
    changing = start_in_thread(change)
    wait_for_a_lock_waiter()
    release.set()
    holder.result(timeout=30)
    assert changing.result(timeout=30).pairs_changed == 1
    assert (_fresh(pair).slots_taken, pair.slot_cap) == (2, 2)
