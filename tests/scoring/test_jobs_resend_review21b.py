"""The stale-job sweep's sends, and cancelling a job while it plans its shards (review 21B).

- A job enqueued to a queue other than its task's route (``job_enqueue(queue=...)``, e.g. a
  dedicated GPU host) was sent again by the sweep to the route's queue: the queue was not kept.
- A job legitimately waiting (behind an hours-long training on the one gpu worker) was sent
  again every ten stale periods for as long as it waited, piling up duplicate messages (each
  retried once the job ran, as the claim found it busy).
- Planning a job's shards locked the job's row for the whole plan: a cancel request waited
  (the web request hung) until planning ended, possibly minutes for millions of pairs.
"""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

import pytest
from celery import current_app
from django.db.models import F
from django.utils import timezone

from annotation.models import Pair
from scoring.jobs import shards
from scoring.jobs.claims import RELEASED_STALE_PERIODS, RESEND_DOUBLINGS_MAX, stale_seconds
from scoring.jobs.runner import (
    JobCancelled,
    JobContext,
    job_cancel,
    job_claim,
    jobs_recover_stale,
)
from scoring.jobs.shards import job_hand_off_to_shards, shard_ranges, shards_recover_stale
from scoring.loop.requests import loop_request
from scoring.models import Job, JobShard
from tests.conftest import closing_connections, start_in_thread
from tests.factories import CampaignFactory, PairFactory


@pytest.fixture
def sent(monkeypatch) -> list[tuple[str, tuple, dict[str, Any]]]:
    """The tasks sent (name, args, options) instead of reaching a broker."""
    calls: list[tuple[str, tuple, dict[str, Any]]] = []

    def send_task(name: str, args: tuple = (), **options: Any) -> None:
        calls.append((name, tuple(args), options))

    monkeypatch.setattr(current_app, "send_task", send_task)
    return calls


def _earlier(job: Job, seconds: float) -> None:
    """Move the job's times ``seconds`` into the past: as if that much time went by (the
    sweep judges by the database's clock, which a test cannot move)."""
    shift = timedelta(seconds=seconds)
    rows = Job.objects.filter(pk=job.pk)
    rows.update(created_at=F("created_at") - shift)
    rows.exclude(heartbeat_at=None).update(heartbeat_at=F("heartbeat_at") - shift)
    rows.exclude(resent_at=None).update(resent_at=F("resent_at") - shift)


def test_the_sweep_sends_a_job_again_to_the_queue_it_was_sent_to(
    db, sent, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        special = loop_request(campaign=CampaignFactory(), queue="gpu-a100")
        routed = loop_request(campaign=CampaignFactory())
    assert sent == [
        ("scoring.run_round_loop", (special.pk,), {"queue": "gpu-a100"}),
        ("scoring.run_round_loop", (routed.pk,), {}),
    ]
    sent.clear()

    # Never taken (its message lost): sent again, to the same queue.
    for job in (special, routed):
        _earlier(job, stale_seconds() * RELEASED_STALE_PERIODS + 5)
    with django_capture_on_commit_callbacks(execute=True):
        assert sorted(jobs_recover_stale()) == sorted([special.pk, routed.pk])
    assert sorted(sent) == sorted(
        [
            ("scoring.run_round_loop", (special.pk,), {"queue": "gpu-a100"}),
            ("scoring.run_round_loop", (routed.pk,), {}),
        ]
    )
    sent.clear()

    # Taken, then its worker went silent: sent again for another worker of that queue.
    job_claim(job_id=special.pk, worker="w")
    _earlier(special, stale_seconds() + 5)
    with django_capture_on_commit_callbacks(execute=True):
        assert jobs_recover_stale() == [special.pk]
    assert sent == [("scoring.run_round_loop", (special.pk,), {"queue": "gpu-a100"})]


def test_a_job_waiting_hours_behind_other_work_is_sent_again_ever_less_often(
    db, sent, django_capture_on_commit_callbacks
):
    job = loop_request(campaign=CampaignFactory(), enqueue=False)
    sweep = 300.0  # the beat sends the sweep every 5 minutes
    hours = 10
    sent_at: list[float] = []
    with django_capture_on_commit_callbacks(execute=True):
        for step in range(1, int(hours * 3600 / sweep) + 1):
            _earlier(job, sweep)
            if jobs_recover_stale():
                sent_at.append(step * sweep)
    base = stale_seconds() * RELEASED_STALE_PERIODS
    gaps = [later - earlier for earlier, later in zip([0.0, *sent_at], sent_at, strict=False)]
    # Every ten stale periods, it was sent 60 times in ten hours (with 60-s stale periods).
    assert 1 <= len(sent_at) <= 7, sent_at
    assert len(sent) == len(sent_at)
    # Each send waits about twice as long as the one before, up to a bound.
    for sends, gap in enumerate(gaps):
        expected = base * 2 ** min(sends, RESEND_DOUBLINGS_MAX)
        assert expected <= gap <= expected + sweep, (sends, gaps)
    job.refresh_from_db()
    assert job.status == Job.Status.QUEUED and job.resends == len(sent_at)

    # Once a worker takes it, the count starts afresh: a later silent worker's job is sent
    # again at the first sweep.
    claim = job_claim(job_id=job.pk, worker="w")
    assert claim.job.resends == 0 and claim.job.resent_at is None
    _earlier(job, stale_seconds() + 5)
    with django_capture_on_commit_callbacks(execute=True):
        assert jobs_recover_stale() == [job.pk]
        assert jobs_recover_stale() == []


def test_a_job_whose_worker_is_gone_is_not_sent_again_at_every_sweep(
    db, sent, django_capture_on_commit_callbacks
):
    # Its worker was killed; every gpu worker is busy with hours of other work.
    job = loop_request(campaign=CampaignFactory(), enqueue=False)
    job_claim(job_id=job.pk, worker="killed")
    _earlier(job, stale_seconds() + 5)
    with django_capture_on_commit_callbacks(execute=True):
        assert jobs_recover_stale() == [job.pk]
        for _sweep in range(3):
            _earlier(job, 300)
            assert jobs_recover_stale() == []
        _earlier(job, stale_seconds() * RELEASED_STALE_PERIODS * 2)
        assert jobs_recover_stale() == [job.pk]
    assert len(sent) == 2


# --- Cancelling while the shards are planned -----------------------------------------------


def test_planning_a_shard_larger_than_a_page_checks_before_each_page(db, monkeypatch):
    monkeypatch.setattr(shards, "_PLAN_PAGE", 3)
    campaign = CampaignFactory()
    PairFactory.create_batch(10, campaign=campaign)
    checks: list[int] = []

    def check() -> None:
        checks.append(1)
        if len(checks) == 3:
            raise JobCancelled

    with pytest.raises(JobCancelled):
        list(shard_ranges(Pair.objects.filter(campaign=campaign), 1000, check=check))
    assert len(checks) == 3  # stopped in the one shard's third page, not at its end


@pytest.mark.django_db(transaction=True)
def test_a_cancel_asked_while_shards_are_planned_takes_effect_at_once(monkeypatch):
    monkeypatch.setattr(shards, "_PLAN_PAGE", 2)
    campaign = CampaignFactory()
    PairFactory.create_batch(12, campaign=campaign, status=Pair.Status.POOLED)
    job = Job.objects.create(campaign=campaign, kind=Job.Kind.SCORE)
    claim = job_claim(job_id=job.pk, worker="planner")
    context = JobContext(claim.job)
    planning, resume = threading.Event(), threading.Event()
    real_ranges = shards.shard_ranges

    def slow_ranges(*args: Any, **kwargs: Any):
        # A plan of millions of pairs: held after its first shard until the test lets it go.
        for number, shard_range in enumerate(real_ranges(*args, **kwargs)):
            if number == 1:
                planning.set()
                resume.wait(timeout=60)
            yield shard_range

    monkeypatch.setattr(shards, "shard_ranges", slow_ranges)

    def plan() -> int:
        return job_hand_off_to_shards(
            context=context,
            targets=Pair.objects.filter(campaign=campaign),
            size=2,
            progress_range=(0.0, 1.0),
        )

    planner = start_in_thread(closing_connections(plan))
    try:
        assert planning.wait(timeout=30)
        cancel = start_in_thread(closing_connections(lambda: job_cancel(job=job)))
        # The request is answered at once (it waited for the whole plan: the row was locked).
        cancelled = cancel.result(timeout=10)
        assert cancelled.cancel_requested
    finally:
        resume.set()
    with pytest.raises(JobCancelled):
        planner.result(timeout=30)  # at its next page
    # Nothing half-written: no shard rows, the job not handed to shards nor a message sent.
    assert not JobShard.objects.filter(job=job).exists()
    job.refresh_from_db()
    assert job.stage == Job.Stage.MAIN


def test_queued_shards_waiting_hours_are_sent_again_ever_less_often(
    db, sent, django_capture_on_commit_callbacks
):
    job = Job.objects.create(
        campaign=CampaignFactory(),
        kind=Job.Kind.SCORE,
        status=Job.Status.RUNNING,
        stage=Job.Stage.SHARDS,
        heartbeat_at=timezone.now(),
        attempts=1,
    )
    for index in range(3):
        JobShard.objects.create(job=job, index=index, first_id=index, last_id=index, planned=1)
    sweeps_sent = 0
    for _step in range(int(10 * 3600 / 300)):
        _earlier(job, 300)
        if shards_recover_stale():
            sweeps_sent += 1
    # Every ten stale periods: 59 sweeps sent all three shards again.
    assert 1 <= sweeps_sent <= 7
    assert len(sent) == 3 * sweeps_sent
