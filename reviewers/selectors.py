"""Reads for the reviewers app: the expert queue, the review page, quality control."""

from __future__ import annotations

import json
import statistics
from collections import defaultdict
from datetime import datetime
from typing import Any

from django.contrib.auth.models import User
from django.db import connection
from django.db.models import Aggregate, Count, FloatField, Q, QuerySet
from django.http import Http404
from django.shortcuts import get_object_or_404
from django.utils import timezone

from annotation.models import Campaign, CampaignMember, Label, Outcome, Pair
from annotation.roles import Role, user_has_role
from reviewers import hooks
from reviewers.agreement.aspects import aspect_agreement
from reviewers.agreement.selectors import campaign_agreement
from reviewers.models import Escalation, ExpertSettings

QUEUE_ORDERS = {
    "oldest": ("created_at", "id"),
    "disputed": ("-disagreement", "created_at", "id"),
}
# Accuracy-style figures need a few items before they may flag anyone.
QUALITY_MIN_ITEMS = 5
# |z| of "the response shown first wins" against a fair coin, beyond which we flag.
POSITION_BIAS_Z = 3.0
EVIDENCE_SUMMARY_CHARS = 240
PREFERENCE_WORDS = {
    2: "A much better",
    1: "A better",
    0: "Tie",
    -1: "B better",
    -2: "B much better",
}


def preference_words(preference: int | None, *, campaign: Campaign) -> str:
    if preference is None:
        return "—"
    if len(campaign.allowed_preferences) < 5 and preference in (1, -1):
        return "A" if preference > 0 else "B"
    return PREFERENCE_WORDS.get(preference, str(preference))


# --- access -------------------------------------------------------------------------------


def require_expert(user: User) -> None:
    """Experts and admins only; anyone else is told the page does not exist."""
    if not user_has_role(user, Role.EXPERT):
        raise Http404("No such page.")


def expert_domains(user: User) -> list[str]:
    """The task categories an expert covers (``ExpertSettings.domains``, shared with the
    hourly e-mail); none listed: a generalist, who sees escalations once they are open to all."""
    settings_row = ExpertSettings.objects.filter(user_id=user.pk).only("domains").first()
    return list(settings_row.domains) if settings_row is not None else []


def visible_to_expert(user: User, *, now: datetime | None = None) -> Q:
    """Escalations ``user`` may see: all for admins; for an expert, those of their domains at
    once and the others once the campaign's domain wait is over."""
    if user_has_role(user, Role.ADMIN):
        return Q()
    now = now or timezone.now()
    visible = Q(open_to_all_at__isnull=True) | Q(open_to_all_at__lte=now)
    domains = expert_domains(user)
    if domains:
        visible |= Q(pair__task_category__in=domains)
    return visible


def require_admin(user: User) -> None:
    """Admins only; anyone else is told the page does not exist."""
    if not user_has_role(user, Role.ADMIN):
        raise Http404("No such page.")


def escalation_for_expert(
    *, escalation_id: int, user: User
) -> Escalation:
    require_expert(user)
    escalation = get_object_or_404(
        Escalation.objects.select_related("pair", "campaign", "claimed_by"), pk=escalation_id
    )
    if not escalation.campaign.open_to_all and not _reviews_campaign(user, escalation.campaign_id):
        raise Http404("No such escalation.")
    # Checked on the row: an escalation open to all (the common case) costs no query more.
    waiting = escalation.open_to_all_at is not None and escalation.open_to_all_at > timezone.now()
    if (
        waiting
        and not user_has_role(user, Role.ADMIN)
        and escalation.pair.task_category not in expert_domains(user)
    ):
        raise Http404("No such escalation.")
    return escalation


_REVIEWING_ROLES = (CampaignMember.Role.EXPERT, CampaignMember.Role.ADMIN)


def _reviews_campaign(user: User, campaign_id: int) -> bool:
    """An expert (or admin) member of the campaign, or a site admin."""
    member = CampaignMember.objects.filter(
        campaign_id=campaign_id, user_id=user.pk, role__in=_REVIEWING_ROLES
    )
    return member.exists() or user_has_role(user, Role.ADMIN)


def _visible_to(
    escalations: QuerySet[Escalation], viewer: User | None
) -> QuerySet[Escalation]:
    """Site admins see every campaign's escalations; experts those of open campaigns and of
    campaigns where they are expert (or admin) members."""
    if viewer is None or user_has_role(viewer, Role.ADMIN):
        return escalations
    theirs = CampaignMember.objects.filter(user_id=viewer.pk, role__in=_REVIEWING_ROLES)
    return escalations.filter(
        Q(campaign__open_to_all=True) | Q(campaign_id__in=theirs.values("campaign_id"))
    )


def pair_for_admin(*, pair_id: int, user: User) -> Pair:
    """The pair for a site admin, or for an admin member of its campaign; 404 otherwise."""
    pairs = Pair.objects.select_related("campaign")
    if user_has_role(user, Role.ADMIN):
        return get_object_or_404(pairs, pk=pair_id)
    theirs = CampaignMember.objects.filter(user_id=user.pk, role=CampaignMember.Role.ADMIN)
    if not user.is_authenticated:
        raise Http404("No such pair.")
    return get_object_or_404(pairs.filter(campaign_id__in=theirs.values("campaign_id")), pk=pair_id)


# --- the expert queue -----------------------------------------------------------------------


def escalation_queue(
    *,
    campaign_id: int | None = None,
    order: str = "oldest",
    viewer: User | None = None,
    domain: str | None = None,
    now: datetime | None = None,
) -> QuerySet[Escalation]:
    """Open escalations, oldest first or most disputed (highest pair disagreement) first;
    those ``viewer`` may see (their campaigns, see ``_visible_to``; their domains, see
    ``visible_to_expert``), of one ``domain`` if given."""
    escalations = Escalation.objects.filter(status=Escalation.Status.OPEN).select_related(
        "pair", "campaign", "claimed_by"
    )
    escalations = _visible_to(escalations, viewer)
    if viewer is not None:
        escalations = escalations.filter(visible_to_expert(viewer, now=now))
    if campaign_id is not None:
        escalations = escalations.filter(campaign_id=campaign_id)
    if domain:
        escalations = escalations.filter(pair__task_category=domain)
    return escalations.order_by(*QUEUE_ORDERS.get(order, QUEUE_ORDERS["oldest"]))


def queue_domains() -> list[str]:
    """The task categories of pairs with an open escalation, for the queue's domain filter."""
    return list(
        Escalation.objects.filter(status=Escalation.Status.OPEN)
        .exclude(pair__task_category="")
        .values_list("pair__task_category", flat=True)
        .distinct()
        .order_by("pair__task_category")
    )


def next_escalation_for(
    *, expert: User, after: int | None = None, now: datetime | None = None
) -> Escalation | None:
    """The oldest open escalation this expert can take: visible to them (their domains first,
    see ``visible_to_expert``), free (or theirs, or its claim expired), on a pair they did not
    label, other than ``after``."""
    now = now or timezone.now()
    claimable = (
        Escalation.objects.filter(status=Escalation.Status.OPEN)
        .filter(visible_to_expert(expert, now=now))
        .filter(Q(claimed_by__isnull=True) | Q(claim_expires_at__lt=now) | Q(claimed_by=expert))
        .exclude(pair__labels__annotator=expert)
    )
    claimable = _visible_to(claimable, expert)
    if after is not None:
        claimable = claimable.exclude(pk=after)
    return claimable.order_by(*QUEUE_ORDERS["oldest"]).first()


def claim_state(
    escalation: Escalation, *, viewer: User, now: datetime | None = None
) -> dict[str, Any]:
    """Who holds the claim, as this viewer may know it: experts do not see each other's names."""
    now = now or timezone.now()
    held = (
        escalation.claimed_by_id is not None
        and escalation.claim_expires_at is not None
        and escalation.claim_expires_at >= now
    )
    mine = held and escalation.claimed_by_id == viewer.pk
    holder = None
    if held and not mine:
        is_admin = user_has_role(viewer, Role.ADMIN)
        claimer = escalation.claimed_by
        holder = claimer.username if is_admin and claimer is not None else "another expert"
    return {
        "held": held,
        "mine": mine,
        "holder": holder,
        "expires_at": escalation.claim_expires_at if held else None,
        "overdue": escalation.deadline is not None and escalation.deadline < now,
    }


# --- the review page ------------------------------------------------------------------------


def evidence_summary(payload: Any) -> str:
    """A one-line account of an evidence payload, whatever tool produced it."""
    if isinstance(payload, dict):
        preferred = ("query", "title", "url", "language", "status", "exit_code", "prompt")
        parts = [
            f"{key}: {payload[key]}" for key in preferred if payload.get(key) not in (None, "")
        ]
        if not parts:
            parts = [f"{key}: {value}" for key, value in payload.items()]
        text = "; ".join(_flat(part) for part in parts)
    else:
        text = _flat(json.dumps(payload, default=str))
    if len(text) > EVIDENCE_SUMMARY_CHARS:
        text = text[: EVIDENCE_SUMMARY_CHARS - 1] + "…"
    return text


def _flat(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return " ".join(text.split())


def ranking_words(ranking: list[list[int]]) -> str:
    """A canonical ranking as the expert page writes it, responses numbered from 1:
    "2 > 1 = 3 > 4" (response 2 best, 1 and 3 tied)."""
    return " > ".join(" = ".join(str(index + 1) for index in group) for group in ranking)


def escalation_review(*, escalation: Escalation, viewer: User) -> dict[str, Any]:
    """Everything an expert needs to decide, in canonical orientation (A and B as imported).

    Annotators appear as "Annotator 1, 2, …" in the order they labelled; only admins also see
    usernames.
    """
    pair = escalation.pair
    campaign = escalation.campaign
    show_names = user_has_role(viewer, Role.ADMIN)
    labels = (
        Label.objects.filter(pair=pair)
        .select_related("annotator")
        .prefetch_related("evidence")
        .order_by("created_at", "id")
    )
    entries = []
    for number, label in enumerate(labels, start=1):
        kind = "re-test" if label.is_retest else ("gold check" if label.is_gold_check else "")
        entries.append(
            {
                "number": number,
                "name": f"Annotator {number}",
                "username": label.annotator.username if show_names else None,
                "preference": label.preference,
                "preference_words": (
                    ranking_words(label.ranking)
                    if label.ranking is not None
                    else preference_words(label.preference, campaign=campaign)
                    if label.outcome == Outcome.PREFERENCE
                    else label.get_outcome_display()
                ),
                "outcome": label.outcome,
                "aspect_ratings": label.aspect_ratings or {},
                "rationale": label.rationale,
                "confidence": label.confidence,
                "flags": label.flags,
                "seconds_spent": label.seconds_spent,
                "kind": kind,
                "evidence": [
                    {
                        "kind": item.kind,
                        "kind_display": item.get_kind_display(),
                        "summary": evidence_summary(item.payload),
                    }
                    for item in label.evidence.all()
                ],
            }
        )
    attributes = [
        {"name": name, "label": label, "value": getattr(pair, name)}
        for name, label in (
            ("task_category", "Task category"),
            ("objectivity", "Objectivity"),
            ("controversiality", "Controversiality"),
            ("desired_attributes", "Desired attributes"),
            ("annotation_guideline", "Annotation guideline"),
        )
    ]
    adjudication = getattr(escalation, "adjudication", None)
    return {
        "escalation": escalation,
        "pair": pair,
        "campaign": campaign,
        "reasons": [
            line
            for line in [escalation.get_reason_display(), *escalation.detail.splitlines()]
            if line
        ],
        "labels": entries,
        "attributes": attributes,
        "prediction": hooks.model_prediction.first(pair=pair),
        "claim": claim_state(escalation, viewer=viewer),
        "adjudication": adjudication,
        "decision_words": (
            preference_words(adjudication.preference, campaign=campaign)
            if adjudication is not None
            else None
        ),
        "choices": [
            (value, preference_words(value, campaign=campaign))
            for value in sorted(campaign.allowed_preferences, reverse=True)
        ],
        "show_names": show_names,
    }


# --- quality control ------------------------------------------------------------------------


def same_direction(left: str, right: str) -> Q:
    return (
        Q(**{f"{left}__gt": 0, f"{right}__gt": 0})
        | Q(**{left: 0, right: 0})
        | Q(**{f"{left}__lt": 0, f"{right}__lt": 0})
    )


class _Median(Aggregate):
    """PostgreSQL's exact median; other databases take the Python path."""

    function = "PERCENTILE_CONT"
    template = "%(function)s(0.5) WITHIN GROUP (ORDER BY %(expressions)s)"
    output_field = FloatField()


def retest_agreement(*, campaign: Campaign) -> dict[str, Any]:
    """How often a double-blind re-test picked the same direction as the pair's consensus."""
    counts = Label.objects.filter(
        campaign=campaign, is_retest=True, pair__consensus_preference__isnull=False
    ).aggregate(
        n=Count("pk"),
        agreeing=Count("pk", filter=same_direction("preference", "pair__consensus_preference")),
    )
    n, agreeing = counts["n"], counts["agreeing"]
    return {"n": n, "agreeing": agreeing, "rate": agreeing / n if n else None}


def annotator_quality(*, campaign: Campaign) -> list[dict[str, Any]]:
    """Per annotator: gold accuracy, agreement with consensus, position bias, median seconds.

    * gold accuracy: share of gold checks whose direction (A, tie, B) matches the gold answer;
    * consensus agreement: share of their regular and re-test labels, on pairs that have a
      consensus, in its direction (their own label is part of a regular consensus);
    * position bias: of their decisive labels (not ties), the share where the response shown
      first (on the left) won. Order is randomised, so 0.5 is unbiased; ``position_bias_z`` is
      the distance from 0.5 in standard errors of a fair coin;
    * median seconds per pair, over labels that report time spent.

    ``flagged`` when, with at least ``QUALITY_MIN_ITEMS`` items, gold accuracy is below the
    campaign's ``quality_threshold`` (or, with no gold checks, agreement with consensus is), or
    when ``|position_bias_z| >= POSITION_BIAS_Z``. Worst first.
    """
    first_wins = Q(shown_first="a", preference__gt=0) | Q(shown_first="b", preference__lt=0)
    judged = Q(is_gold_check=False)
    aggregates: dict[str, Any] = {
        "labels": Count("pk", filter=judged),
        "gold_checks": Count(
            "pk", filter=Q(is_gold_check=True, pair__gold_preference__isnull=False)
        ),
        "gold_correct": Count(
            "pk",
            filter=Q(is_gold_check=True) & same_direction("preference", "pair__gold_preference"),
        ),
        "consensus_labels": Count(
            "pk", filter=judged & Q(pair__consensus_preference__isnull=False)
        ),
        "consensus_agreeing": Count(
            "pk", filter=judged & same_direction("preference", "pair__consensus_preference")
        ),
        "decisive": Count("pk", filter=~Q(preference=0)),
        "first_wins": Count("pk", filter=first_wins),
    }
    postgres = connection.vendor == "postgresql"
    if postgres:
        aggregates["median_seconds"] = _Median("seconds_spent")
    rows = list(
        Label.objects.filter(campaign=campaign)
        .order_by()
        .values("annotator_id", "annotator__username")
        .annotate(**aggregates)
    )
    if not postgres:
        seconds: dict[int, list[float]] = defaultdict(list)
        timed = Label.objects.filter(campaign=campaign, seconds_spent__isnull=False)
        for annotator_id, spent in timed.values_list("annotator_id", "seconds_spent").iterator():
            if spent is not None:
                seconds[annotator_id].append(spent)
        for row in rows:
            spent_all = seconds.get(row["annotator_id"])
            row["median_seconds"] = statistics.median(spent_all) if spent_all else None
    threshold = campaign.quality_threshold
    result = []
    for row in rows:
        gold_accuracy = _share(row["gold_correct"], row["gold_checks"])
        consensus_agreement = _share(row["consensus_agreeing"], row["consensus_labels"])
        position_bias = _share(row["first_wins"], row["decisive"])
        position_bias_z = None
        if row["decisive"]:
            position_bias_z = (row["first_wins"] - row["decisive"] / 2) / (
                row["decisive"] ** 0.5 / 2
            )
        reasons = []
        if (
            row["gold_checks"] >= QUALITY_MIN_ITEMS
            and gold_accuracy is not None
            and gold_accuracy < threshold
        ):
            reasons.append("gold_accuracy")
        if (
            row["gold_checks"] == 0
            and row["consensus_labels"] >= QUALITY_MIN_ITEMS
            and consensus_agreement is not None
            and consensus_agreement < threshold
        ):
            reasons.append("consensus_agreement")
        if position_bias_z is not None and abs(position_bias_z) >= POSITION_BIAS_Z:
            reasons.append("position_bias")
        result.append(
            {
                "annotator_id": row["annotator_id"],
                "username": row["annotator__username"],
                "labels": row["labels"],
                "gold_checks": row["gold_checks"],
                "gold_correct": row["gold_correct"],
                "gold_accuracy": gold_accuracy,
                "consensus_labels": row["consensus_labels"],
                "consensus_agreement": consensus_agreement,
                "decisive_labels": row["decisive"],
                "first_shown_wins": row["first_wins"],
                "position_bias": position_bias,
                "position_bias_z": position_bias_z,
                "median_seconds": row["median_seconds"],
                "flagged": bool(reasons),
                "flag_reasons": reasons,
            }
        )
    result.sort(
        key=lambda r: (
            not r["flagged"],
            _sort_key(r["gold_accuracy"]),
            _sort_key(r["consensus_agreement"]),
            r["username"],
        )
    )
    return result


def _share(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def _sort_key(value: float | None) -> float:
    return 2.0 if value is None else value


# --- agreement --------------------------------------------------------------------------------


def agreement_report(*, campaign: Campaign, use_cache: bool = True) -> dict[str, Any]:
    """``reviewers.agreement.selectors.campaign_agreement`` plus the re-test agreement rate."""
    report = dict(campaign_agreement(campaign=campaign, use_cache=use_cache))
    report["retest"] = retest_agreement(campaign=campaign)
    report["aspects"] = aspect_agreement(campaign=campaign)
    return report


# --- the rewrite step -----------------------------------------------------------------------


def campaign_for_expert(*, campaign_id: int, user: User) -> Campaign:
    """The campaign, for an expert who reviews it (open to all, or an expert or admin member;
    site admins always); 404 otherwise."""
    require_expert(user)
    campaign = get_object_or_404(Campaign, pk=campaign_id)
    if not campaign.open_to_all and not _reviews_campaign(user, campaign.pk):
        raise Http404("No such campaign.")
    return campaign


def pair_for_expert(*, pair_id: int, user: User) -> Pair:
    """The pair, for an expert who reviews its campaign; 404 otherwise."""
    require_expert(user)
    pair = get_object_or_404(Pair.objects.select_related("campaign"), pk=pair_id)
    if not pair.campaign.open_to_all and not _reviews_campaign(user, pair.campaign_id):
        raise Http404("No such pair.")
    return pair


def rewrite_queue(*, campaign: Campaign, limit: int = 50) -> QuerySet[Pair]:
    """Pairs the labels found "both bad" that no one has rewritten yet, oldest first.

    Where the campaign sends "both bad" to the rewrite step (``both_bad_route``), experts (or
    annotators with the workspace's rewrite box) write a corrected answer for them.
    """
    return (
        Pair.objects.filter(
            campaign=campaign,
            consensus_outcome=Outcome.BOTH_BAD,
            status__in=[Pair.Status.COMPLETE, Pair.Status.RESOLVED],
        )
        .exclude(rewrites__isnull=False)
        .order_by("id")[:limit]
    )
