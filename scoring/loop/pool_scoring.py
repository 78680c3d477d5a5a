"""Scoring the pool with a model version: ``PairScore`` rows, written idempotently, in shards.

What gets scored: the unlabelled pool (pooled or queued pairs nobody has taken yet), plus the
pairs with a human preference (consensus or gold), whose scores drive prioritisation. The job
splits them by id into shards (``scoring.jobs.shards``) that any gpu worker runs; a shard
reads its pairs in chunks by keyset pagination and skips pairs this version already scored, so
a shard taken over after its worker died continues where it stopped, and the unique
``(pair, version)`` constraint plus the shard's fenced counter (same transaction) keep a pair
from being scored or counted twice.

Head-mode versions score from the cached encoder vectors (``head(a)``, ``head(b)``: exactly the
checkpoint's rewards, without a forward pass); full-mode versions run the checkpoint. Either way
the pairs' vectors are computed first (by the base encoder) since retrieval needs them.

A verified ranking item (a consensus ranking of trainable provenance) is judged by the pairs its
ranking expands into, not by responses 0 and 1, so its score also holds the reward of every
response (``PairScore.rewards``): its responses beyond the first two are scored by the
checkpoint in the shard (in head mode the frozen base plus the head, what their features would
give; they have no cached vectors). Only these items pay for it, never the unlabelled pool.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
from django.conf import settings
from django.db import transaction
from django.db.models import Q, QuerySet

from annotation.models import Campaign, Pair
from scoring.jobs.runner import JobContext, JobError, JobHandedOff
from scoring.jobs.shards import (
    ShardContext,
    ShardWork,
    job_hand_off_to_shards,
    shard_size_of,
    shards_summary,
)
from scoring.loop.embeddings import (
    head_rewards,
    pair_embeddings_ensure,
    pair_vectors_load,
)
from scoring.loop.judged_pairs import TRAINABLE_PROVENANCE
from scoring.models import Job, JobShard, ModelVersion, PairScore


def pool_pairs(*, campaign: Campaign) -> QuerySet[Pair]:
    """Pairs no annotator has touched: the candidates for the next round and for retrieval."""
    return Pair.objects.filter(campaign=campaign).filter(_pool_q())


def _sigmoid(values: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * values))


def retrieval_encoder_key(version: ModelVersion) -> str:
    key = version.metrics.get("encoder")
    if not key:
        raise JobError(f"v{version.number} records no encoder for its embeddings")
    return str(key)


def load_version_model(version: ModelVersion) -> Any:
    from scoring.reward_model import RewardModel

    if not Path(version.checkpoint).is_dir():
        raise JobError(f"the checkpoint of v{version.number} is missing: {version.checkpoint}")
    # Scoring only: bf16 weights where the model scores in bf16 on the GPU anyway.
    return RewardModel.load(version.checkpoint, inference_only=True)


def _base_encoder(version: ModelVersion, model: Any) -> Any:
    """The model that computes a version's cached vectors: the version itself in head mode
    (its encoder is the frozen base), else the base model."""
    if version.mode == "head":
        return model
    from scoring.reward_model import RewardModel

    max_length = version.metrics.get("encoder_max_length")
    return RewardModel.from_base(version.base, max_length=max_length)


def _pool_q() -> Q:
    return Q(
        status__in=(Pair.Status.POOLED, Pair.Status.QUEUED),
        is_gold=False,
        labels_count=0,
        slots_taken=0,
    )


def _ranked_q() -> Q:
    """Ranking items with a verified consensus ranking: judged by their expanded pairs, which
    a tie between responses 0 and 1 (``consensus_preference = 0``) does not rule out."""
    return Q(
        is_gold=False,
        provenance__in=TRAINABLE_PROVENANCE,
        consensus_ranking__isnull=False,
        responses__isnull=False,
    )


def _judged_q(include_gold: bool) -> Q:
    judged = (
        Q(is_gold=False, provenance__in=TRAINABLE_PROVENANCE, consensus_preference__isnull=False)
        & ~Q(consensus_preference=0)
    ) | _ranked_q()
    if include_gold:
        judged |= Q(is_gold=True, gold_preference__isnull=False) & ~Q(gold_preference=0)
    return judged


def judged_targets(*, campaign: Campaign, include_gold: bool = True) -> QuerySet[Pair]:
    """Pairs with a human preference the model is checked against: consensus, then gold."""
    return Pair.objects.filter(campaign=campaign).filter(_judged_q(include_gold))


def scoring_targets(*, campaign: Campaign, include_gold: bool = True) -> QuerySet[Pair]:
    """What a score stage scores: the pool plus the pairs with a human preference (whose
    scores drive prioritisation), as one queryset that shards split by id."""
    return Pair.objects.filter(campaign=campaign).filter(_pool_q() | _judged_q(include_gold))


# One model per worker process, reused by the shards it runs (a shard is tens of thousands of
# pairs; loading the checkpoint again for each would cost more than scoring them in head mode).
_MODELS: dict[str, Any] = {}


def remember_model(version: ModelVersion, model: Any) -> None:
    """Keep ``model`` (e.g. just trained) as this process's model for ``version``."""
    _MODELS.clear()
    _MODELS[f"v{version.pk}"] = model


def version_model(version: ModelVersion) -> Any:
    key = f"v{version.pk}"
    if key not in _MODELS:
        model = load_version_model(version)
        if len(_MODELS) >= 4:  # a curation job scores with two versions (and their bases)
            _MODELS.clear()
        _MODELS[key] = model
    return _MODELS[key]


def _version_encoder(version: ModelVersion, model: Any) -> Any:
    if version.mode == "head":
        return model
    key = f"base-of-v{version.pk}"
    if key not in _MODELS:
        _MODELS[key] = _base_encoder(version, model)
    return _MODELS[key]


def pool_score_hand_off(
    *,
    version: ModelVersion,
    context: JobContext,
    include_gold: bool,
    progress_range: tuple[float, float],
) -> None:
    """Plan the shards that score the pool and the judged pairs with ``version`` and give
    the job over to them (raises ``JobHandedOff``); returns when there is nothing to score."""
    job = context.job
    job.result = {
        **(job.result or {}),
        "score_version_id": version.pk,
        "include_gold": include_gold,
    }
    targets = scoring_targets(campaign=version.campaign, include_gold=include_gold)
    shards = job_hand_off_to_shards(
        context=context,
        targets=targets,
        size=shard_size_of(job.params),
        progress_range=progress_range,
        queue=context.queue,
        inline=context.inline,
    )
    if shards:
        raise JobHandedOff(f"job {job.pk} continues in {shards} shards")


def silver_pool(*, campaign: Campaign, recurate: bool = False) -> QuerySet[Pair]:
    """Stage 2's pool: unverified pairs with a source label (curated ones only with
    ``recurate``); ``scoring.datasets.curation`` reads it from here."""
    pool = Pair.objects.filter(
        campaign=campaign,
        is_gold=False,
        provenance="",
        labels_count=0,
        silver_preference__isnull=False,
    ).exclude(silver_preference=0)
    return pool if recurate else pool.filter(curation="")


def silver_score_hand_off(
    *,
    versions: list[ModelVersion],
    context: JobContext,
    recurate: bool,
    progress_range: tuple[float, float],
) -> None:
    """Score the silver pool with each of ``versions`` in shards before a curation job's
    verdicts (raises ``JobHandedOff``); returns when there is nothing to score."""
    job = context.job
    job.result = {
        **(job.result or {}),
        "score_version_ids": [version.pk for version in versions],
        "targets": "silver",
        "recurate": recurate,
    }
    shards = job_hand_off_to_shards(
        context=context,
        targets=silver_pool(campaign=versions[0].campaign, recurate=recurate),
        size=shard_size_of(job.params),
        progress_range=progress_range,
        queue=context.queue,
        inline=context.inline,
    )
    if shards:
        raise JobHandedOff(f"job {job.pk} continues in {shards} shards")


def _shard_targets(job: Job) -> QuerySet[Pair]:
    result = job.result or {}
    if result.get("targets") == "silver":
        return silver_pool(campaign=job.campaign, recurate=bool(result.get("recurate")))
    return scoring_targets(
        campaign=job.campaign, include_gold=bool(result.get("include_gold", True))
    )


def _from_vectors(version: ModelVersion) -> bool:
    """Head-mode versions with cached features score without a forward pass."""
    return version.mode == "head" and bool(version.metrics.get("encoder"))


def shard_score_work(shard: JobShard) -> ShardWork:
    """Score the shard's pairs that each of the job's versions has not scored yet, by chunks.

    A loop or score job's pairs get vectors too (retrieval needs them); a curation job's
    silver pairs only where a head-mode version scores from them.
    """
    job = shard.job
    result = job.result or {}
    version_ids = result.get("score_version_ids") or [result.get("score_version_id")]
    versions = list(ModelVersion.objects.select_related("campaign").filter(pk__in=version_ids))
    if len(versions) != len(set(version_ids)):
        raise JobError("a model version this job scores with no longer exists")
    embed_all = result.get("targets") != "silver"

    def work(context: ShardContext) -> None:
        targets = _shard_targets(job).filter(id__gte=shard.first_id, id__lte=shard.last_id)
        after = shard.first_id - 1
        while True:
            context.check()
            ids = list(
                targets.filter(id__gt=after)
                .order_by("id")
                .values_list("id", flat=True)[: score_chunk_size()]
            )
            if not ids:
                return
            after = ids[-1]
            embedded = scored = 0
            rows: list[PairScore] = []
            for version in versions:
                model = version_model(version)
                if embed_all or _from_vectors(version):
                    key = retrieval_encoder_key(version)
                    embedded += pair_embeddings_ensure(
                        pair_ids=ids, model=_version_encoder(version, model), key=key
                    )
                rows += _score_rows(version, model, ids)
            scored = len(rows)
            with transaction.atomic():
                # The unique (pair, version) constraint keeps a pair from being scored twice;
                # the fenced counter rolls the chunk back if this worker lost the shard.
                PairScore.objects.bulk_create(rows, ignore_conflicts=True)
                context.add_counts(scored=scored, embedded=embedded)

    return work


def _score_rows(version: ModelVersion, model: Any, ids: list[int]) -> list[PairScore]:
    done = set(
        PairScore.objects.filter(model_version=version, pair_id__in=ids).values_list(
            "pair_id", flat=True
        )
    )
    todo = [pair_id for pair_id in ids if pair_id not in done]
    if not todo:
        return []
    if _from_vectors(version):
        key = retrieval_encoder_key(version)
        reward_a, reward_b = head_rewards(
            model, pair_vectors_load(pair_ids=todo, key=key, context=False)
        )
    else:
        reward_a, reward_b = _forward_rewards(model, todo)
    later = _later_rewards(model, todo)
    p_a_better = _sigmoid(reward_a - reward_b)
    return [
        PairScore(
            pair_id=pair_id,
            model_version=version,
            reward_a=float(reward_a[i]),
            reward_b=float(reward_b[i]),
            p_a_better=float(p_a_better[i]),
            rewards=(
                _json_rewards([reward_a[i], reward_b[i], *later[pair_id]])
                if pair_id in later
                else None
            ),
        )
        for i, pair_id in enumerate(todo)
    ]


def _later_rewards(model: Any, pair_ids: list[int]) -> dict[int, list[float]]:
    """The rewards of responses 2..K of the verified ranking items among ``pair_ids`` (a
    2-response item maps to an empty list), by one batch through the checkpoint.

    In head mode responses 0 and 1 are scored from their cached features (12-bit differences,
    8-bit midpoints), so a reward here may sit up to the midpoint's rounding (about 0.06 on
    MiniLM) off the scale of those two: p moves by at most about 0.015.
    """
    rows = (
        Pair.objects.filter(pk__in=pair_ids)
        .filter(_ranked_q())
        .values_list("pk", "conversation", "responses")
    )
    owners: list[int] = []
    items: list[tuple[Any, str]] = []
    later: dict[int, list[float]] = {}
    for pk, conversation, responses in rows:
        later[pk] = []
        for response in (responses or [])[2:]:
            owners.append(pk)
            items.append((conversation, str(response["content"])))
    if items:
        for pk, reward in zip(owners, model.score_batch(items), strict=True):
            later[pk].append(float(reward))
    return later


def _json_rewards(rewards: list[float]) -> list[float | None]:
    # PostgreSQL's jsonb has no NaN or infinity (an overflowing checkpoint's reward): such a
    # reward is stored as null, and prioritisation leaves out the pairs it would decide.
    return [float(reward) if math.isfinite(reward) else None for reward in rewards]


def score_chunk_size() -> int:
    return int(settings.ARBITER.get("SCORE_CHUNK", 2048))


def scored_version(job: Job) -> ModelVersion:
    """The version a job in its shards or finishing stage scores with."""
    version_id = (job.result or {}).get("score_version_id")
    version = ModelVersion.objects.filter(pk=version_id).first() if version_id else None
    if version is None:
        raise JobError("the model version this job scored with no longer exists")
    return version


def scoring_log_line(summary: dict[str, Any]) -> str:
    return (
        f"scored {summary['scored']} pairs with v{summary['version']} ({summary['pool']} in "
        f"the pool, {summary['judged']} judged) in {summary['shards']} shards on "
        f"{len(summary['workers'])} workers; embedded {summary['embedded']}"
    )


def pool_score_summary(*, job: Job, version: ModelVersion, include_gold: bool) -> dict[str, Any]:
    """What the job's shards did, with the pool and judged counts (one query each)."""
    summary = shards_summary(job)
    campaign = version.campaign
    pool = pool_pairs(campaign=campaign).count()
    judged = judged_targets(campaign=campaign, include_gold=include_gold).count()
    return {**summary, "pool": pool, "judged": judged, "version": version.number}


def _forward_rewards(model: Any, pair_ids: list[int]) -> tuple[np.ndarray, np.ndarray]:
    pairs = {pair.pk: pair for pair in Pair.objects.filter(pk__in=pair_ids)}
    ordered = [pairs[pair_id] for pair_id in pair_ids]
    items = [(pair.conversation, pair.response_a) for pair in ordered]
    items += [(pair.conversation, pair.response_b) for pair in ordered]
    rewards = model.score_batch(items)
    return rewards[: len(ordered)], rewards[len(ordered) :]
