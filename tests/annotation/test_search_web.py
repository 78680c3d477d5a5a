"""The external web-search backend, against a tiny JSON server started by the test."""

from __future__ import annotations

import urllib.parse

import pytest

from annotation.tools.search import SearchError, get_backend, search
from tests.annotation.tools_helpers import local_json_server, open_assignment
from tests.conftest import api_client_for

pytestmark = [pytest.mark.django_db, pytest.mark.smoke]

RESULTS = {
    "results": [
        {
            "title": "Eiffel Tower",
            "snippet": "The <b>Eiffel</b> tower is 330 m tall & made of iron.",
            "url": "https://en.wikipedia.org/wiki/Eiffel_Tower",
            "score": 3.5,
        },
        {"title": "Paris", "snippet": "Capital of France.", "url": "javascript:alert(1)"},
        {"title": "Beyond k", "snippet": "ignored", "url": "https://example.org"},
    ]
}


@pytest.fixture
def web_search(settings):
    def use(url: str, key: str = "") -> None:
        settings.ARBITER = {
            **settings.ARBITER,
            "SEARCH_BACKEND": "web",
            "WEB_SEARCH_URL": url,
            "WEB_SEARCH_KEY": key,
        }

    return use


def test_web_search_is_off_by_default():
    assert get_backend().name in {"postgres", "sqlite"}


def test_it_queries_the_service_with_the_key_and_escapes_its_snippets(web_search):
    with local_json_server(lambda request: (200, RESULTS)) as server:
        web_search(f"{server.url}/search?lang=en", key="s3cret")
        hits = search("eiffel tower height", 2)
    [request] = server.requests
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(request.path).query)
    assert query == {"lang": ["en"], "q": ["eiffel tower height"], "k": ["2"]}
    assert request.headers["Authorization"] == "Bearer s3cret"
    assert [hit.title for hit in hits] == ["Eiffel Tower", "Paris"]
    eiffel, paris = hits
    assert eiffel.snippet == (
        "The &lt;b&gt;<mark>Eiffel</mark>&lt;/b&gt; <mark>tower</mark> is 330 m tall &amp; "
        "made of iron."
    )
    assert eiffel.score == 3.5 and eiffel.document_id is None
    assert eiffel.url == "https://en.wikipedia.org/wiki/Eiffel_Tower"
    assert paris.url == ""  # a javascript: URL is never a link


def test_no_key_means_no_authorization_header(web_search):
    with local_json_server(lambda request: (200, {"results": []})) as server:
        web_search(server.url)
        assert search("anything", 5) == []
    assert "Authorization" not in server.requests[0].headers


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        ((500, {"error": "down"}), "did not answer: HTTP Error 500"),
        ((200, {"items": []}), "sent something other than results"),
        ((200, b"not json"), "sent something other than results"),
    ],
)
def test_a_failing_service_raises_search_error(web_search, answer, message):
    with local_json_server(lambda request: answer) as server:
        web_search(server.url)
        with pytest.raises(SearchError, match=message):
            search("anything", 5)


def test_the_api_reports_an_unreachable_service_as_502(web_search, annotator_a):
    with local_json_server(lambda request: (200, RESULTS)) as server:
        dead_url = server.url
    web_search(dead_url)
    response = api_client_for(annotator_a).get("/api/tools/search", {"q": "eiffel"})
    assert response.status_code == 502
    assert response.json()["code"] == "search_failed"


def test_web_hits_are_recorded_as_evidence(web_search, annotator_a, campaign):
    assignment = open_assignment(campaign, annotator_a)
    with local_json_server(lambda request: (200, RESULTS)) as server:
        web_search(server.url)
        response = api_client_for(annotator_a).get(
            "/api/tools/search", {"q": "eiffel", "k": 1, "assignment": assignment.pk}
        )
    assert response.status_code == 200
    assert response.json()["backend"] == "web"
    [evidence] = assignment.evidence.all()
    assert evidence.payload["hits"] == [
        {"id": None, "title": "Eiffel Tower", "source": "https://en.wikipedia.org/wiki/Eiffel_Tower"}
    ]
