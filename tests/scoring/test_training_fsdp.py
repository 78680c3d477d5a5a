"""Full fine-tuning sharded with FSDP2 over two processes (torchrun, gloo), launched from a real
Celery worker by ``train_reward_model --strategy fsdp``: it steps like one unsharded process with
the same global batch, and rank 0's checkpoint is a whole model transformers loads."""

from __future__ import annotations

import io
import json
import shutil

import pytest
import torch
from django.conf import settings
from django.core.management import call_command
from transformers import AutoModelForSequenceClassification

from scoring.jobs.runner import JobError
from scoring.loop.params import CrossValidateParams, TrainParams
from scoring.models import Job, ModelVersion
from scoring.reward_model import (
    RewardModel,
    TrainingConfig,
    build_tiny_decoder_base,
    build_tiny_reward_model,
    train,
)
from scoring.reward_model.packed_training import shardable_layers
from tests.scoring.loop_support import (
    campaign_models_dir,
    learnable_campaign,
    train_in_this_process,
    use_tiny_base,
)

FULL = {"mode": "full", "epochs": 2, "learning_rate": 1e-3, "token_budget": 256, "seed": 0}


@pytest.mark.worker
@pytest.mark.slow  # about a minute: torch starts in every launched process
@pytest.mark.skipif(
    not settings.CELERY_BROKER_URL.startswith("redis"), reason="needs the Redis broker"
)
def test_fsdp_over_two_processes_trains_like_one_process_with_the_same_global_batch(
    worker, settings, tmp_path
):
    use_tiny_base(settings)
    # A decoder, the kind FSDP is for: its Qwen3 layers are sharded one by one.
    base = build_tiny_decoder_base(tmp_path / "decoder")
    campaign = learnable_campaign(train=48, gold=16)
    try:
        # One process, no process group, accumulating two micro-batches per step.
        one = train_in_this_process(
            campaign=campaign,
            params={**FULL, "base_model": str(base), "gradient_accumulation_steps": 2},
        )
        assert one.metrics["training"]["strategy"] == "ddp"

        out = io.StringIO()
        options = (
            "--mode full --processes 2 --strategy fsdp --epochs 2 --learning-rate 1e-3 "
            "--token-budget 256 --wait --timeout 300"
        )
        call_command(
            "train_reward_model",
            "--campaign",
            campaign.name,
            "--base-model",
            str(base),
            *options.split(),
            stdout=out,
            stderr=io.StringIO(),
        )
        summary = json.loads(out.getvalue().strip().splitlines()[-1])
        assert summary["status"] == "succeeded", summary
        assert summary["world_size"] == 2 and summary["strategy"] == "fsdp"
        two = ModelVersion.objects.get(campaign=campaign, number=2)
        job = Job.objects.get(pk=summary["job"])
        assert any(
            "launching 2 training processes (torchrun, cpu, fsdp)" in line.message
            for line in job.log_lines.all()
        )

        sharded, whole = two.metrics["training"], one.metrics["training"]
        assert sharded["world_size"] == 2 and sharded["strategy"] == "fsdp"
        assert sharded["steps"] == whole["steps"] >= 6
        # Same plan, same global batches, float32 on the CPU: the runs differ only in the order
        # gradients are summed (a gloo reduce-scatter of two halves against one process adding
        # two micro-batches), about 1e-7 relative per step. Over these steps that stays far
        # below 1e-4; a wrong sharding, a gradient scaled by the world size or a clip over one
        # shard's norm would move the loss by 1e-2 or more within two steps.
        for ours, theirs in zip(sharded["loss_curve"], whole["loss_curve"], strict=True):
            assert abs(ours - theirs) < 1e-4
        assert sharded["final_loss"] < sharded["initial_loss"]

        # Rank 0 wrote whole (unsharded) weights: transformers loads them, and they score the
        # held-out pairs as the one-process model does, to the same float rounding.
        texts = [
            (pair.conversation, pair.response_a)
            for pair in campaign.pairs.filter(is_gold=True).order_by("id")
        ]
        reader = RewardModel.load(two.checkpoint, device="cpu")
        input_ids = reader.encode(texts).input_ids
        rewards = {}
        for name, version in (("sharded", two), ("whole", one)):
            loaded = AutoModelForSequenceClassification.from_pretrained(version.checkpoint)
            with torch.no_grad():
                rewards[name] = torch.tensor(
                    [float(loaded(input_ids=torch.tensor([ids])).logits[0, 0]) for ids in input_ids]
                )
        assert torch.allclose(rewards["sharded"], rewards["whole"], atol=1e-4)
        assert rewards["sharded"].std() > 1e-3  # the rewards say something
        assert abs(two.heldout_accuracy - one.heldout_accuracy) <= 1 / 16
    finally:
        shutil.rmtree(campaign_models_dir(campaign), ignore_errors=True)


def test_fsdp_outside_a_process_group_is_refused_before_any_work(tmp_path):
    model = RewardModel.from_base(build_tiny_decoder_base(tmp_path / "decoder"), device="cpu")
    with pytest.raises(ValueError, match="FSDP needs a process group"):
        train(
            model,
            [([{"role": "user", "content": "hi"}], "hello there", "go away")],
            TrainingConfig(mode="full", strategy="fsdp"),
        )
    with pytest.raises(ValueError, match="only in full mode"):
        TrainingConfig(mode="head", strategy="fsdp")


def test_fsdp_shards_each_encoder_or_decoder_layer_on_its_own(tmp_path):
    decoder = RewardModel.from_base(build_tiny_decoder_base(tmp_path / "decoder"), device="cpu")
    encoder = RewardModel.load(build_tiny_reward_model(tmp_path / "encoder"), device="cpu")
    assert shardable_layers(decoder.model) == list(decoder.model.model.layers)
    assert shardable_layers(encoder.model) == list(encoder.model.bert.encoder.layer)
    assert len(shardable_layers(decoder.model)) == 2


def test_job_parameters_take_fsdp_only_where_it_can_run():
    assert TrainParams(mode="full", strategy="fsdp").training_config().strategy == "fsdp"
    assert TrainParams(mode="full").training_config().strategy == "ddp"
    with pytest.raises(JobError, match="fsdp trains only in full mode"):
        TrainParams(mode="head", strategy="fsdp")
    with pytest.raises(JobError, match="strategy must be one of ddp, fsdp"):
        TrainParams(mode="full", strategy="zero3")
    # Cross-validation trains its folds in the worker's own process, where FSDP cannot run.
    with pytest.raises(JobError, match="without FSDP"):
        CrossValidateParams(mode="full", strategy="fsdp")
