"""Asking for a version's evaluation twice at once (the beat's pending sweep, an upload's sweep,
a request by hand) queues one ``evaluate`` job, not two: the version is scored once on the gpu
queue. Real threads on PostgreSQL; the only hook is a pause before a job is created."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from django.db import connection, connections

from scoring.evaluation import services as evaluation_services
from scoring.models import EvaluationSet, Job, ModelVersion
from tests.conftest import lock_waiters, run_concurrently
from tests.factories import CampaignFactory

pytestmark = pytest.mark.django_db(transaction=True)


def _pause_before_create(monkeypatch) -> None:
    """Hold the first caller that is about to create an evaluate job until the other caller
    has either found no active job too (it reaches the creation as well) or waits on a lock.
    Without serialisation both create one; with it the second waits, then finds the first's."""
    arrived: list[str] = []
    guard = threading.Lock()
    original = evaluation_services.job_create

    def job_create(**kwargs: Any) -> Job:
        with guard:
            arrived.append(threading.current_thread().name)
            first = len(arrived) == 1
        if first:
            deadline = time.monotonic() + 30
            while len(arrived) < 2 and lock_waiters() == 0:
                assert time.monotonic() < deadline, "the other caller neither came nor waited"
                time.sleep(0.05)
        return original(**kwargs)

    monkeypatch.setattr(evaluation_services, "job_create", job_create)


def _in_thread(call: Callable[[], Any]) -> Callable[[], Any]:
    def run() -> Any:
        try:
            return call()
        finally:
            connections.close_all()

    return run


def _the_evaluate_job() -> Job:
    jobs = list(Job.objects.filter(kind=Job.Kind.EVALUATE).order_by("id"))
    assert len(jobs) == 1, [(job.pk, job.params) for job in jobs]
    return jobs[0]


@pytest.fixture
def version_and_set() -> tuple[ModelVersion, EvaluationSet]:
    if connection.vendor != "postgresql":
        pytest.skip("needs two PostgreSQL sessions")
    campaign = CampaignFactory()
    version = ModelVersion.objects.create(
        campaign=campaign, number=1, base="base", checkpoint="/nowhere"
    )
    evaluation_set = EvaluationSet.objects.create(
        campaign=campaign, name="race", sha256="0" * 64, pairs_count=1
    )
    return version, evaluation_set


def test_two_pending_sweeps_at_once_queue_one_evaluation(
    monkeypatch, sent_tasks, version_and_set
) -> None:
    """The beat's sweep (every campaign) and an upload's (its campaign) at once."""
    version, evaluation_set = version_and_set
    _pause_before_create(monkeypatch)

    results = run_concurrently(
        [
            _in_thread(lambda: evaluation_services.evaluations_enqueue_pending()),
            _in_thread(
                lambda: evaluation_services.evaluations_enqueue_pending(campaign=version.campaign)
            ),
        ],
        timeout=60,
    )

    job = _the_evaluate_job()
    assert job.params == {"version": version.pk, "sets": [evaluation_set.pk]}
    assert job.status == Job.Status.QUEUED
    # The sweep that came second found the first's job under the lock and asked for nothing.
    assert sorted(results) == [[], [job.pk]]
    assert sent_tasks == [("scoring.evaluate_model", (job.pk,))]


def test_a_sweep_and_a_request_at_once_queue_one_evaluation(
    monkeypatch, sent_tasks, version_and_set
) -> None:
    """The request by hand returns the sweep's job, or the sweep skips the request's."""
    version, evaluation_set = version_and_set
    _pause_before_create(monkeypatch)

    swept, requested = run_concurrently(
        [
            _in_thread(lambda: evaluation_services.evaluations_enqueue_pending()),
            _in_thread(
                lambda: evaluation_services.evaluation_request(
                    version=version, sets=[evaluation_set]
                )
            ),
        ],
        timeout=60,
    )

    job = _the_evaluate_job()
    assert job.params == {"version": version.pk, "sets": [evaluation_set.pk]}
    assert requested.pk == job.pk
    assert swept in ([], [job.pk])
    assert sent_tasks == [("scoring.evaluate_model", (job.pk,))]


def test_two_requests_at_once_share_one_evaluation(
    monkeypatch, sent_tasks, version_and_set
) -> None:
    version, evaluation_set = version_and_set
    _pause_before_create(monkeypatch)

    def request() -> Job:
        return evaluation_services.evaluation_request(version=version, sets=[evaluation_set])

    first, second = run_concurrently([_in_thread(request), _in_thread(request)], timeout=60)

    job = _the_evaluate_job()
    assert first.pk == second.pk == job.pk
    assert job.result == {"set_sha256": {str(evaluation_set.pk): "0" * 64}}
    assert sent_tasks == [("scoring.evaluate_model", (job.pk,))]
