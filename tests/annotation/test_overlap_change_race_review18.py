"""Review 18: a change of a campaign's annotators per pair (N) and the work in flight beside it.

Whatever the interleaving, a pair is judged, and an imported pair queued, under the N in force
when that work commits: a label submitted or changed reads N again under its pair's row lock,
which the change takes on every unsettled pair before it commits; an import reads it again
under the campaign's rounds lock, which the change holds until it commits. Each race is run
for real on PostgreSQL: one transaction held at a lock while the other goes on."""

from __future__ import annotations

import json
import threading

import pytest
from django.db import connection, transaction

from annotation.importers import ImportFormatError
from annotation.models import Campaign, Pair
from annotation.services.assignments import assignment_next
from annotation.services.campaigns import (
    OverlapChange,
    campaign_set_annotators_per_pair,
    campaign_update,
)
from annotation.services.imports import ImportResult, pairs_import
from annotation.services.labels import LabelInput, label_change, label_submit
from tests.conftest import closing_connections, lock_waiters, start_in_thread, wait_for
from tests.factories import CampaignFactory, PairFactory, UserFactory
from tests.reviewers.factories import judge

pytestmark = pytest.mark.django_db(transaction=True)
on_postgresql = pytest.mark.skipif(connection.vendor != "postgresql", reason="row locks")


def _fresh(pair: Pair) -> Pair:
    pair.refresh_from_db()
    return pair


def _waiters(count: int) -> None:
    wait_for(
        lambda: lock_waiters() >= count,
        timeout=20,
        interval=0.05,
        what=f"{count} session(s) to wait on a lock",
    )


def _holding(pair: Pair):  # noqa: ANN202
    """A transaction elsewhere holds the pair's row lock until released."""
    holding, release = threading.Event(), threading.Event()

    def hold() -> None:
        with transaction.atomic():
            list(Pair.objects.select_for_update().filter(pk=pair.pk).values_list("pk"))
            holding.set()
            release.wait(30)

    future = start_in_thread(closing_connections(hold))
    assert holding.wait(10)
    return future, release


def _change_in_thread(campaign: Campaign, annotators_per_pair: int):  # noqa: ANN202
    return start_in_thread(
        closing_connections(
            lambda: campaign_set_annotators_per_pair(
                campaign=Campaign.objects.get(pk=campaign.pk),
                annotators_per_pair=annotators_per_pair,
            )
        )
    )


def _one_label_and_a_stale_lease(campaign: Campaign, pair: Pair):  # noqa: ANN202
    """``pair`` (the campaign's first in priority) with one label (A better) and a second
    annotator's lease on it, whose campaign is as its request read it, before any change."""
    assert judge(campaign, UserFactory(), 1).pair_id == pair.pk
    lease = assignment_next(campaign=campaign, annotator=UserFactory())
    assert lease is not None and lease.pair_id == pair.pk
    lease.campaign = Campaign.objects.get(pk=campaign.pk)
    return lease


def _a_better(lease) -> LabelInput:  # noqa: ANN001
    return LabelInput(preference=-1 if lease.swapped else 1)


@on_postgresql
def test_a_submit_that_waited_for_a_raise_is_judged_under_the_new_overlap():
    """The change (2 -> 3) has locked the pair and waits for another one; the submit, whose
    request read N = 2, waits for it. The change commits first, so the pair's second label
    settles nothing: it needs three now (under the old N it settled on two)."""
    campaign = CampaignFactory(annotators_per_pair=2)
    pair = PairFactory(campaign=campaign, priority=2)
    later = PairFactory(campaign=campaign, priority=1)  # locked after `pair` (pair order)
    lease = _one_label_and_a_stale_lease(campaign, pair)
    holder, release = _holding(later)
    changing = _change_in_thread(campaign, 3)
    try:
        _waiters(1)  # the change holds `pair` and waits for `later`
        submitting = start_in_thread(
            closing_connections(lambda: label_submit(assignment=lease, data=_a_better(lease)))
        )
        _waiters(2)  # the submit waits for the change
    finally:
        release.set()
        holder.result(timeout=30)
    change: OverlapChange = changing.result(timeout=30)
    submitting.result(timeout=30)

    assert (change.old, change.new, change.pairs_changed) == (2, 3, 2)
    assert (_fresh(pair).labels_count, pair.slot_cap) == (2, 3)
    assert (pair.status, pair.provenance) == (Pair.Status.IN_ANNOTATION, Pair.Provenance.NONE)
    # The third label settles it.
    assert judge(campaign, UserFactory(), 1).pair_id == pair.pk
    assert (_fresh(pair).provenance, pair.labels_count) == (Pair.Provenance.UNANIMOUS, 3)


@on_postgresql
def test_a_submit_that_waited_for_a_lowering_settles_its_pair_under_the_new_overlap():
    """3 -> 2 while the pair's second label waits: it settles the pair on its two labels (the
    change's spare slot, for a pair already holding two slots, becomes its re-test), instead
    of leaving it for a third label under the N its request read."""
    campaign = CampaignFactory(annotators_per_pair=3, retest_share=0.0)
    pair = PairFactory(campaign=campaign, priority=2)
    later = PairFactory(campaign=campaign, priority=1)
    lease = _one_label_and_a_stale_lease(campaign, pair)
    holder, release = _holding(later)
    changing = _change_in_thread(campaign, 2)
    try:
        _waiters(1)
        submitting = start_in_thread(
            closing_connections(lambda: label_submit(assignment=lease, data=_a_better(lease)))
        )
        _waiters(2)
    finally:
        release.set()
        holder.result(timeout=30)
    assert changing.result(timeout=30).new == 2
    submitting.result(timeout=30)

    assert (_fresh(pair).labels_count, pair.provenance) == (2, Pair.Provenance.UNANIMOUS)
    assert pair.consensus_preference == 1


@on_postgresql
def test_a_submit_holding_its_pair_commits_under_the_old_overlap_and_the_change_then_waits():
    """The other order: the submit holds the pair (uncommitted) when the change (2 -> 3)
    comes. The change waits for it; the label, committed first, is judged under N = 2, and
    the change leaves the pair it settled as it is."""
    campaign = CampaignFactory(annotators_per_pair=2, retest_share=0.0)
    pair = PairFactory(campaign=campaign)
    lease = _one_label_and_a_stale_lease(campaign, pair)
    submitted, release = threading.Event(), threading.Event()

    def submit_and_hold() -> None:
        with transaction.atomic():
            label_submit(assignment=lease, data=_a_better(lease))
            submitted.set()
            release.wait(30)

    submitting = start_in_thread(closing_connections(submit_and_hold))
    assert submitted.wait(10)
    changing = _change_in_thread(campaign, 3)
    try:
        _waiters(1)  # the change waits for the pair the submit holds
    finally:
        release.set()
        submitting.result(timeout=30)
    change = changing.result(timeout=30)

    assert (change.new, change.pairs_changed) == (3, 0)
    assert (_fresh(pair).labels_count, pair.provenance) == (2, Pair.Provenance.UNANIMOUS)
    assert (pair.status, pair.slot_cap) == (Pair.Status.COMPLETE, 2)


@on_postgresql
def test_an_import_that_waited_for_a_raise_queues_its_pairs_with_the_new_overlap(tmp_path):
    """The import's caller read the campaign (N = 3) before the change to 5; the import waits
    for the change's rounds lock and, once it has it, queues its pairs for five labels (with
    the old cap of 3 they could never reach a consensus that waits for five)."""
    campaign = CampaignFactory(annotators_per_pair=3)
    held = PairFactory(campaign=campaign)  # unsettled: the change locks it
    stale = Campaign.objects.get(pk=campaign.pk)
    path = tmp_path / "pairs.jsonl"
    rows = [{"prompt": f"Question {n}?", "response_a": "yes", "response_b": "no"} for n in (1, 2)]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    holder, release = _holding(held)
    changing = _change_in_thread(campaign, 5)
    try:
        _waiters(1)  # the change holds the rounds lock and waits for `held`
        importing = start_in_thread(
            closing_connections(lambda: pairs_import(campaign=stale, path=path))
        )
        _waiters(2)  # the import waits for the rounds lock
    finally:
        release.set()
        holder.result(timeout=30)
    assert changing.result(timeout=30).new == 5
    result: ImportResult = importing.result(timeout=30)

    assert result.created == 2
    imported = Pair.objects.filter(campaign=campaign).exclude(pk=held.pk)
    assert sorted(imported.values_list("status", "slot_cap")) == [(Pair.Status.QUEUED, 5)] * 2
    assert _fresh(held).slot_cap == 5


@on_postgresql
def test_an_import_that_waited_for_a_change_of_scale_is_checked_against_the_new_scale(tmp_path):
    """The import's caller read the campaign (five-point) before the settings API changed its
    scale to binary (allowed: no pairs yet). The import waits for the change's rounds lock
    and then checks its gold answers against the scale in force: "A much better" (2) is off
    a binary scale, so the file is refused and nothing stored."""
    campaign = CampaignFactory(scale="five_point")
    stale = Campaign.objects.get(pk=campaign.pk)
    path = tmp_path / "gold.jsonl"
    row = {"prompt": "Q?", "response_a": "yes", "response_b": "no", "silver_preference": 2}
    path.write_text(json.dumps(row) + "\n")
    changed, release = threading.Event(), threading.Event()

    def change_and_hold() -> None:
        with transaction.atomic():  # holds the rounds lock campaign_update took
            campaign_update(campaign=Campaign.objects.get(pk=campaign.pk), scale="binary")
            changed.set()
            release.wait(30)

    changing = start_in_thread(closing_connections(change_and_hold))
    try:
        assert changed.wait(10)
        importing = start_in_thread(
            closing_connections(lambda: pairs_import(campaign=stale, path=path, as_gold=True))
        )
        _waiters(1)  # the import waits for the rounds lock
    finally:
        release.set()
        changing.result(timeout=30)

    with pytest.raises(ImportFormatError, match="not on this campaign's scale"):
        importing.result(timeout=30)
    assert not Pair.objects.filter(campaign=campaign).exists()


@pytest.mark.smoke
def test_a_label_changed_after_a_lowering_settles_its_pair_under_the_new_overlap():
    """The change request read N = 3; the overlap was lowered to 2 since. Changing one of the
    pair's two labels computes its consensus under 2, as a submit would."""
    campaign = CampaignFactory(annotators_per_pair=3, retest_share=0.0)
    pair = PairFactory(campaign=campaign)
    first = judge(campaign, UserFactory(), 1)
    judge(campaign, UserFactory(), 1)
    assignment = first.assignment
    assignment.campaign = Campaign.objects.get(pk=campaign.pk)  # as its request read it
    campaign_set_annotators_per_pair(campaign=campaign, annotators_per_pair=2)
    assert _fresh(pair).provenance == Pair.Provenance.NONE

    label_change(assignment=assignment, data=_a_better(assignment))

    assert (_fresh(pair).provenance, pair.labels_count) == (Pair.Provenance.UNANIMOUS, 2)
