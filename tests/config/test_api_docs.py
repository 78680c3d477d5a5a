"""The API's documentation: every operation has a summary, and Swagger UI runs under our CSP."""

from __future__ import annotations

import pytest
from drf_spectacular.generators import SchemaGenerator

from annotation.roles import Role
from tests.browser_support import log_in_with_session
from tests.reviewers.factories import user_with_role


def test_every_api_operation_has_a_summary():
    schema = SchemaGenerator().get_schema(request=None, public=True)
    operations = [
        (method.upper(), path, operation)
        for path, methods in schema["paths"].items()
        for method, operation in methods.items()
    ]
    assert len(operations) >= 32
    missing = [
        f"{method} {path}" for method, path, operation in operations if not operation.get("summary")
    ]
    assert missing == []


@pytest.mark.browser
def test_swagger_ui_lists_the_operations_without_a_policy_violation(
    page, browser_context, live_server, watched
):
    log_in_with_session(browser_context, live_server, user_with_role("ada", Role.ADMIN))
    page.goto(f"{live_server.url}/api/docs/")
    page.locator(".opblock-summary-description", has_text="Submit a label").first.wait_for()
    assert page.locator(".opblock").count() >= 32
    assert page.evaluate("window.__cspViolations") == []
    assert watched.page_errors == []
