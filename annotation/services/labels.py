"""Submitting a label for an assignment."""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from django.db import connection, transaction
from django.db.models import Field
from django.utils import timezone

from annotation import hooks
from annotation.aspects import AspectError, canonical_ratings, parse_aspects
from annotation.errors import AlreadyFinished, InvalidLabel, LabelLocked, LeaseExpired
from annotation.models import (
    Assignment,
    Campaign,
    CampaignMember,
    Evidence,
    ItemKind,
    Label,
    Outcome,
    Pair,
    Rewrite,
)
from annotation.prepared_reads import fetch_all_prepared, fetch_one_prepared
from annotation.rankings import (
    Ranking,
    first_two_preference,
    ranking_to_canonical,
    ranking_validate,
)
from annotation.selectors import campaign_pair_counts_forget_on_commit
from annotation.services.pair_state import COUNT_LABEL_SET_SQL, pair_count_label
from annotation.services.rewrites import (
    rewrite_check,
    rewrite_create,
    rewrite_of_label_replace,
)
from core.text import typed_length

FLAG_NAMES = ("unsafe", "broken", "cannot_judge")
# Longest time one submit or change may report. Nobody spends a day on one item; a bigger
# figure is a broken clock or a crafted request, and sums of such figures overflow to inf,
# which neither JSON nor the quality figures can hold.
SECONDS_SPENT_MAX = 86_400
RATIONALE_MAX_CHARS = 20_000  # counted as typed: a line break is one (core.text.typed_length)
_CONSENSUS_FIELDS = (
    "id",
    "campaign_id",
    "labels_count",
    "slot_cap",
    "status",
    "consensus_preference",
    "provenance",
    "disagreement",
)


@dataclass(frozen=True)
class RewriteInput:
    """A corrected answer written with a label; ``based_on`` is the SHOWN side, 'a' or 'b'."""

    text: str
    based_on: str


@dataclass(frozen=True)
class LabelInput:
    """A label as the annotator gave it, in the orientation they were shown.

    ``outcome`` "both_bad"/"both_good" carry preference 0. ``aspect_ratings`` are
    {aspect: {"a": n, "b": n}} with a and b as shown.
    """

    preference: int | None
    rationale: str = ""
    confidence: int | None = None
    flags: tuple[str, ...] = ()
    seconds_spent: float | None = None
    outcome: str = Outcome.PREFERENCE
    aspect_ratings: Mapping[str, Any] | None = None
    rewrite: RewriteInput | None = None
    # Ranking items: groups of shown response indices, best first (preference is then unused).
    ranking: list[list[int]] | None = None


def _canonical_values(assignment: Assignment, data: LabelInput) -> tuple[int, Ranking | None]:
    """(canonical preference, canonical ranking or None); raises InvalidLabel."""
    if assignment.campaign.item_kind != ItemKind.RANKING:
        if data.ranking is not None:
            raise InvalidLabel("this campaign judges pairs: send a preference, not a ranking")
        if data.preference is None:
            raise InvalidLabel("preference is required")
        return to_canonical(data.preference, swapped=assignment.swapped), None
    if data.ranking is None:
        raise InvalidLabel("this campaign ranks responses: send a ranking")
    order = assignment.display_order
    if not order:
        raise InvalidLabel("this assignment has no ranking item")
    shown = ranking_validate(data.ranking, size=len(order))
    canonical = ranking_to_canonical(shown, display_order=order)
    return first_two_preference(canonical), canonical


def to_canonical(preference_shown: int, *, swapped: bool) -> int:
    """Shown and canonical orientation differ by a sign when A and B were swapped."""
    return -preference_shown if swapped else preference_shown


def _validate(assignment: Assignment, data: LabelInput) -> dict[str, dict[str, int]]:
    """Raise InvalidLabel unless the label fits the campaign; returns the canonical aspect
    ratings."""
    campaign = assignment.campaign
    allowed = campaign.allowed_preferences
    if data.outcome not in campaign.allowed_outcomes:
        raise InvalidLabel(
            f"outcome must be one of {', '.join(campaign.allowed_outcomes)} for this campaign"
        )
    if data.outcome != Outcome.PREFERENCE:
        if campaign.item_kind == ItemKind.RANKING:
            raise InvalidLabel("a ranking item takes a ranking, not an outcome")
        if data.preference != 0:
            raise InvalidLabel(f"a {data.outcome} label carries preference 0")
    elif data.preference is not None and data.preference not in allowed:
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
    if data.seconds_spent is not None and not (
        math.isfinite(data.seconds_spent) and data.seconds_spent <= SECONDS_SPENT_MAX
    ):
        raise InvalidLabel(f"seconds_spent must be a finite number, at most {SECONDS_SPENT_MAX:,}")
    if typed_length(data.rationale) > RATIONALE_MAX_CHARS:
        raise InvalidLabel(f"rationale is longer than {RATIONALE_MAX_CHARS:,} characters")
    if campaign.item_kind == ItemKind.RANKING:
        # "a" and "b" name an A/B pair's sides; a ranking item has K responses in its own
        # display order. Campaign.clean refuses these settings; this guards campaigns saved
        # before it did.
        if data.rewrite is not None:
            raise InvalidLabel("a ranking item takes no rewrite: rewrites are for A/B pairs")
        if data.aspect_ratings:
            raise InvalidLabel(
                "a ranking item takes no aspect ratings: they are for A/B pairs",
                code="invalid_aspect_rating",
            )
    if data.rewrite is not None:
        rewrite_check(campaign=campaign, text=data.rewrite.text, based_on=data.rewrite.based_on)
    # Whether a model was consulted is checked with the write, in the same round trip.
    try:
        aspects = parse_aspects(campaign.aspects)
        return canonical_ratings(data.aspect_ratings, aspects=aspects, swapped=assignment.swapped)
    except AspectError as exc:
        raise InvalidLabel(str(exc), code="invalid_aspect_rating") from exc


def label_submit(*, assignment: Assignment, data: LabelInput, now: datetime | None = None) -> Label:
    now = now or timezone.now()
    aspect_ratings = _validate(assignment, data)
    canonical, ranking = _canonical_values(assignment, data)
    label = Label(
        assignment=assignment,
        campaign_id=assignment.campaign_id,
        pair_id=assignment.pair_id,
        annotator_id=assignment.annotator_id,
        preference=canonical,
        outcome=data.outcome,
        aspect_ratings=aspect_ratings,
        ranking=ranking,
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
    counts_for_pair = assignment.kind != Assignment.Kind.GOLD
    with transaction.atomic():
        if connection.vendor == "postgresql":
            pair = _record_in_one_statement(assignment, label, now, counts_for_pair)
        else:
            pair = _record_with_orm(assignment, label, now, counts_for_pair)
        if data.rewrite is not None:
            _rewrite_with_label(assignment, label, data.rewrite)
        if pair is not None:
            pair.campaign = assignment.campaign
            _overlap_refresh(campaign=pair.campaign)
            status_before = pair.status
            # Consensus (reviewers) runs here, in this transaction, under the pair's row lock.
            hooks.label_recorded(pair=pair, label=label)
            if pair.status != status_before:
                campaign_pair_counts_forget_on_commit(campaign_id=assignment.campaign_id)
        hooks.label_submitted(assignment=assignment, label=label)
    assignment.status = Assignment.Status.SUBMITTED
    return label


# A statement of its own, so that it reads what is committed now: the submit's statement
# read the tables as they were when it started, perhaps before a change it then waited for.
_OVERLAP_SQL = f"SELECT annotators_per_pair FROM {Campaign._meta.db_table} WHERE id = %s"  # noqa: S608


def _overlap_refresh(*, campaign: Campaign) -> None:
    """Read the campaign's ``annotators_per_pair`` again, for the consensus of a pair whose
    row lock this transaction holds (counting the label took it, or ``label_change``'s
    locking read).

    The request read the campaign before it took the lock, and a change of the overlap
    (``campaign_set_annotators_per_pair``) may have committed since. That change locks every
    pair not yet settled (queued or in annotation, no verdict) before it commits
    (``pairs_apply_overlap``), the pairs whose consensus waits on the overlap: so either it
    committed before this lock was taken, and the new overlap is read here, or it waits for
    this transaction, and the old one, read here, is the one in force when this label
    commits. Either way the pair is judged under the overlap in force when its label commits.
    """
    rows = fetch_all_prepared(_OVERLAP_SQL, [campaign.pk])
    if rows:  # the campaign is there: its labels' foreign keys hold it
        campaign.annotators_per_pair = rows[0][0]


def side_across_swap(side: str, *, swapped: bool) -> str:
    """A response side ("a" or "b") across the display swap: shown to canonical or back (the
    same exchange either way)."""
    if swapped:
        return "b" if side == "a" else "a"
    return side


def _canonical_side(assignment: Assignment, rewrite: RewriteInput) -> str:
    # The shown side, turned canonical as the label's preference is.
    return side_across_swap(rewrite.based_on, swapped=assignment.swapped)


def _rewrite_with_label(assignment: Assignment, label: Label, rewrite: RewriteInput) -> None:
    rewrite_create(
        pair_id=assignment.pair_id,
        campaign=assignment.campaign,
        author_id=assignment.annotator_id,
        text=rewrite.text,
        based_on=_canonical_side(assignment, rewrite),
        label=label,
        assignment=assignment,
    )


def _claim_failed(assignment: Assignment) -> Exception:
    current = Assignment.objects.get(pk=assignment.pk)
    if current.status == Assignment.Status.ACTIVE:
        return LeaseExpired("The lease on this pair expired; it went back to the queue.")
    if current.status == Assignment.Status.SUBMITTED:
        # A second tab, a double click or a retried request: the page around this says the
        # label was not saved, which is true of this one only; the first answer stands.
        return AlreadyFinished(
            "This assignment is already submitted: the answer sent first (from another tab, or "
            "an earlier click) was saved and stands."
        )
    return AlreadyFinished(f"This assignment is already {current.status}.")


# A label must never be the model's verdict alone.
_MODEL_ALONE = "a rationale of your own is required when you consulted a model"


def _model_alone(assignment: Assignment, rationale: str) -> bool:
    if rationale.strip():
        return False
    return Evidence.objects.filter(assignment=assignment, kind=Evidence.Kind.LLM).exists()


def _record_with_orm(
    assignment: Assignment, label: Label, now: datetime, counts_for_pair: bool
) -> Pair | None:
    if _model_alone(assignment, label.rationale):
        raise InvalidLabel(_MODEL_ALONE)
    # The conditional UPDATE is the claim: a second submit, a skip or an expiry that got
    # there first leaves zero rows changed.
    claimed = Assignment.objects.filter(
        pk=assignment.pk, status=Assignment.Status.ACTIVE, lease_expires_at__gte=now
    ).update(status=Assignment.Status.SUBMITTED, finished_at=now)
    if not claimed:
        raise _claim_failed(assignment)
    # Values were validated above and CHECK constraints back them up in the database.
    label.save()
    Evidence.objects.filter(assignment=assignment, label__isnull=True).update(label=label)
    if not counts_for_pair:
        return None
    # The UPDATE takes the pair's row lock until commit, which serialises concurrent
    # submits for one pair: the last of them sees every label and computes consensus.
    pair_count_label(pair_id=assignment.pair_id)
    return Pair.objects.only(*_CONSENSUS_FIELDS).get(pk=assignment.pair_id)


# Model order: Model.from_db takes values in the order of the model's fields.
_CONSENSUS_COLUMNS = tuple(
    field.attname for field in Pair._meta.concrete_fields if field.attname in _CONSENSUS_FIELDS
)
# What an annotator judged: written on submit and replaced by a change of mind.
_JUDGMENT_COLUMNS = (
    "preference",
    "outcome",
    "aspect_ratings",
    "ranking",
    "rationale",
    "confidence",
    "flag_unsafe",
    "flag_broken",
    "flag_cannot_judge",
)
_LABEL_COLUMNS = (
    "assignment_id",
    "campaign_id",
    "pair_id",
    "annotator_id",
    *_JUDGMENT_COLUMNS,
    "seconds_spent",
    "is_retest",
    "is_gold_check",
    "shown_first",
    "created_at",
)


# The claim, the label, its evidence and the pair's count in one round trip. Each step reads
# the one before (no claim, no label; no label, nothing else), so a lost claim changes
# nothing; the final SELECT sees the tables as they were before the statement. The pair
# UPDATE takes the pair's row lock until commit, which serialises
# concurrent submits for one pair: the last of them sees every label and computes consensus.
@functools.cache
def _submit_sql() -> str:
    # Typed values: the statement would also work with server-side parameter binding.
    fields = [cast("Field[Any, Any]", Label._meta.get_field(column)) for column in _LABEL_COLUMNS]
    values = ", ".join(
        f"CAST(%({column})s AS {field.db_type(connection)})"
        for column, field in zip(_LABEL_COLUMNS, fields, strict=True)
    )
    return f"""
WITH claimed AS (
    UPDATE annotation_assignment
    SET status = %(submitted)s, finished_at = %(now)s
    WHERE id = %(assignment)s AND status = %(active)s AND lease_expires_at >= %(now)s
    RETURNING id
), label AS (
    INSERT INTO annotation_label ({", ".join(_LABEL_COLUMNS)})
    SELECT {values}
    FROM claimed
    RETURNING id
), evidence AS (
    UPDATE annotation_evidence
    SET label_id = (SELECT id FROM label)
    WHERE assignment_id = %(assignment)s AND label_id IS NULL
      AND EXISTS (SELECT 1 FROM label)
), counted AS (
    UPDATE annotation_pair
    SET {COUNT_LABEL_SET_SQL}
    WHERE id = %(pair_id)s AND %(counts_for_pair)s AND EXISTS (SELECT 1 FROM label)
    RETURNING {", ".join(_CONSENSUS_COLUMNS)}
)
SELECT label.id,
       EXISTS (
           SELECT 1 FROM annotation_evidence
           WHERE assignment_id = %(assignment)s AND kind = %(llm)s
       ),
       {", ".join(f"counted.{column}" for column in _CONSENSUS_COLUMNS)}
FROM label LEFT JOIN counted ON true
"""  # noqa: S608 - only constant column names are interpolated


def _record_in_one_statement(
    assignment: Assignment, label: Label, now: datetime, counts_for_pair: bool
) -> Pair | None:
    label.created_at = now
    params = {column: getattr(label, column) for column in _LABEL_COLUMNS}
    # jsonb travels as its text (CAST in the statement), like the importer's COPY; a dict is
    # no SQL parameter of its own.
    params["aspect_ratings"] = json.dumps(label.aspect_ratings)
    params["ranking"] = None if label.ranking is None else json.dumps(label.ranking)
    params.update(
        submitted=Assignment.Status.SUBMITTED,
        active=Assignment.Status.ACTIVE,
        now=now,
        assignment=assignment.pk,
        counts_for_pair=counts_for_pair,
        llm=Evidence.Kind.LLM,
    )
    row = fetch_one_prepared(_submit_sql(), params)
    if row is None:
        if _model_alone(assignment, label.rationale):
            raise InvalidLabel(_MODEL_ALONE)  # reported first, as on the ORM path
        raise _claim_failed(assignment)
    label_id, used_llm, *pair_values = row
    if used_llm and not label.rationale.strip():
        raise InvalidLabel(_MODEL_ALONE)  # undoes the statement with the rest of the transaction
    label.pk = label_id
    label._state.adding = False
    label._state.db = connection.alias
    if not counts_for_pair:
        return None
    return Pair.from_db(connection.alias, _CONSENSUS_COLUMNS, pair_values)


# --- Changing a label --------------------------------------------------------------------------

# Pair statuses after which no label of the pair changes: an expert's decision is final.
_DECIDED = (Pair.Status.RESOLVED, Pair.Status.DISCARDED)
# Most changes one label takes. Each keeps the values it replaced (a rationale of up to 20,000
# characters, a rewrite of up to 50,000) in the label's history, one JSON value written whole
# on every change: without a bound, a grace period of requests grows one row without limit
# and every change costs more than the one before.
LABEL_CHANGES_MAX = 50


def label_change_deadline(*, label: Label, minutes: int) -> datetime:
    """Until when the label may be changed: `minutes` after it was first submitted."""
    return label.created_at + timedelta(minutes=minutes)


def label_change_check(
    *, label: Label, pair_status: str, minutes: int, now: datetime, model_view_shown: bool
) -> None:
    """Raise LabelLocked unless the label may still be changed.

    A gold check is not locked by the pair's decision: a gold pair may be one an expert
    decided (promoted), and its answer is the admin's, which no label moves. Locked, it would
    tell the annotator at once (no Change, no Back to it) that the pair was a gold check."""
    if pair_status in _DECIDED and not label.is_gold_check:
        raise LabelLocked("An expert has decided this pair; its labels can no longer change.")
    if model_view_shown:
        # The view is shown only after a submit so that it cannot sway the label; a change
        # after it would let it.
        raise LabelLocked(
            "You have seen the model's view of this pair, so its label can no longer change."
        )
    if minutes <= 0 or now > label_change_deadline(label=label, minutes=minutes):
        raise LabelLocked(
            f"Labels can be changed for {minutes} minutes after submitting; this one is past that."
            if minutes > 0
            else "This campaign does not allow changing a submitted label."
        )
    if len(label.history or ()) >= LABEL_CHANGES_MAX:
        raise LabelLocked(
            f"This label was changed {LABEL_CHANGES_MAX} times, the most a label may be; it "
            "stays as it is now."
        )


def _quarantined(*, campaign_id: int, user_id: int) -> bool:
    # Read now, not the membership remembered with the campaign: a quarantine may have begun
    # since the request read it.
    return CampaignMember.objects.filter(
        campaign_id=campaign_id, user_id=user_id, state=CampaignMember.State.QUARANTINED
    ).exists()


def label_change(*, assignment: Assignment, data: LabelInput, now: datetime | None = None) -> Label:
    """Replace the values of the annotator's submitted label, keeping the old ones in history.

    Under the pair's row lock, as a submit: a concurrent submit, decision or change of the same
    pair waits, and consensus and escalations are computed again from the labels as they now
    are. LabelLocked after the campaign's grace period (from the first submit) or once an
    expert decided the pair; AlreadyFinished when the assignment has no label to change.
    """
    now = now or timezone.now()
    aspect_ratings = _validate(assignment, data)
    canonical, ranking = _canonical_values(assignment, data)
    campaign = assignment.campaign
    with transaction.atomic():
        # The pair's row lock first, as label_submit's UPDATE and escalation_open take it.
        pair = Pair.objects.select_for_update().only(*_CONSENSUS_FIELDS).get(pk=assignment.pair_id)
        label = Label.objects.select_for_update().filter(assignment=assignment).first()
        if label is None:
            raise AlreadyFinished(f"This assignment is {assignment.status}: it has no label.")
        if label.set_aside:
            raise LabelLocked("This label was set aside while you were quarantined.")
        if _quarantined(campaign_id=assignment.campaign_id, user_id=assignment.annotator_id):
            # Their labels count in no consensus from now on: not by changing one either.
            raise LabelLocked("You are quarantined in this campaign: your labels cannot change.")
        shown = Assignment.objects.filter(pk=assignment.pk, model_view_shown=True).exists()
        label_change_check(
            label=label,
            pair_status=pair.status,
            minutes=campaign.label_change_minutes,
            now=now,
            model_view_shown=shown,
        )
        # The new rationale is the one that must stand on its own, not the one it replaces.
        if _model_alone(assignment, data.rationale):
            raise InvalidLabel(_MODEL_ALONE)
        _replace_label_values(
            label,
            data,
            canonical=canonical,
            ranking=ranking,
            aspect_ratings=aspect_ratings,
            now=now,
        )
        # The rewrite follows the label's values too: the one the change carries, or none.
        rewrite = data.rewrite
        rewrite_of_label_replace(
            label=label,
            assignment=assignment,
            text=rewrite.text if rewrite is not None else None,
            based_on=_canonical_side(assignment, rewrite) if rewrite is not None else "",
        )
        pair.campaign = campaign
        _overlap_refresh(campaign=campaign)  # under the pair's row lock, taken above
        status_before = pair.status
        hooks.label_changed(pair=pair, label=label)
        if pair.status != status_before:
            campaign_pair_counts_forget_on_commit(campaign_id=assignment.campaign_id)
    return label


def _replace_label_values(
    label: Label,
    data: LabelInput,
    *,
    canonical: int,
    ranking: Ranking | None,
    aspect_ratings: dict[str, dict[str, int]],
    now: datetime,
) -> None:
    """Save the changed values on the label, appending the ones they replace to its history."""
    previous = {
        "preference": label.preference,
        "outcome": label.outcome,
        "aspect_ratings": label.aspect_ratings,
        **({"ranking": label.ranking} if label.ranking is not None else {}),
        "rationale": label.rationale,
        "confidence": label.confidence,
        "flags": label.flags,
        "seconds_spent": label.seconds_spent,
        "until": now.isoformat(),
    }
    # The rewrite it had (canonical side): a change replaces or withdraws it.
    rewrite = Rewrite.objects.filter(label=label).order_by("-id").values("text", "based_on").first()
    if rewrite is not None:
        previous["rewrite"] = rewrite
    label.history = [*(label.history or []), previous]
    label.changed_at = now
    label.preference = canonical
    label.ranking = ranking
    label.outcome = data.outcome
    label.aspect_ratings = aspect_ratings
    label.rationale = data.rationale
    label.confidence = data.confidence
    label.flag_unsafe = "unsafe" in data.flags
    label.flag_broken = "broken" in data.flags
    label.flag_cannot_judge = "cannot_judge" in data.flags
    if data.seconds_spent is not None:
        label.seconds_spent = (label.seconds_spent or 0.0) + data.seconds_spent
    label.save(update_fields=["history", "changed_at", *_JUDGMENT_COLUMNS, "seconds_spent"])
