"""The one owner of a pair's state: every write of ``Pair.status``, its slots, its verdict
(consensus, provenance, disagreement), its gold and curation flags and its priority goes
through a function here; the other modules and apps call them.

States (``Pair.Status``) and the transitions between them::

    pooled ──pairs_queue──> queued ──pair_take_slot──> in_annotation ──pair_settle──> complete
       ^                      │                          ^      │                       │
       └──pairs_return_to_pool┘            pair_reopen_for_retest └─────> escalated <────┘
                                       (complete -> in_annotation;       (pair_settle or
                                        pair_retest_done goes back)       pair_escalate)
    escalated ──pair_resolve──> resolved | discarded   (final: nothing reopens them)

plus counters (``pair_count_label``, ``pair_release_slot``, ``pair_set_aside_label``), caps
(``pairs_apply_overlap``: a campaign's new ``annotators_per_pair``), flags
(``pair_make_gold``, ``pairs_set_curation``) and priorities (``pairs_raise_priority``, not a
transition).

Where two writers race, the transition is a conditional UPDATE whose WHERE clause states the
state it leaves (``status = 'pooled'``, ``slots_taken < slot_cap`` ...), and the caller reads
the row count; where a caller must decide on what it read, it holds the row lock
(``pair_lock_status``). The two hot-path statements (taking a slot with the assignment, and
counting a label with its submit, in ``annotation.services.assignments`` and ``labels``) run
as one prepared statement each for speed; they embed the SQL of their transition from here
(``TAKE_SLOT_SET_SQL``, ``COUNT_LABEL_SET_SQL``), so the rule still lives in this module.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from django.db import connection, transaction
from django.db.models import Case, Count, F, OuterRef, Q, QuerySet, Subquery, Value, When
from django.db.models.functions import Coalesce, Greatest

from annotation.models import Assignment, Campaign, Outcome, Pair, Round
from annotation.prepared_reads import fetch_all_prepared
from core.iterables import batched

FINAL_STATUSES = (Pair.Status.RESOLVED, Pair.Status.DISCARDED)
# Statuses of the pairs in rounds still waiting for labels.
_UNSETTLED = (Pair.Status.QUEUED, Pair.Status.IN_ANNOTATION)
# Statuses that still wait for labels: marking such a pair gold takes it out of the queue.
_NOT_YET_LABELLED = (Pair.Status.POOLED, Pair.Status.QUEUED, Pair.Status.IN_ANNOTATION)

# The slot-taking transition as SQL (alias ``p``), for the assignment engine's one-statement
# path; ``pair_take_slot`` is the same rule through the ORM.
TAKE_SLOT_GUARD_SQL = "p.slots_taken < p.slot_cap"
# ``{swapped}`` is an SQL boolean: the orientation the new slot is shown in.
TAKE_SLOT_SET_SQL = (
    "slots_taken = p.slots_taken + 1, swapped_taken = p.swapped_taken + ({swapped})::int, "
    "status = {in_annotation}"
)
# Counting a label, for the submit's one-statement path; ``pair_count_label`` through the ORM.
COUNT_LABEL_SET_SQL = "labels_count = labels_count + 1"


def pair_lock_status(*, pair_id: int) -> str:
    """The pair's status, read under its row lock (held until the transaction ends)."""
    return Pair.objects.select_for_update().values_list("status", flat=True).get(pk=pair_id)


def pair_lock_open(*, pair_id: int, wait: bool = True) -> bool | None:
    """Take the pair's row lock and say whether it still waits for labels with no verdict
    (unsettled, no consensus): None, without waiting, when ``wait`` is False and another
    transaction holds it (or the pair is gone)."""
    row = (
        Pair.objects.select_for_update(skip_locked=not wait)
        .filter(pk=pair_id)
        .values_list("status", "provenance")
        .first()
    )
    if row is None:
        return None
    status, provenance = row
    return status in (Pair.Status.QUEUED, Pair.Status.IN_ANNOTATION) and (
        provenance == Pair.Provenance.NONE
    )


def pair_lock(*, pair_id: int) -> None:
    """Take the pair's row lock (until the transaction ends) without reading anything."""
    list(Pair.objects.select_for_update().filter(pk=pair_id).values_list("pk"))


# --- rounds ---------------------------------------------------------------------------------


def pairs_queue(
    *,
    pair_ids: Sequence[int] | QuerySet[Pair, Any],
    round_: Round,
    selection: str = Pair.Selection.PRIORITY,
) -> int:
    """pooled -> queued in ``round_``, marked with how the round chose them (by priority or
    at random); pairs no longer pooled are left alone. ``pair_ids`` may be a sliced queryset
    of ids, so that a round's ids stay in the database.

    A queued pair takes the campaign's ``annotators_per_pair`` as it is now (read in the same
    statement), whatever it was when the pair was imported: a change of the campaign's
    overlap (``pairs_apply_overlap``) reaches the pairs in rounds, and the pool's pairs get
    it here, however many they are. The caller holds the campaign's rounds lock, which that
    change takes too."""
    per_pair = (
        Campaign.objects.filter(pk=round_.campaign_id).order_by().values("annotators_per_pair")
    )
    return Pair.objects.filter(pk__in=pair_ids, status=Pair.Status.POOLED).update(
        status=Pair.Status.QUEUED,
        round=round_,
        selection=selection,
        # A pooled pair holds no slot; Greatest keeps the CHECK true whatever a row says.
        slot_cap=Greatest(Subquery(per_pair[:1]), F("slots_taken")),
    )


def pairs_return_to_pool(*, round_: Round) -> int:
    """queued | in_annotation -> pooled for the round's pairs that hold no slot, no label and
    no verdict: never taken, or every lease of theirs skipped or lapsed (in annotation, no one
    on them: left there, a pair every member skipped stayed in the closed round for good). The
    UPDATE's guard is the state it leaves: a slot taken meanwhile keeps the pair."""
    return Pair.objects.filter(
        round=round_,
        status__in=_UNSETTLED,
        slots_taken=0,
        labels_count=0,
        provenance=Pair.Provenance.NONE,
        is_gold=False,
    ).update(status=Pair.Status.POOLED, round=None, selection=Pair.Selection.NONE)


# --- slots and labels -------------------------------------------------------------------------


@dataclass(frozen=True)
class OverlapApplied:
    """What ``pairs_apply_overlap`` did to a campaign's pairs in rounds, not yet settled."""

    # The pairs in rounds not yet settled, which take the new overlap.
    unsettled: int
    # Of those, pairs that already held the new overlap's labels, every slot labelled: each
    # takes one label more, which settles it on all its labels (a pair with leases out
    # settles on the labels in flight).
    one_more: int
    # Pairs whose cap changed (the others had it already).
    changed: int


def _overlap_cap(annotators_per_pair: int) -> Case:
    """The cap of a pair not yet settled under an overlap of ``annotators_per_pair`` (N):
    N while fewer than N slots are in use; else the slots in use while a lease is out (never
    fewer: the CHECK ``pair_slots_within_cap``), and one more than in use once every slot
    holds a label. Its consensus is computed when a label arrives and finds N labels: a
    lease out brings that label (or, lapsed, frees its slot for someone who will), while a
    pair that already holds N labels with none out would otherwise wait for good (a label
    that took the pair's lock before the change was counted under the old N), so it takes
    one label more. A spare slot beside leases out would take labels nobody asked for: one
    more than in use each, taken as ordinary labels before the in-flight ones settle it (a
    pair lowered from 5 to 2 with 5 leases out got 6)."""
    return Case(
        When(slots_taken__lt=annotators_per_pair, then=Value(annotators_per_pair)),
        When(labels_count__lt=F("slots_taken"), then=F("slots_taken")),
        default=F("slots_taken") + 1,
        output_field=Pair._meta.get_field("slot_cap"),
    )


def pairs_apply_overlap(*, campaign_id: int, annotators_per_pair: int) -> OverlapApplied:
    """Give the campaign's pairs in rounds and not yet settled (queued or in annotation, no
    verdict, not gold) the cap of a new overlap (``_overlap_cap``); settled pairs (a
    consensus, a re-test out, escalated, decided, gold) keep the labels and slots they have,
    and pooled pairs take the campaign's overlap when a round queues them (``pairs_queue``).

    One set-based UPDATE (its rows are the campaign's open work, read through the
    ``pair_campaign_status_gold`` index, never the pool); a pair already at its cap is not
    written, so running it again changes nothing. On PostgreSQL the rows are locked in pair
    order first, as every other walk over several pairs locks them (the lease sweep, a
    quarantine's pass), so none of them deadlocks with this; a take or a submit holding a
    pair is waited for, and the cap is computed on the pair as it left it, so the CHECK
    holds. The caller holds the campaign's rounds lock and changes the campaign's
    ``annotators_per_pair`` in the same transaction."""
    unsettled = Pair.objects.filter(
        campaign_id=campaign_id,
        status__in=_UNSETTLED,
        is_gold=False,
        provenance=Pair.Provenance.NONE,
    )
    counts = unsettled.aggregate(
        unsettled=Count("pk"),
        # A lease out brings the label that settles its pair: no label more for it.
        one_more=Count(
            "pk",
            filter=Q(slots_taken__gte=annotators_per_pair, labels_count__gte=F("slots_taken")),
        ),
    )
    if connection.vendor == "postgresql":
        changed = _apply_overlap_in_pair_order(campaign_id, annotators_per_pair)
    else:  # one writer at a time (SQLite): no lock order to keep
        cap = _overlap_cap(annotators_per_pair)
        changed = unsettled.exclude(slot_cap=cap).update(slot_cap=cap)
    return OverlapApplied(
        unsettled=counts["unsettled"], one_more=counts["one_more"], changed=changed
    )


# _overlap_cap in SQL, over the pair's latest version (alias ``p``).
_OVERLAP_CAP_SQL = (
    "CASE WHEN p.slots_taken < %(per_pair)s THEN %(per_pair)s "
    "WHEN p.labels_count < p.slots_taken THEN p.slots_taken ELSE p.slots_taken + 1 END"
)
# Django drops the ORDER BY of an ``id__in`` subquery, which would lock the rows in index
# order: hence SQL. Only constant names are formatted in. Every unsettled pair is locked, its
# cap changed or not: a label's consensus reads the overlap again under its pair's lock
# (``annotation.services.labels``), which is right only because this change holds that lock
# from before it commits the new overlap.
_APPLY_OVERLAP_SQL = """
UPDATE {table} AS p SET slot_cap = {cap}
FROM (
    SELECT id FROM {table}
    WHERE campaign_id = %(campaign)s AND status IN (%(queued)s, %(in_annotation)s)
      AND NOT is_gold AND provenance = %(no_verdict)s
    ORDER BY id
    FOR UPDATE
) AS locked
WHERE p.id = locked.id AND p.slot_cap <> {cap}
"""


def _apply_overlap_in_pair_order(campaign_id: int, annotators_per_pair: int) -> int:
    sql = _APPLY_OVERLAP_SQL.format(
        table=connection.ops.quote_name(Pair._meta.db_table), cap=_OVERLAP_CAP_SQL
    )
    with connection.cursor() as cursor:
        cursor.execute(
            sql,
            {
                "campaign": campaign_id,
                "per_pair": annotators_per_pair,
                "queued": Pair.Status.QUEUED.value,
                "in_annotation": Pair.Status.IN_ANNOTATION.value,
                "no_verdict": Pair.Provenance.NONE.value,
            },
        )
        return int(cursor.rowcount)


def pair_take_slot(*, pair_id: int, swapped: bool = False) -> bool:
    """queued | in_annotation -> in_annotation, taking a slot shown ``swapped`` (or not);
    False when none is free."""
    return bool(
        Pair.objects.filter(pk=pair_id, slots_taken__lt=F("slot_cap")).update(
            slots_taken=F("slots_taken") + 1,
            swapped_taken=F("swapped_taken") + int(swapped),
            status=Pair.Status.IN_ANNOTATION,
        )
    )


def _live_swapped_slots() -> Coalesce:
    """The pair's (``OuterRef("pk")``) slots shown swapped: its leased or labelled
    assignments but gold checks and labels set aside."""
    live_swapped = (
        Assignment.objects.filter(
            pair_id=OuterRef("pk"),
            swapped=True,
            status__in=(Assignment.Status.ACTIVE, Assignment.Status.SUBMITTED),
        )
        .exclude(kind=Assignment.Kind.GOLD)
        .exclude(label__set_aside=True)
        .values("pair_id")
        .annotate(n=Count("pk"))
        .values("n")
    )
    return Coalesce(Subquery(live_swapped), 0)


def pair_release_slot(*, pair_id: int, swapped: bool, kind: str) -> int:
    """Give back the slot of an assignment of ``kind`` (its lease expired, was skipped or
    ended, or its insert failed); ``swapped``: the released slot's orientation. A gold check
    holds no slot: nothing changes. The slot always goes back: a swapped count already at
    zero (it should not be) stays there rather than keeping the slot."""
    if kind == Assignment.Kind.GOLD:
        return 0
    update: dict[str, Any] = {
        "slots_taken": F("slots_taken") - 1,
        "swapped_taken": Greatest(F("swapped_taken") - int(swapped), 0),
    }
    if kind == Assignment.Kind.RETEST:
        # A re-test's slot freed on a complete pair (it settled, a label changed, while the
        # re-test was out): back in annotation, or no one would be served the re-test. A
        # regular lease lapsing on a pair its other labels settled (its overlap was lowered
        # while it was out) leaves it complete: reopened, it was served as a re-test that
        # nobody asked for.
        update["status"] = Case(
            When(status=Pair.Status.COMPLETE, is_gold=False, then=Value(Pair.Status.IN_ANNOTATION)),
            default=F("status"),
        )
    else:
        cap = _cap_after_release(pair_id)
        if cap is not None:
            update["slot_cap"] = cap
    return Pair.objects.filter(pk=pair_id, slots_taken__gt=0).update(**update)


def _cap_after_release(pair_id: int) -> int | None:
    """The cap of a pair one of whose regular slots goes back, read under its row lock (taken
    here, as the release's UPDATE would): None to keep it.

    On a pair with a verdict the slot goes with it: kept, a later settle (the labels still in
    flight) would find a slot free and reopen the pair for that re-test. On a pair without
    one whose cap is above the campaign's N (lowered while leases were out: its cap was the
    slots in use, ``_overlap_cap``), the cap follows the slots: kept, the freed slot went to
    another annotator, or stayed free when the labels in flight settled the pair, which then
    served it as a re-test nobody asked for. The overlap change holds the pair's lock until
    it commits, so the N read after the lock is the one in force."""
    row = (
        Pair.objects.select_for_update(of=("self",))
        .filter(pk=pair_id, slots_taken__gt=0)
        .values_list(
            "provenance", "slot_cap", "slots_taken", "labels_count", "campaign__annotators_per_pair"
        )
        .first()
    )
    if row is None:
        return None
    provenance, cap, taken, labels, per_pair = row
    if provenance != Pair.Provenance.NONE:
        return max(cap - 1, 0)
    if cap <= per_pair:
        return None
    left = taken - 1
    if left < per_pair:
        return per_pair
    return min(cap, left if labels < left else left + 1)


def pair_set_aside_label(*, pair_id: int) -> int:
    """A label on the unsettled pair was set aside (its annotator was quarantined): the pair
    counts one label and one slot fewer, so another annotator takes the slot, and its
    swapped slots are recounted without that label (call after setting it aside), so the
    orientations stay balanced. Under the pair's row lock; only a pair still waiting for
    labels changes."""
    return Pair.objects.filter(
        pk=pair_id,
        status__in=(Pair.Status.QUEUED, Pair.Status.IN_ANNOTATION),
        slots_taken__gt=0,
        labels_count__gt=0,
    ).update(
        slots_taken=F("slots_taken") - 1,
        labels_count=F("labels_count") - 1,
        swapped_taken=_live_swapped_slots(),
    )


def pair_count_label(*, pair_id: int) -> None:
    """One more label; the UPDATE takes the pair's row lock until commit, which serialises
    concurrent submits for one pair (the last of them computes the consensus)."""
    Pair.objects.filter(pk=pair_id).update(labels_count=F("labels_count") + 1)


# --- verdicts -------------------------------------------------------------------------------

# Run under the pair's row lock on every N-th label: a prepared statement, no ORM compiling.
_SETTLE_SQL = (
    f"UPDATE {Pair._meta.db_table} "  # noqa: S608 - a constant table name only
    "SET consensus_preference = %s, consensus_outcome = %s, provenance = %s, disagreement = %s, "
    # A settled pair with a slot still free stays in annotation: the slot is its re-test's
    # (pair_reopen_for_retest), which a changed label must not drop (no complete pair is
    # served).
    "status = CASE WHEN %s AND slots_taken < slot_cap THEN %s ELSE %s END, "
    # A majority carries no posterior; a weighted re-estimate sets it again later.
    "consensus_posterior = NULL WHERE id = %s RETURNING status"
)


def pair_settle(
    *,
    pair_id: int,
    preference: int | None,
    provenance: str,
    disagreement: float,
    escalate: bool,
    outcome: str = Outcome.PREFERENCE,
) -> str:
    """in_annotation -> complete, or escalated when a rule fired, storing the consensus; a
    pair whose re-test slot is still free stays (or goes back) in_annotation.

    The caller holds the pair's row lock and has checked that the pair is not final.
    ``outcome``: "both_bad"/"both_good" when the labels' consensus said so (preference 0).
    Returns the new status.
    """
    status = Pair.Status.ESCALATED if escalate else Pair.Status.COMPLETE
    rows = fetch_all_prepared(
        _SETTLE_SQL,
        [
            preference,
            str(outcome),
            str(provenance),
            disagreement,
            not escalate,
            str(Pair.Status.IN_ANNOTATION),
            str(status),
            pair_id,
        ],
    )
    return str(rows[0][0]) if rows else status


def pair_settle_ranking(
    *,
    pair_id: int,
    ranking: list[list[int]] | None,
    preference: int | None,
    provenance: str,
    disagreement: float,
    escalate: bool,
) -> str:
    """pair_settle for a K-wise item: also stores its consensus ranking (canonical).
    Same preconditions as pair_settle; returns the new status."""
    if escalate:
        new_status: Any = Pair.Status.ESCALATED
    else:
        # As pair_settle: a free re-test slot keeps the pair in annotation.
        new_status = Case(
            When(slots_taken__lt=F("slot_cap"), then=Value(Pair.Status.IN_ANNOTATION)),
            default=Value(Pair.Status.COMPLETE),
        )
    pairs = Pair.objects.filter(pk=pair_id)
    pairs.update(
        consensus_ranking=ranking,
        consensus_preference=preference,
        consensus_posterior=None,
        provenance=provenance,
        disagreement=disagreement,
        status=new_status,
    )
    if escalate:
        return Pair.Status.ESCALATED
    return pairs.values_list("status", flat=True).first() or Pair.Status.COMPLETE


def pairs_settle_weighted(
    *,
    rows: Iterable[tuple[int, int, float]],
    direction_changed: Callable[[list[int]], object] | None = None,
) -> int:
    """Store a reliability-weighted verdict ``(pair_id, preference, posterior)`` on pairs the
    labels' majority settled (complete, not gold, no expert decision): the status stays
    complete. A locked read and one update per thousand rows, read from ``rows`` as they come
    (a stream of millions is fine); returns how many changed.

    ``direction_changed`` is called with the ids of each chunk's pairs whose verdict changed
    direction (A, tie, B), in the chunk's transaction with their rows still locked: what was
    checked against the old verdict (a re-test) is checked again in the same commit, so a
    crash cannot leave a flipped verdict unchecked (its re-run would find nothing to change).
    """
    changed = 0
    for chunk in batched(rows, 1000):
        by_id = {pair_id: (preference, posterior) for pair_id, preference, posterior in chunk}
        with transaction.atomic():
            changes, flipped = _settle_weighted_chunk(by_id)
            changed += changes
            if flipped and direction_changed is not None:
                direction_changed(flipped)
    return changed


def _weighted_settleable(pair_ids: Iterable[int]) -> QuerySet[Pair]:
    return Pair.objects.filter(
        pk__in=pair_ids,
        status=Pair.Status.COMPLETE,
        is_gold=False,
        # "Both bad"/"both good" stay so: a weighted verdict on who is better would make them
        # a chosen/rejected pair.
        consensus_outcome=Outcome.PREFERENCE,
        provenance__in=(
            Pair.Provenance.UNANIMOUS,
            Pair.Provenance.MAJORITY,
            Pair.Provenance.DAWID_SKENE,
        ),
    )


_WEIGHTED_STATE = ("pk", "consensus_preference", "consensus_posterior", "provenance")


def _weighted_changes(
    rows: Iterable[tuple[int, int | None, float | None, str]],
    by_id: dict[int, tuple[int, float]],
    flipped: list[int] | None = None,
) -> list[tuple[int, int, float]]:
    """``(pair_id, preference, posterior)`` of the stored states ``rows`` the verdicts change;
    the ids of those whose direction changes are appended to ``flipped``."""
    changes = []
    for pair_id, stored_preference, stored_posterior, provenance in rows:
        preference, posterior = by_id[pair_id]
        if (
            stored_preference == preference
            and provenance == Pair.Provenance.DAWID_SKENE
            and stored_posterior is not None
            and abs(stored_posterior - posterior) < 1e-9
        ):
            continue  # a re-run changes nothing
        changes.append((pair_id, preference, posterior))
        if flipped is not None and (
            stored_preference is None or _sign(stored_preference) != _sign(preference)
        ):
            flipped.append(pair_id)
    return changes


def _sign(value: int) -> int:
    return (value > 0) - (value < 0)


def _settle_weighted_chunk(by_id: dict[int, tuple[int, float]]) -> tuple[int, list[int]]:
    """How many of the chunk's pairs changed, and the ids of those whose direction did."""
    # First a plain read: a re-estimate that changes nothing (the usual case, every 30 s on a
    # busy campaign) locks and dirties no row; locking a million rows wrote 272 MB of WAL.
    stale = _weighted_changes(_weighted_settleable(by_id).values_list(*_WEIGHTED_STATE), by_id)
    if not stale:
        return 0, []
    # Then the rows to change, locked in id order and compared again: a label change or an
    # escalation of one of them waits, so neither is overwritten by a verdict read before it.
    # (A pair a label changes after the read is left to the re-estimate that label asks for.)
    locked = (
        _weighted_settleable([pair_id for pair_id, _preference, _posterior in stale])
        .select_for_update()
        .order_by("pk")
        .values_list(*_WEIGHTED_STATE)
    )
    flipped: list[int] = []
    changes = _weighted_changes(locked, by_id, flipped)
    if connection.vendor == "postgresql":
        _update_weighted_in_one_statement(changes)
    else:
        Pair.objects.bulk_update(
            [
                Pair(
                    pk=pair_id,
                    consensus_preference=preference,
                    consensus_posterior=posterior,
                    provenance=Pair.Provenance.DAWID_SKENE,
                )
                for pair_id, preference, posterior in changes
            ],
            ["consensus_preference", "consensus_posterior", "provenance"],
        )
    return len(changes), flipped


# bulk_update's CASE WHEN id = … per column makes a thousand-row update compare every row
# with every id (about a second a chunk: 16 minutes for a million pairs); a join on the
# unnested arrays is one pass.
_UPDATE_WEIGHTED_SQL = """
UPDATE {table} AS pair
SET {preference} = verdict.preference, {posterior} = verdict.posterior, {provenance} = %s
FROM unnest(%s::bigint[], %s::integer[], %s::double precision[])
    AS verdict(id, preference, posterior)
WHERE pair.{id} = verdict.id
"""


def _update_weighted_in_one_statement(changes: list[tuple[int, int, float]]) -> None:
    if not changes:
        return
    quote = connection.ops.quote_name
    column_of = {field.name: field.column for field in Pair._meta.concrete_fields}
    columns = {
        placeholder: quote(column_of[field]) for placeholder, field in _WEIGHTED_COLUMNS.items()
    }
    sql = _UPDATE_WEIGHTED_SQL.format(table=quote(Pair._meta.db_table), **columns)
    with connection.cursor() as cursor:
        cursor.execute(
            sql,
            [
                Pair.Provenance.DAWID_SKENE,
                [pair_id for pair_id, _preference, _posterior in changes],
                [preference for _pair_id, preference, _posterior in changes],
                [posterior for _pair_id, _preference, posterior in changes],
            ],
        )


_WEIGHTED_COLUMNS = {
    "id": "id",
    "preference": "consensus_preference",
    "posterior": "consensus_posterior",
    "provenance": "provenance",
}


def pair_reopen_for_retest(*, pair_id: int) -> bool:
    """complete -> in_annotation with one more slot, for a double-blind re-test. Only a pair
    with no free slot left gets one: running this twice adds one slot."""
    return bool(
        Pair.objects.filter(
            pk=pair_id, status=Pair.Status.COMPLETE, slot_cap__lte=F("slots_taken")
        ).update(slot_cap=F("slots_taken") + 1, status=Pair.Status.IN_ANNOTATION)
    )


def pair_retest_done(*, pair_id: int) -> bool:
    """in_annotation -> complete once the re-test label is in, unless an escalation or a
    decision moved the pair meanwhile."""
    return bool(
        Pair.objects.filter(pk=pair_id, status=Pair.Status.IN_ANNOTATION).update(
            status=Pair.Status.COMPLETE
        )
    )


def pair_escalate(*, pair_id: int) -> None:
    """-> escalated. The caller holds the row lock and has checked the pair is not final."""
    Pair.objects.filter(pk=pair_id).update(status=Pair.Status.ESCALATED)


def pair_resolve(
    *,
    pair_id: int,
    preference: int | None,
    discarded: bool,
    ranking: list[list[int]] | None = None,
) -> None:
    """escalated -> resolved (the expert's preference, and ranking for a K-wise item) or
    discarded. Under the row lock. An expert's preference replaces a "both bad"/"both good"
    consensus outcome. A discarded item keeps no ranking either: it has no chosen side."""
    extra: dict[str, object] = {} if ranking is None else {"consensus_ranking": ranking}
    if discarded:
        extra["consensus_ranking"] = None
    Pair.objects.filter(pk=pair_id).update(
        **extra,
        consensus_preference=preference,
        consensus_outcome=Outcome.PREFERENCE,
        consensus_posterior=None,  # an expert's decision, not an estimate
        provenance=Pair.Provenance.DISCARDED if discarded else Pair.Provenance.ADJUDICATED,
        status=Pair.Status.DISCARDED if discarded else Pair.Status.RESOLVED,
    )


# --- flags and priority ---------------------------------------------------------------------


class GoldRefusal(StrEnum):
    """Why a pair cannot take a gold answer; each way of making pairs gold words it."""

    ESCALATED = "escalated"  # waiting for an expert: decide it first
    DISCARDED = "discarded"  # discarded as ambiguous
    EXPERT_DECIDED_OTHERWISE = "expert_decided_otherwise"  # the expert's decision stands


def pair_gold_refusal(*, pair: Pair, preference: int) -> GoldRefusal | None:
    """Why ``pair`` (not gold yet, read under its row lock) cannot become gold with this
    answer, or None. Being judged right now is the callers' to check: the API refuses such a
    pair, a gold import leaves it for later."""
    if pair.status == Pair.Status.ESCALATED:
        return GoldRefusal.ESCALATED
    if pair.status == Pair.Status.DISCARDED:
        return GoldRefusal.DISCARDED
    if pair.provenance == Pair.Provenance.ADJUDICATED and pair.consensus_preference != preference:
        return GoldRefusal.EXPERT_DECIDED_OTHERWISE
    return None


def pair_make_gold(*, pair: Pair, preference: int) -> None:
    """Flag the pair gold with its known answer (canonical). ``pair`` was read under its row
    lock; the caller has refused what ``pair_gold_refusal`` refuses, and leased pairs. The
    answer becomes the consensus unless an expert decided the pair; a pair still waiting for
    labels leaves the queue (-> complete)."""
    updates: dict[str, object] = {"is_gold": True, "gold_preference": preference}
    if pair.provenance != Pair.Provenance.ADJUDICATED:
        updates.update(
            consensus_preference=preference,
            consensus_posterior=None,
            provenance=Pair.Provenance.GOLD,
        )
    if pair.status in _NOT_YET_LABELLED:
        updates["status"] = Pair.Status.COMPLETE
    Pair.objects.filter(pk=pair.pk).update(**updates)


def pairs_set_curation(*, pair_ids: Sequence[int], curation: str) -> None:
    """Stage-2 curation's verdict (a flag: the pair's status does not change)."""
    if pair_ids:
        Pair.objects.filter(pk__in=pair_ids).update(curation=curation)


def pairs_raise_priority_to(*, rows: Sequence[tuple[int, float, str]]) -> None:
    """Raise pairs' priority to at least the given value, with its reason: one statement per
    call (``rows`` of ``(pair_id, priority, reason)``; a priority never drops, so an admin's
    higher manual priority is kept)."""
    if not rows:
        return
    table = connection.ops.quote_name(Pair._meta.db_table)
    values = ", ".join(["(%s, %s, %s)"] * len(rows))
    params = [value for row in rows for value in row]
    with connection.cursor() as cursor:
        # Only our own table name and placeholders are formatted into the SQL.
        cursor.execute(
            f"WITH v(id, priority, reason) AS (VALUES {values}) "  # noqa: S608
            f"UPDATE {table} SET priority = v.priority, priority_reason = v.reason "
            f"FROM v WHERE {table}.id = v.id AND {table}.priority <= v.priority",
            params,
        )


def pairs_raise_priority(*, pairs: Iterable[Pair]) -> None:
    """Store new ``priority`` and ``priority_reason`` values (not a transition: a ranking)."""
    Pair.objects.bulk_update(list(pairs), ["priority", "priority_reason"], batch_size=1000)
