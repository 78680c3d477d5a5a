"""An expert's decision on an escalated pair: final, recorded with who and when."""

from __future__ import annotations

from datetime import datetime

from django.contrib.auth.models import User
from django.db import transaction
from django.db.models import Exists
from django.utils import timezone

from annotation.models import ItemKind, Label
from annotation.rankings import InvalidRanking, first_two_preference, ranking_validate
from annotation.selectors import campaign_pair_counts_forget_on_commit
from annotation.services.pair_state import pair_lock, pair_resolve
from core.text import typed_length
from reviewers.errors import AlreadyDecided, ClaimRequired, ConflictOfInterest, InvalidDecision
from reviewers.models import Adjudication, Escalation
from reviewers.services.escalations import CONFLICT_OF_INTEREST, escalation_closed_message

# The longest note a decision takes, on the page and the API alike (a longer one is refused,
# not cut: it is the record of why), a line break counted as one (core.text.typed_length).
ADJUDICATION_NOTE_MAX_CHARS = 20_000
NOTE_TOO_LONG = f"the note must be at most {ADJUDICATION_NOTE_MAX_CHARS:,} characters"


def adjudication_resolve(
    *,
    escalation: Escalation,
    expert: User,
    decision: str,
    preference: int | None = None,
    ranking: list[list[int]] | None = None,
    note: str = "",
    now: datetime | None = None,
) -> Adjudication:
    """Decide a canonical preference (a canonical ranking for a K-wise item), or discard the
    pair as ambiguous.

    For a K-wise item the decision "preference" takes ``ranking`` (groups of canonical
    response indices, best first); its ``preference`` is then response 0 against response 1,
    as on labels.

    The expert must hold an unexpired claim (``escalation_claim``) and must not have labelled
    the pair (``ConflictOfInterest``, even for a label given after the claim). The pair gets
    the decision as its consensus, with provenance "adjudicated" (status resolved) or
    "discarded" (status discarded). A second decision on the same escalation raises
    ``AlreadyDecided``.
    """
    now = now or timezone.now()
    note = note.strip()
    preference, ranking = _check_decision(
        escalation, decision=decision, preference=preference, ranking=ranking
    )
    if not note:
        raise InvalidDecision("a note explaining the decision is required")
    if typed_length(note) > ADJUDICATION_NOTE_MAX_CHARS:
        raise InvalidDecision(NOTE_TOO_LONG)
    with transaction.atomic():
        # Pair first, then escalation: the same lock order as escalation_open and label
        # submits, so a reason arriving during the decision waits instead of deadlocking.
        pair_lock(pair_id=escalation.pair_id)
        # The conditional UPDATE is the gate: only the claim holder, once, before expiry, and
        # not one who labelled the pair since claiming it (an admin annotates too, and a lease
        # taken before the escalation may still be labelled): the claim checked only before.
        own_label = Label.objects.filter(pair_id=escalation.pair_id, annotator=expert)
        closed = (
            Escalation.objects.filter(
                pk=escalation.pk,
                status=Escalation.Status.OPEN,
                claimed_by=expert,
                claim_expires_at__gte=now,
            )
            .exclude(Exists(own_label))
            .update(status=Escalation.Status.RESOLVED)
        )
        if not closed:
            escalation.refresh_from_db()
            if escalation.status != Escalation.Status.OPEN:
                raise AlreadyDecided(escalation_closed_message(escalation))
            if own_label.exists():
                raise ConflictOfInterest(CONFLICT_OF_INTEREST)
            raise ClaimRequired("Claim this escalation (or renew your expired claim) first.")
        adjudication = Adjudication(
            escalation=escalation,
            pair_id=escalation.pair_id,
            expert=expert,
            decision=decision,
            preference=preference,
            ranking=ranking,
            note=note,
        )
        adjudication.full_clean(exclude=["escalation", "pair", "expert"])
        adjudication.save()
        pair_resolve(
            pair_id=escalation.pair_id,
            preference=preference,
            discarded=decision == Adjudication.Decision.DISCARD,
            ranking=ranking,
        )
        # The pair left "escalated": the progress counter shows it at once, as after a label.
        campaign_pair_counts_forget_on_commit(campaign_id=escalation.campaign_id)
    escalation.status = Escalation.Status.RESOLVED
    return adjudication


def _check_decision(
    escalation: Escalation,
    *,
    decision: str,
    preference: int | None,
    ranking: list[list[int]] | None,
) -> tuple[int | None, list[list[int]] | None]:
    """The decision's canonical (preference, ranking), checked against the campaign's scale
    and item kind; raises InvalidDecision."""
    campaign = escalation.campaign
    ranking_item = campaign.item_kind == ItemKind.RANKING
    if ranking is not None and not (ranking_item and decision == Adjudication.Decision.PREFERENCE):
        raise InvalidDecision("a ranking decides only a ranking item (decision=preference)")
    if decision == Adjudication.Decision.PREFERENCE and ranking_item:
        if ranking is None:
            raise InvalidDecision("this item is a ranking: send ranking, not preference")
        size = len(escalation.pair.responses or ())
        try:
            ranking = ranking_validate(ranking, size=size)
        except InvalidRanking as error:
            raise InvalidDecision(str(error)) from None
        preference = first_two_preference(ranking)
    elif decision == Adjudication.Decision.PREFERENCE:
        if preference not in campaign.allowed_preferences:
            allowed = sorted(campaign.allowed_preferences, reverse=True)
            raise InvalidDecision(f"preference must be one of {allowed} for this campaign")
    elif decision == Adjudication.Decision.DISCARD:
        preference = None
    else:
        raise InvalidDecision("decision must be 'preference' or 'discard'")
    return preference, ranking
