"""Krippendorff's alpha from the database: the ORM side of ``reviewers.agreement.maths``.

Only *regular* labels count: re-test and gold-check labels are excluded, because a re-test
adds a fourth coder on purpose and a gold check is a test of the annotator, not of the pair.

The pattern histogram comes from ONE grouped query: per pair, the number of labels of each
preference value; then GROUP BY that count pattern and count the pairs. With three labels and
five values there are a few dozen patterns, so alpha and its bootstrap interval never see a
coders x pairs matrix. Subsets are filters on the same query (a round, a task category), and
because histograms add up, the report asks once for histograms keyed by (round, category) and
sums them into the overall, per-round and per-category figures.

Level of measurement: five-point and three-point scales are *ordinal* (B better < tie < A
better is an order, but the steps need not be equal); binary is *nominal*. Column order is
the ascending preference (-2 … 2), which is the rank order the ordinal metric needs. The
values are the scale's plus 0 wherever a label can carry 0 without the scale offering a tie:
"both bad" (and "both good") is preference 0, "neither is better", and so is a ranking that
ties responses 0 and 1. On a binary scale 0 is then a third nominal value, no closer to A
than to B: saying "both bad" where another said "A" disagrees as much as saying "B" does.

Per annotator: ``reviewers.agreement.maths.annotator_agreement`` on that annotator's pairs and the
co-labels on them, judged against the campaign's value totals (``reference_value_totals``), so
the figure is comparable across annotators. Its expected disagreement is the campaign's, so the
label-weighted mean of the annotators' figures equals the campaign's alpha.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.db import connection
from django.db.models import Case, Count, F, Q, QuerySet, Sum, When, Window
from django.utils import timezone
from numpy.typing import NDArray

from annotation.models import Campaign, ItemKind, Label, Outcome, Pair, Round, Scale
from reviewers.agreement.maths import (
    AlphaComponents,
    LevelOfMeasurement,
    alpha_components,
    alpha_confidence_interval,
    annotator_agreement_from_patterns,
    unit_disagreement,
)
from reviewers.agreement.rankings import ranking_alpha_from_histogram, ranking_unit_values

LEVEL_BY_SCALE: dict[str, LevelOfMeasurement] = {
    Scale.BINARY: "nominal",
    Scale.THREE_POINT: "ordinal",
    Scale.FIVE_POINT: "ordinal",
}
LEVEL_NOTES: dict[str, str] = {
    Scale.BINARY: "nominal: A, B or neither (both bad; a ranking's tie), no order between them",
    Scale.THREE_POINT: "ordinal: B better < tie < A better",
    Scale.FIVE_POINT: "ordinal: B much better < B better < tie < A better < A much better",
}
CACHE_TTL_SECONDS = 60
BOOTSTRAP_REPLICATES = 1000
BOOTSTRAP_SEED = 20250101  # a fixed seed keeps the interval stable between page loads
DISPUTES_SHOWN = 10


@dataclass(frozen=True)
class PatternHistogram:
    """Distinct per-pair count rows and how many pairs have each.

    ``patterns[i, j]`` is how many labels with value ``values[j]`` a pair of pattern ``i`` has.
    """

    values: tuple[int, ...]
    patterns: NDArray[np.int64]
    multiplicities: NDArray[np.int64]

    @classmethod
    def empty(cls, values: tuple[int, ...]) -> PatternHistogram:
        return cls(values, np.zeros((0, len(values)), dtype=np.int64), np.zeros(0, np.int64))

    @property
    def pairs(self) -> int:
        return int(self.multiplicities.sum())


def agreement_level(campaign: Campaign) -> LevelOfMeasurement:
    return LEVEL_BY_SCALE[campaign.scale]


def scale_values(campaign: Campaign) -> tuple[int, ...]:
    """The preference values the campaign's labels can carry, in rank order (B strongest
    first): the scale's, and 0 when an outcome ("both bad", "both good") or a ranking's tie
    of responses 0 and 1 can give it on a scale without a tie (binary)."""
    values = set(campaign.allowed_preferences)
    neither_better = {Outcome.BOTH_BAD, Outcome.BOTH_GOOD} & set(campaign.allowed_outcomes)
    if neither_better or campaign.item_kind == ItemKind.RANKING:
        values.add(0)
    return tuple(sorted(values))


def regular_labels(*, campaign: Campaign) -> QuerySet[Label]:
    """The labels agreement is computed on: not re-tests, not gold checks, not set aside (their
    annotator was quarantined)."""
    return Label.objects.filter(
        campaign=campaign, is_retest=False, is_gold_check=False, set_aside=False
    )


def regular_preference_labels(*, campaign: Campaign) -> QuerySet[Label]:
    """``regular_labels`` with a preference in the campaign's values (``scale_values``): the
    A/B figures' labels. A label saved under another scale (the campaign's was changed) has no
    column in their value counts."""
    return regular_labels(campaign=campaign).filter(preference__in=scale_values(campaign))


def pattern_histogram(
    *, campaign: Campaign, round_id: int | None = None, category: str | None = None
) -> PatternHistogram:
    """The pattern histogram of the campaign, or of one round and/or task category."""
    labels = regular_preference_labels(campaign=campaign)
    if round_id is not None:
        labels = labels.filter(pair__round_id=round_id)
    if category is not None:
        labels = labels.filter(pair__task_category=category)
    grouped = _grouped_histograms(labels, scale_values(campaign))
    return grouped.get((), PatternHistogram.empty(scale_values(campaign)))


def pattern_histograms_by_round_and_category(
    *, campaign: Campaign
) -> dict[tuple[int | None, str], PatternHistogram]:
    """One grouped query: a histogram per (round id, task category) present in the labels."""
    grouped = _grouped_histograms(
        regular_preference_labels(campaign=campaign),
        scale_values(campaign),
        by_round_and_category=True,
    )
    return {(key[0], key[1]): histogram for key, histogram in grouped.items()}


def merge_histograms(
    histograms: Iterable[PatternHistogram], values: tuple[int, ...]
) -> PatternHistogram:
    """Sum histograms: identical pattern rows add their multiplicities."""
    parts = [h for h in histograms if len(h.patterns)]
    if not parts:
        return PatternHistogram.empty(values)
    stacked = np.concatenate([h.patterns for h in parts])
    weights = np.concatenate([h.multiplicities for h in parts])
    patterns, inverse = np.unique(stacked, axis=0, return_inverse=True)
    totals = np.bincount(inverse.reshape(-1), weights=weights, minlength=len(patterns))
    return PatternHistogram(values, patterns.astype(np.int64), totals.astype(np.int64))


def histogram_components(histogram: PatternHistogram, level: LevelOfMeasurement) -> AlphaComponents:
    return alpha_components(histogram.patterns, histogram.multiplicities, histogram.values, level)


def histogram_agreement(
    histogram: PatternHistogram,
    level: LevelOfMeasurement,
    *,
    n_boot: int = BOOTSTRAP_REPLICATES,
    seed: int = BOOTSTRAP_SEED,
) -> dict[str, Any]:
    """{alpha, ci_low, ci_high, n_pairs, undefined_reason}; NaN becomes None (JSON null).

    ``n_pairs`` counts pairable pairs (two or more labels); the interval is a percentile
    bootstrap over pairs (see ``reviewers.agreement.maths.alpha_confidence_interval``).
    """
    components = histogram_components(histogram, level)
    low = high = float("nan")
    if components.undefined_reason is None:
        low, high = alpha_confidence_interval(
            histogram.patterns,
            histogram.values,
            level,
            multiplicities=histogram.multiplicities,
            n_boot=n_boot,
            seed=seed,
        )
    return {
        "alpha": _finite_or_none(components.alpha),
        "ci_low": _finite_or_none(low),
        "ci_high": _finite_or_none(high),
        "n_pairs": components.pairable_units,
        "undefined_reason": components.undefined_reason,
    }


def annotator_agreements_from_db(
    *,
    campaign: Campaign,
    reference_value_totals: NDArray[np.float64],
    level: LevelOfMeasurement | None = None,
) -> list[dict[str, Any]]:
    """Each annotator's agreement with the others on their pairs, against the campaign.

    One grouped query, a single pass over the labels with a window per pair, returns how many
    of each annotator's labels had each (own value, pair pattern) combination; see
    ``_coder_agreement`` for how that becomes ``annotator_agreements``' figure.
    """
    level = level or agreement_level(campaign)
    values = scale_values(campaign)
    windowed = (
        regular_preference_labels(campaign=campaign)
        .order_by()
        .annotate(
            **{
                name: Window(
                    Sum(Case(When(preference=value, then=1), default=0)),
                    partition_by=[F("pair_id")],
                )
                for name, value in zip(_count_names(values), values, strict=True)
            }
        )
        .values("annotator_id", "preference", *_count_names(values))
    )
    inner_sql, params = windowed.query.sql_with_params()
    quote = connection.ops.quote_name
    columns = ", ".join(
        quote(name) for name in ("annotator_id", "preference", *_count_names(values))
    )
    # Only our own identifiers are formatted in; every value travels as a query parameter.
    sql = f"SELECT {columns}, COUNT(*) FROM ({inner_sql}) own GROUP BY {columns}"  # noqa: S608
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    by_coder: dict[int, list[tuple[int, ...]]] = defaultdict(list)
    for coder, own_value, *rest in rows:
        by_coder[coder].append((values.index(own_value), *rest))
    usernames = dict(get_user_model().objects.filter(pk__in=by_coder).values_list("pk", "username"))
    result = []
    for coder, coder_rows in by_coder.items():
        agreement, pairable = _coder_agreement(
            np.asarray(coder_rows, dtype=np.int64), values, level, reference_value_totals
        )
        result.append(
            {
                "annotator_id": coder,
                "username": usernames.get(coder, ""),
                "alpha": _finite_or_none(agreement),
                "n_pairs": pairable,
                "undefined_reason": None
                if math.isfinite(agreement)
                else ("no_pairable_units" if not pairable else "no_variation"),
            }
        )
    result.sort(key=lambda row: (row["alpha"] is None, row["alpha"] or 0.0, row["username"]))
    return result


def round_disputes(
    *, campaign: Campaign, round_id: int, limit: int = DISPUTES_SHOWN
) -> list[dict[str, Any]]:
    """The round's pairs that cost it the most agreement: each pair's share of the round's
    observed disagreement (``reviewers.agreement.maths.unit_disagreement``) at the campaign's
    level."""
    values = scale_values(campaign)
    rows = list(
        regular_preference_labels(campaign=campaign)
        .filter(pair__round_id=round_id)
        .order_by()
        .values_list("pair_id")
        .annotate(**_value_counts(values))
    )
    if not rows:
        return []
    pair_ids = np.asarray([row[0] for row in rows])
    counts = np.asarray([row[1:] for row in rows], dtype=np.int64)
    shares = unit_disagreement(counts, values, agreement_level(campaign))
    top = [int(i) for i in np.argsort(-shares, kind="stable")[:limit] if shares[i] > 0]
    return [
        {
            "pair_id": int(pair_ids[i]),
            "share": float(shares[i]),
            "counts": {str(value): int(n) for value, n in zip(values, counts[i], strict=True)},
        }
        for i in top
    ]


def campaign_agreement_key(campaign: Campaign) -> str:
    """Where ``campaign_agreement`` stores the campaign's report (the dashboard's refresh keeps
    it as long as its next refresh may take)."""
    # created_at is in the key so that a re-created database reusing campaign ids never reads
    # another campaign's figures from a shared cache.
    return f"arbiter:agreement:v1:{campaign.pk}:{campaign.created_at.timestamp():.6f}"


def campaign_agreement(*, campaign: Campaign, use_cache: bool = True) -> dict[str, Any]:
    """The admin's agreement report, cached for a minute (``CACHE_TTL_SECONDS``).

    {level, level_note, target, computed_at, overall, rounds, categories, annotators,
    disputes}; ``overall`` and each round/category entry are ``histogram_agreement`` dicts,
    rounds add ``below_target`` (alpha defined and under the campaign's target).
    """
    key = campaign_agreement_key(campaign)
    if use_cache:
        cached: dict[str, Any] | None = cache.get(key)
        if cached is not None:
            return cached
    report = _campaign_agreement(campaign)
    cache.set(key, report, CACHE_TTL_SECONDS)
    return report


def _campaign_agreement(campaign: Campaign) -> dict[str, Any]:
    level = agreement_level(campaign)
    values = scale_values(campaign)
    by_subset = pattern_histograms_by_round_and_category(campaign=campaign)
    overall_histogram = merge_histograms(by_subset.values(), values)
    overall = histogram_agreement(overall_histogram, level)
    target = campaign.agreement_target

    rounds = _round_entries(campaign, by_subset)

    categories = []
    for category in sorted({category for _, category in by_subset}):
        histogram = merge_histograms(
            (h for (_, cat), h in by_subset.items() if cat == category), values
        )
        entry = histogram_agreement(histogram, level)
        entry.update(category=category, below_target=_below(entry, target))
        categories.append(entry)

    components = histogram_components(overall_histogram, level)
    annotators = annotator_agreements_from_db(
        campaign=campaign, reference_value_totals=components.value_totals, level=level
    )
    for entry in annotators:
        entry["below_target"] = _below(entry, target)

    latest = next((r for r in reversed(rounds) if r["round_id"] is not None), None)
    disputes: dict[str, Any] = {"round_id": None, "number": None, "pairs": []}
    if latest is not None:
        disputes = {
            "round_id": latest["round_id"],
            "number": latest["number"],
            "pairs": round_disputes(campaign=campaign, round_id=latest["round_id"]),
        }
    rankings = ranking_agreement(campaign=campaign) if campaign.item_kind == "ranking" else None
    return {
        "rankings": rankings,
        "campaign": campaign.pk,
        "level": level,
        "level_note": LEVEL_NOTES[campaign.scale],
        "target": target,
        "computed_at": timezone.now().isoformat(),
        "overall": overall,
        "rounds": rounds,
        "categories": categories,
        "annotators": annotators,
        "disputes": disputes,
    }


def _round_entries(
    campaign: Campaign, by_subset: dict[tuple[int | None, str], PatternHistogram]
) -> list[dict[str, Any]]:
    """Alpha per round, in round order (pairs outside any round last)."""
    level, values = agreement_level(campaign), scale_values(campaign)
    target = campaign.agreement_target
    rounds_by_id: dict[int | None, Round] = {
        r.pk: r for r in Round.objects.filter(campaign=campaign)
    }
    round_ids = sorted(
        {round_id for round_id, _ in by_subset},
        key=lambda rid: (rid is None, rounds_by_id[rid].number if rid in rounds_by_id else 0),
    )
    rounds = []
    for round_id in round_ids:
        histogram = merge_histograms(
            (h for (rid, _), h in by_subset.items() if rid == round_id), values
        )
        entry = histogram_agreement(histogram, level)
        the_round = rounds_by_id.get(round_id)  # None: pairs outside any round
        entry.update(
            round_id=round_id,
            number=the_round.number if the_round else None,
            status=the_round.status if the_round else None,
            below_target=entry["alpha"] is not None and entry["alpha"] < target,
        )
        rounds.append(entry)
    return rounds


def ranking_agreement(*, campaign: Campaign) -> dict[str, Any]:
    """Ordinal alpha over a ranking campaign's rankings (``reviewers.agreement.rankings``),
    overall and per round: {"alpha", "items", "rounds": [{"number", "alpha", "items"}]}.
    The rest of the report reads labels' ``preference`` (response 0 against response 1).

    The labels stream in pair order and each item is folded into its round's histogram of
    units (``ranking_unit_values``) as soon as its last ranking is read: memory holds one
    item's rankings and a few hundred histogram rows, however many items the campaign has."""
    rows = (
        regular_labels(campaign=campaign)
        .filter(ranking__isnull=False)
        .order_by("pair_id", "id")
        .values_list("pair_id", "pair__round__number", "ranking")
    )
    histograms: dict[int | None, Counter[tuple[float, ...]]] = defaultdict(Counter)
    items_in: Counter[int | None] = Counter()
    current: tuple[int, int | None] | None = None
    rankings: list[Any] = []

    def fold() -> None:
        if current is not None:
            histograms[current[1]].update(ranking_unit_values(rankings))
            items_in[current[1]] += 1

    for pair_id, round_number, ranking in rows.iterator(chunk_size=5000):
        if current is None or current[0] != pair_id:
            fold()
            current, rankings = (pair_id, round_number), []
        rankings.append(ranking)
    fold()
    overall: Counter[tuple[float, ...]] = Counter()
    for histogram in histograms.values():
        overall.update(histogram)
    return {
        "alpha": _finite_or_none(ranking_alpha_from_histogram(overall)),
        "items": sum(items_in.values()),
        "rounds": [
            {
                "number": number,
                "alpha": _finite_or_none(ranking_alpha_from_histogram(histograms[number])),
                "items": items_in[number],
            }
            for number in sorted(n for n in histograms if n is not None)
        ],
    }


def _below(entry: Mapping[str, Any], target: float) -> bool:
    return entry["alpha"] is not None and entry["alpha"] < target


def _count_names(values: tuple[int, ...]) -> list[str]:
    return [f"n{index}" for index in range(len(values))]


def _value_counts(values: tuple[int, ...]) -> dict[str, Count]:
    return {
        name: Count("pk", filter=Q(preference=value))
        for name, value in zip(_count_names(values), values, strict=True)
    }


def _grouped_histograms(
    labels: QuerySet[Label], values: tuple[int, ...], *, by_round_and_category: bool = False
) -> dict[tuple[Any, ...], PatternHistogram]:
    """Run the grouped query: counts per pair, then GROUP BY (count pattern) and count pairs.

    With ``by_round_and_category`` the per-pair rows are joined to their pair for its round and
    task category, which lead the GROUP BY; joining after the per-pair step joins one row per
    pair rather than one per label.
    """
    counts = _value_counts(values)
    per_pair = labels.order_by().values(unit=F("pair_id")).annotate(**counts)
    inner_sql, params = per_pair.query.sql_with_params()
    quote = connection.ops.quote_name
    count_columns = [f"per_pair.{quote(name)}" for name in counts]
    source = f"({inner_sql}) per_pair"
    keys: list[str] = []
    if by_round_and_category:
        pair_table = quote(Pair._meta.db_table)
        source += f" INNER JOIN {pair_table} pair ON pair.{quote('id')} = per_pair.{quote('unit')}"
        keys = [
            f"pair.{quote(Pair._meta.get_field('round').column)}",
            f"pair.{quote(Pair._meta.get_field('task_category').column)}",
        ]
    columns = ", ".join([*keys, *count_columns])
    # Only our own identifiers are formatted in; every value travels as a query parameter.
    sql = f"SELECT {columns}, COUNT(*) FROM {source} GROUP BY {columns}"  # noqa: S608
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    grouped: dict[tuple[Any, ...], list[tuple[Any, ...]]] = defaultdict(list)
    for row in rows:
        grouped[tuple(row[: len(keys)])].append(row[len(keys) :])
    return {
        key: PatternHistogram(
            values,
            np.asarray([row[:-1] for row in key_rows], dtype=np.int64),
            np.asarray([row[-1] for row in key_rows], dtype=np.int64),
        )
        for key, key_rows in grouped.items()
    }


def _coder_agreement(
    rows: NDArray[np.int64],
    values: tuple[int, ...],
    level: LevelOfMeasurement,
    reference_value_totals: NDArray[np.float64],
) -> tuple[float, int]:
    """(agreement, pairable labels) of one coder from (own value index, counts…, n) rows.

    The figure is ``1 - D_o(coder) / D_e`` with ``D_e`` fixed by the reference totals, and
    ``D_o(coder)`` is a mean over the coder's units of a term that depends only on the own value
    and the unit's counts, so each distinct combination is evaluated once and weighted by how
    many units had it (``annotator_agreement_from_patterns``): exactly what
    ``annotator_agreement`` gives on the coder's expanded pairs, without expanding them (a
    matrix of combinations squared, gigabytes once pairs carry a dozen labels or more).
    """
    own_index, patterns, multiplicities = rows[:, 0], rows[:, 1:-1], rows[:, -1]
    pairable = int(multiplicities[patterns.sum(axis=1) >= 2].sum())
    if not pairable:
        return float("nan"), 0
    agreement = annotator_agreement_from_patterns(
        own_index, patterns, multiplicities, np.asarray(values), level, reference_value_totals
    )
    return agreement, pairable


def _finite_or_none(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None
