"""Celery tasks and the beat schedule, as a slow or restarting deployment meets them: beat
messages that waited behind long work are dropped rather than run in a pile, and a task whose
rows went away or whose database restarted ends cleanly or retries."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import cast
from unittest import mock

import pytest
import time_machine
from celery.beat import Scheduler
from django.conf import settings
from django.utils import timezone

from annotation.models import Campaign
from config.celery import app
from reviewers.tasks import reestimate_consensus_task
from tests.conftest import purge_broker, start_worker, stop_worker, wait_for


def _beat_entries() -> dict[str, tuple[str, float]]:
    app.loader.import_default_modules()  # what beat does at start: autodiscovery
    return {
        name: (str(entry["task"]), float(cast(float, entry["schedule"])))
        for name, entry in settings.CELERY_BEAT_SCHEDULE.items()
    }


def _beat_send(scheduler: Scheduler, name: str) -> str:
    """Send one beat entry exactly as beat does; returns the message's task id."""
    return scheduler.apply_async(scheduler.schedule[name], advance=False).id


@pytest.mark.parametrize("entry", sorted(settings.CELERY_BEAT_SCHEDULE))
def test_every_beat_message_expires_before_the_next_one_is_sent(entry):
    task_name, period = _beat_entries()[entry]
    scheduler = Scheduler(app=app, lazy=True)
    scheduler.setup_schedule()
    with mock.patch.object(app, "send_task") as send_task:
        scheduler.apply_async(scheduler.schedule[entry], advance=False)
    options = send_task.call_args.kwargs
    assert options.get("expires") is not None, f"{task_name}: beat sends it without an expiry"
    assert 0 < float(options["expires"]) < period


@pytest.mark.worker
def test_beat_messages_that_waited_behind_a_busy_worker_are_dropped_not_run_in_a_pile(
    transactional_db,
):
    """A default worker busy for minutes (a 4-hour import shares its queue) finds every beat
    entry queued many times over; each is as good as the next, so the old ones must go. Those
    sent just now still run."""
    purge_broker()
    scheduler = Scheduler(app=app, lazy=True)
    scheduler.setup_schedule()
    entries = _beat_entries()
    # Sent by beat ten minutes ago, while no worker was free to take them.
    with time_machine.travel(timezone.now() - timedelta(minutes=10), tick=True):
        old = {_beat_send(scheduler, name): name for name in entries}
    fresh = {_beat_send(scheduler, name): name for name in entries}
    process = start_worker(queues="default", concurrency=1, name="rct-beat")
    try:
        # Every worker's log: another test's worker on this broker may take some of them.
        logs = Path(settings.VAR_DIR)

        def outcome(task_id: str) -> str | None:
            for log in logs.glob("worker-*.log"):
                for line in log.read_text().splitlines():
                    if f"[{task_id}] succeeded" in line:
                        return "ran"
                    if task_id in line and "Discarding revoked task" in line:
                        return "dropped"
            return None

        wait_for(
            lambda: all(outcome(task_id) for task_id in [*old, *fresh]),
            timeout=120,
            what="the worker to take every beat message",
        )
        ran_old = sorted(name for task_id, name in old.items() if outcome(task_id) == "ran")
        ran_fresh = sorted(name for task_id, name in fresh.items() if outcome(task_id) == "ran")
    finally:
        stop_worker(process)
    assert ran_old == [], f"beat messages 10 minutes old ran: {ran_old}"
    assert ran_fresh == sorted(entries)


@pytest.mark.django_db
def test_a_consensus_reestimate_of_a_deleted_campaign_ends_quietly(campaign):
    campaign_id = campaign.pk
    Campaign.objects.filter(pk=campaign_id).delete()
    assert reestimate_consensus_task(campaign_id) == 0  # the task's body, in this process
