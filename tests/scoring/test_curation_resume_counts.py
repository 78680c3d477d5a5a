"""A curation job taken up again after its worker lost the database reports the verdicts of
both runs, not only those of the run that finished it."""

from __future__ import annotations

import numpy as np
import pytest
from django.db import OperationalError

from annotation.models import Pair
from scoring.datasets.curation import curation_create, curation_run
from scoring.models import Job, ModelVersion
from tests.factories import PairFactory

BATCH = 256  # pool_curate's default batch: the first batch is stored before the failure


def _scorer_failing_once_at_call(failing_call: int):
    calls: list[int] = []

    def score(items):
        calls.append(len(items))
        if len(calls) == failing_call:
            raise OperationalError("server closed the connection unexpectedly")
        return np.full(len(items), 0.9)  # every silver label (A better) agreed with

    return score


@pytest.mark.django_db(transaction=True)
def test_a_resumed_curation_counts_the_verdicts_of_the_interrupted_run(campaign) -> None:
    for number in (1, 2):
        ModelVersion.objects.create(
            campaign=campaign,
            number=number,
            base="tiny",
            checkpoint="unused",
            heldout_accuracy=0.6,
            is_active=number == 1,
        )
    pool = BATCH + 20
    for _ in range(pool):
        PairFactory(campaign=campaign, silver_preference=1, status=Pair.Status.POOLED)
    job = curation_create(campaign=campaign, params={"train_gold": False}, enqueue=False)
    scorer = _scorer_failing_once_at_call(2)
    scorers = {"gold": scorer, "best": scorer}

    with pytest.raises(OperationalError):
        curation_run(job_id=job.pk, worker="worker-1", scorers=scorers)
    job.refresh_from_db()
    assert job.status == Job.Status.QUEUED  # released for a retry
    assert Pair.objects.filter(campaign=campaign, curation="kept").count() == BATCH

    resumed = curation_run(job_id=job.pk, worker="worker-2", scorers=scorers).job
    assert resumed is not None
    assert resumed.status == Job.Status.SUCCEEDED, resumed.error
    assert Pair.objects.filter(campaign=campaign, curation="kept").count() == pool
    counts = (resumed.result["pool"], resumed.result["scored"], resumed.result["kept"])
    assert counts == (pool, pool, pool)
    assert "curation_counts" not in resumed.result
