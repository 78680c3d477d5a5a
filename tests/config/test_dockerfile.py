"""The production image's web server serves the app and lets slow requests finish."""

from __future__ import annotations

import json
import re
from pathlib import Path

DOCKERFILE = Path(__file__).resolve().parents[2] / "Dockerfile"


def web_command() -> list[str]:
    lines = [line for line in DOCKERFILE.read_text().splitlines() if line.startswith("CMD ")]
    assert len(lines) == 1, lines
    return json.loads(lines[0].removeprefix("CMD "))


def image_environment() -> dict[str, str]:
    found: dict[str, str] = {}
    for line in DOCKERFILE.read_text().splitlines():
        if line.startswith("ENV "):
            found.update(re.findall(r"(\w+)=(\S+)", line))
    return found


def test_granian_serves_the_wsgi_app():
    command = web_command()
    assert command[:4] == ["granian", "--interface", "wsgi", "config.wsgi:application"]
    assert command[command.index("--port") + 1] == "8000"


def test_a_slow_request_holds_a_thread_and_nothing_cuts_it_short():
    command = web_command()
    environment = image_environment()
    # Asking a model waits up to ARBITER_LLM_TIMEOUT_S on one thread; the worker's other
    # threads go on serving annotators meanwhile.
    assert int(environment["GRANIAN_BLOCKING_THREADS"]) >= 2
    assert int(environment["GRANIAN_WORKERS"]) >= 1
    # No option of Granian's that ends a request early is set (gunicorn's --timeout was one).
    assert not [option for option in command if "timeout" in option]
