"""A job that registered its version and then lost its worker (or was released after a
transient error) registers no second version when it runs again: it goes on from the one it
registered, which the activation gate judges; rollback never takes a version it never judged."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from annotation.models import Round
from scoring.jobs.requests import job_create
from scoring.jobs.runner import JobContext, job_claim, job_release
from scoring.loop.judged_pairs import DEFAULT_GOLD_SOURCES
from scoring.loop.model_jobs import job_run_inline
from scoring.loop.registry import NOT_JUDGED, model_version_activate, model_version_rollback
from scoring.loop.requests import loop_request, training_request
from scoring.loop.rounds import round_close_and_advance
from scoring.loop.training import gold_model_train, train_job_work
from scoring.models import Job, JobLogLine, ModelVersion
from tests.scoring.loop_support import label_queue, make_loop_campaign, use_tiny_base


class _WorkerKilled(BaseException):
    """The worker process died (kill -9): nothing in the job's code may catch it."""


class _DiesAfterRegistering(JobContext):
    """The real job, run by a worker that dies once its version is registered."""

    def log(self, message: str) -> None:
        super().log(message)
        if message.startswith("registered"):
            raise _WorkerKilled


def _first_attempt_dies_after_registering(job: Job, run) -> None:  # noqa: ANN001
    claim = job_claim(job_id=job.pk, worker="dead:1")
    assert claim.outcome == "claimed" and claim.job is not None
    with pytest.raises(_WorkerKilled):
        run(_DiesAfterRegistering(claim.job))
    assert ModelVersion.objects.filter(job=job).count() == 1


def _lose_worker(job: Job, how: str) -> None:
    if how == "killed":  # its heartbeat goes stale; the next delivery takes the job over
        Job.objects.filter(pk=job.pk).update(heartbeat_at=timezone.now() - timedelta(hours=1))
    else:  # a transient error: the runner gives the job back for Celery's retry
        assert job_release(job=Job.objects.get(pk=job.pk), reason="OperationalError: gone")


def _judged(version: ModelVersion) -> bool:
    return version.is_active or version.activation_note not in ("", NOT_JUDGED)


def _log(job: Job) -> str:
    return "\n".join(JobLogLine.objects.filter(job=job).values_list("message", flat=True))


@pytest.fixture
def campaign(db, settings, tmp_path, annotator_a, annotator_b, annotator_c):
    use_tiny_base(settings, model_dir=tmp_path / "models")
    campaign = make_loop_campaign(labelled=10, pooled=20, gold=6, round_size=5)
    label_queue(campaign, [annotator_a, annotator_b, annotator_c])
    return campaign


@pytest.mark.parametrize("how", ["killed", "released"])
def test_a_loop_restarted_after_registering_trains_no_second_version(
    campaign, django_capture_on_commit_callbacks, how
):
    with django_capture_on_commit_callbacks(execute=False):
        job = loop_request(campaign=campaign)
    _first_attempt_dies_after_registering(
        job, lambda context: round_close_and_advance(campaign=campaign, context=context)
    )
    _lose_worker(job, how)

    job = job_run_inline(job=Job.objects.get(pk=job.pk))

    assert job.status == Job.Status.SUCCEEDED, job.error
    (version,) = ModelVersion.objects.filter(campaign=campaign)
    assert version.number == 1 and version.job_id == job.pk
    assert version.round_id == Round.objects.get(campaign=campaign, number=1).pk
    assert _judged(version), (version.is_active, version.activation_note)
    assert "resuming: v1 was registered by an earlier attempt" in _log(job)
    assert job.result["trained"]["version"] == 1, job.result
    assert "registered_version_id" not in job.result


@pytest.mark.parametrize("how", ["killed", "released"])
def test_a_train_job_restarted_after_registering_trains_no_second_version(campaign, how):
    job = training_request(campaign=campaign, enqueue=False)
    _first_attempt_dies_after_registering(job, train_job_work)
    _lose_worker(job, how)

    job = job_run_inline(job=Job.objects.get(pk=job.pk))

    assert job.status == Job.Status.SUCCEEDED, job.error
    (version,) = ModelVersion.objects.filter(campaign=campaign)
    assert _judged(version), (version.is_active, version.activation_note)
    assert job.result["version"] == 1 and job.result["version_id"] == version.pk
    assert "resuming: v1 was registered by an earlier attempt" in _log(job)


def test_a_restart_trains_again_when_the_registered_version_is_gone(campaign):
    job = training_request(campaign=campaign, enqueue=False)
    _first_attempt_dies_after_registering(job, train_job_work)
    ModelVersion.objects.filter(campaign=campaign).update(status=ModelVersion.Status.ARCHIVED)
    _lose_worker(job, "killed")

    job = job_run_inline(job=Job.objects.get(pk=job.pk))

    assert job.status == Job.Status.SUCCEEDED, job.error
    assert job.result["version"] == 2
    assert "resuming" not in _log(job)


def test_a_gold_model_restarted_after_registering_is_not_trained_again(campaign):
    job = job_create(campaign=campaign, kind=Job.Kind.CURATE)
    sources = list(DEFAULT_GOLD_SOURCES)
    _first_attempt_dies_after_registering(
        job, lambda context: gold_model_train(job=context.job, context=context, sources=sources)
    )
    _lose_worker(job, "released")
    claim = job_claim(job_id=job.pk, worker="alive:2")
    assert claim.outcome == "claimed" and claim.job is not None

    version = gold_model_train(job=claim.job, context=JobContext(claim.job), sources=sources)

    assert ModelVersion.objects.filter(campaign=campaign).count() == 1
    assert version.kind == ModelVersion.Kind.GOLD and version.activation_note == ""
    assert "resuming: v1 was registered by an earlier attempt" in _log(job)


def test_rollback_never_takes_a_version_the_gate_never_judged(campaign):
    job_run_inline(job=training_request(campaign=campaign, enqueue=False))
    # v2's job died right after registering and never ran again (cancelled, given up).
    job = training_request(campaign=campaign, enqueue=False)
    _first_attempt_dies_after_registering(job, train_job_work)
    Job.objects.filter(pk=job.pk).update(status=Job.Status.FAILED)
    job_run_inline(job=training_request(campaign=campaign, enqueue=False))
    versions = {v.number: v for v in ModelVersion.objects.filter(campaign=campaign)}
    assert versions[3].is_active

    assert model_version_rollback(campaign=campaign).number == 1
    assert versions[2].activation_note == NOT_JUDGED
    # Activated by hand, the note clears: it served, and rollback may take it again.
    assert model_version_activate(version=versions[2]).activation_note == ""
