"""Code runs: the service and task in process, and end to end through the API with a real
Celery worker on the sandbox queue."""

from __future__ import annotations

import json
import time
import urllib.request

import pytest

from annotation.models import CodeRun, Evidence
from annotation.services.api_tokens import api_token_issue
from annotation.services.tools import code_run_execute
from annotation.tools import SandboxUnavailable, available_languages, preflight
from tests.annotation.tools_helpers import open_assignment
from tests.conftest import api_client_for, start_worker, stop_worker, wait_for


def _sandbox_problem() -> str | None:
    try:
        preflight()
    except SandboxUnavailable as exc:
        return str(exc)
    return None


# Sandboxed runs are timed (limits, teardown grace); beside another test on a 2-core machine they
# fail spuriously, so scripts/test.sh runs them in its serial pass.
pytestmark = pytest.mark.alone

needs_sandbox = pytest.mark.skipif(
    _sandbox_problem() is not None, reason=f"no sandbox here: {_sandbox_problem()}"
)


def _queued_run(user, **fields) -> CodeRun:  # noqa: ANN001
    fields = {"language": "python", "code": "print(6 * 7)", **fields}
    return CodeRun.objects.create(user=user, **fields)


# --- in process -------------------------------------------------------------------------------


@pytest.mark.django_db
def test_languages_lists_what_the_server_has(annotator_a):
    response = api_client_for(annotator_a).get("/api/tools/languages")
    assert response.status_code == 200
    assert response.json()["languages"] == available_languages()
    assert "python" in response.json()["languages"]


@needs_sandbox
@pytest.mark.django_db
@pytest.mark.smoke
def test_the_task_runs_a_queued_run_once_and_stores_the_result(annotator_a, campaign):
    assignment = open_assignment(campaign, annotator_a)
    run = _queued_run(
        annotator_a,
        assignment=assignment,
        code="def add(a, b):\n    return a + b\nprint(add(2, 3))",
        tests="assert add(2, 2) == 4",
    )
    Evidence.objects.create(assignment=assignment, kind=Evidence.Kind.CODE_RUN,
                            payload={"code_run_id": run.pk, "language": "python"})
    finished = code_run_execute(code_run_id=run.pk)
    assert finished is not None
    run.refresh_from_db()
    assert run.status == CodeRun.Status.DONE
    assert run.result["status"] == "ok"
    assert run.result["stdout"] == "5\n"
    assert run.result["tests"] == "pass"
    assert run.finished_at is not None
    evidence = Evidence.objects.get(assignment=assignment)
    assert evidence.payload["result_status"] == "ok"
    assert evidence.payload["tests_outcome"] == "pass"
    # A second delivery of the same task finds nothing to claim.
    assert code_run_execute(code_run_id=run.pk) is None


@needs_sandbox
@pytest.mark.django_db
def test_failing_tests_and_errors_are_reported(annotator_a):
    run = _queued_run(
        annotator_a, code="def add(a, b):\n    return a - b", tests="assert add(2, 2) == 4"
    )
    code_run_execute(code_run_id=run.pk)
    run.refresh_from_db()
    assert (run.result["status"], run.result["tests"]) == ("error", "fail")
    assert "AssertionError" in run.result["stderr"]


@pytest.mark.django_db
def test_an_unknown_language_fails_the_run_without_running_anything(annotator_a):
    run = _queued_run(annotator_a, language="cobol")
    code_run_execute(code_run_id=run.pk)
    run.refresh_from_db()
    assert run.status == CodeRun.Status.FAILED
    assert "cobol" in run.result["error"]


@pytest.mark.django_db
def test_the_api_refuses_unavailable_languages_and_too_many_pending_runs(annotator_a, settings):
    client = api_client_for(annotator_a)
    response = client.post("/api/tools/code-runs", {"language": "cobol", "code": "x"},
                           format="json")
    assert response.status_code == 400
    settings.ARBITER = {**settings.ARBITER, "CODE_RUN_MAX_PENDING": 2}
    _queued_run(annotator_a)
    _queued_run(annotator_a, status=CodeRun.Status.RUNNING)
    response = client.post("/api/tools/code-runs", {"language": "python", "code": "print(1)"},
                           format="json")
    assert response.status_code == 429
    assert CodeRun.objects.count() == 2


@pytest.mark.django_db
def test_runs_are_private_to_their_author(annotator_a, annotator_b):
    run = _queued_run(annotator_a)
    assert api_client_for(annotator_b).get(f"/api/tools/code-runs/{run.pk}").status_code == 404
    response = api_client_for(annotator_a).get(f"/api/tools/code-runs/{run.pk}")
    assert response.status_code == 200
    assert response.json()["status"] == "queued"


# --- with a real worker -----------------------------------------------------------------------


@needs_sandbox
@pytest.mark.worker
def test_a_worker_runs_code_posted_to_the_api_and_records_evidence(worker, campaign, annotator_a):
    assignment = open_assignment(campaign, annotator_a)
    client = api_client_for(annotator_a)
    response = client.post(
        "/api/tools/code-runs",
        {
            "language": "python",
            "code": "import sys\nprint(sys.stdin.read()[::-1])",
            "stdin": "abc",
            "tests": "assert 1 + 1 == 2",
            "assignment": assignment.pk,
            "wait": 15,
        },
        format="json",
    )
    if response.status_code == 202:  # a slow start of the worker: poll like a client would
        poll = response.json()["poll"]
        response = wait_for(
            lambda: (r := client.get(poll)).json()["status"] in ("done", "failed") and r,
            timeout=60, what="the run to finish",
        )
    body = response.json()
    assert body["status"] == "done", body
    assert body["result"]["status"] == "ok"
    assert body["result"]["stdout"] == "cba\n"
    assert body["result"]["tests"] == "pass"
    [evidence] = Evidence.objects.filter(assignment=assignment, kind=Evidence.Kind.CODE_RUN)
    assert evidence.payload["code_run_id"] == body["id"]
    assert evidence.payload["result_status"] == "ok"


@needs_sandbox
@pytest.mark.worker
def test_without_waiting_the_api_answers_202_and_the_run_can_be_polled(worker, annotator_a):
    client = api_client_for(annotator_a)
    response = client.post(
        "/api/tools/code-runs",
        {"language": "python", "code": "import time\ntime.sleep(0.5)\nprint('late')",
         "wait": 0},
        format="json",
    )
    assert response.status_code == 202
    body = response.json()
    assert body["status"] in ("queued", "running")
    assert body["poll"] == f"/api/tools/code-runs/{body['id']}"
    final = wait_for(
        lambda: (data := client.get(body["poll"]).json())["status"] == "done" and data,
        timeout=60, what="the polled run to finish",
    )
    assert final["result"]["stdout"] == "late\n"


HOSTILE_PROGRAMS = [
    "while True:\n    pass",
    "import time\ntime.sleep(10**6)",
    "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass",
    "x = []\nwhile True:\n    x.append(' ' * 10**6)",
]


@needs_sandbox
@pytest.mark.worker
@pytest.mark.slow
def test_pages_stay_responsive_while_20_hostile_runs_execute(
    live_server, transactional_db, campaign, annotator_a, monkeypatch, settings
):
    settings.ARBITER = {**settings.ARBITER, "CODE_RUN_MAX_PENDING": 50, "CODE_RUNS_PER_MINUTE": 0}
    # Short limits keep the test short; the runs are still hostile for their whole life.
    monkeypatch.setenv("ARBITER_SANDBOX_TIMEOUT_S", "2")
    sandbox_worker = start_worker(queues="sandbox", concurrency=4, name="tools-hostile")
    try:
        client = api_client_for(annotator_a)
        run_ids = []
        for index in range(20):
            response = client.post(
                "/api/tools/code-runs",
                {"language": "python", "code": HOSTILE_PROGRAMS[index % 4], "wait": 0},
                format="json",
            )
            assert response.status_code == 202
            run_ids.append(response.json()["id"])
        runs = CodeRun.objects.filter(pk__in=run_ids)
        wait_for(lambda: runs.filter(status=CodeRun.Status.RUNNING).exists(), timeout=60,
                 what="hostile runs to start")

        token = api_token_issue(user=annotator_a)
        url = f"{live_server.url}/api/campaigns/{campaign.pk}/progress"
        # No wall-clock bound (the machine may be busy with anything): a page is answered
        # while hostile runs are executing both before it was asked for and after its answer,
        # so the web process never waits for the sandbox.
        answered_while_busy = 0
        for _ in range(6):
            request = urllib.request.Request(  # noqa: S310 - the live server's http URL
                url, headers={"Authorization": f"Token {token}"}
            )
            running_before = runs.filter(status=CodeRun.Status.RUNNING).exists()
            with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
                assert response.status == 200
                assert "pairs" in json.loads(response.read())
            running_after = runs.filter(status=CodeRun.Status.RUNNING).exists()
            answered_while_busy += running_before and running_after
            time.sleep(0.3)
        assert answered_while_busy > 0, "the hostile runs were not executing while measured"

        wait_for(lambda: not runs.exclude(status=CodeRun.Status.DONE).exists(), timeout=120,
                 interval=0.5, what="all hostile runs to end")
        statuses = {run.result["status"] for run in runs}
        assert statuses <= {"timeout", "memory_limit", "killed", "error"}, statuses
        assert "timeout" in statuses
    finally:
        stop_worker(sandbox_worker)
