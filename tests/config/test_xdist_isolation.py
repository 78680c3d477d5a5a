"""tests.xdist_isolation: each pytest-xdist worker gets Redis databases and a var directory of
its own; and, in a run under xdist, the settings really are the worker's (the plugin ran before
pytest-django read them)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from django.conf import settings

from tests.conftest import FileGroupScheduling
from tests.xdist_isolation import (
    shifted_redis_url,
    thread_environment,
    worker_environment,
    worker_number,
)

REPO = Path("/repo")


def test_it_moves_the_broker_and_cache_databases_two_up_per_worker():
    environ = {
        "ARBITER_VAR_DIR": "/repo/var/test",
        "CELERY_BROKER_URL": "redis://127.0.0.1:6379/12",
        "CACHE_URL": "redis://127.0.0.1:6379/13",
    }
    first = worker_environment(environ, "gw0", REPO)
    second = worker_environment(environ, "gw1", REPO)

    assert first == {
        "ARBITER_VAR_DIR": "/repo/var/test/gw0",
        "CELERY_BROKER_URL": "redis://127.0.0.1:6379/12",
        "CACHE_URL": "redis://127.0.0.1:6379/13",
    }
    assert second == {
        "ARBITER_VAR_DIR": "/repo/var/test/gw1",
        "CELERY_BROKER_URL": "redis://127.0.0.1:6379/14",
        "CACHE_URL": "redis://127.0.0.1:6379/15",
    }


def test_it_keeps_credentials_and_options_and_reads_a_missing_database_as_zero():
    assert shifted_redis_url("redis://:secret@cache:6379/3?timeout=5", 4) == (
        "redis://:secret@cache:6379/7?timeout=5"
    )
    assert shifted_redis_url("rediss://cache:6380", 2) == "rediss://cache:6380/2"


def test_it_leaves_a_file_system_broker_to_the_worker_own_var_directory():
    changed = worker_environment({"CELERY_BROKER_URL": "filesystem://"}, "gw3", REPO)

    assert changed == {"ARBITER_VAR_DIR": "/repo/var/gw3", "CELERY_BROKER_URL": "filesystem://"}


def test_it_moves_paths_set_outside_the_var_directory_too():
    changed = worker_environment(
        {"ARBITER_VAR_DIR": "/v", "ARBITER_MODEL_DIR": "/models", "MEDIA_ROOT": "/media"},
        "gw1",
        REPO,
    )

    assert changed == {
        "ARBITER_VAR_DIR": "/v/gw1",
        "ARBITER_MODEL_DIR": "/models/gw1",
        "MEDIA_ROOT": "/media/gw1",
    }


def test_it_refuses_what_it_cannot_separate():
    with pytest.raises(ValueError, match="worker id"):
        worker_number("master")
    with pytest.raises(ValueError, match="their own databases"):
        shifted_redis_url("redis://127.0.0.1:6379/cache", 2)


def test_a_worker_takes_a_test_file_whole_and_all_of_tests_faults_as_one():
    split = FileGroupScheduling.__new__(FileGroupScheduling)._split_scope

    assert split("tests/scoring/test_a.py::test_one") == "tests/scoring/test_a.py"
    assert split("tests/scoring/test_a.py::Class::test_two[x::y]") == "tests/scoring/test_a.py"
    assert split("tests/faults/test_outage.py::test_one") == "tests/faults/"
    assert split("tests/faults/sub/test_other.py::test_two") == "tests/faults/"


def test_each_worker_gets_its_share_of_the_cpus_as_threads_unless_set():
    assert thread_environment({"PYTEST_XDIST_WORKER_COUNT": "2"}, cpus=2) == {
        "OMP_NUM_THREADS": "1"
    }
    assert thread_environment({"PYTEST_XDIST_WORKER_COUNT": "2"}, cpus=16) == {
        "OMP_NUM_THREADS": "8"
    }
    assert thread_environment({"PYTEST_XDIST_WORKER_COUNT": "4"}, cpus=2) == {
        "OMP_NUM_THREADS": "1"
    }
    assert thread_environment({"PYTEST_XDIST_WORKER_COUNT": "2", "OMP_NUM_THREADS": "3"}, 2) == {}


def test_the_settings_of_this_run_are_this_worker_own():
    worker_id = os.environ.get("PYTEST_XDIST_WORKER")
    if worker_id is None:  # a serial run: nothing moved
        assert not Path(settings.VAR_DIR).name.startswith("gw")
        return
    # Had pytest-django read the settings before the plugin changed the environment, they
    # would hold the run's shared values, not the ones moved for this worker.
    assert Path(settings.VAR_DIR).name == worker_id
    assert settings.CELERY_BROKER_URL == os.environ["CELERY_BROKER_URL"]
    cache = settings.CACHES["default"]
    assert cache["LOCATION"] == os.environ.get("CACHE_URL", str(Path(settings.VAR_DIR) / "cache"))
    # torch read the thread count set for this worker (the plugin ran before torch was imported)
    import torch

    assert torch.get_num_threads() == int(os.environ["OMP_NUM_THREADS"])
