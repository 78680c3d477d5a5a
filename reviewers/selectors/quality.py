"""Quality control: re-test agreement, per-annotator quality figures, and the agreement
report.

``agreement_report`` and ``quality_report`` scan every label of a campaign, so pages and the API
read them from the shared cache (``REPORT_CACHE_SECONDS``), where the periodic
``scoring.dashboard.selectors.dashboards_refresh`` stores them every minute for campaigns that
are being labelled. A miss (a first visit before the task ran, an idle campaign) computes once
and stores. Both carry ``computed_at``, so a page can say how old its figures are.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Callable
from typing import Any

from django.core.cache import cache
from django.db import connection
from django.db.models import (
    Aggregate,
    Count,
    F,
    FloatField,
    Func,
    IntegerField,
    Q,
    Sum,
    Value,
)
from django.db.models.fields.json import KeyTextTransform, KeyTransform
from django.db.models.functions import Cast
from django.db.models.lookups import Exact, IsNull
from django.utils import timezone

from annotation.models import Campaign, ItemKind, Label
from reviewers.agreement.aspects import aspect_agreement
from reviewers.agreement.rankings import retest_contradicts
from reviewers.agreement.selectors import campaign_agreement

# Accuracy-style figures need a few items before they may flag anyone.
QUALITY_MIN_ITEMS = 5

# |z| of "the response shown first wins" against a fair coin, beyond which we flag.
POSITION_BIAS_Z = 3.0

# The reports below scan every label; dashboards_refresh rewrites them every minute, so an
# active campaign's entry never expires between two runs.
REPORT_CACHE_SECONDS = 150


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
    """How often a double-blind re-test agreed with the pair's consensus: picked the same
    direction (A, tie, B) or, on a ranking item, did not contradict the consensus ranking
    (``reviewers.agreement.rankings.retest_contradicts``, the rule the re-test escalation
    applies)."""
    retests = Label.objects.filter(campaign=campaign, is_retest=True)
    if campaign.item_kind == ItemKind.RANKING:
        # Their rankings are compared here, streamed: a share of a 40M-pair campaign's pairs
        # is still too many re-tests to hold, with their pairs' rankings, at once.
        compared = (
            retests.filter(pair__consensus_ranking__isnull=False)
            .order_by()
            .values_list("ranking", "pair__consensus_ranking")
        )
        n = agreeing = 0
        for retest, consensus in compared.iterator(chunk_size=2000):
            n += 1
            agreeing += not retest_contradicts(retest, consensus)
    else:
        counts = retests.filter(pair__consensus_preference__isnull=False).aggregate(
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
      the distance from 0.5 in standard errors of a fair coin. On a ranking campaign a label
      is decisive when its best group is a single response (a tie for best says nothing of
      position), and the first shown won when that response is ``display_order[0]``; with K
      responses shown in random order chance is 1/K (``position_bias_chance``, the mean over
      the labels), and ``position_bias_z`` counts standard errors of that chance;
    * median seconds per pair, over labels that report time spent.

    ``flagged`` when, with at least ``QUALITY_MIN_ITEMS`` items, gold accuracy is below the
    campaign's ``quality_threshold`` (or, with no gold checks, agreement with consensus is), or
    when ``|position_bias_z| >= POSITION_BIAS_Z``. Worst first.
    """
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
        # Set-aside labels (a quarantined annotator's) count in no consensus, so they are not
        # compared with one either.
        "consensus_labels": Count(
            "pk",
            filter=judged & Q(set_aside=False, pair__consensus_preference__isnull=False),
        ),
        "consensus_agreeing": Count(
            "pk",
            filter=judged
            & Q(set_aside=False)
            & same_direction("preference", "pair__consensus_preference"),
        ),
        **_position_aggregates(campaign),
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
        _add_median_seconds(rows, campaign=campaign)
    result = [_quality_figures(row, threshold=campaign.quality_threshold) for row in rows]
    result.sort(
        key=lambda r: (
            not r["flagged"],
            _sort_key(r["gold_accuracy"]),
            _sort_key(r["consensus_agreement"]),
            r["username"],
        )
    )
    return result


def _position_aggregates(campaign: Campaign) -> dict[str, Aggregate]:
    """Per annotator: decisive labels, those the first-shown response won, and (on a ranking
    campaign) the wins and their variance expected by chance (see ``annotator_quality``)."""
    if campaign.item_kind != ItemKind.RANKING:
        first_wins = Q(shown_first="a", preference__gt=0) | Q(shown_first="b", preference__lt=0)
        return {
            "decisive": Count("pk", filter=~Q(preference=0)),
            "first_wins": Count("pk", filter=first_wins),
        }
    # ``shown_first`` and ``preference`` speak of responses 0 and 1, not of what was shown:
    # a ranking item's screen order is its assignment's display_order. ``#>>`` (PostgreSQL)
    # and JSON_EXTRACT (SQLite) read a missing index as NULL.
    shown = F("assignment__display_order")
    decisive = (
        IsNull(F("ranking"), False)
        & IsNull(shown, False)
        # a best group of one: it has no second response
        & IsNull(KeyTextTransform("1", KeyTransform("0", "ranking")), True)
    )
    first_wins = decisive & Exact(
        KeyTextTransform("0", KeyTransform("0", "ranking")), KeyTextTransform("0", shown)
    )
    responses = Cast(_JsonArrayLength(shown), FloatField())
    return {
        "decisive": Count("pk", filter=decisive),
        "first_wins": Count("pk", filter=first_wins),
        "chance_wins": Sum(Value(1.0) / responses, filter=decisive),
        "chance_variance": Sum((responses - 1) / (responses * responses), filter=decisive),
    }


class _JsonArrayLength(Func):
    function = "JSONB_ARRAY_LENGTH"
    output_field = IntegerField()

    def as_sqlite(self, compiler: Any, connection: Any, **extra: Any) -> Any:
        return self.as_sql(compiler, connection, function="JSON_ARRAY_LENGTH", **extra)


def _add_median_seconds(rows: list[dict[str, Any]], *, campaign: Campaign) -> None:
    """Each annotator's median seconds per pair, computed in Python (databases other than
    PostgreSQL have no exact median aggregate)."""
    seconds: dict[int, list[float]] = defaultdict(list)
    timed = Label.objects.filter(campaign=campaign, seconds_spent__isnull=False)
    for annotator_id, spent in timed.values_list("annotator_id", "seconds_spent").iterator():
        if spent is not None:
            seconds[annotator_id].append(spent)
    for row in rows:
        spent_all = seconds.get(row["annotator_id"])
        row["median_seconds"] = statistics.median(spent_all) if spent_all else None


def _quality_figures(row: dict[str, Any], *, threshold: float) -> dict[str, Any]:
    """One annotator's figures and flags from their aggregated counts (see annotator_quality)."""
    gold_accuracy = _share(row["gold_correct"], row["gold_checks"])
    consensus_agreement = _share(row["consensus_agreeing"], row["consensus_labels"])
    decisive = row["decisive"]
    position_bias = _share(row["first_wins"], decisive)
    # A/B: a fair coin per decisive label; ranking: chance 1/K per label (_position_aggregates).
    chance_wins = row.get("chance_wins", decisive / 2) or 0.0
    chance_variance = row.get("chance_variance", decisive / 4) or 0.0
    position_bias_z = None
    if decisive and chance_variance > 0:
        position_bias_z = (row["first_wins"] - chance_wins) / chance_variance**0.5
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
    return {
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
        "position_bias_chance": _share(chance_wins, decisive),
        "position_bias_z": position_bias_z,
        "median_seconds": row["median_seconds"],
        "flagged": bool(reasons),
        "flag_reasons": reasons,
    }


def _share(part: float, whole: int) -> float | None:
    return part / whole if whole else None


def _sort_key(value: float | None) -> float:
    return 2.0 if value is None else value


def agreement_report(*, campaign: Campaign, use_cache: bool = True) -> dict[str, Any]:
    """``reviewers.agreement.selectors.campaign_agreement`` plus the re-test agreement rate and
    alpha per rated aspect, cached whole (``REPORT_CACHE_SECONDS``); ``use_cache=False``
    recomputes all of it (the re-test entry too) and stores the result."""

    def compute() -> dict[str, Any]:
        report = dict(campaign_agreement(campaign=campaign, use_cache=use_cache))
        report["retest"] = retest_report(campaign=campaign, use_cache=use_cache)
        report["aspects"] = aspect_agreement(campaign=campaign)
        return report

    return _cached_report(_report_key(campaign, "agreement"), compute, use_cache=use_cache)


def annotator_quality_report(*, campaign: Campaign, use_cache: bool = True) -> dict[str, Any]:
    """{annotators: ``annotator_quality``, computed_at}, cached like ``agreement_report``: the
    quality page, its API and the dashboard's annotator table read the same stored figures."""

    def compute() -> dict[str, Any]:
        return {
            "annotators": annotator_quality(campaign=campaign),
            "computed_at": timezone.now().isoformat(),
        }

    return _cached_report(_report_key(campaign, "annotators"), compute, use_cache=use_cache)


def retest_report(*, campaign: Campaign, use_cache: bool = True) -> dict[str, Any]:
    """``retest_agreement``, cached like ``agreement_report`` (which refreshes it)."""
    return _cached_report(
        _report_key(campaign, "retest"),
        lambda: retest_agreement(campaign=campaign),
        use_cache=use_cache,
    )


def quality_report(*, campaign: Campaign) -> dict[str, Any]:
    """The quality page's stored figures: {annotators, retest, computed_at}."""
    report = annotator_quality_report(campaign=campaign)
    return {**report, "retest": retest_report(campaign=campaign)}


def quality_report_keys(campaign: Campaign) -> list[str]:
    """Where the stored reports of the campaign are (the dashboard's refresh keeps them as
    long as its next refresh may take)."""
    return [_report_key(campaign, report) for report in ("agreement", "annotators", "retest")]


def _report_key(campaign: Campaign, report: str) -> str:
    # created_at keeps a re-created database that reuses ids from reading stale figures.
    return f"arbiter:quality:v1:{report}:{campaign.pk}:{campaign.created_at.timestamp():.6f}"


def _cached_report(
    key: str, compute: Callable[[], dict[str, Any]], *, use_cache: bool
) -> dict[str, Any]:
    report: dict[str, Any] | None = cache.get(key) if use_cache else None
    if report is None:
        report = compute()
        cache.set(key, report, REPORT_CACHE_SECONDS)
    return report
