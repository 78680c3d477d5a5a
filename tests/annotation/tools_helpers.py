"""Helpers for the annotator-tools tests: an open assignment, and tiny local HTTP servers."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from annotation.models import Assignment
from annotation.services.assignments import assignment_next
from tests.factories import PairFactory


def open_assignment(campaign, annotator, **pair_fields) -> Assignment:  # noqa: ANN001
    PairFactory(campaign=campaign, **pair_fields)
    assignment = assignment_next(campaign=campaign, annotator=annotator)
    assert assignment is not None
    return assignment


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: Any


@dataclass
class LocalServer:
    url: str
    requests: list[Recorded] = field(default_factory=list)


# A handler answers (status, JSON-able body) for a recorded request.
Handler = Callable[[Recorded], tuple[int, Any]]


@contextmanager
def local_json_server(handler: Handler) -> Iterator[LocalServer]:
    """An HTTP server on 127.0.0.1 in a thread, answering JSON from `handler`."""
    server_state = LocalServer(url="")

    class RequestHandler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            try:
                body = json.loads(raw) if raw else None
            except ValueError:
                body = raw
            recorded = Recorded(self.command, self.path, dict(self.headers.items()), body)
            server_state.requests.append(recorded)
            status, payload = handler(recorded)
            data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = _answer
        do_POST = _answer

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), RequestHandler)
    server_state.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server_state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
