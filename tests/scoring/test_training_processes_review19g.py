"""More training processes than a CPU host has cores are refused before anything starts, as
more than its GPUs are on a GPU host (a CPU host took any number up to 64: 64 gloo ranks each
loading a whole model on a 2-core worker)."""

from __future__ import annotations

from pathlib import Path

import pytest

from scoring.jobs.runner import JobError
from scoring.loop.training import training_preflight
from scoring.reward_model import TrainingConfig, build_tiny_reward_model
from scoring.reward_model import devices as reward_devices
from scoring.reward_model.launcher import train_distributed

CONVERSATION = [{"role": "user", "content": "How do I boil an egg?"}]


@pytest.fixture
def two_cpu_host(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    monkeypatch.setattr(reward_devices, "usable_cpus", lambda: 2, raising=False)


@pytest.fixture(scope="module")
def tiny_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_reward_model(tmp_path_factory.mktemp("tiny") / "model")


def test_the_preflight_refuses_more_processes_than_cores(two_cpu_host, tiny_base) -> None:
    params = {"mode": "full", "base_model": str(tiny_base), "processes": 3}
    with pytest.raises(JobError, match="3 processes asked, 2 CPU cores here"):
        training_preflight(params)


def test_the_preflight_takes_one_process_per_core(two_cpu_host, tiny_base) -> None:
    params = {"mode": "full", "base_model": str(tiny_base), "processes": 2}
    assert training_preflight(params) == tiny_base


def test_the_launcher_refuses_before_starting_a_process(
    two_cpu_host, tiny_base, tmp_path, monkeypatch
) -> None:
    def no_launch(*args: object, **kwargs: object) -> None:
        raise AssertionError("a process was started")

    monkeypatch.setattr("subprocess.Popen", no_launch)
    with pytest.raises(ValueError, match="64 processes asked, 2 CPU cores here"):
        train_distributed(
            base_model=tiny_base,
            examples=[(CONVERSATION, "Ten minutes.", "no")],
            config=TrainingConfig(mode="full"),
            processes=64,
            work_root=tmp_path,
        )
