"""Sending a Celery task after commit, with a broker outage answered as 503, not 500.

A row (job, import, code run) is committed first so that the worker finds it; the task is sent
once the transaction commits. When the broker (Redis) cannot be reached, kombu gives up after
its publish retries (about a second) and the row would stay queued with no task to run it:
``on_unavailable`` settles it instead (marks it failed, saying why) and ``QueueUnavailable``
tells the user to retry, with Retry-After.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

from celery import Celery, current_app
from django.db import transaction
from kombu.exceptions import OperationalError as BrokerOperationalError

from core.errors import Unavailable

logger = logging.getLogger(__name__)

RETRY_AFTER_S = 30
QUEUE_UNAVAILABLE_REASON = "the task queue (broker) was unavailable, so it was not started"
# kombu wraps the transport's connection errors in its OperationalError once its publish
# retries are spent; a socket error may still escape from some transports.
BROKER_ERRORS: tuple[type[Exception], ...] = (BrokerOperationalError, OSError)


class QueueUnavailable(Unavailable):
    code = "queue_unavailable"


def send_task_on_commit(
    name: str,
    *,
    args: Sequence[Any],
    on_unavailable: Callable[[], object],
    queue: str | None = None,
    app: Celery | None = None,
) -> None:
    """Send task ``name`` once the surrounding transaction commits (at once outside one).

    If the broker is down, ``on_unavailable()`` runs (it must leave the row finished, not
    queued) and QueueUnavailable propagates from the commit to the request. ``app``: the
    Celery app to send with (default: the current one, configured from settings).
    """
    options = {} if queue is None else {"queue": queue}

    def send() -> None:
        try:
            (app or current_app).send_task(name, args=tuple(args), **options)
        except BROKER_ERRORS as error:
            logger.warning("could not send %s%s: %s", name, tuple(args), error)
            on_unavailable()
            raise QueueUnavailable(
                "The task queue is unavailable for a moment, so nothing was started; please retry.",
                retry_after=RETRY_AFTER_S,
            ) from error

    transaction.on_commit(send)
