"""Celery tasks of the annotator tools. Autodiscovery imports only `annotation.tasks`, which
re-exports these (`from annotation.tool_tasks import *`).

`annotation.run_code` is routed to the `sandbox` queue (settings.CELERY_TASK_ROUTES). How many
programs run at once is bounded twice: by the concurrency of the workers that consume `sandbox`
(`celery -A config worker -Q sandbox -c 4`), and by the sandbox's own slot locks
(ARBITER_SANDBOX_SLOTS per host), which also keep the per-slot uids apart.
"""

from __future__ import annotations

from celery import Task, shared_task

from annotation.services.tools import code_run_execute
from annotation.tools.sandbox import SandboxBusy

__all__ = ["run_code_task"]


@shared_task(
    bind=True,
    name="annotation.run_code",
    acks_late=True,
    autoretry_for=(SandboxBusy,),
    retry_backoff=2,
    retry_backoff_max=30,
    max_retries=10,
    # The sandbox enforces its own wall clock (30 s at most); these only catch a stuck worker.
    soft_time_limit=120,
    time_limit=150,
)
def run_code_task(self: Task, code_run_id: int) -> None:
    # On the last try a busy sandbox fails the run: Celery gives up after it, and a run left
    # queued would wait for the stale sweep (minutes) and get its reason wrong.
    last_try = self.max_retries is not None and self.request.retries >= self.max_retries
    code_run_execute(code_run_id=code_run_id, last_try=last_try)
