"""A corpus search on PostgreSQL runs under its own statement_timeout (SEARCH_TIMEOUT_S): a
query past it is cancelled by the database and the annotator is told so (503), not a 500.

The slow query is the real search statement with a pg_sleep added (test-only), so what is
tested is the database's own cancellation and what the app makes of it."""

from __future__ import annotations

import time

import pytest
from django.db import connection
from django.test import Client

from annotation.models import Evidence
from annotation.services.corpus import DocumentInput, corpus_load
from annotation.tools import search_postgres
from annotation.tools.search import SearchTimedOut, get_backend
from tests.annotation.tools_helpers import open_assignment
from tests.conftest import api_client_for

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _postgres_only():
    if connection.vendor != "postgresql":
        pytest.skip("statement_timeout is PostgreSQL's")


@pytest.fixture
def corpus():
    return corpus_load(
        name="facts", documents=[DocumentInput(title="Moon", body="A natural satellite.")]
    )


@pytest.fixture
def slow_search(monkeypatch, settings):
    """Every search sleeps 3 s inside its statement; the limit is 0.2 s."""
    settings.ARBITER = {**settings.ARBITER, "SEARCH_TIMEOUT_S": 0.2}
    slowed = search_postgres._SEARCH_SQL.replace(
        "WHERE querytree(q) <> 'T'", "WHERE querytree(q) <> 'T' AND pg_sleep(3)::text = ''"
    )
    assert slowed != search_postgres._SEARCH_SQL
    monkeypatch.setattr(search_postgres, "_SEARCH_SQL", slowed)


def statement_timeout() -> str:
    with connection.cursor() as cursor:
        cursor.execute("SHOW statement_timeout")
        return cursor.fetchone()[0]


def test_a_search_past_the_limit_is_cancelled_and_named(corpus, slow_search):
    before = statement_timeout()
    started = time.monotonic()
    with pytest.raises(SearchTimedOut, match=r"took longer than 0\.2 s") as raised:
        get_backend("postgres").search("moon", 5)
    assert time.monotonic() - started < 2.5  # cancelled, not slept through
    assert raised.value.status == 503 and raised.value.code == "search_timed_out"
    # The connection (here inside the test's transaction) goes on, its own bound unchanged.
    assert statement_timeout() == before
    assert Evidence.objects.count() == 0


def test_a_search_in_time_leaves_the_callers_bound_as_it_was(corpus):
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL statement_timeout = '42s'")
    hits = get_backend("postgres").search("moon", 5)
    assert [hit.title for hit in hits] == ["Moon"]
    assert statement_timeout() == "42s"


def test_the_search_api_answers_503_with_a_clear_message(
    corpus, slow_search, campaign, annotator_a
):
    assignment = open_assignment(campaign, annotator_a)
    response = api_client_for(annotator_a).get(
        "/api/tools/search", {"q": "moon", "assignment": assignment.pk}
    )
    assert response.status_code == 503
    body = response.json()
    assert body["code"] == "search_timed_out"
    assert "took longer than 0.2 s" in body["detail"]
    assert not Evidence.objects.filter(assignment=assignment).exists()


def test_the_workspace_panel_shows_the_timeout(corpus, slow_search, campaign, annotator_a):
    assignment = open_assignment(campaign, annotator_a)
    client = Client()
    client.force_login(annotator_a)
    page = client.get(
        "/tools/search", {"q": "moon", "assignment": assignment.pk}, HTTP_HX_REQUEST="true"
    )
    assert page.status_code == 200
    assert "took longer than 0.2 s" in page.content.decode()
