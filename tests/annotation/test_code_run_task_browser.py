"""The tools panel in headless Chromium: it loads under our CSP, and the "Run" button on a code
block of a response copies the code, and its language, into the runner's editor."""

from __future__ import annotations

import pytest
from django.urls import reverse

from tests.annotation.tools_helpers import open_assignment
from tests.browser_support import log_in_with_session

pytestmark = pytest.mark.browser

CODE = 'console.log([3, 1, 2].sort().join(","));'


def test_run_copies_a_response_code_block_into_the_editor(
    page, browser_context, watched, live_server, transactional_db, campaign, annotator_a
):
    # The real workspace, showing a pair whose response A holds a fenced code block.
    assignment = open_assignment(
        campaign,
        annotator_a,
        response_a=f"Try this:\n\n```javascript\n{CODE}\n```\n",
        response_b="Sort them by hand.",
    )
    log_in_with_session(browser_context, live_server, annotator_a)
    page.goto(f"{live_server.url}{reverse('campaign-detail', args=[campaign.pk])}")
    page.wait_for_selector(f"#pair[data-assignment='{assignment.pk}'][data-ready]")

    page.wait_for_selector("[data-tools-editor]", timeout=15_000)  # the panel loaded by htmx
    run_button = page.locator(".response-body .code-run-button")
    assert run_button.count() == 1
    run_button.click()
    editor = page.locator("[data-tools-editor]")
    assert editor.input_value() == CODE + "\n"  # the fence's content keeps its final newline
    from annotation.tools import available_languages

    if "javascript" in available_languages():
        assert page.locator("[data-tools-language]").input_value() == "javascript"
    # Tab indents inside the editor instead of leaving it.
    editor.press("Control+End")
    editor.press("Tab")
    assert editor.input_value() == CODE + "\n    "
    assert watched.console_errors == [], watched.console_errors
    assert watched.page_errors == [], watched.page_errors
