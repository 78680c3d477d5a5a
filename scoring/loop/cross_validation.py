"""k-fold cross-validation of a training configuration on a campaign's verified labels.

For choosing settings when gold is scarce: the verified pairs (those ``training_pairs``
trains on, plus the gold pairs with ``include_gold``) are split into ``folds`` parts by a
seeded hash of their ids (the same split for the same pairs and seed); each fold is held out
once while a fresh model of the job's configuration trains on the others. The job's result
holds the held-out accuracy of each fold, their mean and spread (sample standard deviation);
no version is registered. Head mode embeds every pair once (cached vectors) and fits a head
per fold in seconds; full mode fine-tunes the base model once per fold.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import numpy as np

from annotation.models import Campaign
from scoring.jobs.runner import JobContext, JobError
from scoring.loop.judged_pairs import JudgedPairs, gold_pairs, training_pairs
from scoring.loop.params import CrossValidateParams
from scoring.loop.training import evaluate_pairs, resolve_base_model, train_in_process
from scoring.models import Job


def fold_of(pair_ids: Sequence[int], *, folds: int, seed: int = 0) -> list[int]:
    """The fold (0..folds-1) of each pair: distinct ids ordered by a seeded hash, then dealt
    round robin, so folds differ by one id at most and do not follow import order. Pairs
    sharing an id (the pairs one ranking item expands to) share its fold: a model is never
    tested on a pair of an item it was trained on."""
    distinct = sorted(
        set(pair_ids), key=lambda pair_id: hashlib.sha256(f"cv:{seed}:{pair_id}".encode()).digest()
    )
    fold = {pair_id: position % folds for position, pair_id in enumerate(distinct)}
    return [fold[pair_id] for pair_id in pair_ids]


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
    # Counted by id: a ranking item's pairs go to one fold together.
    items = len(set(data.pair_ids))
    if items < 2 * params.folds:
        raise JobError(
            f"{params.folds}-fold cross-validation needs at least {2 * params.folds} verified "
            f"pairs or items (two a fold); the campaign has {items}"
        )
    base = resolve_base_model(job.params)
    assignment = fold_of(data.pair_ids, folds=params.folds, seed=params.seed or 0)
    context.log(
        f"{params.folds}-fold cross-validation of a {config.mode} model from {base.name} "
        f"on {len(data)} verified pairs"
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
