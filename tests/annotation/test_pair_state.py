"""The one owner of a pair's state: guarded transitions, and nobody else writing them."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from annotation.models import Assignment, Pair, Round
from annotation.services import pair_state
from tests.factories import PairFactory

ROOT = Path(__file__).resolve().parents[2]


def _status(pair: Pair) -> str:
    pair.refresh_from_db()
    return pair.status


@pytest.mark.django_db
def test_a_round_queues_pooled_pairs_only_and_returns_the_untouched_ones(campaign):
    pooled, queued = PairFactory.create_batch(2, campaign=campaign, status=Pair.Status.POOLED)
    taken = PairFactory(campaign=campaign, status=Pair.Status.POOLED)
    Pair.objects.filter(pk=queued.pk).update(status=Pair.Status.ESCALATED)  # moved meanwhile
    opened = Round.objects.create(campaign=campaign, number=1)
    ids = [pooled.pk, queued.pk, taken.pk]
    assert pair_state.pairs_queue(pair_ids=ids, round_=opened) == 2
    assert pair_state.pair_take_slot(pair_id=taken.pk)
    assert pair_state.pairs_return_to_pool(round_=opened) == 1
    assert (_status(pooled), _status(queued), _status(taken)) == (
        "pooled",
        "escalated",
        "in_annotation",
    )


@pytest.mark.django_db
def test_slots_are_taken_up_to_the_cap_and_given_back_down_to_zero(campaign):
    pair = PairFactory(campaign=campaign, slot_cap=2)
    assert [pair_state.pair_take_slot(pair_id=pair.pk) for _ in range(3)] == [True, True, False]
    released = [
        pair_state.pair_release_slot(pair_id=pair.pk, swapped=False, kind=Assignment.Kind.REGULAR)
        for _ in range(3)
    ]
    assert released == [
        1,
        1,
        0,
    ]
    pair.refresh_from_db()
    assert pair.slots_taken == 0


@pytest.mark.django_db
def test_a_retest_reopens_a_full_complete_pair_once_and_backs_out_after(campaign):
    pair = PairFactory(campaign=campaign, slot_cap=2, slots_taken=2, status=Pair.Status.COMPLETE)
    assert pair_state.pair_reopen_for_retest(pair_id=pair.pk)
    assert not pair_state.pair_reopen_for_retest(pair_id=pair.pk)  # twice adds one slot
    pair.refresh_from_db()
    assert (pair.status, pair.slot_cap) == ("in_annotation", 3)
    assert pair_state.pair_retest_done(pair_id=pair.pk) and _status(pair) == "complete"
    assert not pair_state.pair_retest_done(pair_id=pair.pk)


@pytest.mark.django_db
def test_settling_stores_the_verdict_and_resolving_is_final(campaign):
    pair = PairFactory(campaign=campaign, status=Pair.Status.IN_ANNOTATION)
    status = pair_state.pair_settle(
        pair_id=pair.pk,
        preference=None,
        provenance="unresolved",
        disagreement=0.5,
        escalate=True,
    )
    assert status == _status(pair) == "escalated"
    pair_state.pair_resolve(pair_id=pair.pk, preference=-1, discarded=False)
    pair.refresh_from_db()
    assert (pair.status, pair.provenance, pair.consensus_preference) == (
        "resolved",
        "adjudicated",
        -1,
    )
    assert pair.status in pair_state.FINAL_STATUSES


# Writes of a Pair through the ORM or SQL, outside the owner module.
_PAIR_WRITE = re.compile(
    r"Pair\.objects[^\n]*\n?[^\n]*\.(update|bulk_update)\(|UPDATE annotation_pair|"
    r"UPDATE \{Pair|\.status = Pair\.Status"
)
# In-memory copies kept in step with what a transition just wrote (no database write).
_IN_MEMORY = {"reviewers/services/consensus.py": 1, "reviewers/services/escalations.py": 1}


def test_no_module_but_pair_state_writes_a_pair():
    found: dict[str, int] = {}
    for app in ("annotation", "reviewers", "scoring"):
        for path in (ROOT / app).rglob("*.py"):
            relative = path.relative_to(ROOT).as_posix()
            if "migrations" in relative or relative == "annotation/services/pair_state.py":
                continue
            hits = _PAIR_WRITE.findall(path.read_text())
            if hits:
                found[relative] = len(hits)
    # The two hot-path statements embed pair_state's SQL (TAKE_SLOT_*, COUNT_LABEL_SET_SQL).
    assert found == {
        "annotation/services/assignments.py": 1,
        "annotation/services/labels.py": 1,
        **_IN_MEMORY,
    }
