"""Time and pay: what each annotator did in a period, for paying them by the hour or the label.

Per annotator, over labels created and assignments skipped in ``[start, end)`` (one campaign
or all): active seconds (the sum of ``Label.seconds_spent``, the time the workspace measured
on each label), labels (regular and re-test; gold checks apart), skips, gold accuracy (gold
checks in the gold answer's direction) and agreement with consensus (regular and re-test
labels in the direction of their pair's consensus), as ``annotator_quality`` defines them.

``quarantine_seconds``: how long in the period the annotator was quarantined (in the campaign,
or in any campaign, summed), from the member transitions that record every quarantine,
restore and removal (a removed member's history stays); empty for annotators never quarantined.
"""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import asdict, dataclass, fields
from datetime import datetime
from typing import Any

from django.db.models import Count, F, Q, QuerySet, Sum, Window
from django.db.models.functions import Lead
from django.utils import timezone

from annotation.models import Assignment, CampaignMember, Label, MemberTransition
from reviewers.selectors.quality import same_direction


@dataclass(frozen=True)
class AnnotatorPeriod:
    annotator_id: int
    username: str
    active_seconds: float
    labels: int
    gold_checks: int
    skips: int
    gold_accuracy: float | None
    consensus_agreement: float | None
    quarantine_seconds: float | None


REPORT_COLUMNS = tuple(field.name for field in fields(AnnotatorPeriod))


def annotator_report(
    *, start: datetime, end: datetime, campaign_id: int | None = None
) -> list[AnnotatorPeriod]:
    """One row per annotator who labelled or skipped anything in ``[start, end)``, by name."""
    labels = Label.objects.filter(created_at__gte=start, created_at__lt=end)
    skips = Assignment.objects.filter(
        status=Assignment.Status.SKIPPED, finished_at__gte=start, finished_at__lt=end
    )
    if campaign_id is not None:
        labels = labels.filter(campaign_id=campaign_id)
        skips = skips.filter(campaign_id=campaign_id)
    label_rows = _label_figures(labels)
    skip_rows = dict(
        skips.order_by()
        .values("annotator_id")
        .annotate(n=Count("pk"))
        .values_list("annotator_id", "n")
    )
    names = dict(skips.order_by().values_list("annotator_id", "annotator__username").distinct())
    quarantined, quarantined_names = _quarantine_seconds(
        start=start, end=end, campaign_id=campaign_id
    )
    report: dict[int, AnnotatorPeriod] = {}
    for row in label_rows:
        annotator_id = row["annotator_id"]
        report[annotator_id] = AnnotatorPeriod(
            annotator_id=annotator_id,
            username=row["annotator__username"],
            active_seconds=float(row["seconds"] or 0.0),
            labels=row["labels"],
            gold_checks=row["gold_checks"],
            skips=skip_rows.get(annotator_id, 0),
            gold_accuracy=_share(row["gold_correct"], row["gold_checks"]),
            consensus_agreement=_share(row["consensus_agreeing"], row["consensus_labels"]),
            quarantine_seconds=quarantined.get(annotator_id),
        )
    for annotator_id, count in skip_rows.items():
        if annotator_id not in report:
            report[annotator_id] = _without_labels(
                annotator_id,
                names[annotator_id],
                skips=count,
                quarantine_seconds=quarantined.get(annotator_id),
            )
    for annotator_id, seconds in quarantined.items():
        # Quarantined in the period, nothing else: a row, as the time may still be paid for;
        # one quarantined and restored before the period (0 s in it) did nothing to report.
        if annotator_id not in report and seconds > 0:
            report[annotator_id] = _without_labels(
                annotator_id, quarantined_names[annotator_id], skips=0, quarantine_seconds=seconds
            )
    return sorted(report.values(), key=lambda row: row.username)


def _label_figures(labels: QuerySet[Label]) -> QuerySet[Label, dict[str, Any]]:
    """Per annotator: seconds spent, labels, gold checks and consensus checks with their hits."""
    judged = Q(is_gold_check=False)
    return (
        labels.order_by()
        .values("annotator_id", "annotator__username")
        .annotate(
            seconds=Sum("seconds_spent"),
            labels=Count("pk", filter=judged),
            gold_checks=Count(
                "pk", filter=Q(is_gold_check=True, pair__gold_preference__isnull=False)
            ),
            gold_correct=Count(
                "pk",
                filter=Q(is_gold_check=True)
                & same_direction("preference", "pair__gold_preference"),
            ),
            # Set-aside labels count in no consensus, so not in agreement with one (they
            # stay in labels and seconds: the work was done).
            consensus_labels=Count(
                "pk",
                filter=judged & Q(set_aside=False, pair__consensus_preference__isnull=False),
            ),
            consensus_agreeing=Count(
                "pk",
                filter=judged
                & Q(set_aside=False)
                & same_direction("preference", "pair__consensus_preference"),
            ),
        )
    )


def _without_labels(
    annotator_id: int, username: str, *, skips: int, quarantine_seconds: float | None
) -> AnnotatorPeriod:
    """The row of an annotator who only skipped, or was quarantined, in the period."""
    return AnnotatorPeriod(
        annotator_id=annotator_id,
        username=username,
        active_seconds=0.0,
        labels=0,
        gold_checks=0,
        skips=skips,
        gold_accuracy=None,
        consensus_agreement=None,
        quarantine_seconds=quarantine_seconds,
    )


def quarantined_seconds_in(
    states: Iterable[tuple[datetime, str]], *, start: datetime, end: datetime, now: datetime
) -> float:
    """Seconds of ``[start, end)`` spent quarantined, given a member's state changes in time
    order as (when, new state); the last state lasts until ``now``."""
    total = 0.0
    since: datetime | None = None
    for at, state in [*states, (now, "")]:
        if since is not None:
            low, high = max(since, start), min(at, end)
            total += max((high - low).total_seconds(), 0.0)
        since = at if state == CampaignMember.State.QUARANTINED else None
    return total


def _quarantine_seconds(
    *, start: datetime, end: datetime, campaign_id: int | None
) -> tuple[dict[int, float], dict[int, str]]:
    """Per annotator ever quarantined (in the campaign, or in any): seconds quarantined in the
    period, summed over campaigns; and their usernames, read in the same query."""
    # A user's timeline in a campaign runs across memberships (removed, added again): their
    # transitions are kept by campaign and user, the member row may be gone.
    in_scope = MemberTransition.objects.filter(at__lt=end)
    if campaign_id is not None:
        # Quarantined in this campaign, not merely somewhere: else "never quarantined here"
        # would read 0 s rather than empty.
        in_scope = in_scope.filter(campaign_id=campaign_id)
    quarantined_users = in_scope.filter(to_state=CampaignMember.State.QUARANTINED).values("user_id")
    # Only the states in force during the period: each transition up to the last one before
    # it starts (the state it starts in), the earlier ones end before it and add nothing.
    # Those from ``end`` on only end a stretch that the period's end clips anyway.
    transitions = (
        in_scope.filter(user_id__in=quarantined_users)
        .annotate(
            next_at=Window(
                Lead("at"),
                partition_by=[F("user_id"), F("campaign_id")],
                order_by=[F("at").asc(), F("id").asc()],
            )
        )
        .filter(Q(next_at__isnull=True) | Q(next_at__gt=start))
        .order_by("user_id", "campaign_id", "at", "id")
    )
    per_member: dict[tuple[int, int], list[tuple[datetime, str]]] = defaultdict(list)
    names: dict[int, str] = {}
    for user_id, campaign, username, at, state in transitions.values_list(
        "user_id", "campaign_id", "user__username", "at", "to_state"
    ):
        per_member[(user_id, campaign)].append((at, state))
        names[user_id] = username
    now = timezone.now()
    seconds: dict[int, float] = defaultdict(float)
    for (user_id, _campaign), states in per_member.items():
        seconds[user_id] += quarantined_seconds_in(states, start=start, end=end, now=now)
    return dict(seconds), names


def annotator_report_csv(rows: list[AnnotatorPeriod]) -> str:
    """The report as CSV text, one header row then one row per annotator; empty cells for
    figures that do not exist (no gold checks, no quarantine record)."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=REPORT_COLUMNS)
    writer.writeheader()
    for row in rows:
        writer.writerow({key: _cell(value) for key, value in asdict(row).items()})
    return buffer.getvalue()


def _cell(value: object) -> object:
    if value is None:
        return ""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@"):
        return "'" + value  # a spreadsheet must not read a username as a formula
    return value


def _share(part: int, whole: int) -> float | None:
    return part / whole if whole else None
