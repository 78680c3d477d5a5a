"""Reads for evaluation results: the versions × sets table and chart of a campaign."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db.models import Prefetch, Q, QuerySet
from django.http import Http404

from annotation.models import Campaign
from annotation.roles import Role, user_has_role
from scoring.models import EvaluationResult, EvaluationSet, ModelVersion

# The chart's geometry (SVG user units).
CHART_WIDTH, CHART_HEIGHT = 640, 240
LEFT, RIGHT, TOP, BOTTOM = 44, 620, 14, 206
COLOURS = ("#2f5bea", "#b42318", "#067647", "#b54708", "#6941c6", "#0e7090")


def evaluation_sets_listed(
    *, campaign: Campaign | None, own_only: bool = False
) -> QuerySet[EvaluationSet]:
    """The sets a campaign sees (its own and the shared ones; ``own_only``: its own), or with
    ``campaign`` None the shared sets; each with its results (of the campaign's versions)."""
    if campaign is None:
        sets = EvaluationSet.objects.filter(campaign__isnull=True)
        results = EvaluationResult.objects.all()
    else:
        scope = (
            Q(campaign=campaign) if own_only else Q(campaign=campaign) | Q(campaign__isnull=True)
        )
        sets = EvaluationSet.objects.filter(scope)
        results = EvaluationResult.objects.filter(model_version__campaign=campaign)
    results = results.select_related("model_version").order_by("model_version__number", "id")
    return sets.order_by("name", "id").prefetch_related(Prefetch("results", queryset=results))


def evaluation_set_for_admin(
    *, set_id: int, user: AbstractBaseUser | AnonymousUser, campaign: Campaign | None
) -> EvaluationSet:
    """The campaign's own set (``campaign``, which the caller has from ``campaign_for_admin``:
    a site admin or the campaign's admin, who may upload its sets, may delete them), or the
    shared set (``campaign`` None) for a site admin; 404 otherwise, so a campaign's route never
    reaches a shared set nor another campaign's."""
    if campaign is None and not user_has_role(user, Role.ADMIN):
        raise Http404("No such evaluation set.")
    found = evaluation_sets_listed(campaign=campaign, own_only=True).filter(pk=set_id).first()
    if found is None:
        raise Http404("No such evaluation set.")
    return found


@dataclass(frozen=True)
class EvaluationCell:
    """A version's result on a set, with its subsets as (name, summary) pairs in name order.

    The template iterates ``subsets``, never ``result.subsets.items``: Django looks a dict's key
    up before its method, so a subset named "items" broke the panel (a 500)."""

    result: EvaluationResult
    subsets: list[tuple[str, Any]]


@dataclass
class EvaluationTable:
    sets: list[EvaluationSet]
    rows: list[dict[str, Any]]  # {"version": ModelVersion, "cells": [EvaluationCell | None]}
    chart: dict[str, Any] = field(default_factory=dict)

    @property
    def empty(self) -> bool:
        return not self.sets


def evaluation_table(*, campaign: Campaign, versions_limit: int = 20) -> EvaluationTable:
    """The campaign's (and the shared) sets against its latest versions, with the chart."""
    sets = list(
        EvaluationSet.objects.filter(Q(campaign=campaign) | Q(campaign__isnull=True)).order_by(
            "name", "id"
        )
    )
    versions = list(
        ModelVersion.objects.filter(campaign=campaign).order_by("-number")[:versions_limit]
    )
    results = {
        (result.model_version_id, result.evaluation_set_id): result
        for result in EvaluationResult.objects.filter(
            model_version__in=versions, evaluation_set__in=sets
        )
    }
    cells = {
        key: EvaluationCell(result=result, subsets=sorted(result.subsets.items()))
        for key, result in results.items()
    }
    rows = [
        {"version": version, "cells": [cells.get((version.pk, item.pk)) for item in sets]}
        for version in versions
    ]
    table = EvaluationTable(sets=sets, rows=rows)
    table.chart = _chart(sets, sorted(versions, key=lambda v: v.number), results)
    return table


def _chart(
    sets: list[EvaluationSet],
    versions: list[ModelVersion],
    results: dict[tuple[int, int], EvaluationResult],
) -> dict[str, Any]:
    """One line per set over the versions (x) of accuracy (y, 0..1), with 95% interval bars."""
    if not sets or not versions or not results:
        return {"empty": True}
    span = max(len(versions) - 1, 1)

    def x_of(index: int) -> float:
        if len(versions) == 1:
            return (LEFT + RIGHT) / 2
        return LEFT + (RIGHT - LEFT) * index / span

    def y_of(value: float) -> float:
        return BOTTOM - (BOTTOM - TOP) * value

    series = []
    for set_index, item in enumerate(sets):
        colour = COLOURS[set_index % len(COLOURS)]
        points = []
        for index, version in enumerate(versions):
            result = results.get((version.pk, item.pk))
            if result is None:
                continue
            points.append(
                {
                    "x": round(x_of(index), 1),
                    "y": round(y_of(result.accuracy), 1),
                    "y_low": round(y_of(result.ci_low), 1),
                    "y_high": round(y_of(result.ci_high), 1),
                    "title": f"{item.name} v{version.number}: {result.accuracy:.3f} "
                    f"[{result.ci_low:.3f}, {result.ci_high:.3f}], n = {result.n}",
                }
            )
        line = " ".join(f"{p['x']},{p['y']}" for p in points)
        series.append({"name": item.name, "colour": colour, "points": points, "line": line})
    return {
        "empty": False,
        "width": CHART_WIDTH,
        "height": CHART_HEIGHT,
        "left": LEFT,
        "right": RIGHT,
        "bottom": BOTTOM,
        "ticks": [{"y": round(y_of(v), 1), "label": f"{v:.1f}"} for v in (0, 0.25, 0.5, 0.75, 1)],
        "labels": [
            {"x": round(x_of(index), 1), "label": f"v{version.number}"}
            for index, version in enumerate(versions)
        ],
        "series": series,
    }
