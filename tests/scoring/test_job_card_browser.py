"""The model job card in headless Chromium: the status badge holds its word, the page does not
widen, and every log line past the tenth shows its own time rather than a clipped number."""

from __future__ import annotations

import pytest

from annotation.roles import Role
from scoring.models import Job, JobLogLine
from tests.browser_support import log_in_with_session
from tests.reviewers.factories import user_with_role

pytestmark = pytest.mark.browser


def test_a_finished_job_card_fits_its_badge_and_its_log(
    page, browser_context, live_server, campaign
):
    log_in_with_session(browser_context, live_server, user_with_role("ada", Role.ADMIN))
    job = Job.objects.create(
        campaign=campaign,
        kind=Job.Kind.LOOP,
        status=Job.Status.SUCCEEDED,
        progress=1.0,
        message="done",
    )
    JobLogLine.objects.bulk_create(
        JobLogLine(job=job, message=f"step {n} of the loop") for n in range(1, 13)
    )
    for width in (1440, 390):
        page.set_viewport_size({"width": width, "height": 900})
        page.goto(f"{live_server.url}/scoring/jobs/{job.pk}/")
        badge = page.locator(".job-progress-head .job-status")
        assert badge.inner_text() == "Succeeded"
        fits = badge.evaluate("el => el.scrollWidth <= el.clientWidth && el.clientWidth > 40")
        assert fits, badge.bounding_box()
        assert page.evaluate("document.documentElement.scrollWidth") <= width
        lines = page.locator(".job-log li")
        assert lines.count() == 12
        # No list numbers to clip: each line starts with its time, inside the card.
        assert lines.nth(11).evaluate("el => getComputedStyle(el).listStyleType") == "none"
        assert "step 12 of the loop" in lines.nth(11).inner_text()
        log_box = page.locator(".job-log").bounding_box()
        card_box = page.locator(".job-progress").bounding_box()
        assert log_box["x"] >= card_box["x"]
    assert page.evaluate("window.__cspViolations") == []
