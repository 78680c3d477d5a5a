"""Lowering a campaign's annotators per pair while leases are out: the pair settles on the
labels in flight and takes no label beyond them (it had a spare slot, which another annotator
took as an ordinary label before the in-flight ones landed: lowered from 5 to 2, a pair with
five leases out got six labels)."""

from __future__ import annotations

import pytest

from annotation.models import Label, Pair
from annotation.services.assignments import assignment_next, assignment_skip
from annotation.services.campaigns import campaign_set_annotators_per_pair
from annotation.services.labels import LabelInput, label_submit
from tests.factories import CampaignFactory, PairFactory, UserFactory

pytestmark = pytest.mark.django_db


def _submit(assignment) -> Label:  # noqa: ANN001
    return label_submit(
        assignment=assignment, data=LabelInput(preference=-1 if assignment.swapped else 1)
    )


def test_a_pair_lowered_with_its_leases_out_gets_no_label_beyond_them():
    campaign = CampaignFactory(annotators_per_pair=5, retest_share=0.0)
    pair = PairFactory(campaign=campaign)
    out = [assignment_next(campaign=campaign, annotator=UserFactory()) for _ in range(5)]
    assert all(lease is not None and lease.pair_id == pair.pk for lease in out)

    change = campaign_set_annotators_per_pair(campaign=campaign, annotators_per_pair=2)

    pair.refresh_from_db()
    assert (pair.slots_taken, pair.slot_cap) == (5, 5)
    assert change.pairs_one_more == 0  # its leases bring the labels that settle it
    # Nobody else is sent to it while its five leases are out.
    assert assignment_next(campaign=campaign, annotator=UserFactory()) is None
    for lease in out:
        _submit(lease)
    pair.refresh_from_db()
    assert (pair.status, pair.labels_count) == (Pair.Status.COMPLETE, 5)
    assert pair.provenance == Pair.Provenance.UNANIMOUS
    assert Label.objects.filter(pair=pair).count() == 5


def test_a_lease_that_lapses_after_the_change_frees_its_slot_for_the_settling_label():
    campaign = CampaignFactory(annotators_per_pair=3, retest_share=0.0)
    pair = PairFactory(campaign=campaign)
    first, second = (assignment_next(campaign=campaign, annotator=UserFactory()) for _ in "ab")
    _submit(first)

    campaign_set_annotators_per_pair(campaign=campaign, annotators_per_pair=1)
    pair.refresh_from_db()
    assert (pair.slots_taken, pair.slot_cap, pair.provenance) == (2, 2, "")

    assignment_skip(assignment=second)
    taker = assignment_next(campaign=campaign, annotator=UserFactory())
    assert taker is not None and taker.pair_id == pair.pk
    assert not _submit(taker).is_retest
    pair.refresh_from_db()
    assert (pair.status, pair.labels_count) == (Pair.Status.COMPLETE, 2)
    assert assignment_next(campaign=campaign, annotator=UserFactory()) is None


def test_a_lease_lapsing_after_its_pair_settled_leaves_it_complete():
    """Lowered from 3 to 1 with three leases out: the first label settles the pair, and a
    lease lapsing afterwards does not reopen it (it was served as a re-test nobody asked
    for)."""
    campaign = CampaignFactory(annotators_per_pair=3, retest_share=0.0)
    pair = PairFactory(campaign=campaign)
    out = [assignment_next(campaign=campaign, annotator=UserFactory()) for _ in range(3)]
    campaign_set_annotators_per_pair(campaign=campaign, annotators_per_pair=1)
    _submit(out[0])
    pair.refresh_from_db()
    assert pair.status == Pair.Status.COMPLETE

    assignment_skip(assignment=out[1])
    pair.refresh_from_db()
    assert (pair.status, pair.slots_taken) == (Pair.Status.COMPLETE, 2)
    assert assignment_next(campaign=campaign, annotator=UserFactory()) is None
    _submit(out[2])  # the label still in flight counts, as before
    pair.refresh_from_db()
    assert (pair.status, pair.labels_count) == (Pair.Status.COMPLETE, 2)
