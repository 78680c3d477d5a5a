"""Time and pay: what each annotator did in a period, for paying them by the hour or the label.

Per annotator, over labels created and assignments skipped in ``[start, end)`` (one campaign
or all): active seconds (the sum of ``Label.seconds_spent``, the time the workspace measured
on each label), labels (regular and re-test; gold checks apart), skips, gold accuracy (gold
checks in the gold answer's direction) and agreement with consensus (regular and re-test
labels in the direction of their pair's consensus), as ``annotator_quality`` defines them.

``quarantine_seconds`` stays empty (None) until annotator quarantine is recorded: the column
is there so that files and the pay spreadsheets built on them keep their shape.
"""

from __future__ import annotations

import csv
import io
from dataclasses import asdict, dataclass, fields
from datetime import datetime

from django.db.models import Count, Q, Sum

from annotation.models import Assignment, Label
from reviewers.selectors import same_direction


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
    judged = Q(is_gold_check=False)
    label_rows = (
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
            consensus_labels=Count(
                "pk", filter=judged & Q(pair__consensus_preference__isnull=False)
            ),
            consensus_agreeing=Count(
                "pk", filter=judged & same_direction("preference", "pair__consensus_preference")
            ),
        )
    )
    skip_rows = dict(
        skips.order_by()
        .values("annotator_id")
        .annotate(n=Count("pk"))
        .values_list("annotator_id", "n")
    )
    names = dict(skips.order_by().values_list("annotator_id", "annotator__username").distinct())
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
            quarantine_seconds=None,
        )
    for annotator_id, count in skip_rows.items():
        if annotator_id not in report:
            report[annotator_id] = AnnotatorPeriod(
                annotator_id=annotator_id,
                username=names[annotator_id],
                active_seconds=0.0,
                labels=0,
                gold_checks=0,
                skips=count,
                gold_accuracy=None,
                consensus_agreement=None,
                quarantine_seconds=None,
            )
    return sorted(report.values(), key=lambda row: row.username)


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
