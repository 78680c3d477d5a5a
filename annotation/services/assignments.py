"""The assignment engine: which pair an annotator judges next.

Guarantees, each held by the database rather than by Python:
- no pair gets more than `slot_cap` active-or-submitted assignments: slots are taken with a
  conditional UPDATE (`slots_taken < slot_cap`) and a CHECK constraint backs it up;
- nobody gets the same pair twice: a UNIQUE (pair, annotator) constraint;
- concurrent annotators do not queue behind each other: candidate rows are locked with
  SELECT … FOR UPDATE SKIP LOCKED, so each transaction takes a different pair.

A new slot is a double-blind re-test when the pair already has a verdict (a consensus: its
provenance is set), and an ordinary label otherwise; the pair's own state decides, not the
campaign's current `annotators_per_pair`, which an admin may change while pairs are out
(`annotation.services.campaigns.campaign_set_annotators_per_pair`).

On PostgreSQL the common case (a regular pair) is one statement: lock a candidate, take its
slot, insert the assignment and return the pair, in one round trip and one implicit
transaction. The ORM path below does the same in several statements; SQLite and gold checks
use it.
"""

from __future__ import annotations

import functools
import random
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any, cast

from django.contrib.auth.models import User
from django.db import IntegrityError, connection, transaction
from django.db.models import Exists, F, OuterRef, Q, QuerySet
from django.utils import timezone

from annotation.errors import AlreadyFinished, AnnotationError
from annotation.models import Assignment, Campaign, CampaignMember, Pair
from annotation.prepared_reads import fetch_one_prepared, instances_from_row, model_columns
from annotation.rankings import display_order_random
from annotation.selectors import member_of
from annotation.services.pair_state import (
    TAKE_SLOT_GUARD_SQL,
    TAKE_SLOT_SET_SQL,
    pair_release_slot,
    pair_take_slot,
)
from core.errors import Conflict

OPEN_STATUSES = (Pair.Status.QUEUED, Pair.Status.IN_ANNOTATION)
_CANDIDATES = 8  # rows locked per attempt; SKIP LOCKED means contention just moves on
_ATTEMPTS = 20


def _supports_skip_locked() -> bool:
    return bool(connection.features.has_select_for_update_skip_locked)


def assignments_expire(*, now: datetime | None = None, limit: int = 1000) -> int:
    """Mark leases past their expiry as expired and give their slots back. Idempotent."""
    now = now or timezone.now()
    with transaction.atomic():
        stale = Assignment.objects.filter(status=Assignment.Status.ACTIVE, lease_expires_at__lt=now)
        if _supports_skip_locked():
            stale = stale.select_for_update(skip_locked=True)
        # In pair order, as every other walk over several pairs locks them: two sweeps, or a
        # sweep and a quarantine's pass, cannot each hold a pair the other waits for.
        rows = list(
            stale.order_by("pair_id", "id").values_list("id", "pair_id", "kind", "swapped")[:limit]
        )
        return _leases_end(rows, now=now)


def assignments_end_for_annotator(
    *, campaign: Campaign, annotator_id: int, now: datetime | None = None
) -> int:
    """End the annotator's live leases in the campaign (they were removed or quarantined) and
    give their slots back. Idempotent."""
    now = now or timezone.now()
    with transaction.atomic():
        rows = (
            Assignment.objects.filter(
                campaign=campaign, annotator_id=annotator_id, status=Assignment.Status.ACTIVE
            )
            .order_by("pair_id", "id")  # pair order, as assignments_expire
            .values_list("id", "pair_id", "kind", "swapped")
        )
        return _leases_end(list(rows), now=now)


def _leases_end(rows: Sequence[tuple[int, int, str, bool]], *, now: datetime) -> int:
    """Expire each still-active lease of ``rows`` (id, pair_id, kind, swapped), in the order
    given, and give its slot back. Returns how many it ended. Run inside the caller's atomic."""
    ended = 0
    for assignment_id, pair_id, kind, swapped in rows:
        # The status guard makes a concurrent submit or skip win cleanly.
        changed = Assignment.objects.filter(
            pk=assignment_id, status=Assignment.Status.ACTIVE
        ).update(status=Assignment.Status.EXPIRED, finished_at=now)
        if changed:
            # Its own orientation, not a recount: a recount's snapshot, taken before the
            # pair's row lock, missed a slot another annotator took meanwhile.
            pair_release_slot(pair_id=pair_id, swapped=swapped, kind=kind)
        ended += changed
    return ended


def balanced_swap(*, slots_taken: int, swapped_taken: int, coin: bool) -> bool:
    """The orientation of a pair's next slot: the one its live slots use less, and the coin
    when they are even. With three annotators a pair is shown two ways one way and once the
    other, which way chosen at random per pair, so a left-leaning annotator cannot tilt it."""
    if 2 * swapped_taken != slots_taken:
        return 2 * swapped_taken < slots_taken
    return coin


# The same rule in SQL over the locked pair row (alias ``p``); ``%(swapped)s`` is the coin.
BALANCED_SWAP_SQL = (
    "CASE WHEN 2 * p.swapped_taken < p.slots_taken THEN true "
    "WHEN 2 * p.swapped_taken > p.slots_taken THEN false ELSE %(swapped)s END"
)


def _active_assignment(campaign: Campaign, annotator: User, now: datetime) -> Assignment | None:
    return (
        Assignment.objects.select_related("pair")
        .filter(
            campaign=campaign,
            annotator=annotator,
            status=Assignment.Status.ACTIVE,
            lease_expires_at__gt=now,
        )
        .order_by("leased_at")
        .first()
    )


# This transaction's id as a number (xid8 is 64-bit, epoch-extended: it never wraps).
_CURRENT_XACT_SQL = "pg_current_xact_id()::text::bigint"


_GUARD_HOLD_SQL = (
    "INSERT INTO annotation_leaseguard (campaign_id, annotator_id, taken_by) "
    "VALUES (%s, %s, pg_current_xact_id()::text::bigint) "
    "ON CONFLICT (annotator_id, campaign_id) DO UPDATE SET taken_by = EXCLUDED.taken_by"
)
_GUARD_HOLD_SQLITE = (
    "INSERT INTO annotation_leaseguard (campaign_id, annotator_id, taken_by) "
    "VALUES (%s, %s, NULL) "
    "ON CONFLICT (annotator_id, campaign_id) DO UPDATE SET taken_by = NULL"
)


def _lease_guard_hold(campaign: Campaign, annotator: User) -> None:
    """Queue behind any simultaneous take of this annotator in this campaign, for the rest of
    the transaction: write their lease guard row. A read of their live lease after this sees
    the other take's lease (a new statement's snapshot on PostgreSQL; on SQLite, IMMEDIATE
    transactions take their turn before they read). The one-statement path writes the same
    row, so either path waits for the other."""
    sql = _GUARD_HOLD_SQL if connection.vendor == "postgresql" else _GUARD_HOLD_SQLITE
    with connection.cursor() as cursor:
        cursor.execute(sql, [campaign.pk, annotator.pk])


def _create_assignment(
    *,
    campaign: Campaign,
    pair: Pair,
    annotator: User,
    kind: str,
    now: datetime,
    swapped: bool,
    pair_loaded: bool = False,
) -> Assignment:
    assignment = Assignment.objects.create(
        campaign=campaign,
        pair_id=pair.pk,
        annotator=annotator,
        round_id=pair.round_id,
        kind=kind,
        swapped=swapped,
        leased_at=now,
        lease_expires_at=now + timedelta(seconds=campaign.lease_seconds),
    )
    # Callers show the pair next: load it whole, once.
    assignment.pair = pair if pair_loaded else Pair.objects.get(pk=pair.pk)
    assignment.campaign = campaign
    return assignment


def _take_regular_pair(
    campaign: Campaign, annotator: User, now: datetime, rng: random.Random
) -> Assignment | None:
    if connection.vendor == "postgresql":
        return _take_regular_pair_in_one_statement(campaign, annotator, now, rng)
    return _take_regular_pair_with_orm(campaign, annotator, now, rng)


def _open_candidates(campaign: Campaign, annotator: User) -> QuerySet[Pair]:
    already_had = Assignment.objects.filter(annotator=annotator, campaign=campaign).values(
        "pair_id"
    )
    return (
        Pair.objects.filter(
            campaign=campaign, status__in=OPEN_STATUSES, slots_taken__lt=F("slot_cap")
        )
        .exclude(pk__in=already_had)
        .order_by("-priority", "id")
    )


# One statement. First the annotator's lease guard (LeaseGuard): its row lock queues this
# call behind a simultaneous take of the same annotator, and the guard lets it on only when
# that take's transaction is in this statement's snapshot (or is this transaction), so that
# the live-lease check below sees its lease; otherwise nothing is taken and the caller reads
# the other call's lease afresh. Then, unless the annotator holds a live lease in this
# campaign, lock the best open pair they never had (skipping rows other transactions hold),
# take one of its slots with the same conditional UPDATE as the ORM path, record the
# assignment and return the whole pair. The orientation is the one the pair's live slots use
# less (BALANCED_SWAP_SQL), decided on the locked row, which FOR UPDATE reads in its latest
# committed version. The UNIQUE (pair, annotator) constraint still guards the insert; if it
# fires, the statement (the slot and the guard included) is undone.
_TAKE_SQL = """
WITH guard AS (
    INSERT INTO annotation_leaseguard AS g (campaign_id, annotator_id, taken_by)
    VALUES (%(campaign)s, %(annotator)s, {current_xact})
    ON CONFLICT (annotator_id, campaign_id) DO UPDATE SET taken_by = EXCLUDED.taken_by
    WHERE g.taken_by IS NULL OR g.taken_by = EXCLUDED.taken_by
       OR pg_visible_in_snapshot(g.taken_by::text::xid8, pg_current_snapshot())
    RETURNING 1
), candidate AS (
    SELECT p.id, p.slots_taken, {balanced_swap} AS swapped
    FROM annotation_pair p
    WHERE EXISTS (SELECT 1 FROM guard)
      AND p.campaign_id = %(campaign)s
      AND p.status IN ({open_statuses})
      AND p.slots_taken < p.slot_cap
      AND NOT EXISTS (
          SELECT 1 FROM annotation_assignment a
          WHERE a.pair_id = p.id AND a.annotator_id = %(annotator)s
      )
      AND NOT EXISTS (
          SELECT 1 FROM annotation_assignment l
          WHERE l.annotator_id = %(annotator)s AND l.campaign_id = %(campaign)s
            AND l.status = {active} AND l.lease_expires_at > %(now)s
      )
    ORDER BY p.priority DESC, p.id
    LIMIT 1
    FOR UPDATE OF p SKIP LOCKED
), taken AS (
    UPDATE annotation_pair p
    SET {take_slot_set}
    FROM candidate
    WHERE p.id = candidate.id AND {take_slot_guard}
    RETURNING p.*, candidate.swapped AS swapped_next
), assigned AS (
    INSERT INTO annotation_assignment (
        campaign_id, pair_id, annotator_id, round_id, status, kind, swapped,
        leased_at, lease_expires_at, finished_at, model_view_shown
    )
    SELECT %(campaign)s, taken.id, %(annotator)s, taken.round_id, {active},
           CASE WHEN taken.provenance <> {no_verdict} THEN {retest} ELSE {regular} END,
           taken.swapped_next, %(now)s, %(expires)s, NULL, false
    FROM taken
    RETURNING id, kind, swapped
)
SELECT assigned.id, assigned.kind, assigned.swapped, {pair_columns}
FROM assigned CROSS JOIN taken
"""


def sql_literal(choice: str) -> str:
    """A model's choice value as an SQL string literal (constants only, never input)."""
    if not choice.replace("_", "").isalnum():
        raise ValueError(f"not a plain choice value: {choice!r}")
    return f"'{choice}'"


@functools.cache
def take_sql() -> str:
    # Statuses and kinds are written into the SQL, not bound: PostgreSQL plans a prepared
    # statement once (a generic plan) only if that plan is as good as a fresh one, and only
    # literal statuses let it prove that the partial queue index (status IN ('queued',
    # 'in_annotation')) applies. With them bound, every call was planned afresh, which cost
    # more than running it.
    # The pair's transition (taking a slot) is pair_state's, embedded here.
    take_slot_set = TAKE_SLOT_SET_SQL.format(
        in_annotation=sql_literal(Pair.Status.IN_ANNOTATION), swapped="candidate.swapped"
    )
    return _TAKE_SQL.format(
        current_xact=_CURRENT_XACT_SQL,
        balanced_swap=BALANCED_SWAP_SQL,
        pair_columns=model_columns(Pair, "taken").select_sql,
        open_statuses=", ".join(sql_literal(status) for status in OPEN_STATUSES),
        take_slot_set=take_slot_set,
        take_slot_guard=TAKE_SLOT_GUARD_SQL,
        active=sql_literal(Assignment.Status.ACTIVE),
        no_verdict="''",  # Pair.Provenance.NONE
        retest=sql_literal(Assignment.Kind.RETEST),
        regular=sql_literal(Assignment.Kind.REGULAR),
    )


def take_params(
    campaign: Campaign, annotator: User, now: datetime, *, swapped: bool
) -> dict[str, Any]:
    return {
        "campaign": campaign.pk,
        "annotator": annotator.pk,
        "swapped": swapped,
        "now": now,
        "expires": now + timedelta(seconds=campaign.lease_seconds),
    }


def _take_regular_pair_in_one_statement(
    campaign: Campaign, annotator: User, now: datetime, rng: random.Random
) -> Assignment | None:
    for _attempt in range(_ATTEMPTS):
        params = take_params(campaign, annotator, now, swapped=rng.random() < 0.5)
        try:
            row = _fetch_one_atomically(take_sql(), params)
        except IntegrityError:
            # The same annotator asked twice at once and the other request got this pair;
            # the statement, slot included, was undone: try again.
            continue
        if row is None:
            # The annotator may hold a lease already (the statement starts no second one).
            current = _active_assignment(campaign, annotator, now)
            if current is not None:
                return current
            # Every candidate may just be locked by another annotator's transaction for a
            # few milliseconds; only report "no work" when none exists at all.
            if not _open_candidates(campaign, annotator).exists():
                return None
            continue
        assignment_id, kind, swapped, *pair_values = row
        (taken,) = instances_from_row(pair_values, [model_columns(Pair, "taken")])
        pair = cast(Pair, taken)
        assignment = Assignment(
            id=assignment_id,
            campaign=campaign,
            pair=pair,
            annotator=annotator,
            round_id=pair.round_id,
            status=Assignment.Status.ACTIVE,
            kind=kind,
            swapped=swapped,
            leased_at=params["now"],
            lease_expires_at=params["expires"],
            finished_at=None,
            model_view_shown=False,
        )
        assignment._state.adding = False
        assignment._state.db = connection.alias
        return assignment
    return None


def _fetch_one_atomically(sql: str, params: dict[str, Any]) -> tuple[Any, ...] | None:
    if connection.in_atomic_block:
        # Inside a caller's transaction a failed statement would doom it: use a savepoint.
        with transaction.atomic():
            return fetch_one_prepared(sql, params)
    # In autocommit mode the statement is its own transaction, all or nothing, with no
    # BEGIN/COMMIT round trips; the row locks last until it ends.
    return fetch_one_prepared(sql, params)


def _take_regular_pair_with_orm(
    campaign: Campaign, annotator: User, now: datetime, rng: random.Random
) -> Assignment | None:
    candidates = _open_candidates(campaign, annotator)
    for _attempt in range(_ATTEMPTS):
        with transaction.atomic():
            _lease_guard_hold(campaign, annotator)
            current = _active_assignment(campaign, annotator, now)
            if current is not None:
                return current  # a simultaneous call of theirs took one meanwhile
            locked = candidates
            if _supports_skip_locked():
                locked = candidates.select_for_update(skip_locked=True, of=("self",))
            rows = list(
                locked.values_list("id", "slots_taken", "round_id", "swapped_taken", "provenance")[
                    :_CANDIDATES
                ]
            )
            if not rows:
                # Every candidate may just be locked by another annotator's transaction for a
                # few milliseconds; only report "no work" when none exists at all.
                if not candidates.exists():
                    return None
                continue
            for pair_id, slots_taken, round_id, swapped_taken, provenance in rows:
                swapped = balanced_swap(
                    slots_taken=slots_taken, swapped_taken=swapped_taken, coin=rng.random() < 0.5
                )
                if not pair_take_slot(pair_id=pair_id, swapped=swapped):
                    continue
                # A pair with a verdict is out again for its re-test (see the module's doc).
                settled = provenance != Pair.Provenance.NONE
                kind = Assignment.Kind.RETEST if settled else Assignment.Kind.REGULAR
                try:
                    with transaction.atomic():
                        return _create_assignment(
                            campaign=campaign,
                            pair=Pair(pk=pair_id, round_id=round_id),
                            annotator=annotator,
                            kind=kind,
                            now=now,
                            swapped=swapped,
                        )
                except IntegrityError:
                    # The same annotator asked twice at once and the other request got this
                    # pair; give the slot back and try the next candidate.
                    pair_release_slot(pair_id=pair_id, swapped=swapped, kind=kind)
                    continue
    return None


def _take_gold_pair(
    campaign: Campaign, annotator: User, now: datetime, rng: random.Random
) -> Assignment | None:
    """Gold checks do not use slots: any number of annotators may see a gold pair."""
    # NOT EXISTS, not NOT IN: the planner may then ask, for each gold pair (pair_gold), whether
    # the annotator had it (assignment_pair_annotator), instead of always reading their whole
    # history in the campaign.
    already_had = Assignment.objects.filter(annotator=annotator, pair_id=OuterRef("pk"))
    gold_ids = list(
        Pair.objects.filter(campaign=campaign, is_gold=True)
        .filter(~Exists(already_had))
        .values_list("id", flat=True)[:200]
    )
    if not gold_ids:
        return None
    pair = Pair.objects.get(pk=rng.choice(gold_ids))
    with transaction.atomic():
        _lease_guard_hold(campaign, annotator)
        current = _active_assignment(campaign, annotator, now)
        if current is not None:
            return current  # a simultaneous call of theirs took one meanwhile
        return _create_gold_assignment(campaign, pair, annotator, now, rng)


def _create_gold_assignment(
    campaign: Campaign, pair: Pair, annotator: User, now: datetime, rng: random.Random
) -> Assignment | None:
    try:
        with transaction.atomic():
            return _create_assignment(
                campaign=campaign,
                pair=pair,
                annotator=annotator,
                kind=Assignment.Kind.GOLD,
                now=now,
                # Gold checks take no slot and measure one annotator each: a fair coin.
                swapped=rng.random() < 0.5,
                pair_loaded=True,
            )
    except IntegrityError:
        return None


def assignment_next(
    *,
    campaign: Campaign,
    annotator: User,
    now: datetime | None = None,
    rng: random.Random | None = None,
) -> Assignment | None:
    """The annotator's current lease, or a new one on the best pair; None when no work.

    A member who qualifies gets gold pairs only (the campaign's qualification count, then
    nothing until admitted; a check whose lease ran out comes back when no other gold pair
    is left, and a campaign short of gold pairs shows in their qualification figures); a
    quarantined member gets nothing new. The membership is the
    one the access helper read with the campaign, or is read here."""
    now = now or timezone.now()
    rng = rng or random.Random()  # noqa: S311 - A/B order and gold sampling, not security
    member = member_of(campaign=campaign, user_id=annotator.pk)
    if member is not None and member.state != CampaignMember.State.ACTIVE:
        assignment = _next_for_inactive_member(campaign, annotator, member, now, rng)
    else:
        assignment = _next_assignment(campaign, annotator, now, rng)
    if assignment is not None and assignment.pair.responses is not None:
        _display_order_ensure(assignment, rng)
    return assignment


def _next_assignment(
    campaign: Campaign, annotator: User, now: datetime, rng: random.Random
) -> Assignment | None:
    if connection.vendor != "postgresql" or campaign.gold_share > 0:
        current = _active_assignment(campaign, annotator, now)
        if current is not None:
            return current
    # Otherwise the one-statement path checks for a current lease itself and returns it.
    if (
        campaign.gold_share > 0
        and rng.random() < campaign.gold_share
        and _gold_stays_silent(campaign, annotator)
    ):
        gold = _take_gold_pair(campaign, annotator, now, rng)
        if gold is not None:
            return gold
    return _take_regular_pair(campaign, annotator, now, rng)


def _gold_stays_silent(campaign: Campaign, annotator: User) -> bool:
    """Whether a gold check drawn now would pass as ordinary work: only while the annotator
    has regular work left. Past it, `next` answered "no work" or a pair by the coin, and a
    pair after "no work" was always a gold check. A campaign of gold checks only (share 1)
    hides nothing. Asked on gold draws alone, so the regular path pays nothing for it."""
    return campaign.gold_share >= 1 or _open_candidates(campaign, annotator).exists()


def qualification_checks_taken(
    *, campaign: Campaign, annotator_id: int, since: datetime | None = None
) -> int:
    """Gold checks the annotator holds or answered in the campaign (skips and expiries not).

    With ``since`` (the membership's start, ``CampaignMember.added_at``), only checks answered
    since then count, as in the qualification figures: a removed and re-added member, or one
    who answered gold checks while the campaign was open to all, is served the qualification
    set again. A lease still held counts whenever it was taken (its answer will count)."""
    taken = Assignment.objects.filter(
        campaign=campaign, annotator_id=annotator_id, kind=Assignment.Kind.GOLD
    )
    if since is None:
        taken = taken.filter(status__in=(Assignment.Status.ACTIVE, Assignment.Status.SUBMITTED))
    else:
        taken = taken.filter(
            Q(status=Assignment.Status.ACTIVE)
            | Q(status=Assignment.Status.SUBMITTED, label__created_at__gte=since)
        )
    return taken.count()


def _next_for_inactive_member(
    campaign: Campaign,
    annotator: User,
    member: CampaignMember,
    now: datetime,
    rng: random.Random,
) -> Assignment | None:
    current = _active_assignment(campaign, annotator, now)
    if current is not None:
        return current
    if member.state != CampaignMember.State.QUALIFYING:
        return None  # quarantined: no new work until an admin restores them
    taken = qualification_checks_taken(
        campaign=campaign, annotator_id=annotator.pk, since=member.added_at
    )
    if taken >= campaign.qualification_gold_count:
        return None  # every check answered: admitted by the last label, or held back
    # A gold pair they never had; else one whose lease ran out (or that they skipped while
    # they were active, or before a check could not be skipped): a qualifying member must
    # not wait for a pair nobody will serve them (UNIQUE (pair, annotator)).
    check = _take_gold_pair(campaign, annotator, now, rng) or _gold_check_reissue(
        campaign, annotator, now
    )
    _qualification_out_of_gold_note(
        member, required=campaign.qualification_gold_count, answered=taken, out=check is None
    )
    return check


def _gold_check_reissue(campaign: Campaign, annotator: User, now: datetime) -> Assignment | None:
    """Lease again the annotator's oldest gold check that ran out or was skipped (expired |
    skipped -> active; a gold check holds no slot, so no pair changes): for a qualifying
    member out of gold pairs they never had. None when there is none."""
    with transaction.atomic():
        _lease_guard_hold(campaign, annotator)
        current = _active_assignment(campaign, annotator, now)
        if current is not None:
            return current  # a simultaneous call of theirs took one meanwhile
        lapsed = Assignment.objects.filter(
            campaign=campaign,
            annotator=annotator,
            kind=Assignment.Kind.GOLD,
            status__in=_LAPSED,
            pair__is_gold=True,
        ).order_by("id")
        for assignment_id in lapsed.values_list("id", flat=True)[:_CANDIDATES]:
            # The status guard: a sweep or another call that moved it first wins.
            if Assignment.objects.filter(pk=assignment_id, status__in=_LAPSED).update(
                status=Assignment.Status.ACTIVE,
                leased_at=now,
                lease_expires_at=now + timedelta(seconds=campaign.lease_seconds),
                finished_at=None,
            ):
                return Assignment.objects.select_related("pair").get(pk=assignment_id)
    return None


_LAPSED = (Assignment.Status.EXPIRED, Assignment.Status.SKIPPED)
# The qualification figures' outcome while the campaign has no gold pair left to serve a
# qualifying member (the members page and API show it, so the admin sees the stall).
OUT_OF_GOLD = "no gold left"


def _qualification_out_of_gold_note(
    member: CampaignMember, *, required: int, answered: int, out: bool
) -> None:
    """Keep the member's qualification figures telling whether they wait for gold pairs the
    campaign lacks. Written only when that changes (the workspace asks every 30 seconds).

    The figures are display only (``annotation.services.members`` owns the member's state;
    ``reviewers`` rewrites the figures with each gold label); this module is the one that
    knows no gold pair is left, and members imports it, not the other way round."""
    figures = dict(member.qualification or {})
    if out == (figures.get("outcome") == OUT_OF_GOLD):
        return
    if out:
        figures.setdefault("checks", answered)
        figures["required"] = required
        figures["outcome"] = OUT_OF_GOLD
    else:
        figures["outcome"] = "in progress"  # gold pairs came: served one
    CampaignMember.objects.filter(pk=member.pk).update(qualification=figures)
    member.qualification = figures


def _display_order_ensure(assignment: Assignment, rng: random.Random) -> None:
    """Give a K-wise assignment its random display order, once.

    A separate UPDATE, so that the A/B engine's one statement stays as it is; only ranking
    items pay for it. The null guard makes a concurrent `next` for the same lease keep the
    first order written.
    """
    if assignment.display_order is not None:
        return
    order = display_order_random(len(assignment.pair.responses or ()), rng)
    written = Assignment.objects.filter(pk=assignment.pk, display_order__isnull=True).update(
        display_order=order
    )
    if written:
        assignment.display_order = order
    else:
        assignment.display_order = Assignment.objects.values_list("display_order", flat=True).get(
            pk=assignment.pk
        )


class QualificationCheckNotSkippable(Conflict, AnnotationError):
    code = "qualification_check"


def assignment_is_qualification_check(*, assignment: Assignment) -> bool:
    """Whether the pair is a qualifying member's gold check (an active member's gold check
    passes as ordinary work). The membership is the one the access check read with the
    campaign where it did (no query then)."""
    if assignment.kind != Assignment.Kind.GOLD:
        return False
    member = member_of(campaign=assignment.campaign, user_id=assignment.annotator_id)
    return member is not None and member.state == CampaignMember.State.QUALIFYING


def assignment_skip(*, assignment: Assignment, now: datetime | None = None) -> None:
    """Give the slot back; the annotator never sees this pair again.

    A qualifying member's gold check cannot be skipped: it is one of the few checks that
    decide their admission, and a skipped one would leave them short of checks (409)."""
    now = now or timezone.now()
    if assignment.status != Assignment.Status.ACTIVE:
        # Answered, lapsed or skipped already: said so first, not "answer it" of a check that
        # cannot be answered any more (the update below guards against a change since).
        raise AlreadyFinished("This assignment is no longer active.")
    if assignment_is_qualification_check(assignment=assignment):
        raise QualificationCheckNotSkippable(
            "A qualification check cannot be skipped: answer it as best you can "
            "(your qualification counts your answers to these checks)."
        )
    with transaction.atomic():
        changed = Assignment.objects.filter(
            pk=assignment.pk, status=Assignment.Status.ACTIVE
        ).update(status=Assignment.Status.SKIPPED, finished_at=now)
        if not changed:
            raise AlreadyFinished("This assignment is no longer active.")
        pair_release_slot(
            pair_id=assignment.pair_id, swapped=assignment.swapped, kind=assignment.kind
        )
    assignment.status = Assignment.Status.SKIPPED
