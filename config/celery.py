"""The Celery app. Queues: `default` (light work), `sandbox` (code runs), `gpu` (models)."""

from __future__ import annotations

import os
from typing import Any

from celery import Celery, signals
from celery.exceptions import SoftTimeLimitExceeded

from core.time_limits import connections_reset

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("arbiter")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


# Any task stopped by its soft time limit, failed or sent back to retry: the limit may have
# stopped a query half-way, and the next task of this worker process would fail its first
# query on that connection (core.time_limits). Work that records its own failure first (the
# job runner, the export) resets before it writes.
@signals.task_failure.connect
def _reset_connections_after_a_time_limit(exception: BaseException | None = None, **_: Any) -> None:
    if isinstance(exception, SoftTimeLimitExceeded):
        connections_reset()


@signals.task_retry.connect
def _reset_connections_before_a_retry(reason: object = None, **_: Any) -> None:
    if isinstance(reason, SoftTimeLimitExceeded):
        connections_reset()
