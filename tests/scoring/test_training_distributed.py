"""Full fine-tuning as several processes (torchrun, DDP on gloo) launched from a real Celery
worker, with the job row as the one truth: progress, the result's world_size, a checkpoint that
transformers loads, held-out accuracy as a one-process run with the same global batch; and a
kill -9 of the worker mid-training kills every launched process and keeps the old version."""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import time
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import call_command
from transformers import AutoModelForSequenceClassification

from scoring.loop.model_jobs import job_run_inline
from scoring.loop.requests import training_request
from scoring.models import Job, ModelVersion
from tests.conftest import start_worker, stop_worker, wait_for
from tests.scoring.loop_support import (
    campaign_models_dir,
    learnable_campaign,
    train_in_this_process,
    use_tiny_base,
)

pytestmark = [
    pytest.mark.worker,
    pytest.mark.slow,  # a minute or two: torch starts in every launched process
    pytest.mark.skipif(
        not settings.CELERY_BROKER_URL.startswith("redis"), reason="needs the Redis broker"
    ),
]

def _descendants(root: int) -> set[int]:
    """Pids of every live process below ``root`` (read from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(entry.name))
    found: set[int] = set()
    stack = [root]
    while stack:
        for child in children.get(stack.pop(), []):
            found.add(child)
            stack.append(child)
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


FULL = {"mode": "full", "epochs": 4, "learning_rate": 1e-3, "token_budget": 256, "seed": 0}


def test_two_processes_train_like_one_with_the_same_global_batch(worker, settings, tmp_path):
    base = use_tiny_base(settings)
    campaign = learnable_campaign(train=48, gold=16)
    try:
        # One process accumulating two micro-batches per step: the same global batch.
        one = train_in_this_process(
            campaign=campaign,
            params={**FULL, "base_model": str(base), "gradient_accumulation_steps": 2},
        )
        assert one.metrics["training"]["world_size"] == 1

        out = io.StringIO()
        call_command(
            "train_reward_model", "--campaign", campaign.name, "--mode", "full",
            "--base-model", str(base), "--processes", "2", "--epochs", "4",
            "--learning-rate", "1e-3", "--token-budget", "256", "--wait", "--timeout", "300",
            stdout=out, stderr=io.StringIO(),
        )
        summary = json.loads(out.getvalue().strip().splitlines()[-1])
        assert summary["status"] == "succeeded" and summary["world_size"] == 2
        two = ModelVersion.objects.get(campaign=campaign, number=2)
        assert two.is_active and summary["version"] == 2
        job = Job.objects.get(pk=summary["job"])
        messages = [line.message for line in job.log_lines.all()]
        assert any("launching 2 training processes" in message for message in messages)
        assert messages[-1] == "succeeded"

        trained = two.metrics["training"]
        assert trained["world_size"] == 2 and trained["packing"] is True
        assert trained["steps"] == one.metrics["training"]["steps"]
        # Same plan, same global batches: the loss curves agree to float rounding.
        for ours, theirs in zip(
            trained["loss_curve"], one.metrics["training"]["loss_curve"], strict=True
        ):
            assert abs(ours - theirs) < 1e-3
        assert trained["final_loss"] < trained["initial_loss"]
        assert abs(two.heldout_accuracy - one.heldout_accuracy) <= 2 / 16
        assert two.heldout_accuracy > 0.5

        loaded = AutoModelForSequenceClassification.from_pretrained(two.checkpoint)
        assert loaded.config.num_labels == 1
    finally:
        shutil.rmtree(campaign_models_dir(campaign), ignore_errors=True)


KILL_QUEUE = "gpu-kill-distributed-test"


def test_kill_9_of_the_worker_kills_every_training_process_and_keeps_the_old_model(
    transactional_db, settings, tmp_path
):
    base = use_tiny_base(settings)
    campaign = learnable_campaign(train=48, gold=4)
    worker = None
    try:
        first = job_run_inline(
            job=training_request(campaign=campaign, params={"mode": "head"}, enqueue=False)
        )
        assert first.status == Job.Status.SUCCEEDED, first.error
        previous = ModelVersion.objects.get(campaign=campaign, is_active=True)

        worker = start_worker(queues=KILL_QUEUE, concurrency=1, name="kill-distributed")
        job = training_request(
            campaign=campaign,
            params={**FULL, "epochs": 200, "base_model": str(base), "processes": 2},
            queue=KILL_QUEUE,
        )
        wait_for(
            lambda: Job.objects.filter(pk=job.pk, message__startswith="step").exists(),
            timeout=240,
            what="training steps from the launched processes",
        )
        launched = _descendants(worker.pid)
        # The worker's pool process, torchrun's agent and two ranks (at least).
        assert len(launched) >= 4, launched
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait(timeout=10)
        wait_for(
            lambda: not any(_alive(pid) for pid in launched),
            timeout=30,
            what="every launched training process to die with the worker",
        )
        job.refresh_from_db()
        assert job.status == Job.Status.RUNNING  # orphaned until a worker takes it over
        assert ModelVersion.objects.get(campaign=campaign, is_active=True) == previous
        assert ModelVersion.objects.filter(campaign=campaign).count() == 1
        assert not (campaign_models_dir(campaign) / "v2").exists()
        # No staging directory holds a half-written checkpoint either.
        leftovers = [path.name for path in campaign_models_dir(campaign).iterdir()]
        assert leftovers == ["v1"], leftovers
    finally:
        if worker is not None:
            stop_worker(worker, sig=signal.SIGKILL)
        time.sleep(0.5)
        shutil.rmtree(campaign_models_dir(campaign), ignore_errors=True)


@pytest.mark.parametrize("strategy", ["ddp", "fsdp"])
def test_a_stop_request_kills_the_whole_launched_process_group(tmp_path, strategy):
    from scoring.reward_model import TrainingConfig
    from scoring.reward_model.launcher import DistributedTrainingCancelled, train_distributed
    from tests.scoring.loop_support import tiny_base_dir
    from tests.scoring.test_reward_model import synthetic_pairs

    launched: set[int] = set()
    # Processes this test process already had (a session Celery worker, a browser) are not ours.
    before = _descendants(os.getpid())
    steps: list[str] = []

    def on_progress(fraction: float, message: str) -> None:
        if message.startswith("step "):
            steps.append(message)
            launched.update(_descendants(os.getpid()) - before)

    with pytest.raises(DistributedTrainingCancelled):
        train_distributed(
            base_model=tiny_base_dir(),
            examples=synthetic_pairs(32, seed=1),
            config=TrainingConfig(mode="full", epochs=500, token_budget=256, strategy=strategy),
            processes=2,
            on_progress=on_progress,
            should_stop=lambda: len(steps) >= 2,
            work_root=tmp_path,
        )
    # The exec shim became torchrun's agent; it and both ranks were running, and are gone.
    assert len(launched) >= 3, launched
    wait_for(
        lambda: not any(_alive(pid) for pid in launched), timeout=30, what="no process left"
    )
    assert list(tmp_path.iterdir()) == []  # the work directory went with them
