"""The whole loop on a real Celery worker: labels in, retrain, score, prioritise, next round."""

from __future__ import annotations

import shutil

import pytest
import torch

from annotation.models import Label, Pair, Round
from annotation.services.assignments import assignment_next
from scoring.loop.requests import loop_request
from scoring.models import Job, ModelVersion, PairScore, Retrieval
from scoring.tasks.model_jobs import run_round_loop_task
from tests.conftest import wait_for
from tests.scoring.loop_support import (
    campaign_models_dir,
    label_queue,
    make_loop_campaign,
    use_tiny_base,
)

pytestmark = [pytest.mark.worker, pytest.mark.smoke]


def test_retrain_now_runs_the_whole_loop_on_a_worker(
    worker, settings, admin_user, annotator_a, annotator_b, annotator_c
):
    # The base model path travels in the job's params, so the worker uses the tiny model too.
    use_tiny_base(settings)
    campaign = make_loop_campaign(labelled=10, pooled=20, gold=6, round_size=5)
    try:
        label_queue(campaign, [annotator_a, annotator_b, annotator_c])
        labels = Label.objects.filter(campaign=campaign).count()
        assert labels == 30
        job = loop_request(campaign=campaign, user=admin_user)  # "Retrain now"
        run_round_loop_task.delay(job.pk)  # a duplicate delivery of the same job
        wait_for(
            lambda: Job.objects.get(pk=job.pk).is_finished, timeout=240, what="the loop job"
        )
        job.refresh_from_db()
        assert job.status == Job.Status.SUCCEEDED, job.error
        assert job.attempts == 1  # the duplicate delivery did not run it again

        version = ModelVersion.objects.get(campaign=campaign)
        assert version.is_active and version.heldout_accuracy is not None
        # The worker trains where the model runs best: the GPU when the host has one.
        expected_device = "cuda" if torch.cuda.is_available() else "cpu"
        assert version.metrics["training"]["device"].startswith(expected_device)
        assert version.label_snapshot["labels"] == labels
        assert PairScore.objects.filter(model_version=version).count() == 36

        retrieved = Pair.objects.filter(campaign=campaign, priority__gt=0)
        assert retrieved.exists()
        retrieval = Retrieval.objects.filter(job=job).first()
        assert retrieval is not None and retrieval.reason.startswith(
            f"similar to pair {retrieval.similar_to_id}"
        )
        assert all("p = " in reason for reason in retrieved.values_list("priority_reason",
                                                                        flat=True))

        assert Round.objects.get(campaign=campaign, number=1).status == Round.Status.CLOSED
        second = Round.objects.get(campaign=campaign, number=2)
        assert second.status == Round.Status.OPEN
        assert Pair.objects.filter(round=second, status=Pair.Status.QUEUED).count() == 5

        served = assignment_next(campaign=campaign, annotator=annotator_a)
        assert served.pair.round_id == second.pk
        assert served.pair.priority > 0 and "similar to pair" in served.pair.priority_reason
        best_pooled_or_queued = (
            Pair.objects.filter(campaign=campaign, status__in=["pooled", "queued"])
            .order_by("-priority")
            .values_list("priority", flat=True)
            .first()
        )
        assert served.pair.priority >= best_pooled_or_queued
        messages = list(job.log_lines.values_list("message", flat=True))
        for step in ("closed round 1", "registered v1", "scored", "opened round 2"):
            assert any(step in message for message in messages), step
        assert Label.objects.filter(campaign=campaign).count() == labels
    finally:
        shutil.rmtree(campaign_models_dir(campaign), ignore_errors=True)
