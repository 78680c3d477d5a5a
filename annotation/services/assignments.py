"""The assignment engine: which pair an annotator judges next.

Guarantees, each held by the database rather than by Python:
- no pair gets more than `slot_cap` active-or-submitted assignments: slots are taken with a
  conditional UPDATE (`slots_taken < slot_cap`) and a CHECK constraint backs it up;
- nobody gets the same pair twice: a UNIQUE (pair, annotator) constraint;
- concurrent annotators do not queue behind each other: candidate rows are locked with
  SELECT … FOR UPDATE SKIP LOCKED, so each transaction takes a different pair.
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta

from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, connection, transaction
from django.db.models import F
from django.utils import timezone

from annotation.errors import AlreadyFinished
from annotation.models import Assignment, Campaign, Pair

OPEN_STATUSES = (Pair.Status.QUEUED, Pair.Status.IN_ANNOTATION)
_CANDIDATES = 8  # rows locked per attempt; SKIP LOCKED means contention just moves on


def _supports_skip_locked() -> bool:
    return bool(connection.features.has_select_for_update_skip_locked)


def assignments_expire(*, now: datetime | None = None, limit: int = 1000) -> int:
    """Mark leases past their expiry as expired and give their slots back. Idempotent."""
    now = now or timezone.now()
    expired = 0
    with transaction.atomic():
        stale = Assignment.objects.filter(status=Assignment.Status.ACTIVE, lease_expires_at__lt=now)
        if _supports_skip_locked():
            stale = stale.select_for_update(skip_locked=True)
        rows = list(stale.values_list("id", "pair_id", "kind")[:limit])
        for assignment_id, pair_id, kind in rows:
            # The status guard makes a concurrent submit or skip win cleanly.
            changed = Assignment.objects.filter(
                pk=assignment_id, status=Assignment.Status.ACTIVE
            ).update(status=Assignment.Status.EXPIRED, finished_at=now)
            if changed and kind != Assignment.Kind.GOLD:
                Pair.objects.filter(pk=pair_id, slots_taken__gt=0).update(
                    slots_taken=F("slots_taken") - 1
                )
            expired += changed
    return expired


def _active_assignment(campaign: Campaign, annotator: AbstractBaseUser, now: datetime):
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


def _create_assignment(
    *,
    campaign: Campaign,
    pair: Pair,
    annotator: AbstractBaseUser,
    kind: str,
    now: datetime,
    rng: random.Random,
) -> Assignment:
    assignment = Assignment.objects.create(
        campaign=campaign,
        pair_id=pair.pk,
        annotator=annotator,
        round_id=pair.round_id,
        kind=kind,
        swapped=rng.random() < 0.5,
        leased_at=now,
        lease_expires_at=now + timedelta(seconds=campaign.lease_seconds),
    )
    # Callers show the pair next: load it whole, once.
    assignment.pair = Pair.objects.get(pk=pair.pk)
    assignment.campaign = campaign
    return assignment


def _take_regular_pair(
    campaign: Campaign, annotator: AbstractBaseUser, now: datetime, rng: random.Random
) -> Assignment | None:
    already_had = Assignment.objects.filter(annotator=annotator, campaign=campaign).values(
        "pair_id"
    )
    candidates = (
        Pair.objects.filter(
            campaign=campaign, status__in=OPEN_STATUSES, slots_taken__lt=F("slot_cap")
        )
        .exclude(pk__in=already_had)
        .order_by("-priority", "id")
    )
    for _attempt in range(20):
        with transaction.atomic():
            locked = candidates
            if _supports_skip_locked():
                locked = candidates.select_for_update(skip_locked=True, of=("self",))
            rows = list(locked.values_list("id", "slots_taken", "round_id")[:_CANDIDATES])
            if not rows:
                # Every candidate may just be locked by another annotator's transaction for a
                # few milliseconds; only report "no work" when none exists at all.
                if not candidates.exists():
                    return None
                continue
            for pair_id, slots_taken, round_id in rows:
                taken = Pair.objects.filter(pk=pair_id, slots_taken__lt=F("slot_cap")).update(
                    slots_taken=F("slots_taken") + 1, status=Pair.Status.IN_ANNOTATION
                )
                if not taken:
                    continue
                labelled = slots_taken >= campaign.annotators_per_pair
                kind = Assignment.Kind.RETEST if labelled else Assignment.Kind.REGULAR
                try:
                    with transaction.atomic():
                        return _create_assignment(
                            campaign=campaign,
                            pair=Pair(pk=pair_id, round_id=round_id),
                            annotator=annotator,
                            kind=kind,
                            now=now,
                            rng=rng,
                        )
                except IntegrityError:
                    # The same annotator asked twice at once and the other request got this
                    # pair; give the slot back and try the next candidate.
                    Pair.objects.filter(pk=pair_id).update(slots_taken=F("slots_taken") - 1)
                    continue
    return None


def _take_gold_pair(
    campaign: Campaign, annotator: AbstractBaseUser, now: datetime, rng: random.Random
) -> Assignment | None:
    """Gold checks do not use slots: any number of annotators may see a gold pair."""
    already_had = Assignment.objects.filter(annotator=annotator, campaign=campaign).values(
        "pair_id"
    )
    gold_ids = list(
        Pair.objects.filter(campaign=campaign, is_gold=True)
        .exclude(pk__in=already_had)
        .values_list("id", flat=True)[:200]
    )
    if not gold_ids:
        return None
    pair = Pair.objects.get(pk=rng.choice(gold_ids))
    try:
        with transaction.atomic():
            return _create_assignment(
                campaign=campaign,
                pair=pair,
                annotator=annotator,
                kind=Assignment.Kind.GOLD,
                now=now,
                rng=rng,
            )
    except IntegrityError:
        return None


def assignment_next(
    *,
    campaign: Campaign,
    annotator: AbstractBaseUser,
    now: datetime | None = None,
    rng: random.Random | None = None,
) -> Assignment | None:
    """The annotator's current lease, or a new one on the best pair; None when no work."""
    now = now or timezone.now()
    rng = rng or random.Random()  # noqa: S311 - A/B order and gold sampling, not security
    current = _active_assignment(campaign, annotator, now)
    if current is not None:
        return current
    if campaign.gold_share > 0 and rng.random() < campaign.gold_share:
        gold = _take_gold_pair(campaign, annotator, now, rng)
        if gold is not None:
            return gold
    return _take_regular_pair(campaign, annotator, now, rng)


def assignment_skip(*, assignment: Assignment, now: datetime | None = None) -> None:
    """Give the slot back; the annotator never sees this pair again."""
    now = now or timezone.now()
    with transaction.atomic():
        changed = Assignment.objects.filter(
            pk=assignment.pk, status=Assignment.Status.ACTIVE
        ).update(status=Assignment.Status.SKIPPED, finished_at=now)
        if not changed:
            raise AlreadyFinished("This assignment is no longer active.")
        if assignment.kind != Assignment.Kind.GOLD:
            Pair.objects.filter(pk=assignment.pair_id, slots_taken__gt=0).update(
                slots_taken=F("slots_taken") - 1
            )
    assignment.status = Assignment.Status.SKIPPED
