"""What a Celery soft time limit leaves behind in this process's database connections.

The limit's exception (``SoftTimeLimitExceeded``) can arrive while a query runs (a lock wait is
the usual way to hang), and psycopg, which cancels a query only on KeyboardInterrupt, then
leaves the connection in the middle of a command: the failure could not be recorded on it, and
the next task of this process would fail its first query ("another command is already in
progress"). So the query is cancelled on the server (it must not go on waiting for a client
that has left) and the connection closed; the next query opens a new one. The Celery app
(config.celery) does it after any task a soft limit stopped; work that records its own failure
first (the job runner, the export) does it before that write.
"""

from __future__ import annotations

import contextlib

from django.db import connections
from psycopg import pq

# Time limits. At its soft limit a task gets SoftTimeLimitExceeded and records its failure (an
# import's job row says so); the hard limit, later, kills its worker process should that not end
# it. Work that grows with the data reads its soft limit from settings (README: "Time limits").
# Light tasks (the beat's sweeps and checks, an e-mail) take seconds and are idempotent,
# the next run doing what a stopped one left: their fixed limit only frees a worker held by a
# hung query, disk, mount or mail server.
LIGHT_TASK_SOFT_LIMIT_S = 300
LIGHT_TASK_HARD_LIMIT_S = LIGHT_TASK_SOFT_LIMIT_S + 30
# Long enough to roll back, record the failure and stop the threads it started.
JOB_LIMIT_GRACE_S = 120


def connections_reset() -> None:
    """Cancel any query in flight on this process's connections, and close them."""
    for connection in connections.all(initialized_only=True):
        raw = connection.connection
        if raw is not None and connection.vendor == "postgresql":
            if raw.info.transaction_status == pq.TransactionStatus.ACTIVE:
                with contextlib.suppress(Exception):  # closed below either way
                    raw.cancel_safe(timeout=5.0)
        connection.close()
