"""Measuring a campaign member after each label: qualification and quarantine.

Runs through ``annotation.hooks.label_submitted`` inside the submit's transaction. A campaign
that asks for neither (the default) costs nothing here: no query. The state changes are
``annotation.services.members``' (the one writer of a member's state).

* Qualification: a qualifying member's gold checks since they were added are counted (earlier
  ones, from a previous membership or an open campaign, are not); once they have answered the
  campaign's ``qualification_gold_count`` of them, a gold accuracy (direction A, tie or B as
  the known answer) of at least ``qualification_threshold`` admits them; below it they stay
  qualifying, with no more work, and the figures say why.
* Quarantine: an active annotator's last ``quarantine_window`` gold checks and last
  ``quarantine_window`` labels on settled pairs (consensus, or an expert's decision) are
  measured, counting only labels since they last became active (admitted or restored: a
  restore starts a fresh window, and so does being added again after a removal); with at
  least ``quarantine_min_checks`` of either, a gold accuracy below
  ``quarantine_min_gold_accuracy`` or an agreement below ``quarantine_min_agreement`` (each
  0 = off) quarantines them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.db.models import Max, Q

from annotation.models import (
    Assignment,
    Campaign,
    CampaignMember,
    Label,
    MemberTransition,
    Pair,
)
from annotation.selectors import member_of
from annotation.services.members import (
    member_admit,
    member_ensure,
    member_quarantine,
    member_record_qualification,
)
from reviewers.consensus import direction

_SETTLED = (Pair.Status.COMPLETE, Pair.Status.RESOLVED)
# How many windows of an annotator's latest labels the agreement measure looks through for
# labels on settled pairs.
_AGREEMENT_LOOKBACK = 10


def _hits(rows: list[tuple[int, int | None]]) -> int:
    # Known answers are never null here: the queries ask for them to be set.
    return sum(known is not None and direction(given) == direction(known) for given, known in rows)


def qualification_figures(
    *, campaign: Campaign, annotator_id: int, since: datetime | None = None
) -> dict[str, Any]:
    """The first ``qualification_gold_count`` gold checks of the annotator, scored.

    ``since`` (the membership's start, ``CampaignMember.added_at``) leaves out gold checks
    answered before it: a removed and re-added member, or one who answered gold checks while
    the campaign was open to all, qualifies again on the checks of this membership (as
    ``qualification_checks_taken`` counts them)."""
    wanted = campaign.qualification_gold_count
    mine = Label.objects.filter(
        campaign=campaign,
        annotator_id=annotator_id,
        is_gold_check=True,
        pair__gold_preference__isnull=False,
    )
    if since is not None:
        mine = mine.filter(created_at__gte=since)
    rows = list(mine.order_by("id").values_list("preference", "pair__gold_preference")[:wanted])
    correct = _hits(rows)
    accuracy = correct / len(rows) if rows else None
    done = len(rows) >= wanted
    passed = done and accuracy is not None and accuracy >= campaign.qualification_threshold
    return {
        "checks": len(rows),
        "required": wanted,
        "correct": correct,
        "accuracy": accuracy,
        "threshold": campaign.qualification_threshold,
        "outcome": "passed" if passed else ("held back" if done else "in progress"),
    }


def active_since(member: CampaignMember | None) -> datetime | None:
    """When the member last became active (admitted or restored), or was last removed from
    the campaign before this membership (a member added again starts afresh, as their
    qualification does, not quarantined at once on the labels of the membership that ended);
    None if neither (added active, or no membership): one query, for a member only."""
    if member is None or member.pk is None:
        return None
    since: datetime | None = (
        MemberTransition.objects.filter(campaign_id=member.campaign_id, user_id=member.user_id)
        .filter(
            Q(member_id=member.pk, to_state=CampaignMember.State.ACTIVE)
            | Q(to_state=MemberTransition.REMOVED)
        )
        .aggregate(at=Max("at"))["at"]
    )
    return since


def rolling_figures(
    *, campaign: Campaign, annotator_id: int, since: datetime | None = None
) -> dict[str, Any]:
    """The annotator's rolling gold accuracy and agreement with settled pairs' verdicts.

    Only labels created after ``since`` (the member's last transition into active, see
    ``active_since``) count: a restored (or newly admitted) member starts a fresh window and
    is judged again once ``quarantine_min_checks`` new checks exist. A measure whose minimum
    is 0 (off) is not read: it shows no checks. Agreement looks for its ``quarantine_window``
    settled labels among the annotator's last ``_AGREEMENT_LOOKBACK`` windows of labels."""
    window = campaign.quarantine_window
    mine = Label.objects.filter(campaign=campaign, annotator_id=annotator_id, set_aside=False)
    if since is not None:
        mine = mine.filter(created_at__gt=since)
    gold: list[tuple[int, int | None]] = []
    if campaign.quarantine_min_gold_accuracy > 0:
        # label_gold_checks: only the annotator's gold checks are read, however few.
        gold = list(
            mine.filter(is_gold_check=True, pair__gold_preference__isnull=False)
            .order_by("-id")
            .values_list("preference", "pair__gold_preference")[:window]
        )
    settled: list[tuple[int, int | None]] = []
    if campaign.quarantine_min_agreement > 0:
        # Bounded: looking further back for settled pairs (an annotator far ahead of the
        # others, pairs that escalate) read the annotator's whole history on each label, under
        # the pair's row lock. The ids are fetched first: given as a subquery, the planner may
        # join them by walking the label table's primary key back from the newest label.
        recent = list(
            mine.filter(is_gold_check=False)
            .order_by("-id")
            .values_list("id", flat=True)[: window * _AGREEMENT_LOOKBACK]
        )
        settled = list(
            Label.objects.filter(
                id__in=recent,
                pair__status__in=_SETTLED,
                pair__consensus_preference__isnull=False,
            )
            .order_by("-id")
            .values_list("preference", "pair__consensus_preference")[:window]
        )
    gold_correct, agreeing = _hits(gold), _hits(settled)
    return {
        "window": window,
        "gold_checks": len(gold),
        "gold_correct": gold_correct,
        "gold_accuracy": gold_correct / len(gold) if gold else None,
        "agreement_checks": len(settled),
        "agreeing": agreeing,
        "agreement": agreeing / len(settled) if settled else None,
        "min_checks": campaign.quarantine_min_checks,
        "min_gold_accuracy": campaign.quarantine_min_gold_accuracy,
        "min_agreement": campaign.quarantine_min_agreement,
    }


def quarantine_reasons(figures: dict[str, Any]) -> list[str]:
    """Which thresholds the rolling figures fall below (with enough checks); pure."""
    reasons = []
    enough = figures["min_checks"]
    accuracy, agreement = figures["gold_accuracy"], figures["agreement"]
    if (
        figures["min_gold_accuracy"] > 0
        and figures["gold_checks"] >= enough
        and accuracy is not None
        and accuracy < figures["min_gold_accuracy"]
    ):
        reasons.append(f"gold accuracy {accuracy:.2f} < {figures['min_gold_accuracy']:g}")
    if (
        figures["min_agreement"] > 0
        and figures["agreement_checks"] >= enough
        and agreement is not None
        and agreement < figures["min_agreement"]
    ):
        reasons.append(f"agreement {agreement:.2f} < {figures['min_agreement']:g}")
    return reasons


def member_label_submitted(*, assignment: Assignment, label: Label) -> None:
    """The ``label_submitted`` receiver: qualify or quarantine the label's annotator."""
    campaign = assignment.campaign
    qualifying = campaign.qualification_gold_count > 0
    if not qualifying and not campaign.quarantine_enabled:
        return
    member = member_of(campaign=campaign, user_id=label.annotator_id)
    state = member.state if member is not None else CampaignMember.State.ACTIVE
    if state == CampaignMember.State.QUALIFYING:
        if member is not None and label.is_gold_check:
            _qualification_step(campaign, member)
        return
    if state == CampaignMember.State.ACTIVE and campaign.quarantine_enabled:
        _quarantine_step(campaign, member, label.annotator_id)


def members_requalify(*, campaign: Campaign) -> None:
    """The ``qualification_changed`` receiver: the campaign's qualifying members judged again
    under its new settings. Those whose answered checks now pass are admitted, and all of them
    once qualification is turned off (a count of 0); the others go on qualifying (a raised
    count serves them more checks). Qualifying members are people, not pairs: a short loop."""
    members = CampaignMember.objects.filter(
        campaign=campaign, state=CampaignMember.State.QUALIFYING
    )
    for member in members.order_by("pk"):
        member.campaign = campaign
        if campaign.qualification_gold_count == 0:
            member_admit(member=member, reason="qualification turned off")
        else:
            _qualification_step(campaign, member)


def _qualification_step(campaign: Campaign, member: CampaignMember) -> None:
    figures = qualification_figures(
        campaign=campaign, annotator_id=member.user_id, since=member.added_at
    )
    member_record_qualification(member=member, figures=figures)
    if figures["outcome"] == "passed":
        accuracy = figures["accuracy"]
        member_admit(
            member=member,
            reason=f"qualified: gold accuracy {accuracy:.2f} >= {figures['threshold']:g}",
            figures=figures,
        )


def _quarantine_step(campaign: Campaign, member: CampaignMember | None, annotator_id: int) -> None:
    figures = rolling_figures(
        campaign=campaign, annotator_id=annotator_id, since=active_since(member)
    )
    reasons = quarantine_reasons(figures)
    if not reasons:
        return
    member = member or member_ensure(campaign=campaign, user_id=annotator_id)
    member.campaign = campaign
    member_quarantine(member=member, reason="automatic: " + "; ".join(reasons), figures=figures)
