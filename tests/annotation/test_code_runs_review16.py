"""Review 16 (rtl), findings 2, 3, 6 and 7: the pending-runs cap under concurrency, a run whose
sandbox retries ran out, the unfinished-runs index, and limits on attaching evidence."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.db import connection, connections
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from annotation.models import CodeRun, Evidence
from annotation.models.tools import CODE_RUN_UNFINISHED
from annotation.services.tools import (
    TooManyRuns,
    code_run_create,
    code_run_execute,
    code_runs_fail_stale,
)
from annotation.tools import SandboxBusy
from tests.annotation.tools_helpers import open_assignment
from tests.conftest import api_client_for


def _next_minute() -> datetime:
    """The start of the next whole minute: frozen there, a test's per-minute window cannot roll
    over half-way, and the assignment's lease (minutes long) is still open."""
    now = datetime.now(tz=UTC)
    return now.replace(second=0, microsecond=0) + timedelta(minutes=1)


# --- finding 2: the pending-runs cap holds under concurrency ------------------------------------


def test_simultaneous_runs_never_pass_the_pending_cap(transactional_db, settings, annotator_a):
    if connection.vendor == "sqlite" and connection.is_in_memory_db():
        # Threads sharing an in-memory database hit its table locks at once, without waiting;
        # a database file (as deployed: IMMEDIATE transactions, a busy timeout) passes.
        pytest.skip("in-memory SQLite test database")
    settings.ARBITER = {**settings.ARBITER, "CODE_RUN_MAX_PENDING": 2, "CODE_RUNS_PER_MINUTE": 0}
    threads_n = 12
    barrier = threading.Barrier(threads_n)
    outcomes: list[str] = []

    def one() -> None:
        try:
            barrier.wait()
            code_run_create(user=annotator_a, language="python", code="print(1)")
            outcomes.append("created")
        except TooManyRuns:
            outcomes.append("refused")
        finally:
            connections.close_all()

    threads = [threading.Thread(target=one) for _ in range(threads_n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    # A sandbox worker left running by an earlier test of this process may finish runs
    # meanwhile, each freeing a place under the cap: never more pending than the cap.
    finished = CodeRun.objects.filter(user=annotator_a).exclude(CODE_RUN_UNFINISHED).count()
    created = outcomes.count("created")
    assert len(outcomes) == threads_n and 2 <= created <= 2 + finished, (outcomes, finished)
    assert CodeRun.objects.filter(user=annotator_a).count() == created


# --- finding 3: the last SandboxBusy retry fails the run at once --------------------------------


def _every_slot_busy(monkeypatch) -> None:  # noqa: ANN001
    def busy(*args, **kwargs):  # noqa: ANN002, ANN003
        raise SandboxBusy("every sandbox slot stayed busy for 60 s")

    monkeypatch.setattr("annotation.tools.run_code", busy)


def _run_with_evidence(campaign, annotator) -> CodeRun:  # noqa: ANN001
    assignment = open_assignment(campaign, annotator)
    run = CodeRun.objects.create(
        user=annotator, assignment=assignment, language="python", code="print(1)"
    )
    Evidence.objects.create(
        assignment=assignment,
        kind=Evidence.Kind.CODE_RUN,
        payload={"code_run_id": run.pk, "language": "python", "status": "queued"},
    )
    return run


@pytest.mark.django_db
def test_a_busy_try_with_retries_left_puts_the_run_back_in_the_queue(
    campaign, annotator_a, monkeypatch
):
    # The service, not the task: an eager task retries at once, up to its last try.
    _every_slot_busy(monkeypatch)
    run = _run_with_evidence(campaign, annotator_a)
    with pytest.raises(SandboxBusy):
        code_run_execute(code_run_id=run.pk)
    run.refresh_from_db()
    assert run.status == CodeRun.Status.QUEUED
    assert run.finished_at is None


@pytest.mark.django_db
def test_the_last_busy_retry_fails_the_run_at_once_with_the_true_reason(
    campaign, annotator_a, monkeypatch
):
    _every_slot_busy(monkeypatch)
    run = _run_with_evidence(campaign, annotator_a)
    # What the task does on its last try (run_code_task passes last_try when its retries are
    # spent); called here directly, not through an eager Celery.
    with pytest.raises(SandboxBusy):
        code_run_execute(code_run_id=run.pk, last_try=True)
    run.refresh_from_db()
    assert run.status == CodeRun.Status.FAILED
    assert run.finished_at is not None
    assert run.result == {"status": "failed", "error": "every sandbox slot stayed busy; try again"}
    evidence = Evidence.objects.get(kind=Evidence.Kind.CODE_RUN)
    assert evidence.payload["status"] == CodeRun.Status.FAILED
    assert evidence.payload["message"] == "every sandbox slot stayed busy; try again"
    # Nothing is left for the stale sweep, which would give the wrong reason.
    assert code_runs_fail_stale(now=timezone.now() + timedelta(hours=1)) == 0


# --- finding 6: the sweep and the pending count read only unfinished runs -----------------------


def _add_finished_runs(user_id: int, n: int) -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO annotation_coderun
                (user_id, language, code, stdin, tests, status, result, created_at, finished_at)
            SELECT %s, 'python', 'print(1)', '', '', 'done', '{"status": "ok"}'::jsonb,
                   now() - interval '1 day', now() - interval '1 day'
            FROM generate_series(1, %s)
            """,
            [user_id, n],
        )
        cursor.execute("ANALYZE annotation_coderun")


def _rows_read(sql: str, params) -> int:  # noqa: ANN001
    """Rows the plan's scans read (returned + removed by a filter), from EXPLAIN ANALYZE."""
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + sql, params)
        plan = cursor.fetchone()[0]
    plan = json.loads(plan) if isinstance(plan, str) else plan

    def walk(node) -> int:  # noqa: ANN001
        own = 0
        if "Scan" in node["Node Type"]:
            own = (
                node.get("Actual Rows", 0)
                + node.get("Rows Removed by Filter", 0)
                + node.get("Rows Removed by Index Recheck", 0)
            ) * node.get("Actual Loops", 1)
        return own + sum(walk(child) for child in node.get("Plans", []))

    return walk(plan[0]["Plan"])


def _rows_read_by(action, starts_with: str) -> int:  # noqa: ANN001
    """Rows read by the one query of `action` whose SQL starts with `starts_with`."""
    with CaptureQueriesContext(connection) as queries:
        action()
    [sql] = [q["sql"] for q in queries.captured_queries if q["sql"].startswith(starts_with)]
    return _rows_read(sql, None)


needs_postgres = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="reads EXPLAIN (ANALYZE, FORMAT JSON)"
)


@needs_postgres
@pytest.mark.django_db
def test_the_stale_sweep_reads_only_unfinished_runs(annotator_a):
    CodeRun.objects.create(user=annotator_a, language="python", code="print(1)")  # not stale yet

    def sweep() -> None:
        assert code_runs_fail_stale() == 0

    _add_finished_runs(annotator_a.pk, 5_000)
    small = _rows_read_by(sweep, "SELECT")
    _add_finished_runs(annotator_a.pk, 45_000)
    large = _rows_read_by(sweep, "SELECT")
    # At most the one unfinished run, however many finished runs the table keeps.
    assert small <= 1 and large <= 1, (small, large)
    # Through the index, the sweep still finds the run once it is stale.
    assert code_runs_fail_stale(now=timezone.now() + timedelta(hours=1)) == 1


@needs_postgres
@pytest.mark.django_db
def test_the_pending_count_reads_only_the_users_unfinished_runs(annotator_a, settings):
    settings.ARBITER = {**settings.ARBITER, "CODE_RUN_MAX_PENDING": 50, "CODE_RUNS_PER_MINUTE": 0}
    CodeRun.objects.create(user=annotator_a, language="python", code="print(1)")

    def create() -> None:
        code_run_create(user=annotator_a, language="python", code="print(2)")

    _add_finished_runs(annotator_a.pk, 2_000)
    small = _rows_read_by(create, "SELECT COUNT(*)")
    _add_finished_runs(annotator_a.pk, 18_000)
    large = _rows_read_by(create, "SELECT COUNT(*)")
    # EXPLAIN reruns the count after the insert: the unfinished runs, 2 then 3, and no more.
    assert (small, large) == (2, 3)


# --- finding 7: attaching evidence has a per-minute limit and a cap per assignment -------------


def _attach(client, assignment, i: int):  # noqa: ANN001, ANN202
    return client.post(
        "/api/tools/evidence",
        {"assignment": assignment.pk, "title": f"Source {i}", "snippet": "x" * 4000},
        format="json",
    )


@pytest.mark.django_db
def test_attaching_past_the_limit_a_minute_answers_429_and_stores_nothing(
    settings, campaign, annotator_a, annotator_b
):
    settings.ARBITER = {**settings.ARBITER, "ATTACHES_PER_MINUTE": 3}
    assignment = open_assignment(campaign, annotator_a)
    client = api_client_for(annotator_a)
    minute = _next_minute()
    with time_machine.travel(minute + timedelta(seconds=10), tick=False):
        assert [_attach(client, assignment, i).status_code for i in range(3)] == [201] * 3
        refused = _attach(client, assignment, 3)
        assert refused.status_code == 429
        assert refused.json()["code"] == "rate_limited"
        assert "attached results (3 a minute)" in refused.json()["detail"]
        assert refused["Retry-After"] == "50"
        assert Evidence.objects.filter(assignment=assignment).count() == 3
        # Someone else is not held back.
        other = open_assignment(campaign, annotator_b)
        assert _attach(api_client_for(annotator_b), other, 0).status_code == 201
    with time_machine.travel(minute + timedelta(seconds=61), tick=False):
        assert _attach(client, assignment, 4).status_code == 201


@pytest.mark.django_db
def test_an_assignment_holds_at_most_50_attached_results_by_default(campaign, annotator_a):
    assignment = open_assignment(campaign, annotator_a)
    client = api_client_for(annotator_a)
    with time_machine.travel(_next_minute(), tick=False):
        # The default limit a minute (60) lets real use through: 50 within one minute.
        assert {_attach(client, assignment, i).status_code for i in range(50)} == {201}
        refused = _attach(client, assignment, 50)
    assert refused.status_code == 409
    assert refused.json()["code"] == "too_many_attached_results"
    assert "50 attached results" in refused.json()["detail"]
    assert Evidence.objects.filter(assignment=assignment).count() == 50
    # Other evidence (a code run) is not held back by the attached results' cap.
    code_run_create(user=annotator_a, language="python", code="print(1)", assignment=assignment)
    assert Evidence.objects.filter(assignment=assignment).count() == 51


@pytest.mark.django_db
def test_the_panel_says_why_an_attach_was_refused(settings, campaign, annotator_a):
    settings.ARBITER = {**settings.ARBITER, "ATTACHES_PER_MINUTE": 1}
    assignment = open_assignment(campaign, annotator_a)
    client = Client()
    client.force_login(annotator_a)
    body = {"assignment": assignment.pk, "title": "A source"}
    with time_machine.travel(_next_minute(), tick=False):
        client.post("/tools/attach", body, headers={"HX-Request": "true"})
        page = client.post("/tools/attach", body, headers={"HX-Request": "true"})
    assert page.status_code == 200
    assert b"limit for attached results (1 a minute)" in page.content
    assert Evidence.objects.filter(assignment=assignment).count() == 1
