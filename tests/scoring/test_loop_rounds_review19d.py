"""Rounds of the loop beside imports: an import of duplicates only while no round is open, and
an import that found the round open while the loop closes it."""

from __future__ import annotations

import json
import threading
import time

import pytest
from django.db import connection, connections, transaction

from annotation.models import Pair, Round
from annotation.services.imports import campaign_rounds_lock, pairs_import, round_current
from scoring.loop.rounds import round_close, round_open_next
from tests.conftest import start_in_thread
from tests.factories import CampaignFactory, PairFactory


def _write_rows(path, count: int = 3):
    rows = [
        {"prompt": f"What is {i} + {i}?", "response_a": f"{2 * i}", "response_b": f"{2 * i + 1}"}
        for i in range(count)
    ]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


@pytest.mark.django_db
def test_the_loop_fills_the_empty_round_an_import_of_duplicates_opened(tmp_path):
    """Between the loop's close and its open, an import whose rows are all duplicates opens a
    round and puts nothing in it. The loop's round must still open (into that round), not be
    refused as "a round is already open" while the empty round waits for good (holding no
    pair, ``rounds_check_completion`` never finds it complete)."""
    campaign = CampaignFactory(round_size=2, random_slice_share=0, auto_retrain=True)
    rows = _write_rows(tmp_path / "pairs.jsonl")
    assert pairs_import(campaign=campaign, path=rows).created == 3
    round_close(campaign=campaign)  # the loop job closes round 1 ...
    assert pairs_import(campaign=campaign, path=rows).created == 0  # ... an import meanwhile
    (empty,) = Round.objects.filter(campaign=campaign, status=Round.Status.OPEN)
    assert not Pair.objects.filter(round=empty).exists()

    opened = round_open_next(campaign=campaign)  # ... and the loop opens the next round

    assert opened is not None and opened.pk == empty.pk and opened.number == 2
    assert Pair.objects.filter(round=opened, status=Pair.Status.QUEUED).count() == 2
    assert Round.objects.filter(campaign=campaign, status=Round.Status.OPEN).count() == 1
    assert round_open_next(campaign=campaign) is None  # now it holds pairs: one at a time


@pytest.mark.django_db(transaction=True)
def test_closing_a_round_waits_for_an_import_that_found_it_open():
    """An import looks the open round up under the campaign's rounds lock and then queues its
    rows into it, unseen until it commits. A close meanwhile must wait for it; else the import's
    pairs land queued in a closed round, which never returns them to the pool."""
    if connection.vendor != "postgresql":
        pytest.skip("imports and rounds serialise on a PostgreSQL advisory lock")
    campaign = CampaignFactory(round_size=1, random_slice_share=0)
    PairFactory(campaign=campaign, status=Pair.Status.POOLED)
    current = round_open_next(campaign=campaign)
    looked_up = threading.Event()
    release = threading.Event()

    def import_into_open_round() -> None:
        try:
            with transaction.atomic():
                campaign_rounds_lock(campaign.pk)
                round_ = round_current(campaign=campaign)
                PairFactory(campaign=campaign, status=Pair.Status.QUEUED, round=round_)
                looked_up.set()  # its first batch is in
                release.wait(timeout=30)
                PairFactory(campaign=campaign, status=Pair.Status.QUEUED, round=round_)
        finally:
            connections.close_all()

    def close() -> None:
        try:
            round_close(campaign=campaign)
        finally:
            connections.close_all()

    importing = start_in_thread(import_into_open_round)
    assert looked_up.wait(timeout=30)
    closing = start_in_thread(close)
    time.sleep(1)
    release.set()
    importing.result(timeout=30)
    closing.result(timeout=30)

    current.refresh_from_db()
    assert current.status == Round.Status.CLOSED
    stranded = Pair.objects.filter(
        campaign=campaign, status=Pair.Status.QUEUED, round__status=Round.Status.CLOSED
    )
    assert not stranded.exists()
    assert Pair.objects.filter(campaign=campaign, status=Pair.Status.POOLED).count() == 3


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("step", ["close", "open"])
def test_the_loop_waits_for_an_import_without_holding_its_job_row(step):
    """The loop's close and open wait for an import holding the campaign's rounds lock
    (minutes for a large file). Meanwhile the job's heartbeat must still reach its row: a step
    waiting with the row locked leaves it silent, and the stale sweep takes the job for lost."""
    if connection.vendor != "postgresql":
        pytest.skip("imports and rounds serialise on a PostgreSQL advisory lock")
    from django.db import DatabaseError

    from scoring.jobs.runner import JobContext, job_claim, job_create
    from scoring.loop.rounds import _loop_round_close, _loop_round_open
    from scoring.models import Job

    campaign = CampaignFactory(round_size=1, random_slice_share=0)
    PairFactory(campaign=campaign, status=Pair.Status.POOLED)
    PairFactory(campaign=campaign, status=Pair.Status.POOLED)
    round_open_next(campaign=campaign)
    if step == "open":
        round_close(campaign=campaign)
    job = job_create(campaign=campaign, kind=Job.Kind.LOOP)
    context = JobContext(job_claim(job_id=job.pk, worker="test").job)
    holding = threading.Event()
    release = threading.Event()

    def an_import_in_flight() -> None:
        try:
            with transaction.atomic():
                campaign_rounds_lock(campaign.pk)
                if step == "close":  # its first rows are in the open round
                    round_ = round_current(campaign=campaign)
                    PairFactory(campaign=campaign, status=Pair.Status.QUEUED, round=round_)
                holding.set()
                release.wait(timeout=30)
        finally:
            connections.close_all()

    def run_step() -> None:
        try:
            if step == "close":
                _loop_round_close(campaign=campaign, context=context)
            else:
                _loop_round_open(campaign=campaign, context=context, size=None)
        finally:
            connections.close_all()

    importing = start_in_thread(an_import_in_flight)
    assert holding.wait(timeout=30)
    stepping = start_in_thread(run_step)
    time.sleep(1)  # the step is waiting for the import now
    try:
        with transaction.atomic():
            # What the heartbeat needs (``job_owned(job).update(heartbeat_at=Now())``).
            list(Job.objects.select_for_update(nowait=True).filter(pk=job.pk))
            row_free = True
    except DatabaseError:
        row_free = False
    finally:
        release.set()
        importing.result(timeout=30)
        stepping.result(timeout=30)

    assert row_free
    job.refresh_from_db()
    assert {"close": "closed_round_id", "open": "opened_round_id"}[step] in job.result
