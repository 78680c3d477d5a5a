"""Reads for the admin dashboard and the export pages.

Every panel is one or two grouped queries (counts by the database, never rows in Python), and
its result is cached for a few seconds in the shared Django cache (longer where it took long:
``KEEP_PER_SECOND_COMPUTED``, up to ``MAX_KEEP_SECONDS``), so a page that refreshes its
fragments every five seconds costs the database little even on a campaign of tens of millions
of pairs.
The slow panels (agreement, annotators, the loop's effect), which read every label, are cached
for ``SLOW_CACHE_SECONDS`` and recomputed every minute by ``dashboards_refresh`` (a beat task),
so pages read them warm; a miss computes once and stores. They carry ``computed_at``.
Charts are plain geometry computed here and drawn by the templates as inline SVG.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.cache import cache
from django.db.models import Count, Exists, Min, OuterRef, Q
from django.http import Http404
from django.utils import timezone

from annotation.models import Campaign, Label, Pair, Round
from annotation.roles import Role, user_has_role
from annotation.selectors import campaign_pair_counts
from core.formatting import whole_percent as share_whole_percent
from core.time_limits import JOB_LIMIT_GRACE_S
from reviewers.agreement.selectors import campaign_agreement, campaign_agreement_key
from reviewers.models import Adjudication, Escalation
from reviewers.selectors.quality import (
    agreement_report,
    annotator_quality_report,
    quality_report_keys,
)
from scoring.dashboard.charts import bar_chart, line_chart
from scoring.dashboard.loop_effect import loop_effect
from scoring.datasets.curation import curation_pool
from scoring.models import EvaluationPrompt, Job, ModelVersion

CACHE_SECONDS = 10
# Agreement (bootstrap intervals), the annotator table and the loop's effect scan every label:
# a little longer.
SLOW_CACHE_SECONDS = 150  # refreshed every minute by dashboards_refresh

logger = logging.getLogger(__name__)

# Dashboard buckets of Pair.Status, in the order a pair moves through them.
PROGRESS_BUCKETS: dict[str, tuple[str, ...]] = {
    "pending": (Pair.Status.POOLED, Pair.Status.QUEUED),
    "in_annotation": (Pair.Status.IN_ANNOTATION,),
    "complete": (Pair.Status.COMPLETE, Pair.Status.RESOLVED),
    "escalated": (Pair.Status.ESCALATED,),
    "discarded": (Pair.Status.DISCARDED,),
}
BUCKET_LABELS = {
    "pending": "Pending",
    "in_annotation": "In annotation",
    "complete": "Complete",
    "escalated": "Escalated",
    "discarded": "Discarded",
}
_BUCKET_OF = {
    status: bucket for bucket, statuses in PROGRESS_BUCKETS.items() for status in statuses
}
AGE_BUCKETS = (
    ("under 1 h", timedelta(hours=1)),
    ("1–24 h", timedelta(days=1)),
    ("1–3 days", timedelta(days=3)),
    ("over 3 days", None),
)


# A panel is kept at least this many times as long as it took to compute, so that on a very
# large campaign (a grouped count of 40M pairs takes seconds) the pages polling it every few
# seconds spend at most a tenth of the database's time on it, not a recount on every poll.
KEEP_PER_SECOND_COMPUTED = 10
# ... but never longer than this: a computation slowed once (a lock wait, a database busy with
# an import) must not leave a small campaign's panel stale for ten times as long.
MAX_KEEP_SECONDS = 300


def _lifetime(seconds: int, took: float) -> int:
    """How long a panel that took ``took`` seconds to compute is kept (``seconds`` at least)."""
    stretched = min(math.ceil(took * KEEP_PER_SECOND_COMPUTED), MAX_KEEP_SECONDS)
    return max(seconds, stretched)


def _cached(key: str, seconds: int, compute: Callable[[], Any], *, refresh: bool = False) -> Any:
    value = None if refresh else cache.get(key)
    if value is None:
        started = time.monotonic()
        value = compute()
        cache.set(key, value, _lifetime(seconds, time.monotonic() - started))
    return value


def _campaign_key(campaign: Campaign, panel: str) -> str:
    # created_at keeps a re-created database that reuses ids from reading stale figures.
    return f"arbiter:dashboard:v1:{panel}:{campaign.pk}:{campaign.created_at.timestamp():.6f}"


# --- Access -------------------------------------------------------------------------------


def require_admin(user: AbstractBaseUser) -> None:
    if not user_has_role(user, Role.ADMIN):
        raise Http404("No such page.")


# --- Campaign list ------------------------------------------------------------------------


def dashboard_campaigns() -> list[dict[str, Any]]:
    """Every campaign with its headline numbers.

    The pair counts are each campaign's own cached counts (``campaign_pair_counts``: cached
    for seconds, recounted by one request after a write moves a pair on, shared with the
    workspace and the progress API), not a grouping of the whole pair table on every refresh
    of this page."""

    def compute() -> list[dict[str, Any]]:
        open_escalations = dict(
            Escalation.objects.filter(status=Escalation.Status.OPEN)
            .order_by()
            .values_list("campaign_id")
            .annotate(n=Count("id"))
        )
        active = dict(
            ModelVersion.objects.filter(is_active=True).values_list("campaign_id", "number")
        )
        campaigns = []
        for campaign in Campaign.objects.order_by("name"):
            # Gold pairs are checks with a known answer, not work: apart, as the workspace and
            # the API count them.
            counts = campaign_pair_counts(campaign=campaign)
            buckets = {
                bucket: sum(counts[status] for status in statuses)
                for bucket, statuses in PROGRESS_BUCKETS.items()
            }
            total = sum(buckets.values())
            campaigns.append(
                {
                    "id": campaign.pk,
                    "name": campaign.name,
                    "total": total,
                    "gold": counts["gold"],
                    "buckets": buckets,
                    "complete_share": buckets["complete"] / total if total else None,
                    "open_escalations": open_escalations.get(campaign.pk, 0),
                    "active_model": active.get(campaign.pk),
                }
            )
        return campaigns

    return _cached("arbiter:dashboard:v1:campaigns", CACHE_SECONDS, compute)


# --- Progress -----------------------------------------------------------------------------


def progress_summary(*, campaign: Campaign) -> dict[str, Any]:
    """Pairs per bucket, overall and per round (one GROUP BY), labels and their pace."""

    def compute() -> dict[str, Any]:
        rounds = {
            item.pk: item for item in Round.objects.filter(campaign=campaign).order_by("number")
        }
        per_round: dict[int | None, dict[str, int]] = {}
        totals = dict.fromkeys(PROGRESS_BUCKETS, 0)
        gold = 0
        for row in (
            Pair.objects.filter(campaign=campaign)
            .order_by()
            .values("round_id", "status", "is_gold")
            .annotate(n=Count("id"))
        ):
            if row["is_gold"]:  # checks, not work: apart, as the workspace counts them
                gold += row["n"]
                continue
            bucket = _BUCKET_OF.get(row["status"], "pending")
            per_round.setdefault(row["round_id"], dict.fromkeys(PROGRESS_BUCKETS, 0))
            per_round[row["round_id"]][bucket] += row["n"]
            totals[bucket] += row["n"]
        now = timezone.now()
        labels = Label.objects.filter(campaign=campaign).aggregate(
            total=Count("id"),
            last_hour=Count("id", filter=Q(created_at__gte=now - timedelta(hours=1))),
            last_day=Count("id", filter=Q(created_at__gte=now - timedelta(days=1))),
        )
        rows: list[dict[str, Any]] = []
        for round_id, item in rounds.items():
            buckets = per_round.get(round_id, dict.fromkeys(PROGRESS_BUCKETS, 0))
            rows.append(
                {"label": f"Round {item.number}", "status": item.status, "buckets": buckets}
            )
        if None in per_round:
            rows.append({"label": "No round (pool)", "status": "", "buckets": per_round[None]})
        for row in rows:
            row["total"] = sum(row["buckets"].values())
            row["counts"] = [row["buckets"][name] for name in PROGRESS_BUCKETS]
            row["segments"] = stacked_bar(row["buckets"])
        total = sum(totals.values())
        return {
            "totals": totals,
            "buckets": [
                {"name": name, "label": BUCKET_LABELS[name], "count": totals[name]}
                for name in PROGRESS_BUCKETS
            ],
            "total": total,
            "gold": gold,
            "complete_share": totals["complete"] / total if total else None,
            "complete_percent": whole_percent(totals["complete"], total) if total else None,
            "rounds": rows,
            "labels": labels,
            "computed_at": now,
        }

    return _cached(_campaign_key(campaign, "progress"), CACHE_SECONDS, compute)


def silver_summary(*, campaign: Campaign) -> dict[str, Any]:
    """The unverified pool by Stage-2 verdict, the evaluation sets, the latest curation job."""

    def compute() -> dict[str, Any]:
        verdicts = dict(
            curation_pool(campaign=campaign, recurate=True)
            .order_by()
            .values_list("curation")
            .annotate(n=Count("id"))
        )
        evaluation_sets = list(
            EvaluationPrompt.objects.filter(campaign=campaign)
            .order_by("set_name")
            .values("set_name")
            .annotate(n=Count("id"))
        )
        return {
            "uncurated": verdicts.pop("", 0),
            "verdicts": verdicts,
            "total": sum(verdicts.values()),
            "evaluation_sets": evaluation_sets,
        }

    job = Job.objects.filter(campaign=campaign, kind=Job.Kind.CURATE).order_by("-id").first()
    # Keyed by the latest curation's state: the panel that says it finished shows its verdicts.
    state = f"{job.pk}-{job.status}" if job is not None else "none"
    summary = dict(_cached(_campaign_key(campaign, f"silver:{state}"), CACHE_SECONDS, compute))
    summary["job"] = job
    return summary


# --- Agreement ----------------------------------------------------------------------------


def agreement_panel(
    *, campaign: Campaign, refresh: bool = False, report_just_stored: bool = False
) -> dict[str, Any]:
    """Alpha per round (with CI and the target) and per task category, as charts.

    Drawn from the stored report on every call (the charts' geometry costs nothing), with no
    copy of its own: the panel shows what the agreement page shows, "Recompute now" included.
    """
    # dashboards_refresh has just recomputed (and stored) the report, with the agreement
    # page's; a refresh asked alone recomputes it here.
    report = campaign_agreement(campaign=campaign, use_cache=not refresh or report_just_stored)
    rounds = [entry for entry in report["rounds"] if entry.get("number") is not None]
    target = report["target"]
    return {
        "computed_at": report["computed_at"],
        "level_note": report.get("level_note", ""),
        "target": target,
        "overall": report["overall"],
        "rounds": rounds,
        "categories": report["categories"],
        "rounds_chart": line_chart(
            [
                (f"R{entry['number']}", entry["alpha"], entry["ci_low"], entry["ci_high"])
                for entry in rounds
            ],
            target=target,
        ),
        "categories_chart": bar_chart(
            [
                (
                    entry["category"] or "(none)",
                    entry["alpha"],
                    entry["ci_low"],
                    entry["ci_high"],
                )
                for entry in report["categories"]
            ],
            target=target,
        ),
    }


# --- Annotators ---------------------------------------------------------------------------


def annotator_table(*, campaign: Campaign, refresh: bool = False) -> dict[str, Any]:
    """The reviewers' annotator quality figures plus throughput (labels in the hour and the
    day before those figures were computed, one grouped query)."""

    def compute() -> dict[str, Any]:
        # The quality page's stored figures: one refresh stores both.
        quality = annotator_quality_report(campaign=campaign, use_cache=not refresh)
        # The pace as of the same moment (the stored figures may be minutes old), so Labels
        # and Last 24 h count the same labels.
        as_of = datetime.fromisoformat(quality["computed_at"])
        pace = {
            row["annotator_id"]: row
            # Gold checks apart, as in the Labels column (annotator_quality's "labels").
            for row in Label.objects.filter(
                campaign=campaign,
                created_at__gt=as_of - timedelta(days=1),
                created_at__lte=as_of,
                is_gold_check=False,
            )
            .order_by()
            .values("annotator_id")
            .annotate(
                last_day=Count("id"),
                last_hour=Count("id", filter=Q(created_at__gt=as_of - timedelta(hours=1))),
            )
        }
        rows = []
        for row in quality["annotators"]:
            recent = pace.get(row["annotator_id"], {})
            rows.append(
                {
                    **row,
                    "last_hour": recent.get("last_hour", 0),
                    "last_day": recent.get("last_day", 0),
                }
            )
        return {
            "rows": rows,
            "flagged": sum(row["flagged"] for row in rows),
            "computed_at": quality["computed_at"],
        }

    return _cached(
        _campaign_key(campaign, "annotators"), SLOW_CACHE_SECONDS, compute, refresh=refresh
    )


def _refresh_lock_seconds() -> int:
    """How long a campaign stays marked as being refreshed: as long as the task may run (its
    hard limit), so a live run on a very large campaign always holds it and the next minute's
    run never repeats the work alongside; a mark left by a killed worker expires after that."""
    return settings.DASHBOARD_REFRESH_TIME_LIMIT_S + JOB_LIMIT_GRACE_S


# A refresh that took longer than this waits as long again before the next.
_SPACED_FROM_SECONDS = 30.0


def refresh_due(*, last: tuple[float, float] | None, now: float) -> bool:
    """Whether a campaign's panels are due again, given its last refresh (finished at,
    seconds it took): a quick one always; a slow one once it ended at least as long ago as it
    took, so a campaign whose refresh outgrows the minute takes at most half the worker's
    time and the queue never fills with it."""
    if last is None:
        return True
    finished, took = last
    return took <= _SPACED_FROM_SECONDS or now - finished >= took


def dashboards_refresh(*, active_within: timedelta = timedelta(days=1)) -> int:
    """Recompute the slow panels of campaigns labelled lately, so that pages read them warm.

    On a million pairs the agreement report takes seconds; a periodic task (every minute)
    pays that instead of an admin's page. A campaign another run is refreshing is skipped
    (runs can overlap when one takes over a minute), and so is one not yet due
    (``refresh_due``). Returns how many campaigns were refreshed.
    """
    since = timezone.now() - active_within
    # EXISTS stops at each campaign's first recent label instead of joining them all.
    recent = Label.objects.filter(campaign=OuterRef("pk"), created_at__gte=since)
    campaigns = Campaign.objects.filter(Exists(recent))
    refreshed = 0
    for campaign in campaigns:
        running_key = _campaign_key(campaign, "refresh-running")
        last_key = _campaign_key(campaign, "refresh-last")
        if not refresh_due(last=cache.get(last_key), now=time.time()):
            continue
        if not cache.add(running_key, True, _refresh_lock_seconds()):
            continue
        started = time.time()
        try:
            # The agreement page's report (re-tests and aspects included), then the panel from
            # the campaign_agreement it stored, so that the slow part runs once.
            agreement_report(campaign=campaign, use_cache=False)
            agreement_panel(campaign=campaign, refresh=True, report_just_stored=True)
            annotator_table(campaign=campaign, refresh=True)
            loop_effect_panel(campaign=campaign, refresh=True)
        except SoftTimeLimitExceeded:
            # The task's limit, not this campaign's failure: the task must end (and Celery
            # reset the connections a stopped query left); the rest wait for the next run.
            raise
        except Exception:  # one campaign's failure must not leave the others' panels stale
            logger.exception("refreshing the dashboard of campaign %s failed", campaign.pk)
            continue
        else:
            refreshed += 1
            _keep_until_next_refresh(campaign, took=time.time() - started)
        finally:
            finished = time.time()
            cache.set(last_key, (finished, finished - started), 24 * 3600)
            cache.delete(running_key)
    return refreshed


def _keep_until_next_refresh(campaign: Campaign, *, took: float) -> None:
    """Keep a slow campaign's stored panels until its next refresh has stored new ones: it
    starts ``took`` seconds after this one ended at the earliest (``refresh_due``) and takes
    about as long, while the panels' own lifetimes are a minute or two. Past them every
    page (the agreement panel polls every 5 s) would recompute in its request what the
    refresh is there to spare it."""
    if took <= _SPACED_FROM_SECONDS:
        return  # refreshed every minute, within the panels' own lifetimes
    keep = int(2 * took) + 120  # and the minute until the task runs again, with a margin
    keys = [
        campaign_agreement_key(campaign),
        *quality_report_keys(campaign),
        _campaign_key(campaign, "annotators"),
        _campaign_key(campaign, "loop-effect"),
    ]
    for key in keys:
        cache.touch(key, keep)


# --- Expert queue -------------------------------------------------------------------------


def expert_queue_health(*, campaign: Campaign) -> dict[str, Any]:
    """Open escalations: how many, claimed, overdue, their ages and reasons."""

    def compute() -> dict[str, Any]:
        now = timezone.now()
        open_escalations = Escalation.objects.filter(
            campaign=campaign, status=Escalation.Status.OPEN
        )
        age_counts: dict[str, Count] = {}
        newer_than = now
        for index, (_label, limit) in enumerate(AGE_BUCKETS):
            condition = Q(created_at__lte=newer_than)
            if limit is not None:
                condition &= Q(created_at__gt=now - limit)
                newer_than = now - limit
            age_counts[f"age{index}"] = Count("id", filter=condition)
        figures = open_escalations.aggregate(
            open=Count("id"),
            claimed=Count("id", filter=Q(claimed_by__isnull=False, claim_expires_at__gt=now)),
            overdue=Count("id", filter=Q(deadline__lt=now)),
            oldest=Min("created_at"),
            **age_counts,
        )
        reasons = list(
            open_escalations.order_by().values("reason").annotate(n=Count("id")).order_by("-n")
        )
        adjudicated = Adjudication.objects.filter(
            pair__campaign=campaign, created_at__gte=now - timedelta(days=1)
        ).count()
        ages = [
            (label, figures[f"age{index}"]) for index, (label, _limit) in enumerate(AGE_BUCKETS)
        ]
        return {
            "open": figures["open"],
            "claimed": figures["claimed"],
            "overdue": figures["overdue"],
            "oldest": figures["oldest"],
            "reasons": [
                {"reason": Escalation.Reason(row["reason"]).label, "n": row["n"]}
                if row["reason"] in Escalation.Reason.values
                else {"reason": row["reason"], "n": row["n"]}
                for row in reasons
            ],
            "adjudicated_last_day": adjudicated,
            "ages_chart": bar_chart(
                [(label, count, None, None) for label, count in ages],
                domain=(0, max([count for _label, count in ages] + [1])),
                value_format="{:.0f}",
            ),
        }

    return _cached(_campaign_key(campaign, "experts"), CACHE_SECONDS, compute)


# --- Models -------------------------------------------------------------------------------


def models_panel(*, campaign: Campaign) -> dict[str, Any]:
    """Versions (newest first) and held-out gold accuracy per version, as a chart."""
    versions = list(
        ModelVersion.objects.filter(campaign=campaign).select_related("round").order_by("-number")
    )
    chronological = sorted(versions, key=lambda version: version.number)
    points = [
        (
            f"v{version.number}" + (f" R{version.round.number}" if version.round else ""),
            version.heldout_accuracy,
            None,
            None,
        )
        for version in chronological
    ]
    active = next((version for version in versions if version.is_active), None)
    labels = dict(
        zip((version.pk for version in chronological), (p[0] for p in points), strict=True)
    )
    return {
        "versions": versions,
        "active": active,
        "active_label": labels.get(active.pk) if active else None,
        "accuracy_chart": line_chart(points, target=None, domain=(0.0, 1.0)),
    }


def loop_effect_panel(*, campaign: Campaign, refresh: bool = False) -> dict[str, Any]:
    """The prioritised against the random slice of each round (``loop_effect``): it reads every
    pair ever in a round, so it is a slow panel that ``dashboards_refresh`` precomputes."""

    def compute() -> dict[str, Any]:
        return {**loop_effect(campaign=campaign), "computed_at": timezone.now().isoformat()}

    return _cached(
        _campaign_key(campaign, "loop-effect"), SLOW_CACHE_SECONDS, compute, refresh=refresh
    )


def whole_percent(part: int, whole: int) -> int:
    """``part`` of ``whole`` in whole percent: 100 only when all of it, 0 only when none."""
    return share_whole_percent(part / whole)


def stacked_bar(buckets: dict[str, int], *, width: int = 400) -> list[dict[str, Any]]:
    """Segments of one 100 % bar, in PROGRESS_BUCKETS order (empty ones left out)."""
    total = sum(buckets.values())
    segments, x = [], 0.0
    for name in PROGRESS_BUCKETS:
        count = buckets.get(name, 0)
        if not total or not count:
            continue
        share = count / total
        segments.append(
            {
                "name": name,
                "label": BUCKET_LABELS[name],
                "count": count,
                "x": round(x, 1),
                "width": round(share * width, 1),
                "share": share,
            }
        )
        x += share * width
    return segments
