"""Full fine-tuning through TRL's ``RewardTrainer`` on padded, length-grouped batches: the path
for ``packing=False`` and for architectures :func:`.packing.supports_packing` does not know.

See :mod:`.training` for the modes.
"""

from __future__ import annotations

import dataclasses
import tempfile
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from transformers import (
    PrinterCallback,
    TrainerCallback,
    TrainerControl,
    TrainerState,
    TrainingArguments,
)

from .devices import training_bf16
from .model import RewardModel
from .training_types import (
    PreparedPairs,
    ProgressCallback,
    StopCheck,
    TrainingConfig,
    TrainingMetrics,
    check_finite,
    loss_summary,
)


def _preference_dataset(pairs: PreparedPairs) -> Any:
    """TRL's preference columns (token ids of each side, a length to group by, margins)."""
    from datasets import Dataset  # seconds to import; only this mode needs it

    columns: dict[str, list[Any]] = {
        # Lists of Python ints, as datasets takes them: this padded path is the baseline that
        # benchmarks compare with, not the one jobs run at scale (they pack).
        "chosen_ids": list(pairs.chosen_ids),
        "rejected_ids": list(pairs.rejected_ids),
        "length": np.maximum(pairs.chosen_ids.lengths(), pairs.rejected_ids.lengths()).tolist(),
    }
    if pairs.margins is not None:
        # TRL's loss becomes −log σ(r_chosen − r_rejected − margin).
        columns["margin"] = pairs.margins
    return Dataset.from_dict(columns)


def train_with_trl(
    model: RewardModel,
    pairs: PreparedPairs,
    config: TrainingConfig,
    report: ProgressCallback,
    stop_requested: StopCheck,
) -> TrainingMetrics:
    # Imported here: TRL takes seconds to import and only this mode needs it.
    from trl import RewardTrainer
    from trl.trainer.reward_trainer import DataCollatorForPreference

    dataset = _preference_dataset(pairs)
    collator = _CountingCollator(
        DataCollatorForPreference(pad_token_id=model.tokenizer.pad_token_id)
    )
    callback = _ProgressCallback(report, stop_requested)
    with tempfile.TemporaryDirectory(prefix="reward-trainer-") as output_dir:
        reward_config = _reward_config(config, model.device, output_dir)
        # Scored later the way it was trained: bf16 autocast on a GPU (a CPU scores in float32).
        model.precision = "bf16" if reward_config.bf16 else "float32"
        trainer = RewardTrainer(
            model=model.model,
            args=reward_config,
            train_dataset=dataset,
            processing_class=model.tokenizer,
            data_collator=collator,
            callbacks=[callback],
        )
        # Progress goes to on_progress; the default printer would dump every step to stdout.
        trainer.remove_callback(PrinterCallback)
        train_started = time.perf_counter()
        trainer.train()
        train_seconds = time.perf_counter() - (callback.steps_started or train_started)
        trained = trainer.accelerator.unwrap_model(trainer.model)
        steps = trainer.state.global_step
        del trainer
    pairs_trained, tokens, slots = collator.trained(steps * config.gradient_accumulation_steps)
    model.model = trained
    model.model.eval()
    model.device = next(trained.parameters()).device
    if model.device.type == "cuda":
        torch.cuda.empty_cache()
    return TrainingMetrics(
        mode="full",
        device=str(model.device),
        pairs=len(pairs.kept),
        truncated=pairs.truncated,
        dropped=pairs.dropped,
        steps=steps,
        **loss_summary(callback.losses),
        seconds=0.0,
        pairs_per_second=pairs_trained / max(train_seconds, 1e-9),
        tokens=tokens,
        tokens_per_second=tokens / max(train_seconds, 1e-9),
        cancelled=callback.cancelled,
        phase_seconds={"train": train_seconds},
        padding_share=1.0 - tokens / max(slots, 1),
        packing=False,
        precision=model.precision,
    )


def _reward_config(config: TrainingConfig, device: torch.device, output_dir: str) -> Any:
    from trl import RewardConfig

    available = {config_field.name for config_field in dataclasses.fields(RewardConfig)}
    use_bf16 = training_bf16(config.bf16, device)
    options: dict[str, Any] = {
        "output_dir": output_dir,
        "per_device_train_batch_size": config.batch_size,
        "gradient_accumulation_steps": config.gradient_accumulation_steps,
        "learning_rate": config.learning_rate,
        "weight_decay": config.weight_decay,
        "optim": "adamw_torch",
        "lr_scheduler_type": "linear",
        "num_train_epochs": config.epochs,
        "max_steps": config.max_steps if config.max_steps is not None else -1,
        "logging_strategy": "steps",
        "logging_steps": 1,
        # The Trainer logs a NaN or infinite step's loss as the mean of the finite ones by
        # default, which would hide a divergence from the check in _ProgressCallback.
        "logging_nan_inf_filter": False,
        "save_strategy": "no",
        "report_to": "none",
        "disable_tqdm": True,
        "seed": config.seed,
        "data_seed": config.seed,
        # TRL's default is bf16=True on any CPU; we autocast where the hardware has bf16.
        "bf16": use_bf16,
        "fp16": False,
        "use_cpu": device.type != "cuda",
        # Sequences are already cut from the left to max_length; TRL would only drop them.
        "max_length": None,
        "center_rewards_coefficient": config.center_rewards_coefficient,
        # Keeps our "length" column for the length-grouped sampler; the collator ignores it.
        "remove_unused_columns": False,
        "length_column_name": "length",
        "dataloader_num_workers": 0,
        "dataloader_pin_memory": device.type == "cuda",
    }
    # It also folded warmup_ratio into a fractional warmup_steps and group_by_length into
    # train_sampling_strategy; older releases have the former names.
    # transformers 5 renamed gradient_checkpointing to activation_checkpointing; TRL defaults the
    # old name to True, which the new name overrides.
    if "activation_checkpointing" in available:
        options["activation_checkpointing"] = config.gradient_checkpointing
    else:
        options["gradient_checkpointing"] = config.gradient_checkpointing
    if "warmup_ratio" in available:
        options["warmup_ratio"] = config.warmup_ratio
    else:
        options["warmup_steps"] = config.warmup_ratio
    if "train_sampling_strategy" in available:
        options["train_sampling_strategy"] = (
            "group_by_length" if config.group_by_length else "random"
        )
    else:
        options["group_by_length"] = config.group_by_length
    return RewardConfig(**options)


class _CountingCollator:
    """Wraps TRL's collator to count the pairs and real (non-padding) tokens trained on.

    Accelerate's data loader collates one batch ahead of the one in use, so a run stopped by
    ``max_steps`` collates a batch it never trains on (6 calls for 5 steps); :meth:`trained`
    counts only the first ``batches``."""

    def __init__(self, inner: Callable[[list[dict[str, Any]]], dict[str, Any]]) -> None:
        self.inner = inner
        # (pairs, real tokens, token slots) per collated batch, in order.
        self.batches: list[tuple[int, int, int]] = []

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
        batch = self.inner(examples)
        mask = batch["attention_mask"]
        self.batches.append((len(examples), int(mask.sum()), int(mask.numel())))
        return batch

    def trained(self, batches: int) -> tuple[int, int, int]:
        """Pairs, real tokens and token slots of the first ``batches`` batches."""
        used = self.batches[:batches]
        return (
            sum(pairs for pairs, _, _ in used),
            sum(tokens for _, tokens, _ in used),
            sum(slots for _, _, slots in used),
        )


class _ProgressCallback(TrainerCallback):  # type: ignore[misc]  # transformers is untyped here
    """Forwards TRL/Trainer progress to ``on_progress``, keeps the loss curve, and stops the
    run after the current optimizer step once ``should_stop()`` is true."""

    def __init__(self, report: ProgressCallback, stop_requested: StopCheck) -> None:
        self.report = report
        self.stop_requested = stop_requested
        self.losses: list[float] = []
        self.cancelled = False
        # When the steps began: after the optimizer, scheduler and accelerate's set-up, as the
        # packed path's clock starts after its own (so the two rates compare like for like).
        self.steps_started: float | None = None

    def on_train_begin(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        **kwargs: Any,
    ) -> None:
        self.steps_started = time.perf_counter()

    def on_log(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        logs: dict[str, float] | None = None,
        **kwargs: Any,
    ) -> None:
        if logs and "loss" in logs:
            loss = float(logs["loss"])
            check_finite(loss, what="loss", step=state.global_step)
            self.losses.append(loss)
            total = max(state.max_steps, 1)
            self.report(
                state.global_step / total, f"step {state.global_step}/{total}, loss {loss:.4f}"
            )

    def on_step_end(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        **kwargs: Any,
    ) -> TrainerControl:
        if self.stop_requested():
            self.cancelled = True
            control.should_training_stop = True
        return control
