"""Scoring the pool with a model version: ``PairScore`` rows, written idempotently.

What gets scored: the unlabelled pool (pooled or queued pairs nobody has taken yet), plus the
pairs with a human preference (consensus or gold), whose scores drive prioritisation. Pairs this
version already scored are skipped, so a retried job continues where it stopped.

Head-mode versions score from the cached encoder vectors (``head(a)``, ``head(b)``: exactly the
checkpoint's rewards, without a forward pass); full-mode versions run the checkpoint. Either way
the pairs' vectors are computed first (by the base encoder) since retrieval needs them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from django.db.models import QuerySet

from annotation.models import Campaign, Pair
from scoring.jobs.runner import JobContext, JobError
from scoring.loop.embeddings import (
    head_rewards,
    pair_embeddings_ensure,
    pair_vectors_load,
)
from scoring.loop.training import JudgedPairs, gold_pairs, training_pairs
from scoring.models import ModelVersion, PairScore

_CHUNK = 2048


def pool_pairs(*, campaign: Campaign) -> QuerySet[Pair]:
    """Pairs no annotator has touched: the candidates for the next round and for retrieval."""
    return Pair.objects.filter(
        campaign=campaign,
        status__in=(Pair.Status.POOLED, Pair.Status.QUEUED),
        is_gold=False,
        labels_count=0,
        slots_taken=0,
    )


def judged_pairs(*, campaign: Campaign, include_gold: bool = True) -> JudgedPairs:
    """Pairs whose human preference the model is checked against: consensus, then gold."""
    verified = training_pairs(campaign=campaign)
    if not include_gold:
        return verified
    gold = gold_pairs(campaign=campaign)
    return JudgedPairs(verified.pairs + gold.pairs, verified.preferences + gold.preferences)


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


def pool_score(
    *,
    version: ModelVersion,
    context: JobContext,
    model: Any | None = None,
    include_gold: bool = True,
) -> dict[str, Any]:
    """Score the pool and the judged pairs with ``version``; returns counts."""
    campaign = version.campaign
    pool_ids = list(pool_pairs(campaign=campaign).order_by("id").values_list("id", flat=True))
    judged = judged_pairs(campaign=campaign, include_gold=include_gold)
    targets = list(dict.fromkeys(judged.pair_ids + pool_ids))
    model = model if model is not None else load_version_model(version)
    key = retrieval_encoder_key(version)
    with context.stage(0.0, 0.6, f"embedding {len(targets)} pairs"):
        computed = pair_embeddings_ensure(
            pair_ids=targets,
            model=_base_encoder(version, model),
            key=key,
            on_progress=context.on_progress,
            check=context.check,
        )
    done = set(
        PairScore.objects.filter(model_version=version, pair_id__in=targets).values_list(
            "pair_id", flat=True
        )
    )
    todo = [pair_id for pair_id in targets if pair_id not in done]
    with context.stage(0.6, 1.0, f"scoring {len(todo)} pairs with v{version.number}"):
        for start in range(0, len(todo), _CHUNK):
            context.check()
            chunk = todo[start : start + _CHUNK]
            reward_a, reward_b = _rewards(version, model, chunk, key)
            p_a_better = _sigmoid(reward_a - reward_b)
            PairScore.objects.bulk_create(
                [
                    PairScore(
                        pair_id=pair_id,
                        model_version=version,
                        reward_a=float(reward_a[i]),
                        reward_b=float(reward_b[i]),
                        p_a_better=float(p_a_better[i]),
                    )
                    for i, pair_id in enumerate(chunk)
                ],
                ignore_conflicts=True,  # a concurrent or repeated run wrote some already
            )
            finished = start + len(chunk)
            context.progress(finished / len(todo), f"scored {finished}/{len(todo)} pairs")
    context.log(
        f"scored {len(todo)} pairs with v{version.number} ({len(pool_ids)} in the pool, "
        f"{len(judged)} judged); embedded {computed}"
    )
    return {"scored": len(todo), "pool": len(pool_ids), "judged": len(judged), "embedded": computed}


def _rewards(
    version: ModelVersion, model: Any, pair_ids: list[int], key: str
) -> tuple[np.ndarray, np.ndarray]:
    if version.mode == "head":
        return head_rewards(model, pair_vectors_load(pair_ids=pair_ids, key=key))
    pairs = {pair.pk: pair for pair in Pair.objects.filter(pk__in=pair_ids)}
    ordered = [pairs[pair_id] for pair_id in pair_ids]
    items = [(pair.conversation, pair.response_a) for pair in ordered]
    items += [(pair.conversation, pair.response_b) for pair in ordered]
    rewards = model.score_batch(items)
    return rewards[: len(ordered)], rewards[len(ordered) :]

