"""Review 20p: while the sandbox queue backs up (no sandbox worker here), every code run posted
to the API held a server thread for its whole wait (5 s by default, 15 at most), so a handful of
runs took every thread from next and label. Past CODE_RUN_CONCURRENT_WAITS waiting requests in
a process, a run is answered at once as it stands (202, to poll)."""

from __future__ import annotations

import time

from django.db import connections

from annotation.models import CodeRun
from tests.conftest import api_client_for, start_in_thread, wait_for

# Slow even for a sandbox worker that another test of this process may have left running.
SLOW = "import time\ntime.sleep(8)"


def _post(user, wait: float) -> tuple[int, float]:  # noqa: ANN001
    client = api_client_for(user)
    started = time.monotonic()
    try:
        response = client.post(
            "/api/tools/code-runs",
            {"language": "python", "code": SLOW, "wait": wait},
            format="json",
        )
    finally:
        connections.close_all()
    return response.status_code, time.monotonic() - started


def test_a_run_past_the_waiting_requests_cap_is_answered_at_once(
    transactional_db, settings, annotator_a, annotator_b, annotator_c
):
    settings.ARBITER = {**settings.ARBITER, "CODE_RUNS_PER_MINUTE": 0}
    waiting = [
        start_in_thread(lambda user=user: _post(user, 6)) for user in (annotator_a, annotator_b)
    ]
    wait_for(lambda: CodeRun.objects.count() == 2, timeout=30, what="the two waiting runs")
    time.sleep(1.0)  # both are in their wait now (they have 5 s of it left)

    status, elapsed = _post(annotator_c, 6)

    assert status == 202
    assert elapsed < 3.0, elapsed
    for future in waiting:
        assert future.result(timeout=30)[0] in (200, 202)
