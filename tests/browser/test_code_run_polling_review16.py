"""A pending code run's panel in real Chromium: it keeps polling, more slowly, after a poll that
failed (a 503 while the database restarts, a dropped connection), shows the result once the run
is finished, and then stops polling.

The run's task is never sent (a session's Celery worker may be running): the run stays queued
until the test stores its result, as a worker would."""

from __future__ import annotations

import time

import pytest
from django.urls import reverse
from django.utils import timezone

from annotation.models import CodeRun
from annotation.services import tools as tools_services
from tests.annotation.tools_helpers import open_assignment
from tests.browser_support import log_in_with_session

pytestmark = pytest.mark.browser


@pytest.fixture(autouse=True)
def _no_worker_takes_the_run(monkeypatch) -> None:  # noqa: ANN001
    monkeypatch.setattr(tools_services, "send_task_on_commit", lambda *args, **kwargs: None)


RESULT = {
    "status": "ok",
    "exit_code": 0,
    "stdout": "late\n",
    "stderr": "",
    "duration_ms": 5,
    "tests": None,
    "message": "",
}


def _start_a_pending_run(page, browser_context, live_server, campaign, annotator) -> None:  # noqa: ANN001
    assignment = open_assignment(campaign, annotator)
    log_in_with_session(browser_context, live_server, annotator)
    page.goto(f"{live_server.url}{reverse('campaign-detail', args=[campaign.pk])}")
    page.wait_for_selector(f"#pair[data-assignment='{assignment.pk}'][data-ready]")
    page.wait_for_selector("[data-tools-editor]", timeout=15_000)
    page.fill("#tools-code", "print('late')")
    page.click("#tools-code-form button[type=submit]")
    page.wait_for_selector("#tools-code-result .code-run-pending", timeout=15_000)


def _finish_the_run() -> None:
    CodeRun.objects.filter(status=CodeRun.Status.QUEUED).update(
        status=CodeRun.Status.DONE, result=RESULT, finished_at=timezone.now()
    )


def _wait_until(page, condition, *, timeout_s: float, what: str) -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        page.wait_for_timeout(100)


def test_a_pending_run_keeps_polling_after_failed_polls_then_stops_once_done(
    page, browser_context, watched, live_server, transactional_db, campaign, annotator_a
):
    _start_a_pending_run(page, browser_context, live_server, campaign, annotator_a)
    polls: list[float] = []  # when each poll reached the "server"
    failing = {"left": 2}

    def first_two_fail(route) -> None:  # noqa: ANN001
        polls.append(time.monotonic())
        if failing["left"] == 2:
            failing["left"] -= 1
            route.fulfill(status=503, body="busy", headers={"Retry-After": "2"})
        elif failing["left"] == 1:
            failing["left"] -= 1
            route.abort("connectionreset")  # the network, not the server
        else:
            route.continue_()

    page.route("**/tools/code-runs/*", first_two_fail)
    _wait_until(page, lambda: len(polls) >= 3, timeout_s=15, what="a poll after two failures")
    # After a failure the panel polls again, but not at the 700 ms pace.
    assert polls[1] - polls[0] >= 1.5, polls
    assert polls[2] - polls[1] >= 1.5, polls
    assert "queued" in page.inner_text("#tools-code-result")

    _finish_the_run()
    page.wait_for_selector("#tools-code-result .code-run[data-run-status='ok']", timeout=10_000)
    assert "late" in page.inner_text("#tools-code-result")
    # Finished: the result holds no poll, so no request follows.
    settled = len(polls)
    page.wait_for_timeout(4_000)
    assert len(polls) == settled, f"{len(polls) - settled} polls after the run was done"
    assert watched.page_errors == [], watched.page_errors


def test_a_pending_run_polls_at_the_usual_pace_while_no_poll_fails(
    page, browser_context, watched, live_server, transactional_db, campaign, annotator_a
):
    _start_a_pending_run(page, browser_context, live_server, campaign, annotator_a)
    polls: list[float] = []

    def recorded(route) -> None:  # noqa: ANN001
        polls.append(time.monotonic())
        route.continue_()

    page.route("**/tools/code-runs/*", recorded)
    _wait_until(page, lambda: len(polls) >= 4, timeout_s=15, what="four polls")
    gaps = [later - earlier for earlier, later in zip(polls, polls[1:], strict=False)]
    assert max(gaps) < 1.5, gaps  # every answer schedules the next poll 700 ms after it
    _finish_the_run()
    page.wait_for_selector("#tools-code-result .code-run[data-run-status='ok']", timeout=10_000)
    assert watched.page_errors == [], watched.page_errors
