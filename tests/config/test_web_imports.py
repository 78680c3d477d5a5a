"""A web worker's URL conf loads no model libraries (issue #12's throughput check).

Each Granian worker loads the URL conf on its first request. Since session 5 that pulled in torch
and transformers (through scoring.loop.training_fields -> scoring.reward_model) and datasketch:
about 4.6 s of CPU per worker before its first answer (0.4 s at session 4's commit), 32 s of
stalled `next` calls at the start of a benchmark run under load, and some 2,700 more modules
in every worker's heap. Web processes never score or train; workers load the model themselves.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.conftest import REPO_ROOT

MODEL_LIBRARIES = ("torch", "transformers", "datasketch")

LOAD_URL_CONF = """
import json, sys
import django
django.setup()
from django.urls import get_resolver
resolver = get_resolver()
resolver.url_patterns  # imports every views and api module the URL conf names
print(json.dumps(sorted(name for name in sys.argv[1:] if name in sys.modules)))
"""


def loaded_by_url_conf(*libraries: str) -> list[str]:
    """Which of the libraries a fresh process has imported once the URL conf is loaded."""
    result = subprocess.run(
        [sys.executable, "-c", LOAD_URL_CONF, *libraries],
        cwd=REPO_ROOT,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings"},
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_the_probe_sees_a_library_the_url_conf_does_load():
    # Without this, an empty answer could mean the probe is blind rather than the conf clean.
    assert loaded_by_url_conf("rest_framework") == ["rest_framework"]


def test_loading_the_url_conf_imports_no_model_library():
    assert loaded_by_url_conf(*MODEL_LIBRARIES) == []
