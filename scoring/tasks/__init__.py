"""Celery tasks of the scoring app, one module per workload.

Celery's autodiscovery imports ``scoring.tasks`` (this package): it imports every module below
so that each task is registered. Task names are explicit and never change with the module.
"""

from __future__ import annotations

from scoring.tasks import (  # noqa: F401  (registers the tasks)
    cleanup,
    datasets,
    evaluation,
    model_jobs,
    periodic,
    serving,
)
