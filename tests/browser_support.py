"""Headless Chromium (Debian's, through Playwright's sync API) against pytest-django's
live_server, for every browser test in the suite.

A pytest plugin, registered from tests/conftest.py: a test asks for `page` (and `watched`, to
assert on what the page did), or `browser_context` to log in with `log_in_with_session`.
Every page records the content-security-policy violations it causes in
`window.__cspViolations`."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# Collected from the first script of every page, before any of ours runs.
RECORD_CSP_VIOLATIONS = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", function (event) {
  window.__cspViolations.push(
    event.violatedDirective + " " + event.blockedURI + " at " + event.sourceFile + ":" +
      event.lineNumber + " " + event.sample
  );
});
"""


@pytest.fixture
def chromium(monkeypatch) -> Iterator[object]:
    """One browser per test: Playwright's event loop lives only as long as the test."""
    executable = os.environ.get("ARBITER_CHROMIUM")
    if not executable or not os.access(executable, os.X_OK):
        reason = f"no Chromium to drive (ARBITER_CHROMIUM={executable!r})"
        # `make test` sets ARBITER_CHROMIUM_REQUIRED=1: there a missing browser fails the
        # browser tests instead of letting the suite pass with none of them run.
        if os.environ.get("ARBITER_CHROMIUM_REQUIRED") == "1":
            pytest.fail(f"{reason}, and ARBITER_CHROMIUM_REQUIRED=1")
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    # Playwright's sync API runs an event loop in this thread; Django would otherwise refuse
    # the test's own ORM calls, taking them for calls from async code.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        yield browser
        browser.close()
        # While Playwright's loop runs, asgiref gives this test's ORM calls their own
        # connection, which pytest-django's teardown (outside that loop) would never see.
        from django.db import connections

        connections.close_all()


@dataclass
class Watched:
    """What a page did: dialogs it opened, requests it made, policy violations it caused."""

    dialogs: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)


@pytest.fixture
def watched() -> Watched:
    return Watched()


@pytest.fixture
def browser_context(chromium, watched, live_server) -> Iterator[object]:
    context = chromium.new_context(viewport={"width": 1440, "height": 900})
    context.add_init_script(RECORD_CSP_VIOLATIONS)
    context.set_default_timeout(15_000)
    yield context
    context.close()


@pytest.fixture
def page(browser_context, watched) -> object:
    page = browser_context.new_page()

    def on_dialog(dialog) -> None:  # noqa: ANN001
        watched.dialogs.append(f"{dialog.type}: {dialog.message}")
        dialog.dismiss()

    page.on("dialog", on_dialog)
    page.on("request", lambda request: watched.requests.append(request.url))
    page.on("pageerror", lambda error: watched.page_errors.append(str(error)))

    def on_console(message) -> None:  # noqa: ANN001
        if message.type == "error":
            watched.console_errors.append(message.text)

    page.on("console", on_console)
    return page


def log_in_with_session(context, live_server, user) -> None:  # noqa: ANN001
    """A session cookie for `user`, for tests that are not about the login form."""
    from django.conf import settings
    from django.test import Client

    client = Client()
    client.force_login(user, backend="django.contrib.auth.backends.ModelBackend")
    context.add_cookies(
        [
            {
                "name": settings.SESSION_COOKIE_NAME,
                "value": client.cookies[settings.SESSION_COOKIE_NAME].value,
                "url": live_server.url,
            }
        ]
    )


def wait_for_next_pair(page, previous: str | None) -> None:  # noqa: ANN001
    """Wait until the workspace shows a pair other than assignment `previous`, ready for input."""
    page.wait_for_function(
        "previous => { const pair = document.querySelector('#pair');"
        " return pair && pair.dataset.ready && pair.dataset.assignment !== previous; }",
        arg=previous,
    )
