"""Periodic scoring checks that beat sends (settings.CELERY_BEAT_SCHEDULE): light work, routed
to the default queue by settings.CELERY_TASK_ROUTES."""

from __future__ import annotations

from celery import shared_task
from django.conf import settings

from core.time_limits import (
    JOB_LIMIT_GRACE_S,
    LIGHT_TASK_HARD_LIMIT_S,
    LIGHT_TASK_SOFT_LIMIT_S,
)
from scoring.dashboard.selectors import dashboards_refresh
from scoring.jobs.runner import jobs_recover_stale
from scoring.jobs.shards import shards_recover_stale
from scoring.loop.rounds import rounds_check_completion


# Each expires before beat sends the next one (settings.CELERY_BEAT_SCHEDULE): a default worker
# held up by long work would otherwise run the ones that piled up back to back, when the next
# one does the same work. Each is idempotent: a run stopped by its time limit (a hung query)
# leaves the rest to the next.
@shared_task(
    name="scoring.check_round_completion",
    expires=55,  # every 60 s
    soft_time_limit=LIGHT_TASK_SOFT_LIMIT_S,
    time_limit=LIGHT_TASK_HARD_LIMIT_S,
)
def check_round_completion_task() -> list[int]:
    return rounds_check_completion()


@shared_task(
    name="scoring.recover_stale_jobs",
    expires=290,  # every 300 s
    soft_time_limit=LIGHT_TASK_SOFT_LIMIT_S,
    time_limit=LIGHT_TASK_HARD_LIMIT_S,
)
def recover_stale_jobs_task() -> list[int]:
    return jobs_recover_stale() + shards_recover_stale()


# The slow panels' work grows with the campaigns' labels: its limit is a setting.
@shared_task(
    name="scoring.refresh_dashboards",
    expires=55,  # every 60 s
    soft_time_limit=settings.DASHBOARD_REFRESH_TIME_LIMIT_S,
    time_limit=settings.DASHBOARD_REFRESH_TIME_LIMIT_S + JOB_LIMIT_GRACE_S,
)
def refresh_dashboards_task() -> int:
    return dashboards_refresh()
