"""kill -9 of a sandbox worker during 20 code runs: no stray process, scratch directory or
mount is left once the periodic sweep has run, and every run ends (done, or failed as left
behind), none pending forever."""

from __future__ import annotations

import os
import shutil
import signal
import time
from collections.abc import Iterator
from datetime import timedelta

import pytest
from django.utils import timezone

from annotation.models import CodeRun
from annotation.services.tools import CODE_RUN_STALE_SECONDS
from annotation.tasks import fail_stale_work_task
from annotation.tools import SandboxUnavailable, available_languages, preflight
from annotation.tools.sandbox import SandboxConfig, stray_report
from tests.conftest import api_client_for, start_worker, stop_worker, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.worker]

PY_SLEEPER = "import time\nprint('started', flush=True)\ntime.sleep(8)\nprint('finished')"
# A compiled program keeps a scratch directory (its build) on the host while it runs.
C_SLEEPER = "#include <unistd.h>\nint main(void) { sleep(8); return 0; }"


@pytest.fixture
def private_sandbox(tmp_path, monkeypatch) -> Iterator[SandboxConfig]:
    """A runtime directory and uid range of this test's own, shared with the worker it starts
    (through the environment), so that the stray report sees only this test's sandboxes."""
    monkeypatch.setenv("ARBITER_SANDBOX_RUNTIME_DIR", f"/tmp/arbiter-sandbox-kill9-{os.getpid()}")
    monkeypatch.setenv("ARBITER_SANDBOX_UID_BASE", "63100")
    monkeypatch.setenv("ARBITER_SANDBOX_SLOTS", "4")
    try:
        preflight()
    except SandboxUnavailable as error:
        if os.environ.get("ARBITER_SANDBOX_REQUIRED") == "1":
            raise
        pytest.skip(f"no usable sandbox here: {error}")
    config = SandboxConfig.from_env()
    yield config
    shutil.rmtree(config.runtime_dir, ignore_errors=True)


def test_kill_9_of_a_sandbox_worker_leaves_nothing_behind(
    private_sandbox, transactional_db, annotator_a, settings
):
    settings.ARBITER = {**settings.ARBITER, "CODE_RUN_MAX_PENDING": 50, "CODE_RUNS_PER_MINUTE": 0}
    worker = start_worker(queues="sandbox", concurrency=4, name="kill9")
    try:
        client = api_client_for(annotator_a)
        run_ids = []
        compiled = "c" in available_languages()
        for index in range(20):
            language, code = ("c", C_SLEEPER) if compiled and index % 2 else ("python", PY_SLEEPER)
            response = client.post(
                "/api/tools/code-runs",
                {"language": language, "code": code, "wait": 0},
                format="json",
            )
            assert response.status_code == 202
            run_ids.append(response.json()["id"])
        runs = CodeRun.objects.filter(pk__in=run_ids)
        wait_for(
            lambda: runs.filter(status=CodeRun.Status.RUNNING).count() >= 2,
            timeout=60,
            what="runs to be executing",
        )
        time.sleep(1.0)  # the programs are inside their sandboxes now
        assert stray_report(private_sandbox).processes, "no sandbox was running when killed"
    finally:
        stop_worker(worker, sig=signal.SIGKILL)

    # bubblewrap dies with its parent (and the kernel empties its PID namespace): no process.
    wait_for(lambda: not stray_report(private_sandbox).processes, timeout=15,
             what="sandbox processes to die with the killed worker")
    # The periodic sweep (beat runs it every few minutes) removes what the worker left, and
    # fails the runs it left behind once they are old enough: made so here.
    CodeRun.objects.filter(pk__in=run_ids).update(
        created_at=timezone.now() - timedelta(seconds=CODE_RUN_STALE_SECONDS + 1)
    )
    fail_stale_work_task()
    report = stray_report(private_sandbox)
    assert report.processes == () and report.scratch_dirs == () and report.mounts == ()
    statuses = set(CodeRun.objects.filter(pk__in=run_ids).values_list("status", flat=True))
    assert statuses <= {CodeRun.Status.DONE, CodeRun.Status.FAILED}, statuses
    assert CodeRun.Status.FAILED in statuses
