"""Per-user limits on tool calls a minute: search, code runs and questions to a model."""

from __future__ import annotations

import pytest
from django.test import Client

from annotation.models import Evidence
from annotation.services.corpus import DocumentInput, corpus_load
from annotation.services.tools import RateLimited, tool_rate_check
from tests.annotation.test_llm import completion
from tests.annotation.tools_helpers import local_json_server, open_assignment
from tests.conftest import api_client_for

pytestmark = [pytest.mark.django_db]

MINUTE_START = 1_800_000_000.0  # a whole minute: window boundaries are easy to reason about


def with_limits(settings, **limits: int) -> None:
    settings.ARBITER = {**settings.ARBITER, **limits}


def test_calls_past_the_limit_are_refused_until_the_next_minute(settings):
    with_limits(settings, SEARCHES_PER_MINUTE=3)
    for second in range(3):
        tool_rate_check(user_id=1, tool="search", now=MINUTE_START + second)
    with pytest.raises(RateLimited, match=r"limit for searches \(3 a minute\); try again in 50 s"):
        tool_rate_check(user_id=1, tool="search", now=MINUTE_START + 10)
    tool_rate_check(user_id=2, tool="search", now=MINUTE_START + 10)  # someone else: fine
    tool_rate_check(user_id=1, tool="code_run", now=MINUTE_START + 10)  # another tool: fine
    tool_rate_check(user_id=1, tool="search", now=MINUTE_START + 60)  # the next minute


def test_a_limit_of_zero_means_unlimited(settings):
    with_limits(settings, LLM_ASKS_PER_MINUTE=0)
    for _ in range(200):
        tool_rate_check(user_id=1, tool="llm", now=MINUTE_START)


def test_the_search_api_answers_429_past_the_limit_and_records_no_evidence(
    settings, campaign, annotator_a, annotator_b
):
    corpus_load(name="facts", documents=[DocumentInput(title="Moon", body="A satellite.")])
    with_limits(settings, SEARCHES_PER_MINUTE=2)
    assignment = open_assignment(campaign, annotator_a)
    client = api_client_for(annotator_a)
    query = {"q": "moon", "assignment": assignment.pk}
    assert [client.get("/api/tools/search", query).status_code for _ in range(2)] == [200, 200]
    refused = client.get("/api/tools/search", query)
    assert refused.status_code == 429 and refused.json()["code"] == "rate_limited"
    assert Evidence.objects.filter(assignment=assignment, kind=Evidence.Kind.SEARCH).count() == 2
    assert api_client_for(annotator_b).get("/api/tools/search", {"q": "moon"}).status_code == 200


def test_a_refused_question_never_reaches_the_model(settings, campaign, annotator_a):
    with local_json_server(completion) as server:
        with_limits(settings, LLM_URL=f"{server.url}/v1", LLM_MODEL="fake-7b",
                    LLM_ASKS_PER_MINUTE=1)
        assignment = open_assignment(campaign, annotator_a)
        client = api_client_for(annotator_a)
        body = {"assignment": assignment.pk, "question": "Is B right?"}
        assert client.post("/api/tools/llm", body, format="json").status_code == 201
        refused = client.post("/api/tools/llm", body, format="json")
        assert refused.status_code == 429
        assert "questions to the model (1 a minute)" in refused.json()["detail"]
        assert len(server.requests) == 1


def test_the_workspace_panel_shows_the_limit_as_an_error(settings, campaign, annotator_a):
    with_limits(settings, SEARCHES_PER_MINUTE=1)
    assignment = open_assignment(campaign, annotator_a)
    client = Client()
    client.force_login(annotator_a)
    query = {"q": "moon", "assignment": assignment.pk}
    client.get("/tools/search", query, HTTP_HX_REQUEST="true")
    page = client.get("/tools/search", query, HTTP_HX_REQUEST="true")
    assert page.status_code == 200 and b"limit for searches (1 a minute)" in page.content


def _cache_settings(backend: str, tmp_path) -> dict:
    import os

    if backend == "file":
        return {
            "default": {
                "BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
                "LOCATION": str(tmp_path / "cache"),
            }
        }
    url = os.environ.get("CACHE_URL", "")
    if not url.startswith("redis://"):
        pytest.skip("no Redis cache configured (CACHE_URL)")
    return {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": url}}


@pytest.mark.smoke
@pytest.mark.parametrize("backend", ["file", "redis"])
def test_concurrent_calls_never_pass_the_limit_on_any_cache_backend(settings, tmp_path, backend):
    import threading

    settings.CACHES = _cache_settings(backend, tmp_path)
    with_limits(settings, SEARCHES_PER_MINUTE=60)
    from django.core.cache import cache

    cache.clear()
    allowed: list[int] = []
    refused: list[int] = []
    start = threading.Barrier(12)

    def hammer() -> None:
        start.wait()
        for _ in range(10):
            try:
                tool_rate_check(user_id=7, tool="search", now=MINUTE_START + 5)
            except RateLimited:
                refused.append(1)
            else:
                allowed.append(1)

    threads = [threading.Thread(target=hammer) for _ in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert (len(allowed), len(refused)) == (60, 60)
