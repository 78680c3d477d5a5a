"""The silver pool and one curation pass over it: decontamination, deduplication against earlier
silver and human-verified pairs, then the consistency filter."""

from __future__ import annotations

from array import array
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass, fields
from typing import Any, cast

import numpy as np
from django.db import transaction
from django.db.models import Q, QuerySet

from annotation.models import Campaign, Pair
from annotation.services.pair_state import pairs_set_curation
from scoring.datasets.curation.consistency import (
    CONTAMINATED,
    DEFAULT_BATCH_SIZE,
    DISCARDED,
    DUPLICATE,
    KEPT,
    RECYCLED,
    CurationRules,
    ProgressCallback,
    curation_verdicts,
)
from scoring.datasets.curation.decontamination import (
    EvaluationIndex,
    evaluation_index,
    turn_texts,
)
from scoring.datasets.curation.near_duplicates import NEAR, DuplicateFinder
from scoring.datasets.scorers import PoolItem, Scorer
from scoring.loop.pool_scoring import silver_pool

# --- The pool -----------------------------------------------------------------------------


def curation_pool(*, campaign: Campaign, recurate: bool = False) -> QuerySet[Pair]:
    """Unverified pairs with a source label; already curated ones only with ``recurate``."""
    return silver_pool(campaign=campaign, recurate=recurate)


def _reference_pairs(campaign: Campaign, *, recurate: bool) -> QuerySet[Pair]:
    """Pairs a pooled pair must not duplicate: human-verified ones (labelled, gold or with a
    consensus) and, unless everything is curated again, silver pairs curated before."""
    reference = Q(is_gold=True) | Q(labels_count__gt=0) | ~Q(provenance="")
    if not recurate:
        reference |= Q(curation__in=[KEPT, DISCARDED, RECYCLED])
    return Pair.objects.filter(campaign=campaign).filter(reference)


@dataclass
class CurationResult:
    pool: int = 0
    contaminated: int = 0
    duplicates: int = 0
    scored: int = 0
    kept: int = 0
    discarded: int = 0
    recycled: int = 0
    kept_by_judge: int = 0
    evaluation_prompts: int = 0
    near_duplicates: int = 0  # of the duplicates, those MinHash found (not exact repeats)

    def as_dict(self) -> dict[str, int]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> CurationResult:
        return cls(**{f.name: int(values.get(f.name) or 0) for f in fields(cls)})

    def plus(self, earlier: CurationResult | None) -> CurationResult:
        """This run's counts with those of an interrupted earlier run of the same job added:
        its pool already held the pairs this run finds still uncurated, so only pairs beyond
        those (imported since) add to the pool."""
        if earlier is None:
            return CurationResult(**self.as_dict())
        total = CurationResult(
            **{f.name: getattr(self, f.name) + getattr(earlier, f.name) for f in fields(self)}
        )
        left_by_earlier = earlier.pool - earlier.contaminated - earlier.duplicates - earlier.scored
        total.pool = earlier.pool + max(0, self.pool - left_by_earlier)
        total.evaluation_prompts = self.evaluation_prompts
        return total


# Called with the counts so far (an earlier run's included) in the transaction that marks
# each batch's verdicts, so that a job can store them with the verdicts or not at all.
CountsCallback = Callable[[CurationResult], None]
# The transaction each batch's verdicts are written in: a job's takes its own row first (its
# owner's check), before the pairs', the order a campaign's deletion takes them in too.
BatchTransaction = Callable[[], AbstractContextManager[object]]


def _mark(ids: Sequence[int], curation: str) -> None:
    pairs_set_curation(pair_ids=ids, curation=curation)


def _screen(
    *,
    campaign: Campaign,
    pool: QuerySet[Pair],
    index: EvaluationIndex,
    result: CurationResult,
    recurate: bool,
    near_duplicate_threshold: float | None,
    carried: CurationResult | None,
    on_counts: CountsCallback,
    batch_transaction: BatchTransaction,
) -> array[int]:
    """Pass 1: drop contaminated and duplicate (exact, or near with a threshold) pairs;
    return the ids left to score."""
    finder = DuplicateFinder(threshold=near_duplicate_threshold)
    for conversation, response_a, response_b in (
        _reference_pairs(campaign, recurate=recurate)
        .values_list("conversation", "response_a", "response_b")
        .iterator(chunk_size=2000)
    ):
        finder.check(conversation, response_a, response_b)  # remembered; repeats among them stay
    survivors, contaminated, duplicates = array("q"), array("q"), array("q")
    rows = pool.order_by("pk").values_list("pk", "conversation", "response_a", "response_b")
    for pair_id, conversation, response_a, response_b in rows.iterator(chunk_size=2000):
        result.pool += 1
        if index.contaminates(turn_texts(conversation)):
            contaminated.append(pair_id)
            continue
        repeat = finder.check(conversation, response_a, response_b)
        if repeat is not None:
            duplicates.append(pair_id)
            result.near_duplicates += repeat == NEAR
        else:
            survivors.append(pair_id)
    # Marked once the scan is over: SQLite gives no isolation between a query being read and
    # writes to the same table on the connection.
    for ids, verdict, count in (
        (contaminated, CONTAMINATED, "contaminated"),
        (duplicates, DUPLICATE, "duplicates"),
    ):
        for start in range(0, len(ids), 2000):
            chunk = ids[start : start + 2000].tolist()
            with batch_transaction():
                _mark(chunk, verdict)
                setattr(result, count, getattr(result, count) + len(chunk))
                on_counts(result.plus(carried))
    return survivors


def pool_curate(
    *,
    campaign: Campaign,
    gold: Scorer,
    best: Scorer,
    rules: CurationRules | None = None,
    judge: Scorer | None = None,
    evaluation_sets: Sequence[str] | None = None,
    recurate: bool = False,
    batch_size: int = DEFAULT_BATCH_SIZE,
    on_progress: ProgressCallback | None = None,
    near_duplicate_threshold: float | None = None,
    carried: CurationResult | None = None,
    on_counts: CountsCallback | None = None,
    batch_transaction: BatchTransaction = transaction.atomic,
) -> CurationResult:
    """Decontaminate, deduplicate, then keep/discard/recycle the campaign's silver pool.

    Verdicts are written a batch at a time, so an interrupted run resumes where it stopped
    (the pool is the pairs not curated yet). ``carried`` are the counts an interrupted run of
    the same curation stored (through ``on_counts``); the result adds them to this run's.
    A re-curation starts afresh, so it carries nothing.
    """
    rules = rules or CurationRules()
    report = on_progress or (lambda _fraction, _message: None)
    store_counts: CountsCallback = on_counts or (lambda _counts: None)
    carried = None if recurate else carried
    result = CurationResult()
    index = evaluation_index(campaign=campaign, set_names=evaluation_sets)
    result.evaluation_prompts = index.prompts
    pool = curation_pool(campaign=campaign, recurate=recurate)
    survivors = _screen(
        campaign=campaign,
        pool=pool,
        index=index,
        result=result,
        recurate=recurate,
        near_duplicate_threshold=near_duplicate_threshold,
        carried=carried,
        on_counts=store_counts,
        batch_transaction=batch_transaction,
    )
    report(
        0.1,
        f"{result.pool} pooled; {result.contaminated} contaminated, "
        f"{result.duplicates} duplicates dropped",
    )
    for start in range(0, len(survivors), batch_size):
        ids = survivors[start : start + batch_size].tolist()
        items = _pool_items(ids)
        if not items:
            continue
        verdicts = _batch_verdicts(
            items, gold=gold, best=best, judge=judge, rules=rules, result=result
        )
        with batch_transaction():
            for verdict in (KEPT, DISCARDED, RECYCLED):
                chosen = [
                    item.pair_id for item, v in zip(items, verdicts, strict=True) if v == verdict
                ]
                _mark(chosen, verdict)
                setattr(result, verdict, getattr(result, verdict) + len(chosen))
            result.scored += len(items)
            store_counts(result.plus(carried))
        report(
            0.1 + 0.9 * result.scored / len(survivors),
            f"scored {result.scored} of {len(survivors)}: {result.kept} kept, "
            f"{result.discarded} discarded, {result.recycled} recycled",
        )
    return result.plus(carried)


def _pool_items(ids: list[int]) -> list[PoolItem]:
    """The batch's pairs as the scorers read them, in id order."""
    rows = (
        Pair.objects.filter(pk__in=ids)
        .order_by("pk")
        .values_list("pk", "conversation", "response_a", "response_b", "silver_preference")
    )
    # The pool query keeps non-zero silver preferences only: never null here.
    return [
        PoolItem(pk, list(conv or []), a, b, cast(int, silver)) for pk, conv, a, b, silver in rows
    ]


def _batch_verdicts(
    items: list[PoolItem],
    *,
    gold: Scorer,
    best: Scorer,
    judge: Scorer | None,
    rules: CurationRules,
    result: CurationResult,
) -> list[str]:
    """Each item's verdict by the two models, then by the judge for those they did not keep
    (counted in ``result.kept_by_judge``)."""
    silver = np.array([item.silver_preference for item in items])
    p_gold = gold(items)
    p_best = p_gold if best is gold else best(items)
    by_models = curation_verdicts(
        silver_preferences=silver, p_gold=p_gold, p_best=p_best, rules=rules
    )
    verdicts = by_models
    undecided = [index for index, verdict in enumerate(by_models) if verdict != KEPT]
    if judge is not None and undecided:
        # The judge can only keep what the models did not: ask it about those pairs alone
        # (each question is two calls to the model); the kept ones stay kept whatever it
        # would say, so they get an even 0.5.
        p_judge = np.full(len(items), 0.5)
        p_judge[undecided] = judge([items[index] for index in undecided])
        verdicts = curation_verdicts(
            silver_preferences=silver,
            p_gold=p_gold,
            p_best=p_best,
            rules=rules,
            p_judge=p_judge,
        )
        result.kept_by_judge += sum(
            1
            for mine, theirs in zip(verdicts, by_models, strict=True)
            if mine == KEPT and theirs != KEPT
        )
    return verdicts
