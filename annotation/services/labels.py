"""Submitting a label for an assignment."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from annotation.errors import AlreadyFinished, InvalidLabel, LeaseExpired
from annotation.models import Assignment, Evidence, Label, Pair

FLAG_NAMES = ("unsafe", "broken", "cannot_judge")
_CONSENSUS_FIELDS = (
    "id", "campaign_id", "labels_count", "slot_cap", "status", "consensus_preference",
    "provenance", "disagreement",
)


@dataclass(frozen=True)
class LabelInput:
    """A label as the annotator gave it, in the orientation they were shown."""

    preference: int
    rationale: str = ""
    confidence: int | None = None
    flags: tuple[str, ...] = ()
    seconds_spent: float | None = None


def to_canonical(preference_shown: int, *, swapped: bool) -> int:
    """Shown and canonical orientation differ by a sign when A and B were swapped."""
    return -preference_shown if swapped else preference_shown


def _validate(assignment: Assignment, data: LabelInput) -> None:
    allowed = assignment.campaign.allowed_preferences
    if data.preference not in allowed:
        raise InvalidLabel(
            f"preference must be one of {sorted(allowed, reverse=True)} for this campaign's "
            f"{assignment.campaign.get_scale_display()} scale"
        )
    if data.confidence is not None and not 1 <= data.confidence <= 5:
        raise InvalidLabel("confidence must be between 1 and 5")
    unknown = set(data.flags) - set(FLAG_NAMES)
    if unknown:
        raise InvalidLabel(f"unknown flags: {', '.join(sorted(unknown))}")
    if data.seconds_spent is not None and data.seconds_spent < 0:
        raise InvalidLabel("seconds_spent cannot be negative")
    if len(data.rationale) > 20_000:
        raise InvalidLabel("rationale is longer than 20,000 characters")
    if data.rationale.strip():
        return
    used_llm = Evidence.objects.filter(assignment=assignment, kind=Evidence.Kind.LLM).exists()
    if used_llm:
        # A label must never be the model's verdict alone.
        raise InvalidLabel("a rationale of your own is required when you consulted a model")


def label_submit(
    *, assignment: Assignment, data: LabelInput, now: datetime | None = None
) -> Label:
    now = now or timezone.now()
    _validate(assignment, data)
    with transaction.atomic():
        # The conditional UPDATE is the claim: a second submit, a skip or an expiry that got
        # there first leaves zero rows changed.
        claimed = Assignment.objects.filter(
            pk=assignment.pk, status=Assignment.Status.ACTIVE, lease_expires_at__gte=now
        ).update(status=Assignment.Status.SUBMITTED, finished_at=now)
        if not claimed:
            current = Assignment.objects.get(pk=assignment.pk)
            if current.status == Assignment.Status.ACTIVE:
                raise LeaseExpired("The lease on this pair expired; it went back to the queue.")
            raise AlreadyFinished(f"This assignment is already {current.status}.")
        canonical = to_canonical(data.preference, swapped=assignment.swapped)
        label = Label(
            assignment=assignment,
            campaign_id=assignment.campaign_id,
            pair_id=assignment.pair_id,
            annotator_id=assignment.annotator_id,
            preference=canonical,
            rationale=data.rationale,
            confidence=data.confidence,
            flag_unsafe="unsafe" in data.flags,
            flag_broken="broken" in data.flags,
            flag_cannot_judge="cannot_judge" in data.flags,
            seconds_spent=data.seconds_spent,
            is_retest=assignment.kind == Assignment.Kind.RETEST,
            is_gold_check=assignment.kind == Assignment.Kind.GOLD,
            shown_first="b" if assignment.swapped else "a",
        )
        # Values were validated above and CHECK constraints back them up in the database.
        label.save()
        Evidence.objects.filter(assignment=assignment, label__isnull=True).update(label=label)
        if assignment.kind != Assignment.Kind.GOLD:
            # The UPDATE takes the pair's row lock until commit, which serialises concurrent
            # submits for one pair: the last of them sees every label and computes consensus.
            Pair.objects.filter(pk=assignment.pair_id).update(labels_count=F("labels_count") + 1)
            pair = Pair.objects.only(*_CONSENSUS_FIELDS).get(pk=assignment.pair_id)
            pair.campaign = assignment.campaign
            _after_label(pair=pair, label=label)
    assignment.status = Assignment.Status.SUBMITTED
    return label


def _after_label(*, pair: Pair, label: Label) -> None:
    # Imported lazily: reviewers depends on annotation, not the other way round at import time.
    from reviewers.services.consensus import pair_label_recorded

    pair_label_recorded(pair=pair, label=label)
