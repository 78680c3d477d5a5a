"""The tools panel in headless Chromium: it loads under our CSP, and the "Run" button on a code
block of a response copies the code, and its language, into the runner's editor."""

from __future__ import annotations

import pytest
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.template import RequestContext, Template
from django.urls import path

from config.urls import urlpatterns as project_urlpatterns
from tests.annotation.tools_helpers import open_assignment
from tests.browser_support import log_in_with_session

pytestmark = [pytest.mark.browser, pytest.mark.urls(__name__)]

PAGE = Template(
    """{% extends "base.html" %}{% block content %}
<article class="response"><div class="response-body md">
<p>Try this:</p>
<div class="code-block"><pre><code class="language-javascript"
>console.log([3, 1, 2].sort().join(","));</code></pre></div>
</div></article>
<aside class="tools card">{% include "annotation/_tools_panel.html" %}</aside>
{% endblock %}"""
)


@login_required
def workspace_stand_in(request: HttpRequest, assignment_id: int) -> HttpResponse:
    """A page shaped like the workspace: a response with a code block, and the panel."""
    from annotation.models import Assignment

    assignment = Assignment.objects.get(pk=assignment_id, annotator=request.user)
    context = RequestContext(request, {"assignment": assignment, "campaign": assignment.campaign})
    return HttpResponse(PAGE.render(context))


urlpatterns = [
    path("test-workspace/<int:assignment_id>", workspace_stand_in),
    *project_urlpatterns,
]


def test_run_copies_a_response_code_block_into_the_editor(
    page, browser_context, watched, live_server, transactional_db, campaign, annotator_a
):
    assignment = open_assignment(campaign, annotator_a)
    log_in_with_session(browser_context, live_server, annotator_a)
    page.goto(f"{live_server.url}/test-workspace/{assignment.pk}")

    page.wait_for_selector("[data-tools-editor]", timeout=15_000)  # the panel loaded by htmx
    run_button = page.locator(".response-body .code-run-button")
    assert run_button.count() == 1
    run_button.click()
    editor = page.locator("[data-tools-editor]")
    assert editor.input_value() == 'console.log([3, 1, 2].sort().join(","));'
    from annotation.tools import available_languages

    if "javascript" in available_languages():
        assert page.locator("[data-tools-language]").input_value() == "javascript"
    # Tab indents inside the editor instead of leaving it.
    editor.press("End")
    editor.press("Tab")
    assert editor.input_value().endswith(";    ")
    assert watched.console_errors == [], watched.console_errors
    assert watched.page_errors == [], watched.page_errors
