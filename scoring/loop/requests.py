"""Starting model jobs (train, score, loop, cross-validation): ``training_request``,
``scoring_request``, ``loop_request`` ("Retrain now") and ``cross_validation_request`` create
the job row and enqueue its task after commit. A second
request while a model job of the campaign is queued or running returns that job instead of
starting another (one model job at a time per campaign). ``scoring.loop.model_jobs`` runs them.
Parameters are checked against the kind's schema (``scoring.loop.params``) before the row is
written: a bad one is a JobError naming it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.contrib.auth.models import User
from django.db import transaction

from annotation.models import Campaign
from scoring.jobs.runner import JobConflict, job_create, job_enqueue
from scoring.loop.params import CrossValidateParams, LoopParams, ScoreParams, TrainParams
from scoring.loop.training import job_params_for_training
from scoring.models import Job


def _request(
    *,
    campaign: Campaign,
    kind: str,
    params: dict[str, Any],
    user: User | None,
    enqueue: bool,
    queue: str | None = None,
) -> Job:
    try:
        with transaction.atomic():
            job = job_create(campaign=campaign, kind=kind, params=params, user=user)
            if enqueue:
                job_enqueue(job=job, queue=queue)
    except JobConflict as conflict:
        return conflict.existing
    return job


def training_request(
    *,
    campaign: Campaign,
    user: User | None = None,
    params: Mapping[str, Any] | None = None,
    enqueue: bool = True,
    queue: str | None = None,
) -> Job:
    """Train a new version (``params``: TrainParams; see ``training.job_params_for_training``)."""
    params = TrainParams.from_params(
        params if params is not None else job_params_for_training()
    ).as_params()
    return _request(
        campaign=campaign, kind=Job.Kind.TRAIN, params=params, user=user, enqueue=enqueue,
        queue=queue,
    )


def scoring_request(
    *,
    campaign: Campaign,
    user: User | None = None,
    params: Mapping[str, Any] | None = None,
    enqueue: bool = True,
    queue: str | None = None,
) -> Job:
    """Score and prioritise the pool with the active version (``params``: ScoreParams)."""
    params = ScoreParams.from_params(params).as_params()
    return _request(
        campaign=campaign, kind=Job.Kind.SCORE, params=params, user=user, enqueue=enqueue,
        queue=queue,
    )


def loop_request(
    *,
    campaign: Campaign,
    user: User | None = None,
    params: Mapping[str, Any] | None = None,
    reason: str = "retrain now",
    enqueue: bool = True,
    queue: str | None = None,
) -> Job:
    """Close the round, retrain, score, prioritise and open the next round, as one job
    (``params``: LoopParams)."""
    params = dict(params) if params is not None else job_params_for_training()
    params.setdefault("reason", reason)
    params = LoopParams.from_params(params).as_params()
    return _request(
        campaign=campaign, kind=Job.Kind.LOOP, params=params, user=user, enqueue=enqueue,
        queue=queue,
    )


def cross_validation_request(
    *,
    campaign: Campaign,
    user: User | None = None,
    params: Mapping[str, Any] | None = None,
    enqueue: bool = True,
    queue: str | None = None,
) -> Job:
    """k-fold cross-validation of a training configuration (``params``: CrossValidateParams;
    ``scoring.loop.cross_validation``). It registers nothing, so it runs beside other jobs."""
    given = dict(params) if params is not None else {}
    params = CrossValidateParams.from_params(
        {**job_params_for_training(mode=given.pop("mode", "head")), **given}
    ).as_params()
    return _request(
        campaign=campaign, kind=Job.Kind.CROSS_VALIDATE, params=params, user=user,
        enqueue=enqueue, queue=queue,
    )
