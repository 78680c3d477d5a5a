"""One error path: the family's statuses and codes, the DRF handler and the page middleware."""

from __future__ import annotations

import pytest
from django.test import RequestFactory
from django_htmx.middleware import HtmxDetails

from annotation.errors import AlreadyFinished, InvalidLabel, LeaseExpired
from annotation.importers import ImportFormatError
from annotation.services.corpus import CorpusError
from annotation.services.tools import AssignmentClosed, RateLimited, ToolUnavailable, TooManyRuns
from annotation.tools.search import SearchError
from core import errors
from core.http import ApplicationErrorMiddleware, exception_handler
from reviewers.errors import ClaimUnavailable, ConflictOfInterest, GoldNotAllowed
from scoring.datasets.curation import CurationError
from scoring.datasets.export import InvalidExport
from scoring.jobs.runner import JobError
from scoring.loop.registry import RegistryError


@pytest.mark.parametrize(
    ("error", "status", "code"),
    [
        (InvalidLabel("x"), 400, "invalid_label"),
        (LeaseExpired("x"), 409, "lease_expired"),
        (AlreadyFinished("x"), 409, "already_finished"),
        (AssignmentClosed("x"), 409, "assignment_closed"),
        (TooManyRuns("x"), 429, "too_many_runs"),
        (RateLimited("x"), 429, "rate_limited"),
        (ToolUnavailable("x"), 503, "tool_unavailable"),
        (SearchError("x"), 502, "search_failed"),
        (ClaimUnavailable("x"), 409, "claim_unavailable"),
        (ConflictOfInterest("x"), 403, "conflict_of_interest"),
        (GoldNotAllowed("x"), 400, "gold_not_allowed"),
        (RegistryError("x"), 409, "registry_error"),
        (CurationError("x"), 400, "curation_error"),
        (InvalidExport("x"), 400, "invalid_export"),
        (JobError("x"), 400, "job_error"),
        (CorpusError("x", line=3), 400, "corpus_error"),
        (ImportFormatError(3, "x"), 400, "import_format_error"),
    ],
)
def test_every_domain_error_is_an_application_error_with_its_status(error, status, code):
    assert isinstance(error, errors.ApplicationError)
    assert (error.status, error.code) == (status, code)


def test_value_errors_stay_value_errors():
    # Callers that catch ValueError (the import parsers, curation's readers) still do.
    for error in (CorpusError("x"), ImportFormatError(None, "x"), CurationError("x")):
        assert isinstance(error, ValueError)


def test_the_api_handler_answers_detail_and_code_with_retry_after():
    response = exception_handler(RateLimited("slow down", retry_after=42), {})
    assert response.status_code == 429
    assert response.data == {"detail": "slow down", "code": "rate_limited"}
    assert response["Retry-After"] == "42"
    conflict = exception_handler(RegistryError("nothing to roll back to"), {})
    assert conflict.status_code == 409 and "Retry-After" not in conflict
    assert conflict.data == {"detail": "nothing to roll back to", "code": "registry_error"}


def test_the_api_handler_leaves_other_exceptions_to_drf():
    assert exception_handler(KeyError("x"), {}) is None


@pytest.mark.django_db
@pytest.mark.parametrize("htmx", [False, True])
def test_the_middleware_renders_the_error_with_its_status(htmx, admin_user):
    headers = {"HX-Request": "true"} if htmx else {}
    request = RequestFactory().get("/anywhere", headers=headers)
    request.user = admin_user
    request.htmx = HtmxDetails(request)
    middleware = ApplicationErrorMiddleware(lambda request: None)
    response = middleware.process_exception(request, AlreadyFinished("Already <done>."))
    assert response.status_code == 409
    body = response.content.decode()
    assert 'data-error-code="already_finished"' in body and "Already &lt;done&gt;." in body
    assert ("<html" in body) is not htmx
    assert middleware.process_exception(request, KeyError("x")) is None
