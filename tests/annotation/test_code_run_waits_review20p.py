"""Review 20p: while the sandbox queue backs up (no sandbox worker here), every code run posted
to the API held a server thread for its whole wait (5 s by default, 15 at most), so a handful of
runs took every thread from next and label. Past CODE_RUN_CONCURRENT_WAITS waiting requests in
a process, a run is answered at once as it stands (202, to poll).

Review 20s: the waiting requests are the process's own semaphore, held here as two requests
waiting would hold it; the first version timed two real waits against a third request with a
sleep and a 3-second bound, which a loaded machine broke either way."""

from __future__ import annotations

import time

from annotation.services import tools
from tests.conftest import api_client_for

# Slow even for a sandbox worker that another test of this process may have left running.
SLOW = "import time\ntime.sleep(8)"


def _post(user, wait: float) -> tuple[int, float]:  # noqa: ANN001
    started = time.monotonic()
    response = api_client_for(user).post(
        "/api/tools/code-runs",
        {"language": "python", "code": SLOW, "wait": wait},
        format="json",
    )
    return response.status_code, time.monotonic() - started


def test_a_run_past_the_waiting_requests_cap_is_answered_at_once(
    db, settings, annotator_a, annotator_b
):
    settings.ARBITER = {**settings.ARBITER, "CODE_RUNS_PER_MINUTE": 0}
    held = 0
    try:
        for _ in range(tools.CODE_RUN_CONCURRENT_WAITS):  # two requests waiting on runs
            assert tools._code_run_waits.acquire(blocking=False)
            held += 1
        status, elapsed = _post(annotator_a, 15)
    finally:
        for _ in range(held):
            tools._code_run_waits.release()

    assert status == 202
    assert elapsed < 10.0, elapsed  # not its 15 s of wait, however loaded the machine

    # With the waits over, a request waits again (a lower bound: load only lengthens it).
    status, elapsed = _post(annotator_b, 1)
    assert status == 202
    assert elapsed >= 1.0, elapsed
