"""Escalations: opening them (each a recorded reason why humans must look again) and claims.

A claim is how one expert at a time reviews an escalation: it is taken with a conditional
UPDATE, so the database decides who wins when several experts click at once, and it expires so
that an abandoned review goes back to the queue.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Mapping
from datetime import datetime, timedelta

from celery import current_app
from django.contrib.auth.models import User
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from annotation.models import Campaign, Label, Outcome, Pair
from annotation.prepared_reads import fetch_all_prepared
from annotation.selectors import campaign_pair_counts_forget_on_commit
from annotation.services.pair_state import (
    FINAL_STATUSES,
    pair_escalate,
    pair_lock_status,
    pair_settle,
    pairs_settle_weighted,
)
from core.errors import ApplicationError
from reviewers.consensus import escalation_rules_of
from reviewers.errors import AlreadyDecided, ClaimUnavailable, ConflictOfInterest, InvalidDecision
from reviewers.models import Escalation
from reviewers.selectors.queue import next_escalation_for

CLAIM_DURATION = timedelta(minutes=30)
CONFLICT_OF_INTEREST = "You labelled this pair, so someone else must decide it."
# A decision is final: nothing reopens a pair an expert resolved or discarded.
FINAL_PAIR_STATUSES = FINAL_STATUSES


logger = logging.getLogger(__name__)


def _notify_experts_later(escalation_id: int) -> None:
    # By name: services never import the task modules that call them. Best effort: this runs
    # after the label's commit, and a broker that is down must not turn it into an error (the
    # next escalation's notice covers the hour).
    try:
        current_app.send_task("reviewers.notify_experts", args=(escalation_id,))
    except Exception:  # kombu's OperationalError and the transport's own connection errors
        logger.warning("could not enqueue the expert notice for escalation %s", escalation_id)


def escalation_deadline_hours(campaign: Campaign) -> float:
    """Hours an expert has to decide, from ``escalation_rules["deadline_hours"]`` (default 72;
    a row saved before ``Campaign.clean``'s check reads as ``escalation_rules_of`` says: a
    deadline over 8760 h holds, up to 1,000 years)."""
    return float(escalation_rules_of(campaign.escalation_rules)["deadline_hours"])


def escalation_open_to_all_at(*, pair: Pair, now: datetime) -> datetime | None:
    """When every expert may see a new escalation of ``pair``: until then only experts of its
    task category do (``Campaign.escalation_domain_wait_minutes``). None: everyone at once,
    for a pair without a category or a campaign that does not wait."""
    wait = pair.campaign.escalation_domain_wait_minutes
    if not pair.task_category or wait <= 0:
        return None
    return now + timedelta(minutes=wait)


def escalation_open(
    *,
    pair: Pair,
    reason: str,
    detail: str = "",
    disagreement: float = 0.0,
    now: datetime | None = None,
) -> Escalation | None:
    """Open an escalation for the pair, or add the reason to the one already open.

    Returns None when the pair already has a final decision (resolved or discarded).
    """
    with transaction.atomic():
        # Locking the pair serialises openers with each other, with label submits (which lock
        # it too) and with adjudication (which updates it), so "one open escalation per pair"
        # never races and a decision cannot be reopened behind the expert's back.
        if pair_lock_status(pair_id=pair.pk) in FINAL_PAIR_STATUSES:
            return None
        escalation = escalation_record(
            pair=pair, reason=reason, detail=detail, disagreement=disagreement, now=now
        )
        pair_escalate(pair_id=pair.pk)
        campaign_pair_counts_forget_on_commit(campaign_id=pair.campaign_id)
    pair.status = Pair.Status.ESCALATED
    return escalation


# An escalation holds every reason the pair was escalated for: the first in ``reason`` (its
# detail first in ``detail``), each further one as a line "also: REASON DETAIL".
_ALSO = "also: "

# At most one escalation per pair is open (a partial unique constraint).
_OPEN_ESCALATION_SQL = (
    f"SELECT id FROM {Escalation._meta.db_table} "  # noqa: S608 - a constant table name only
    "WHERE pair_id = %s AND status = %s"
)


def escalation_record(
    *,
    pair: Pair,
    reason: str,
    detail: str = "",
    disagreement: float = 0.0,
    now: datetime | None = None,
) -> Escalation:
    """The escalation row of ``escalation_open``, for a caller that holds the pair's row lock,
    has checked that no decision is final, and sets the pair's status itself."""
    now = now or timezone.now()
    # Runs under the pair's lock on a disputed label: a prepared read, no ORM compiling (an
    # open escalation is rare here, so the whole row is read only when there is one).
    found = fetch_all_prepared(_OPEN_ESCALATION_SQL, [pair.pk, str(Escalation.Status.OPEN)])
    existing = Escalation.objects.get(pk=found[0][0]) if found else None
    if existing is None:
        escalation = Escalation(
            campaign_id=pair.campaign_id,
            pair_id=pair.pk,
            reason=reason,
            detail=detail,
            disagreement=disagreement,
            deadline=now + timedelta(hours=escalation_deadline_hours(pair.campaign)),
            open_to_all_at=escalation_open_to_all_at(pair=pair, now=now),
        )
        # Field values only: the unique and check constraints are the database's to enforce
        # (validating them here would cost a query each, under the pair lock).
        escalation.clean_fields(exclude=["campaign", "pair", "claimed_by"])
        escalation.save()
        # Experts hear of it once it is committed (at most an e-mail an hour each).
        transaction.on_commit(lambda: _notify_experts_later(escalation.pk))
        return escalation
    changed = []
    if reason != existing.reason and f"{_ALSO}{reason}" not in existing.detail:
        existing.detail = f"{existing.detail}\n{_ALSO}{reason} {detail}".strip()
        changed.append("detail")
    if disagreement > existing.disagreement:
        existing.disagreement = disagreement
        changed.append("disagreement")
    if changed:
        existing.save(update_fields=changed)
    return existing


def escalation_account(escalation: Escalation) -> list[tuple[str, str]]:
    """(reason, detail) of each reason the escalation holds, its first one first."""
    entries: list[tuple[str, list[str]]] = [(escalation.reason, [])]
    for line in escalation.detail.splitlines():
        reason, _space, detail = line.removeprefix(_ALSO).partition(" ")
        if line.startswith(_ALSO) and reason in Escalation.Reason.values:
            entries.append((reason, [detail] if detail else []))
        else:  # the first reason's detail, or a further line of the one before
            entries[-1][1].append(line)
    return [(reason, "\n".join(lines)) for reason, lines in entries]


def _account_text(account: list[tuple[str, str]]) -> tuple[str, str]:
    """``reason`` and ``detail`` holding the account (the reverse of ``escalation_account``)."""
    (reason, detail), *others = account
    lines = [detail, *(f"{_ALSO}{other} {text}".rstrip() for other, text in others)]
    return reason, "\n".join(lines).strip()


def escalation_recheck(
    *,
    pair: Pair,
    label_reasons: Collection[str],
    standing: Mapping[str, tuple[str, float]],
    disagreement: float,
) -> Escalation | None:
    """Bring the pair's open escalation up to date after a label change, under the pair's
    row lock: the expert reads the dispute as the labels now make it.

    ``label_reasons`` are the reasons the labels decide; ``standing`` maps each of them that
    still holds to its current (detail, disagreement). One that holds takes its current
    detail, one that no longer holds leaves the account, and any other reason (an admin's,
    the model's, the weighted posterior's) keeps its wording. An escalation left with no
    reason is withdrawn (its claim freed). The escalation's disagreement becomes
    ``disagreement`` (the pair's), or a standing reason's when higher. Adds no reason (opening
    or merging one is ``escalation_record``'s), and never touches a decided escalation.

    Returns the escalation when it stays open; None when the pair has none open or it was
    withdrawn.
    """
    escalation = Escalation.objects.filter(pair_id=pair.pk, status=Escalation.Status.OPEN).first()
    if escalation is None:
        return None
    account = [
        (reason, standing[reason][0] if reason in standing else detail)
        for reason, detail in escalation_account(escalation)
        if reason in standing or reason not in label_reasons
    ]
    if not account:
        Escalation.objects.filter(pk=escalation.pk, status=Escalation.Status.OPEN).update(
            status=Escalation.Status.WITHDRAWN, claimed_by=None, claim_expires_at=None
        )
        return None
    reason, detail = _account_text(account)
    disagreement = max(
        [disagreement, *(standing[held][1] for held, _detail in account if held in standing)]
    )
    current = (escalation.reason, escalation.detail, escalation.disagreement)
    if (reason, detail, disagreement) != current:
        escalation.reason, escalation.detail, escalation.disagreement = (
            reason,
            detail,
            disagreement,
        )
        # Only the account: a claim taken meanwhile (a conditional UPDATE) is not undone.
        escalation.save(update_fields=["reason", "detail", "disagreement"])
    return escalation


def escalation_withdraw_for_verdict(
    *,
    pair_id: int,
    preference: int,
    posterior: float,
    answered: Collection[str],
    now: datetime | None = None,
) -> bool:
    """Withdraw the pair's open escalation, settling the pair with a weighted verdict
    ``(preference, posterior)``, when every reason it holds is one of ``answered`` (those the
    verdict settles) and no expert holds an unexpired claim on it; returns whether it did.

    The pair becomes complete with provenance ``dawid_skene`` and the posterior, as a
    re-estimate stores a verdict. A decided escalation, a gold pair, a "both bad"/"both good"
    consensus, a reason beyond ``answered`` or a claim leaves everything as it is.
    """
    now = now or timezone.now()
    with transaction.atomic():
        # Pair first, then escalation (the lock order of openers, label submits and
        # decisions): a label or a reason arriving meanwhile waits, and so does a decision.
        pair = (
            Pair.objects.select_for_update(of=("self",))
            .select_related("campaign")
            .filter(pk=pair_id)
            .first()
        )
        if (
            pair is None
            or pair.status != Pair.Status.ESCALATED
            or pair.is_gold
            or pair.consensus_outcome != Outcome.PREFERENCE
        ):
            return False
        escalation = Escalation.objects.filter(
            pair_id=pair_id, status=Escalation.Status.OPEN
        ).first()
        if escalation is None or any(
            reason not in answered for reason, _detail in escalation_account(escalation)
        ):
            return False
        # A claim is taken without the pair's lock: this conditional UPDATE and the claim's
        # decide between them, so an expert who claimed first keeps the pair, and one who
        # claims after finds it withdrawn. An expired claim counts as free, as for a claim.
        withdrawn = (
            Escalation.objects.filter(pk=escalation.pk, status=Escalation.Status.OPEN)
            .filter(Q(claimed_by__isnull=True) | Q(claim_expires_at__lt=now))
            .update(status=Escalation.Status.WITHDRAWN, claimed_by=None, claim_expires_at=None)
        )
        if not withdrawn:
            return False
        pair_settle(
            pair_id=pair_id,
            preference=preference,
            provenance=Pair.Provenance.DAWID_SKENE,
            disagreement=pair.disagreement or 0.0,
            escalate=False,
        )
        # The posterior, as every weighted verdict carries it (pair_settle stores none).
        pairs_settle_weighted(rows=[(pair_id, preference, posterior)])
        campaign_pair_counts_forget_on_commit(campaign_id=pair.campaign_id)
    return True


def model_contradiction_threshold(rules: object) -> float | None:
    """The model confidence of a campaign's model-contradiction rule (``escalation_rules``:
    ``model_confidence``, 0.9 by default), or None when the rule is off
    (``model_contradiction: false``). The one statement of the rule, with ``model_contradicts``:
    the escalation below and the prioritisation pass that looks for candidates both use it. A
    stored confidence below 0.5 reads as the default (``escalation_rules_of``); one of 1 or
    more (an old row's way to turn the rule off: no model is that sure) is None, off, so it
    never fails the check of ``escalation_model_contradiction``."""
    rule = escalation_rules_of(rules)
    if not rule["model_contradiction"]:
        return None
    confidence = float(rule["model_confidence"])
    return confidence if confidence < 1 else None


def model_contradicts(*, p_agree: float, threshold: float) -> bool:
    """The model is confident the other way: its p(agreeing with the label) < 1 - threshold."""
    return p_agree < 1.0 - threshold


def escalation_model_contradiction(
    *, pair: Pair, p_agree: float, threshold: float | None = None, now: datetime | None = None
) -> Escalation | None:
    """Escalate a unanimous human label that a confident reward model contradicts.

    ``p_agree`` is the model's probability of agreeing with the human label; the model is
    confident the other way when ``p_agree < 1 - threshold``. ``threshold`` defaults to the
    campaign's ``escalation_rules["model_confidence"]`` (0.9). Returns the escalation, or None
    when the rule is off, the label is not unanimous, the model is not confident enough, or the
    pair already has a final decision.
    """
    if not 0.0 <= p_agree <= 1.0:
        raise InvalidDecision("p_agree must be a probability between 0 and 1")
    campaign_threshold = model_contradiction_threshold(pair.campaign.escalation_rules)
    if campaign_threshold is None:
        return None
    if threshold is None:
        threshold = campaign_threshold
    if not 0.5 <= threshold < 1.0:
        raise InvalidDecision("threshold must be at least 0.5 and below 1")
    if not model_contradicts(p_agree=p_agree, threshold=threshold):
        return None
    current = Pair.objects.only("provenance", "disagreement").get(pk=pair.pk)
    if current.provenance != Pair.Provenance.UNANIMOUS:
        return None
    return escalation_open(
        pair=pair,
        reason=Escalation.Reason.MODEL_CONTRADICTION,
        detail=(
            f"the reward model agrees with the unanimous label with p = {p_agree:.3f}, "
            f"below {1.0 - threshold:.2f}"
        ),
        disagreement=current.disagreement or 0.0,
        now=now,
    )


def escalation_claim(
    *,
    escalation: Escalation,
    expert: User,
    now: datetime | None = None,
    duration: timedelta = CLAIM_DURATION,
) -> Escalation:
    """Take (or renew) the claim on an open escalation; raises if someone else holds it."""
    now = now or timezone.now()
    if Label.objects.filter(pair_id=escalation.pair_id, annotator=expert).exists():
        raise ConflictOfInterest(CONFLICT_OF_INTEREST)
    # The conditional UPDATE is the claim: of several experts racing, the database lets exactly
    # one change the row; an expired claim counts as free.
    taken = (
        Escalation.objects.filter(pk=escalation.pk, status=Escalation.Status.OPEN)
        .filter(Q(claimed_by__isnull=True) | Q(claim_expires_at__lt=now) | Q(claimed_by=expert))
        .update(claimed_by=expert, claim_expires_at=now + duration)
    )
    escalation.refresh_from_db()
    if taken:
        return escalation
    if escalation.status != Escalation.Status.OPEN:
        raise AlreadyDecided(escalation_closed_message(escalation))
    raise ClaimUnavailable("Another expert is reviewing this pair.")


def escalation_closed_message(escalation: Escalation) -> str:
    """Why a closed escalation takes no claim or decision, as its status says."""
    if escalation.status == Escalation.Status.WITHDRAWN:
        return (
            "This escalation was withdrawn: a changed label or a clear weighted consensus "
            "settled the dispute, so there is nothing left to decide."
        )
    return "This escalation has already been decided."


def escalation_claim_next(
    *, expert: User, after: int | None = None, attempts: int = 5
) -> Escalation | None:
    """Claim the next escalation this expert can take (None when there is none); another
    expert may take each candidate first, so a lost race moves on to the next one."""
    lost: list[int] = []
    for _attempt in range(attempts):
        escalation = next_escalation_for(expert=expert, after=after, exclude=lost)
        if escalation is None:
            return None
        try:
            return escalation_claim(escalation=escalation, expert=expert)
        except ApplicationError:
            lost.append(escalation.pk)
    return None


def escalation_claims_release_for_member(*, campaign_id: int, user_id: int) -> int:
    """An expert taken out of the campaign, or made an annotator there, gives back their open
    claims there (the ``member_stopped_reviewing`` hook); how many. They may no longer decide
    those pairs, and their claims kept the other experts out until they ran out."""
    return Escalation.objects.filter(
        campaign_id=campaign_id, claimed_by_id=user_id, status=Escalation.Status.OPEN
    ).update(claimed_by=None, claim_expires_at=None)


def escalation_claims_release_for_labeller(*, pair: Pair, label: Label) -> int:
    """The ``label_recorded`` receiver: one who labels a pair whose escalation they claimed
    (an admin annotates too, and a lease taken before the escalation may still be answered)
    may no longer decide it, so the claim goes back at once rather than keeping the other
    experts out until it runs out. Under the pair's row lock, as decisions take it."""
    if pair.status != Pair.Status.ESCALATED:
        return 0  # no open escalation: no statement on the submit's hot path
    return Escalation.objects.filter(
        pair_id=pair.pk, claimed_by_id=label.annotator_id, status=Escalation.Status.OPEN
    ).update(claimed_by=None, claim_expires_at=None)


def escalation_release(*, escalation: Escalation, expert: User) -> bool:
    """Give the claim back; False when the expert did not hold it."""
    released = Escalation.objects.filter(
        pk=escalation.pk, status=Escalation.Status.OPEN, claimed_by=expert
    ).update(claimed_by=None, claim_expires_at=None)
    escalation.refresh_from_db()
    return bool(released)
