"""A model job stopped by its soft time limit in the middle of a query still ends failed.

Celery raises ``SoftTimeLimitExceeded`` from a signal handler, wherever the task is; here a
timer signal does the same while the job's work waits in ``pg_sleep``. psycopg then leaves the
connection in the middle of the command, and recording the failure on it failed: the job stayed
"running" until the stale sweep took it over."""

from __future__ import annotations

import signal

import pytest
from celery.exceptions import SoftTimeLimitExceeded
from django.db import connection

from scoring.jobs.runner import job_run
from scoring.models import Job
from tests.factories import CampaignFactory

pytestmark = pytest.mark.django_db(transaction=True)


def _stopped_in_a_query(context):
    def limit(signum, frame):
        raise SoftTimeLimitExceeded()

    previous = signal.signal(signal.SIGALRM, limit)
    signal.setitimer(signal.ITIMER_REAL, 0.5)
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_sleep(10)")
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    return {}


def test_a_job_stopped_by_its_time_limit_inside_a_query_is_recorded_failed():
    if connection.vendor != "postgresql":
        pytest.skip("pg_sleep and psycopg's half-way command are PostgreSQL's")
    job = Job.objects.create(
        campaign=CampaignFactory(), kind=Job.Kind.EVALUATE, params={"version": 0, "sets": []}
    )
    with pytest.raises(SoftTimeLimitExceeded):
        job_run(job_id=job.pk, worker="test", work_for=lambda job: _stopped_in_a_query)
    job.refresh_from_db()  # the process's connection works again
    assert job.status == Job.Status.FAILED
    assert "time limit" in job.error


def test_after_any_task_a_time_limit_stopped_in_a_query_the_next_query_works():
    """Celery's task_failure signal, as its worker sends it for a task that raised: the app's
    handler resets the connections, so the next task of the process can query."""
    if connection.vendor != "postgresql":
        pytest.skip("pg_sleep and psycopg's half-way command are PostgreSQL's")
    from celery import signals

    from annotation.tasks import expire_leases_task

    with pytest.raises(SoftTimeLimitExceeded) as stopped:
        _stopped_in_a_query(None)
    signals.task_failure.send(sender=expire_leases_task, task_id="t", exception=stopped.value)
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        assert cursor.fetchone() == (1,)
