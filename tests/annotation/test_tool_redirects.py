"""The web-search and model clients never carry their bearer key to another origin: a redirect
there is refused and nothing reaches the other host; a redirect within the origin is followed."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from annotation.tools.llm import LlmUnavailable, chat
from annotation.tools.search import SearchError
from annotation.tools.search_web import WebSearchBackend

KEY = "secret-bearer-key"
RESULTS = {"results": [{"title": "t", "snippet": "s", "url": "https://example.org"}]}
COMPLETION = {"model": "m", "choices": [{"message": {"content": "an answer"}}]}


@contextmanager
def _server(answer) -> Iterator[tuple[str, list[dict[str, str]]]]:  # noqa: ANN001
    """A loopback server; `answer(path)` gives (status, headers, body). Records each request's
    path and headers."""
    seen: list[dict[str, str]] = []

    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            seen.append({"path": self.path, **{k.lower(): v for k, v in self.headers.items()}})
            status, headers, body = answer(self.path)
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = _answer
        do_POST = _answer

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", seen
    finally:
        server.shutdown()
        server.server_close()


def _json(payload: dict) -> tuple[int, dict[str, str], bytes]:
    return 200, {"Content-Type": "application/json"}, json.dumps(payload).encode()


@pytest.mark.parametrize("status", [301, 302, 307, 308])
def test_web_search_refuses_a_redirect_to_another_origin_and_sends_it_nothing(status):
    with _server(lambda path: _json(RESULTS)) as (elsewhere, seen_elsewhere):
        with _server(lambda path: (status, {"Location": f"{elsewhere}/steal"}, b"")) as (
            configured,
            _,
        ):
            backend = WebSearchBackend(url=f"{configured}/search", key=KEY)
            with pytest.raises(SearchError, match="redirected elsewhere"):
                backend.search("query", 5)
    assert seen_elsewhere == []


def test_web_search_follows_a_redirect_within_its_origin():
    def answer(path: str):
        if path.startswith("/old"):
            return 302, {"Location": "/new?q=query&k=5"}, b""
        return _json(RESULTS)

    with _server(answer) as (configured, seen):
        hits = WebSearchBackend(url=f"{configured}/old", key=KEY).search("query", 5)
    assert [hit.title for hit in hits] == ["t"]
    assert seen[-1]["path"].startswith("/new") and seen[-1]["authorization"] == f"Bearer {KEY}"


@pytest.mark.parametrize("status", [302, 307])
def test_the_model_client_refuses_a_redirect_to_another_origin(status):
    with _server(lambda path: _json(COMPLETION)) as (elsewhere, seen_elsewhere):
        moved = {"Location": f"{elsewhere}/v1/chat/completions"}
        with _server(lambda path: (status, moved, b"")) as (configured, _):
            with pytest.raises(LlmUnavailable, match="redirected elsewhere"):
                chat(base_url=f"{configured}/v1", model="m", messages=[], key=KEY)
    assert seen_elsewhere == []
