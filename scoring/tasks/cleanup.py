"""Removing what deleted campaigns left on disk and in the vector store (default queue)."""

from __future__ import annotations

from celery import shared_task

from core.time_limits import LIGHT_TASK_HARD_LIMIT_S, LIGHT_TASK_SOFT_LIMIT_S
from scoring.campaign_files import campaign_files_remove, deleted_campaign_files_remove
from scoring.jobs.runner import REMOVE_CAMPAIGN_FILES_TASK


# Sent once a campaign's deletion commits, and again by a worker whose job of the campaign was
# still running then. Idempotent: a file already gone is skipped, a campaign that exists keeps
# its files, and any run also sweeps the files of every other deleted campaign. Its queue is
# given here (and when sent): the scoring.* route would send it to the gpu queue.
@shared_task(
    name=REMOVE_CAMPAIGN_FILES_TASK,
    queue="default",
    acks_late=True,
    soft_time_limit=LIGHT_TASK_SOFT_LIMIT_S,
    time_limit=LIGHT_TASK_HARD_LIMIT_S,
)
def remove_campaign_files_task(campaign_id: int, directories: list[str] | None = None) -> int:
    removed = campaign_files_remove(campaign_id=campaign_id, directories=directories)
    deleted_campaign_files_remove()
    return removed
