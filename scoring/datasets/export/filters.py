"""What an export includes: formats, provenance choices, ``ExportFilters`` and the pair query they
build (see the package docstring for the rules)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from django.db.models import Q, QuerySet

from annotation.models import Campaign, Evidence, Pair, Round
from core.errors import BadRequest
from scoring.datasets.curation.decontamination import evaluation_sets_unknown
from scoring.datasets.curation.near_duplicates import (
    DEFAULT_NEAR_DUPLICATE_THRESHOLD,
    near_duplicate_threshold_problem,
)
from scoring.jobs.params import JobParams

FORMATS = ("jsonl", "parquet")
DEFAULT_PROVENANCE = ("gold", "unanimous", "majority", "dawid_skene", "adjudicated")
PROVENANCE_CHOICES = (*DEFAULT_PROVENANCE, "discarded", "unresolved")
TIES_CHOICES = ("exclude", "separate")
# "Both bad"/"both good" pairs: in a file of their own (only when there are any), or left out.
OUTCOMES_CHOICES = TIES_CHOICES
SILVER_CURATIONS = ("kept", "recycled")
EVIDENCE_KINDS = tuple(Evidence.Kind.values)
EVIDENCE_ITEMS_PER_PAIR = 5
EVIDENCE_ITEM_CHARS = 120
DEFAULT_CHUNK_SIZE = 5000
# Rows per Parquet row group: bounds the writer's buffers (see benchmarks/export.py).
PARQUET_ROW_GROUP = 5000
# Floating-point slack for min_agreement: 1 - 0.8 is 0.19999999999999996.
_AGREEMENT_EPSILON = 1e-9

ProgressCallback = Callable[[int, int], None]


class InvalidExport(BadRequest, ValueError):
    """Filters or a format the export cannot honour."""

    code = "invalid_export"


@dataclass(frozen=True)
class ExportFilters(JobParams):
    """An export job's parameters (with its format); built by ``from_params`` everywhere."""

    error = InvalidExport
    choices = {
        "provenance": PROVENANCE_CHOICES,
        "ties": TIES_CHOICES,
        "outcomes": OUTCOMES_CHOICES,
    }

    rounds: tuple[int, ...] = ()
    provenance: tuple[str, ...] = DEFAULT_PROVENANCE
    min_agreement: float | None = None
    task_categories: tuple[str, ...] = ()
    include_silver: bool = False
    silver_curated_only: bool = False
    ties: str = "exclude"
    outcomes: str = "separate"
    # Also emit (rewrite ≻ original) pairs, provenance "rewrite", after each pair's own row
    # (also when ``ties`` or ``outcomes`` leave that row out).
    rewrites: bool = False
    # Drop every pair (human-labelled, gold and silver alike) whose conversation shares a token
    # 13-gram with a prompt of the campaign's evaluation sets (``evaluation_sets``; empty: all),
    # or holds a shorter one whole (see ``scoring.datasets.curation.decontamination``).
    decontaminate: bool = True
    evaluation_sets: tuple[str, ...] = ()
    # Drop a pair that repeats an earlier exported one exactly (A/B in either order) or nearly
    # (MinHash: estimated Jaccard similarity of word 5-grams at least the threshold; None: only
    # exact repeats). Verified pairs are read before silver ones (``export_conditions``), so a
    # silver pair is the one dropped when it repeats a verified one.
    deduplicate: bool = True
    near_duplicate_threshold: float | None = DEFAULT_NEAR_DUPLICATE_THRESHOLD

    def __post_init__(self) -> None:
        # Normal form: rounds sorted without repeats, provenance without repeats, in order.
        object.__setattr__(self, "rounds", tuple(sorted(set(self.rounds))))
        object.__setattr__(self, "provenance", tuple(dict.fromkeys(self.provenance)))
        unknown = sorted(set(self.provenance) - set(PROVENANCE_CHOICES))
        if unknown:
            raise InvalidExport(f"unknown provenance {', '.join(unknown)}")
        if not self.provenance and not self.include_silver:
            raise InvalidExport("nothing to export: no provenance and no silver pairs")
        if self.ties not in TIES_CHOICES:
            raise InvalidExport(f"ties must be one of {', '.join(TIES_CHOICES)}")
        if self.outcomes not in OUTCOMES_CHOICES:
            raise InvalidExport(f"outcomes must be one of {', '.join(OUTCOMES_CHOICES)}")
        if self.min_agreement is not None and not 0.0 <= self.min_agreement <= 1.0:
            raise InvalidExport("min_agreement must lie between 0 and 1")
        problem = near_duplicate_threshold_problem(self.near_duplicate_threshold)
        if problem:
            raise InvalidExport(problem)

    def as_params(self) -> dict[str, Any]:
        # Every filter, min_agreement too when None: the snapshot row shows them all.
        params = asdict(self)
        for name in ("rounds", "provenance", "task_categories", "evaluation_sets"):
            params[name] = list(params[name])
        return params


def _verified_condition(filters: ExportFilters) -> Q | None:
    """The human-verified part of an export's WHERE clause (gold, voted and decided pairs), or
    None when its provenance selects none."""
    wanted = set(filters.provenance)
    in_rounds = Q(round__number__in=filters.rounds) if filters.rounds else Q()
    human = Q(is_gold=False) & in_rounds
    parts: list[Q] = []
    if "gold" in wanted:
        parts.append(Q(is_gold=True))
    voted = [name for name in ("unanimous", "majority", "dawid_skene") if name in wanted]
    if voted:
        # An open escalation means an expert may still overturn the majority.
        condition = human & Q(provenance__in=voted) & ~Q(status=Pair.Status.ESCALATED)
        if filters.min_agreement is not None:
            ceiling = 1.0 - filters.min_agreement + _AGREEMENT_EPSILON
            condition &= Q(disagreement__isnull=True) | Q(disagreement__lte=ceiling)
        parts.append(condition)
    decided = [name for name in ("adjudicated", "discarded", "unresolved") if name in wanted]
    if decided:
        parts.append(human & Q(provenance__in=decided))
    if not parts:
        return None
    return functools.reduce(lambda left, right: left | right, parts)


def _silver_condition(filters: ExportFilters) -> Q | None:
    """The silver part of an export's WHERE clause, or None without ``include_silver``. It
    selects no pair of the verified part: a silver pair has no provenance and is not gold."""
    if not filters.include_silver:
        return None
    curations = list(SILVER_CURATIONS) if filters.silver_curated_only else ["", *SILVER_CURATIONS]
    # A pair humans have started labelling is being verified: not silver any more.
    # A ranking item's silver label is its source's ranking.
    has_silver = Q(silver_preference__isnull=False) | Q(silver_ranking__isnull=False)
    return Q(is_gold=False, provenance="", labels_count=0) & has_silver & Q(curation__in=curations)


def export_conditions(filters: ExportFilters) -> list[Q]:
    """The WHERE clauses of an export's passes, over one campaign's pairs: the human-verified
    selection, then (with ``include_silver``) the silver one; they select disjoint pairs, and a
    pass that selects nothing is left out. The export reads them in this order so that of two
    repeats a verified pair is written rather than an unverified silver copy."""
    conditions = [
        condition
        for condition in (_verified_condition(filters), _silver_condition(filters))
        if condition is not None
    ]
    if filters.task_categories:
        conditions = [
            condition & Q(task_category__in=filters.task_categories) for condition in conditions
        ]
    return conditions


def export_condition(filters: ExportFilters) -> Q:
    """The WHERE clause of an export, over one campaign's pairs (all its passes together)."""
    return functools.reduce(
        lambda left, right: left | right, export_conditions(filters), Q(pk__in=[])
    )


def export_queryset(*, campaign: Campaign, filters: ExportFilters) -> QuerySet[Pair]:
    """Every pair the export selects (its passes together: for counting, not for order)."""
    return Pair.objects.filter(campaign=campaign).filter(export_condition(filters))


def export_querysets(*, campaign: Campaign, filters: ExportFilters) -> list[QuerySet[Pair]]:
    """The pairs of each of the export's passes, in the order it reads them
    (``export_conditions``)."""
    pairs = Pair.objects.filter(campaign=campaign)
    return [pairs.filter(condition) for condition in export_conditions(filters)]


def export_filters_check(*, campaign: Campaign, filters: ExportFilters) -> None:
    """Refuse filters that name what the campaign lacks (evaluation sets, rounds), or silver
    curation without silver pairs: they would export nothing, or less than asked, without a
    word. Shared by ``export_create`` (the API, the dashboard) and the ``export_dataset``
    command."""
    if filters.silver_curated_only and not filters.include_silver:
        # It narrows the silver pairs: without them it would select nothing more, silently.
        raise InvalidExport("silver_curated_only applies with include_silver only")
    unknown = evaluation_sets_unknown(campaign=campaign, set_names=filters.evaluation_sets)
    if unknown:
        raise InvalidExport(f"evaluation_sets: unknown evaluation set {', '.join(unknown)}")
    if filters.rounds:
        known = set(
            Round.objects.filter(campaign=campaign, number__in=filters.rounds).values_list(
                "number", flat=True
            )
        )
        missing = [str(number) for number in filters.rounds if number not in known]
        if missing:
            raise InvalidExport(f"rounds: this campaign has no round {', '.join(missing)}")
