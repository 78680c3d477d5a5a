"""The LLM and web-search clients against an upstream that is misconfigured, broken or slow.

Every failure of the upstream reaches the annotator as the tool's own error (LLM: 503
tool_unavailable, search: 502 search_failed, the panel shows the message), never a 500; the
timeout bounds the whole call, not each socket read; web search holds a bounded number of
server threads at once, as the LLM does.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from django.test import Client

from annotation.tools import search_web
from annotation.tools.llm import LlmUnavailable, chat
from annotation.tools.search_hits import SearchError
from annotation.tools.search_web import WebSearchBackend
from tests.annotation.tools_helpers import local_json_server, open_assignment
from tests.conftest import api_client_for, start_in_thread, wait_for

BAD_PORT = "http://127.0.0.1:80a"  # a typo in the port: http.client raises InvalidURL
NOT_HTTP = b"-ERR unknown command\r\n"  # e.g. the URL points at Redis by mistake
SSH_BANNER = b"SSH-2.0-OpenSSH_9.6\r\n"
BROKEN_CHUNKED = (
    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
    b"Transfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n"
)
COMPLETION = (
    b'{"model": "m", "choices": [{"message": {"role": "assistant", "content": "B is wrong."}}]}'
)


@contextmanager
def raw_server(
    reply: bytes | None = None,
    *,
    pieces: list[bytes] | None = None,
    pause_s: float = 0.0,
    trickle_s: float = 0.0,
) -> Iterator[str]:
    """A TCP server on 127.0.0.1 that reads a request, then answers every connection with
    `reply`; or sends `pieces` `pause_s` apart; or sends headers, then one byte every 0.25 s
    for `trickle_s` seconds."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    stop = threading.Event()

    def answer(conn: socket.socket) -> None:
        conn.recv(65536)
        if reply is not None:
            conn.sendall(reply)
        for piece in pieces or []:
            conn.sendall(piece)
            time.sleep(pause_s)
        if trickle_s:
            conn.sendall(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                b"Content-Length: 100000\r\n\r\n"
            )
            end = time.monotonic() + trickle_s
            while time.monotonic() < end and not stop.is_set():
                conn.sendall(b" ")
                time.sleep(0.25)

    def serve() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with conn:
                conn.settimeout(5)
                try:
                    answer(conn)
                except OSError:
                    pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stop.set()
        listener.close()
        thread.join(5)


def _use_llm(settings, url: str) -> None:
    settings.ARBITER = {**settings.ARBITER, "LLM_URL": url, "LLM_MODEL": "m"}


def _use_web_search(settings, url: str) -> None:
    settings.ARBITER = {**settings.ARBITER, "SEARCH_BACKEND": "web", "WEB_SEARCH_URL": url}


def _page_client(user) -> Client:  # noqa: ANN001
    client = Client(raise_request_exception=False)
    client.force_login(user)
    return client


# --- failures of the upstream -------------------------------------------------------------------


@contextmanager
def _upstream(kind: str) -> Iterator[str]:
    if kind == "bad port":
        yield BAD_PORT
        return
    replies = {"not http": NOT_HTTP, "ssh banner": SSH_BANNER, "broken chunked": BROKEN_CHUNKED}
    with raw_server(replies[kind]) as url:
        yield url


UPSTREAM_FAILURES = ["bad port", "not http", "ssh banner", "broken chunked"]


@pytest.mark.django_db
@pytest.mark.parametrize("kind", UPSTREAM_FAILURES)
def test_a_broken_model_endpoint_answers_503_tool_unavailable_on_the_api(
    settings, campaign, annotator_a, kind
):
    assignment = open_assignment(campaign, annotator_a)
    client = api_client_for(annotator_a)
    client.raise_request_exception = False
    with _upstream(kind) as url:
        _use_llm(settings, f"{url}/v1")
        response = client.post(
            "/api/tools/llm",
            {"assignment": assignment.pk, "question": "is A right?"},
            format="json",
        )
    assert response.status_code == 503, (response.status_code, response.content[:300])
    assert response.json()["code"] == "tool_unavailable"
    assert "model endpoint" in response.json()["detail"]


@pytest.mark.django_db
@pytest.mark.parametrize("kind", UPSTREAM_FAILURES)
def test_a_broken_model_endpoint_is_shown_in_the_panel(settings, campaign, annotator_a, kind):
    assignment = open_assignment(campaign, annotator_a)
    with _upstream(kind) as url:
        _use_llm(settings, f"{url}/v1")
        response = _page_client(annotator_a).post(
            "/tools/llm", {"assignment": assignment.pk, "question": "q"}, HTTP_HX_REQUEST="true"
        )
    assert response.status_code == 200, response.content[:300]
    assert 'class="alert"' in response.content.decode()
    assert "model endpoint" in response.content.decode()


@pytest.mark.django_db
@pytest.mark.parametrize("kind", UPSTREAM_FAILURES)
def test_a_broken_web_search_service_answers_502_search_failed_on_the_api(
    settings, annotator_a, kind
):
    client = api_client_for(annotator_a)
    client.raise_request_exception = False
    with _upstream(kind) as url:
        _use_web_search(settings, f"{url}/search")
        response = client.get("/api/tools/search", {"q": "eiffel tower"})
    assert response.status_code == 502, (response.status_code, response.content[:300])
    assert response.json()["code"] == "search_failed"
    assert "web-search service" in response.json()["detail"]


@pytest.mark.django_db
@pytest.mark.parametrize("kind", UPSTREAM_FAILURES)
def test_a_broken_web_search_service_is_shown_in_the_panel(settings, annotator_a, kind):
    with _upstream(kind) as url:
        _use_web_search(settings, f"{url}/search")
        response = _page_client(annotator_a).get(
            "/tools/search", {"q": "eiffel tower"}, HTTP_HX_REQUEST="true"
        )
    assert response.status_code == 200, response.content[:300]
    assert 'class="alert"' in response.content.decode()
    assert "web-search service" in response.content.decode()


# --- the timeout bounds the call ----------------------------------------------------------------


def test_the_llm_timeout_bounds_a_trickled_answer():
    with raw_server(trickle_s=8) as url:
        started = time.monotonic()
        with pytest.raises(LlmUnavailable, match="within 1 s"):
            chat(base_url=f"{url}/v1", model="m", messages=[], timeout_s=1.0)
        took = time.monotonic() - started
    assert took < 2, f"a 1 s timeout held the call {took:.1f} s"


def test_the_web_search_timeout_bounds_a_trickled_answer():
    with raw_server(trickle_s=8) as url:
        backend = WebSearchBackend(url=f"{url}/search", timeout_s=1.0)
        started = time.monotonic()
        with pytest.raises(SearchError, match="within 1 s"):
            backend.search("eiffel", 5)
        took = time.monotonic() - started
    assert took < 2, f"a 1 s timeout held the call {took:.1f} s"


def test_an_answer_in_several_pieces_within_the_timeout_is_read_whole():
    head = (
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
        + f"Content-Length: {len(COMPLETION)}\r\n\r\n".encode()
    )
    pieces = [head, COMPLETION[:10], COMPLETION[10:40], COMPLETION[40:]]
    with raw_server(pieces=pieces, pause_s=0.1) as url:
        answer = chat(base_url=f"{url}/v1", model="m", messages=[], timeout_s=5.0)
    assert answer.answer == "B is wrong."


def test_a_chunked_answer_is_read_whole():
    results = b'{"results": [{"title": "Eiffel Tower", "snippet": "330 m", "url": ""}]}'
    pieces = [
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n",
        f"{20:x}\r\n".encode() + results[:20] + b"\r\n",
        f"{len(results) - 20:x}\r\n".encode() + results[20:] + b"\r\n",
        b"0\r\n\r\n",
    ]
    with raw_server(pieces=pieces, pause_s=0.05) as url:
        hits = WebSearchBackend(url=f"{url}/search", timeout_s=5.0).search("eiffel", 5)
    assert [hit.title for hit in hits] == ["Eiffel Tower"]


# --- concurrent web searches --------------------------------------------------------------------


def test_web_searches_past_the_cap_are_refused_while_others_wait_on_the_service():
    release = threading.Event()

    def slow_results(request):  # noqa: ANN001
        release.wait(timeout=30)
        return 200, {"results": [{"title": "Eiffel Tower", "snippet": "330 m", "url": ""}]}

    cap = search_web.CONCURRENT_SEARCHES
    with local_json_server(slow_results) as server:
        backend = WebSearchBackend(url=f"{server.url}/search")
        waiting = [start_in_thread(lambda: backend.search("eiffel", 5)) for _ in range(cap)]
        try:
            wait_for(
                lambda: len(server.requests) == cap,
                timeout=30,
                interval=0.01,
                what="the searches that fill the cap",
            )
            started = time.monotonic()
            with pytest.raises(SearchError, match="search again in a moment"):
                backend.search("eiffel", 5)
            # Refused after a short wait, not queued behind the stuck searches.
            assert time.monotonic() - started < search_web.SLOT_WAIT_S + 1
            assert len(server.requests) == cap
            assert not any(search.done() for search in waiting)
        finally:
            release.set()
        for search in waiting:
            assert [hit.title for hit in search.result(timeout=30)] == ["Eiffel Tower"]
        # The slots are free again once the answers are in.
        assert [hit.title for hit in backend.search("eiffel", 5)] == ["Eiffel Tower"]
