"""Settings for a worker in the kill -9 test: Redis hands an unacknowledged task to another
worker after 8 s (instead of hours), sweeps for such tasks every second, and a job whose
heartbeat is 3 s old counts as abandoned. Used through DJANGO_SETTINGS_MODULE by that test's
worker processes only.
"""

from __future__ import annotations

from config.settings import *  # noqa: F403
from config.settings import ARBITER, CELERY_BROKER_TRANSPORT_OPTIONS

CELERY_BROKER_TRANSPORT_OPTIONS = {
    **CELERY_BROKER_TRANSPORT_OPTIONS,
    "visibility_timeout": 8,
    "unacked_restore_interval": 1,
    "unacked_restore_throttle": 1,
}
ARBITER = {**ARBITER, "JOB_STALE_SECONDS": 3, "JOB_HEARTBEAT_SECONDS": 0.5}
