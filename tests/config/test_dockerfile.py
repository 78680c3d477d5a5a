"""The production image's web server lets the app's slowest deliberate request finish."""

from __future__ import annotations

import json
from pathlib import Path

from django.conf import settings

DOCKERFILE = Path(__file__).resolve().parents[2] / "Dockerfile"


def gunicorn_command() -> list[str]:
    lines = [line for line in DOCKERFILE.read_text().splitlines() if line.startswith("CMD ")]
    assert len(lines) == 1, lines
    return json.loads(lines[0].removeprefix("CMD "))


def test_gunicorn_outwaits_a_question_to_the_model_and_a_code_run_wait():
    command = gunicorn_command()
    assert command[0] == "gunicorn"
    timeout = float(command[command.index("--timeout") + 1])
    # Past its timeout gunicorn kills a sync worker mid-request and the annotator gets a 502.
    assert timeout > settings.ARBITER["LLM_TIMEOUT_S"] + 10
    assert timeout > settings.ARBITER["CODE_RUN_WAIT_S"] + 10
