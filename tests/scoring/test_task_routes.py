"""Tasks are sent by name (services never import a task module), so their queues come from the
routes in settings: each lands on the queue of its workload, as when a task set its own."""

from __future__ import annotations

import pytest

from config.celery import app
from scoring.jobs.runner import TASK_NAMES
from scoring.models import Job


@pytest.mark.parametrize(
    ("name", "queue"),
    [
        ("scoring.train_reward_model", "gpu"),
        ("scoring.score_pool", "gpu"),
        ("scoring.run_round_loop", "gpu"),
        ("scoring.curate_pool", "gpu"),
        ("scoring.export_snapshot", "default"),
        ("scoring.check_round_completion", "default"),
        ("scoring.recover_stale_jobs", "default"),
        ("scoring.refresh_dashboards", "default"),
        ("annotation.run_code", "sandbox"),
        ("annotation.import_pairs", "default"),
    ],
)
def test_a_task_sent_by_name_goes_to_its_workload_queue(name, queue):
    options = app.amqp.router.route({}, name, (), {})
    assert options["queue"].name == queue


def test_the_removal_of_a_deleted_campaigns_files_goes_to_the_default_queue():
    """Its own queue wins over the ``scoring.*`` route to the gpu queue, which would hold it
    behind hours of training (``.delay`` as well as ``campaign_files_remove_send``)."""
    app.loader.import_default_modules()
    task = app.tasks["scoring.remove_campaign_files"]
    assert task.queue == "default"
    options = app.amqp.router.route({"queue": task.queue}, task.name, (), {})
    assert options["queue"].name == "default"


def test_every_job_kind_names_a_task_that_autodiscovery_registers():
    app.loader.import_default_modules()  # what a worker does at start: autodiscovery
    assert set(TASK_NAMES) == set(Job.Kind.values)
    for name in TASK_NAMES.values():
        assert name in app.tasks, name
    assert {task for task in app.tasks if task.startswith("scoring.")} == {
        *TASK_NAMES.values(),
        "scoring.check_round_completion",
        "scoring.evaluate_pending",
        "scoring.score_request",
        "scoring.score_shard",
        "scoring.recover_stale_jobs",
        "scoring.refresh_dashboards",
        "scoring.remove_campaign_files",
    }
