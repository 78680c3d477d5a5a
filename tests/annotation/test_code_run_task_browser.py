"""The tools panel in headless Chromium: it loads under our CSP, and the "Run" button on a code
block of a response copies the code, and its language, into the runner's editor."""

from __future__ import annotations

import os
from urllib.parse import urlsplit

import pytest
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.template import RequestContext, Template
from django.test import Client
from django.urls import path

from config.urls import urlpatterns as project_urlpatterns
from tests.annotation.tools_helpers import open_assignment

pytestmark = [pytest.mark.browser, pytest.mark.urls(__name__)]

CHROMIUM = os.environ.get("ARBITER_CHROMIUM")

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


@pytest.fixture
def browser_page(live_server, monkeypatch):
    if not CHROMIUM:
        pytest.skip("ARBITER_CHROMIUM is not set: no browser to drive")
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync"],
        )
        context = browser.new_context()
        yield context
        browser.close()


def test_run_copies_a_response_code_block_into_the_editor(
    browser_page, live_server, transactional_db, campaign, annotator_a
):
    assignment = open_assignment(campaign, annotator_a)
    client = Client()
    client.force_login(annotator_a)
    browser_page.add_cookies([{
        "name": "sessionid",
        "value": client.cookies["sessionid"].value,
        "domain": urlsplit(live_server.url).hostname,
        "path": "/",
    }])
    page = browser_page.new_page()
    problems: list[str] = []
    page.on("console", lambda message: message.type == "error" and problems.append(message.text))
    page.on("pageerror", lambda error: problems.append(str(error)))
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
    assert problems == [], problems
