"""k-fold cross-validation of a training configuration on a campaign's verified labels.

For choosing settings when gold is scarce: the verified pairs (those ``training_pairs``
trains on, plus the gold pairs with ``include_gold``) are split into ``folds`` parts by prompt:
pairs whose conversations are the same (a pair and its mirror image, the same responses
swapped; pairs comparing other responses to the same prompt; the pairs one ranking item
expands to) form one group, and the groups are split by a seeded hash of a digest of their
conversation (the same split for the same pairs and seed), so a model is never tested on a
comparison, or a prompt, it was trained on. Each fold is held out once while a fresh model of
the job's configuration trains on the others. The job's result holds the held-out accuracy of
each fold, their mean and spread (sample standard deviation); no version is registered. Head
mode embeds every pair once (cached vectors) and fits a head per fold in seconds; full mode
fine-tunes the base model once per fold.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Hashable, Sequence
from typing import Any

import numpy as np

from annotation.models import Campaign
from scoring.jobs.runner import JobContext, JobError
from scoring.loop.judged_pairs import (
    TEXT_CHUNK,
    JudgedPairs,
    gold_pairs,
    pair_texts,
    training_pairs,
)
from scoring.loop.params import CrossValidateParams
from scoring.loop.training import evaluate_pairs, resolve_base_model, train_in_process
from scoring.models import Job


def _fold_hash_key(seed: int, key: Hashable) -> bytes:
    text = key.hex() if isinstance(key, bytes) else str(key)
    return hashlib.sha256(f"cv:{seed}:{text}".encode()).digest()


def fold_of(keys: Sequence[Hashable], *, folds: int, seed: int = 0) -> list[int]:
    """The fold (0..folds-1) of each pair, given a group key per pair (its prompt group, see
    ``prompt_groups``; any hashable, e.g. pair ids): distinct keys ordered by a seeded hash,
    then dealt round robin, so folds differ by one group at most and do not follow import
    order. Pairs sharing a key share its fold."""
    distinct = sorted(set(keys), key=lambda key: _fold_hash_key(seed, key))
    fold = {key: position % folds for position, key in enumerate(distinct)}
    return [fold[key] for key in keys]


def conversation_digest(conversation: Any) -> bytes:
    """sha256 of the canonical JSON of a conversation (keys sorted): the prompt group's key."""
    canonical = json.dumps(conversation, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).digest()


def prompt_groups(data: JudgedPairs) -> list[bytes]:
    """The prompt group of each of ``data``'s pairs: the digest of its conversation, read
    ``TEXT_CHUNK`` pairs at a time (only the 32-byte digests are kept). A pair and its mirror
    image, pairs comparing other responses to the same prompt, and the pairs of one ranking
    item share a group."""
    digests: list[bytes] = []
    for start in range(0, len(data), TEXT_CHUNK):
        digests.extend(
            conversation_digest(conversation)
            for conversation, _a, _b in pair_texts(data, start, start + TEXT_CHUNK)
        )
    return digests


def fold_of_pairs(data: JudgedPairs, *, folds: int, seed: int = 0) -> list[int]:
    """The fold of each of ``data``'s pairs, by prompt group (``fold_of`` of ``prompt_groups``):
    no comparison, nor prompt, is in a training fold and the fold tested."""
    return fold_of(prompt_groups(data), folds=folds, seed=seed)


def _subset(data: JudgedPairs, keep: Sequence[bool]) -> JudgedPairs:
    return data.subset([index for index, wanted in enumerate(keep) if wanted])


def cross_validation_pairs(*, campaign: Campaign, include_gold: bool) -> JudgedPairs:
    data = training_pairs(campaign=campaign)
    if include_gold:
        gold = gold_pairs(campaign=campaign)
        data = data + gold
    return data


def cross_validate_job_work(context: JobContext) -> dict[str, Any]:
    job = context.job
    params = CrossValidateParams.from_params(job.params, ignore_unknown=True)
    config = params.training_config()
    data = cross_validation_pairs(campaign=job.campaign, include_gold=params.include_gold)
    # Counted by prompt group: the pairs of one conversation go to one fold together.
    groups = prompt_groups(data)
    distinct = len(set(groups))
    if distinct < 2 * params.folds:
        raise JobError(
            f"{params.folds}-fold cross-validation needs at least {2 * params.folds} verified "
            f"pairs with distinct prompts (two prompts a fold: pairs with the same conversation "
            f"share a fold); the campaign's verified pairs have {distinct}"
        )
    base = resolve_base_model(job.params)
    assignment = fold_of(groups, folds=params.folds, seed=params.seed or 0)
    context.log(
        f"{params.folds}-fold cross-validation of a {config.mode} model from {base.name} "
        f"on {len(data)} verified pairs ({distinct} prompts)"
    )
    accuracies: list[float] = []
    sizes: list[int] = []
    for fold in range(params.folds):
        held_out = _subset(data, [part == fold for part in assignment])
        train = _subset(data, [part != fold for part in assignment])
        start, end = fold / params.folds, (fold + 1) / params.folds
        with context.stage(start, end, f"fold {fold + 1} of {params.folds}"):
            model, _metrics, key, head_mode = train_in_process(
                base=base,
                data=train,
                heldout=held_out,
                config=config,
                params=job.params,
                context=context,
            )
            context.check()
            report = evaluate_pairs(model=model, data=held_out, key=key if head_mode else None)
        assert report is not None  # noqa: S101 - every fold holds two pairs or more
        accuracies.append(float(report["accuracy"]))
        sizes.append(len(held_out))
        context.log(
            f"fold {fold + 1}: held-out accuracy {report['accuracy']:.3f} on {len(held_out)}"
        )
    values = np.array(accuracies)
    mean, spread = float(values.mean()), float(values.std(ddof=1))
    context.log(f"mean held-out accuracy {mean:.3f} ± {spread:.3f} (std over folds)")
    return {
        "folds": params.folds,
        "mode": config.mode,
        "base_model": str(base),
        "pairs": len(data),
        "include_gold": params.include_gold,
        "accuracies": accuracies,
        "fold_sizes": sizes,
        "mean": mean,
        "std": spread,
        "params": params.as_params(),
    }


def cross_validation_jobs(*, campaign: Campaign, limit: int = 5) -> list[Job]:
    """The campaign's latest cross-validation jobs, newest first (the models page)."""
    return list(
        Job.objects.filter(campaign=campaign, kind=Job.Kind.CROSS_VALIDATE).order_by("-id")[:limit]
    )
