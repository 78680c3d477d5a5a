"""Bradley-Terry training of a :class:`RewardModel` on judged pairs.

Loss: ``−log σ(r(x, chosen) − r(x, rejected) − margin)``, margin 0 unless an example sets one.
Two modes:

``head``
    The encoder stays frozen. The vectors the reward head reads (BERT: pooler output of
    ``[CLS]``; decoders: last-token hidden state; see :mod:`.head`) are computed once, or passed
    in precomputed via ``embeddings``, and a linear head is fitted on them by L-BFGS with an L2
    penalty, on standardised features. The fit is folded back into the model's own final
    ``Linear`` layer (weights divided by the feature scale, bias set so training rewards average
    zero), so the result is still a plain HF seq-cls checkpoint scoring exactly like the fit.
    A small MLP head was tried on MiniLM + hh-rlhf and did not beat the linear head, so none
    is offered.

``full``
    Fine-tunes every weight. By default on padding-free, token-budgeted packed batches with our
    own small loop (:mod:`.packed_training`; AdamW, linear warm-up and decay, accumulation, bf16
    autocast on CUDA, optional gradient checkpointing; one process, or one rank of a torchrun
    job, see :mod:`.distributed`). With ``packing=False``, or for an architecture that
    :func:`.packing.supports_packing` does not know, TRL's ``RewardTrainer`` on padded,
    length-grouped batches. Either way sequences are pre-tokenized and cut from the left so the
    response survives (TRL alone could only drop sequences longer than ``max_length``).

Both modes report progress through ``on_progress(fraction, message)`` and poll
``should_stop()``; a stopped run returns metrics with ``cancelled=True`` (head mode then leaves
the model untouched; full mode leaves it partly trained, so do not save it).
"""

from __future__ import annotations

import dataclasses
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch
from transformers import (
    PrinterCallback,
    TrainerCallback,
    TrainerControl,
    TrainerState,
    TrainingArguments,
)

from .devices import supports_bf16
from .examples import ExampleLike, PreferenceExample, as_preference_examples
from .head import find_reward_head
from .model import RewardModel
from .packed_training import apply_liger, run_packed_training
from .packing import supports_packing

ProgressCallback = Callable[[float, str], None]
StopCheck = Callable[[], bool]

# Share of the progress bar given to feature extraction in head mode (the slow part).
_EMBEDDING_SHARE = 0.9
_LOSS_CURVE_POINTS = 50
# Real tokens per process and micro-batch: about 7 hh-rlhf pairs for MiniLM (~300 tokens a
# pair), so the budget, not batch_size 8, sizes the batches there. Raise both for long context.
DEFAULT_TOKEN_BUDGET = 2048


@dataclass
class TrainingConfig:
    mode: Literal["head", "full"] = "head"
    # None keeps the model's window (512 for MiniLM); set up to 16K for large models.
    max_length: int | None = None
    # Drop pairs with a side longer than max_length instead of cutting them from the left.
    drop_overlong: bool = False
    seed: int = 0
    # Head mode: L2 penalty on standardised features (0.03 was best on MiniLM + hh-rlhf).
    head_l2: float = 0.03
    head_max_iterations: int = 200
    # Full mode.
    learning_rate: float = 2e-5
    epochs: float = 1.0
    max_steps: int | None = None
    batch_size: int = 8
    gradient_accumulation_steps: int = 1
    warmup_ratio: float = 0.05
    weight_decay: float = 0.0
    group_by_length: bool = True
    # None: bf16 autocast exactly when training on a bf16-capable CUDA device.
    bf16: bool | None = None
    gradient_checkpointing: bool = False
    center_rewards_coefficient: float | None = None
    # Padding-free batches (see packed_training): at most this many real tokens (and at most
    # batch_size pairs) per process and micro-batch. False runs TRL's RewardTrainer on padded
    # batches of batch_size pairs.
    packing: bool = True
    token_budget: int = DEFAULT_TOKEN_BUDGET
    # Liger's fused kernels, when the package is installed and training runs on CUDA.
    liger: bool = False
    max_grad_norm: float | None = 1.0
    disable_dropout: bool = True

    def __post_init__(self) -> None:
        if self.mode not in ("head", "full"):
            raise ValueError(f"mode must be 'head' or 'full', got {self.mode!r}.")
        if self.batch_size < 1 or self.gradient_accumulation_steps < 1:
            raise ValueError("batch_size and gradient_accumulation_steps must be positive.")
        if not 0.0 <= self.warmup_ratio < 1.0:
            raise ValueError("warmup_ratio must be in [0, 1).")
        if self.token_budget < 16:
            raise ValueError("token_budget must be at least 16 tokens.")
        if self.epochs <= 0:
            raise ValueError("epochs must be positive.")


@dataclass(frozen=True)
class PairEmbeddings:
    """Unnormalised reward-head inputs for each pair's chosen and rejected side, shape (n, d)."""

    chosen: np.ndarray
    rejected: np.ndarray


@dataclass
class TrainingMetrics:
    mode: str
    device: str
    pairs: int
    truncated: int
    dropped: int
    steps: int
    # None when no step completed (cancelled early); never NaN, so the dict is valid JSON.
    initial_loss: float | None
    final_loss: float | None
    min_loss: float | None
    loss_curve: list[float]
    seconds: float
    pairs_per_second: float
    tokens: int
    tokens_per_second: float
    cancelled: bool = False
    phase_seconds: dict[str, float] = field(default_factory=dict)
    # Full mode: the share of computed token positions that were padding or filler.
    padding_share: float | None = None
    world_size: int = 1
    packing: bool | None = None

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class _Cancelled(Exception):
    pass


@dataclass
class _PreparedPairs:
    chosen_ids: list[list[int]]
    rejected_ids: list[list[int]]
    kept: list[int]
    truncated: int
    dropped: int
    # None when no kept example has a margin, so plain BT loss runs unchanged.
    margins: list[float] | None

    @property
    def tokens(self) -> int:
        return sum(map(len, self.chosen_ids)) + sum(map(len, self.rejected_ids))


def embed_pairs(model: RewardModel, examples: Sequence[ExampleLike]) -> PairEmbeddings:
    """Precompute head-mode features, e.g. to cache them across several head fits."""
    examples = as_preference_examples(examples)
    chosen = model.encode([(example.conversation, example.chosen) for example in examples])
    rejected = model.encode([(example.conversation, example.rejected) for example in examples])
    features = model.features_for_ids(chosen.input_ids + rejected.input_ids)
    return PairEmbeddings(chosen=features[: len(examples)], rejected=features[len(examples) :])


def train(
    model: RewardModel,
    examples: Sequence[ExampleLike],
    config: TrainingConfig | None = None,
    *,
    embeddings: PairEmbeddings | None = None,
    on_progress: ProgressCallback | None = None,
    should_stop: StopCheck | None = None,
    rank: int = 0,
    world_size: int = 1,
) -> TrainingMetrics:
    """Train ``model`` in place on ``examples``; save it afterwards with ``model.save(path)``.

    ``rank``/``world_size``: this process's place in a distributed full fine-tuning (see
    :mod:`.distributed`); the default process group must then be initialised.

    ``examples`` are :class:`PreferenceExample` objects or tuples
    ``(conversation, chosen, rejected[, category[, margin]])``. ``embeddings`` (head mode only)
    must align row for row with ``examples``. A
    ``config.max_length`` becomes the model's window from then on (and is saved with it).
    """
    config = config or TrainingConfig()
    weights = next(model.model.parameters()).dtype
    if weights != torch.float32:
        # Head fits fold into float32 weights, and AdamW needs float32 master weights.
        raise ValueError(
            f"Training needs float32 weights; this model holds {weights} weights "
            "(loaded with inference_only=True or a dtype). Load it in float32 to train it."
        )
    examples = as_preference_examples(examples)
    report = on_progress or (lambda fraction, message: None)
    stop_requested = should_stop or (lambda: False)
    if config.max_length is not None:
        model.max_length = config.max_length
    if embeddings is not None and config.mode != "head":
        raise ValueError("Precomputed embeddings only apply to head mode.")
    if world_size > 1 and not (config.mode == "full" and config.packing):
        raise ValueError("Several processes train only in full mode with packing.")
    started = time.perf_counter()
    report(0.0, "tokenizing")
    pairs = _prepare_pairs(model, examples, drop_overlong=config.drop_overlong)
    tokenize_seconds = time.perf_counter() - started
    if not pairs.kept:
        raise ValueError("No training pairs left (none given, or all dropped as overlong).")
    if config.mode == "head":
        metrics = _train_head(model, pairs, config, embeddings, report, stop_requested)
    else:
        metrics = _train_full(model, pairs, config, report, stop_requested, rank, world_size)
    metrics.phase_seconds = {"tokenize": tokenize_seconds, **metrics.phase_seconds}
    metrics.seconds = time.perf_counter() - started
    if config.mode == "head":
        # The head fit itself takes milliseconds; the honest rate includes feature extraction.
        metrics.pairs_per_second = metrics.pairs / max(metrics.seconds, 1e-9)
        metrics.tokens_per_second = metrics.tokens / max(metrics.seconds, 1e-9)
    report(1.0, "cancelled" if metrics.cancelled else "done")
    return metrics


def _prepare_pairs(
    model: RewardModel, examples: Sequence[PreferenceExample], *, drop_overlong: bool
) -> _PreparedPairs:
    chosen = model.encode([(example.conversation, example.chosen) for example in examples])
    rejected = model.encode([(example.conversation, example.rejected) for example in examples])
    overlong = [a or b for a, b in zip(chosen.truncated, rejected.truncated, strict=True)]
    kept = [index for index in range(len(examples)) if not (drop_overlong and overlong[index])]
    return _PreparedPairs(
        chosen_ids=[chosen.input_ids[index] for index in kept],
        rejected_ids=[rejected.input_ids[index] for index in kept],
        kept=kept,
        truncated=0 if drop_overlong else sum(overlong),
        dropped=len(examples) - len(kept),
        margins=(
            [examples[index].margin or 0.0 for index in kept]
            if any(examples[index].margin is not None for index in kept)
            else None
        ),
    )


def _loss_summary(losses: Sequence[float]) -> dict[str, Any]:
    """First, last and lowest loss, and the curve averaged down to at most 50 points."""
    if not losses:
        return {"initial_loss": None, "final_loss": None, "min_loss": None, "loss_curve": []}
    if len(losses) <= _LOSS_CURVE_POINTS:
        curve = [float(loss) for loss in losses]
    else:
        chunks = np.array_split(np.asarray(losses, dtype=np.float64), _LOSS_CURVE_POINTS)
        curve = [float(chunk.mean()) for chunk in chunks]
    return {
        "initial_loss": float(losses[0]),
        "final_loss": float(losses[-1]),
        "min_loss": float(min(losses)),
        "loss_curve": curve,
    }


def _train_head(
    model: RewardModel,
    pairs: _PreparedPairs,
    config: TrainingConfig,
    embeddings: PairEmbeddings | None,
    report: ProgressCallback,
    stop_requested: StopCheck,
) -> TrainingMetrics:
    head = find_reward_head(model.model)
    count = len(pairs.kept)
    # Set before the features are computed: the fit and every later score see float32 alike.
    # A cancelled run leaves the model untouched, its precision included.
    precision_before, model.precision = model.precision, "float32"
    embed_started = time.perf_counter()

    def on_batch(done: int, total: int) -> None:
        report(_EMBEDDING_SHARE * done / total, f"embedding {done}/{total} transcripts")
        if stop_requested():
            raise _Cancelled

    try:
        if embeddings is None:
            features = model.features_for_ids(
                pairs.chosen_ids + pairs.rejected_ids, on_batch=on_batch
            )
            chosen, rejected = features[:count], features[count:]
        else:
            chosen, rejected = _select_precomputed(embeddings, pairs.kept, head.in_features)
        embed_seconds = time.perf_counter() - embed_started
        fit_started = time.perf_counter()
        losses, iterations = _fit_linear_head(
            head, chosen, rejected, pairs.margins, config, report, stop_requested
        )
    except _Cancelled:
        model.precision = precision_before
        return _cancelled_metrics(model, "head", pairs)
    return TrainingMetrics(
        mode="head",
        device=str(model.device),
        pairs=count,
        truncated=pairs.truncated,
        dropped=pairs.dropped,
        steps=iterations,
        **_loss_summary(losses),
        seconds=0.0,
        pairs_per_second=0.0,
        tokens=pairs.tokens,
        tokens_per_second=0.0,
        phase_seconds={"embed": embed_seconds, "fit": time.perf_counter() - fit_started},
    )


def _select_precomputed(
    embeddings: PairEmbeddings, kept: list[int], width: int
) -> tuple[np.ndarray, np.ndarray]:
    chosen = np.asarray(embeddings.chosen, dtype=np.float32)
    rejected = np.asarray(embeddings.rejected, dtype=np.float32)
    if chosen.shape != rejected.shape or chosen.ndim != 2 or chosen.shape[1] != width:
        raise ValueError(
            f"Precomputed embeddings must both have shape (pairs, {width}); "
            f"got {chosen.shape} and {rejected.shape}."
        )
    if kept and max(kept) >= chosen.shape[0]:
        raise ValueError("Precomputed embeddings have fewer rows than there are examples.")
    return chosen[kept], rejected[kept]


def _fit_linear_head(
    head: torch.nn.Linear,
    chosen: np.ndarray,
    rejected: np.ndarray,
    margins: list[float] | None,
    config: TrainingConfig,
    report: ProgressCallback,
    stop_requested: StopCheck,
) -> tuple[list[float], int]:
    """Fit w on standardised features by L-BFGS, then write w / scale into ``head``."""
    all_features = torch.from_numpy(np.concatenate([chosen, rejected])).double()
    scale = all_features.std(dim=0).clamp_min(1e-6)
    # Centring cancels in the difference; only the scale matters for conditioning.
    differences = torch.from_numpy(chosen - rejected).double() / scale
    margin = torch.tensor(margins or 0.0, dtype=torch.float64)
    weight = torch.zeros(differences.shape[1], dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS(
        [weight], max_iter=config.head_max_iterations, line_search_fn="strong_wolfe"
    )
    losses: list[float] = []

    def closure() -> torch.Tensor:
        if stop_requested():
            raise _Cancelled
        optimizer.zero_grad()
        data_loss = torch.nn.functional.softplus(margin - differences @ weight).mean()
        loss = data_loss + 0.5 * config.head_l2 * weight.square().sum()
        loss.backward()
        losses.append(data_loss.item())
        iteration = optimizer.state[weight].get("n_iter", 0)
        report(
            _EMBEDDING_SHARE
            + (1 - _EMBEDDING_SHARE) * min(iteration / config.head_max_iterations, 1.0),
            f"fitting head, loss {losses[-1]:.4f}",
        )
        return loss

    optimizer.step(closure)
    iterations = int(optimizer.state[weight].get("n_iter", 0))
    folded = (weight.detach() / scale).float()
    with torch.no_grad():
        head.weight.copy_(folded.to(head.weight).unsqueeze(0))
        if head.bias is not None:
            mean_reward = (all_features.float() @ folded).mean()
            head.bias.fill_(float(-mean_reward))
    return losses, iterations


def _cancelled_metrics(model: RewardModel, mode: str, pairs: _PreparedPairs) -> TrainingMetrics:
    return TrainingMetrics(
        mode=mode,
        device=str(model.device),
        pairs=len(pairs.kept),
        truncated=pairs.truncated,
        dropped=pairs.dropped,
        steps=0,
        **_loss_summary([]),
        seconds=0.0,
        pairs_per_second=0.0,
        tokens=0,
        tokens_per_second=0.0,
        cancelled=True,
    )


def _train_full(
    model: RewardModel,
    pairs: _PreparedPairs,
    config: TrainingConfig,
    report: ProgressCallback,
    stop_requested: StopCheck,
    rank: int = 0,
    world_size: int = 1,
) -> TrainingMetrics:
    if config.packing and supports_packing(model.model):
        return _train_packed(model, pairs, config, report, stop_requested, rank, world_size)
    if world_size > 1:
        raise ValueError(f"{type(model.model).__name__} cannot be trained packed.")
    # Imported here: TRL and datasets take seconds to import and only this mode needs them.
    from datasets import Dataset
    from trl import RewardTrainer
    from trl.trainer.reward_trainer import DataCollatorForPreference

    columns: dict[str, list[Any]] = {
        "chosen_ids": pairs.chosen_ids,
        "rejected_ids": pairs.rejected_ids,
        "length": [
            max(len(chosen), len(rejected))
            for chosen, rejected in zip(pairs.chosen_ids, pairs.rejected_ids, strict=True)
        ],
    }
    if pairs.margins is not None:
        # TRL's loss becomes −log σ(r_chosen − r_rejected − margin).
        columns["margin"] = pairs.margins
    dataset = Dataset.from_dict(columns)
    collator = _CountingCollator(
        DataCollatorForPreference(pad_token_id=model.tokenizer.pad_token_id)
    )
    callback = _ProgressCallback(report, stop_requested)
    with tempfile.TemporaryDirectory(prefix="reward-trainer-") as output_dir:
        reward_config = _reward_config(config, model.device, output_dir)
        # Scored later the way it was trained: bf16 autocast on the GPU, else float32.
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
        train_seconds = time.perf_counter() - train_started
        trained = trainer.accelerator.unwrap_model(trainer.model)
        steps = trainer.state.global_step
        del trainer
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
        **_loss_summary(callback.losses),
        seconds=0.0,
        pairs_per_second=collator.pairs / max(train_seconds, 1e-9),
        tokens=collator.tokens,
        tokens_per_second=collator.tokens / max(train_seconds, 1e-9),
        cancelled=callback.cancelled,
        phase_seconds={"train": train_seconds},
        padding_share=1.0 - collator.tokens / max(collator.slots, 1),
        packing=False,
    )


def _train_packed(
    model: RewardModel,
    pairs: _PreparedPairs,
    config: TrainingConfig,
    report: ProgressCallback,
    stop_requested: StopCheck,
    rank: int,
    world_size: int,
) -> TrainingMetrics:
    device = model.device
    use_bf16 = config.bf16 if config.bf16 is not None else supports_bf16(device)
    # Scored later the way it was trained: bf16 autocast on the GPU, else float32.
    model.precision = "bf16" if use_bf16 else "float32"
    if config.liger:
        apply_liger(model.model)
    stats = run_packed_training(
        model.model,
        chosen_ids=pairs.chosen_ids,
        rejected_ids=pairs.rejected_ids,
        margins=pairs.margins,
        config=config,
        max_length=model.max_length,
        pad_token_id=model.tokenizer.pad_token_id,
        report=report,
        stop_requested=stop_requested,
        rank=rank,
        world_size=world_size,
    )
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return TrainingMetrics(
        mode="full",
        device=str(device),
        pairs=len(pairs.kept),
        truncated=pairs.truncated,
        dropped=pairs.dropped,
        steps=stats.steps,
        **_loss_summary(stats.losses),
        seconds=0.0,
        pairs_per_second=stats.pairs / max(stats.seconds, 1e-9),
        tokens=stats.tokens,
        tokens_per_second=stats.tokens / max(stats.seconds, 1e-9),
        cancelled=stats.cancelled,
        phase_seconds={"train": stats.seconds},
        padding_share=1.0 - stats.tokens / max(stats.slots, 1),
        world_size=world_size,
        packing=True,
    )


def _reward_config(config: TrainingConfig, device: torch.device, output_dir: str) -> Any:
    from trl import RewardConfig

    available = {config_field.name for config_field in dataclasses.fields(RewardConfig)}
    use_bf16 = (
        config.bf16
        if config.bf16 is not None
        else supports_bf16(device)
    )
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
        "save_strategy": "no",
        "report_to": "none",
        "disable_tqdm": True,
        "seed": config.seed,
        "data_seed": config.seed,
        # TRL's default is bf16=True even on CPU; we autocast on CUDA only.
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
    """Wraps TRL's collator to count the pairs and real (non-padding) tokens trained on."""

    def __init__(self, inner: Callable[[list[dict[str, Any]]], dict[str, Any]]) -> None:
        self.inner = inner
        self.pairs = 0
        self.tokens = 0
        self.slots = 0

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
        batch = self.inner(examples)
        self.pairs += len(examples)
        self.tokens += int(batch["attention_mask"].sum())
        self.slots += int(batch["attention_mask"].numel())
        return batch


class _ProgressCallback(TrainerCallback):  # type: ignore[misc]  # transformers is untyped here
    """Forwards TRL/Trainer progress to ``on_progress``, keeps the loss curve, and stops the
    run after the current optimizer step once ``should_stop()`` is true."""

    def __init__(self, report: ProgressCallback, stop_requested: StopCheck) -> None:
        self.report = report
        self.stop_requested = stop_requested
        self.losses: list[float] = []
        self.cancelled = False

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
