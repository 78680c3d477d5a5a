"""What a training run takes and gives back: settings, metrics, and the tokenized pairs.

See :mod:`.training` for the modes.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from .token_table import TokenTable, TokenTableBuilder

if TYPE_CHECKING:  # annotations only: the settings table imports this module without torch
    from .examples import ExampleLike
    from .model import RewardModel

ProgressCallback = Callable[[float, str], None]


StopCheck = Callable[[], bool]


_LOSS_CURVE_POINTS = 50


# Real tokens per process and micro-batch: about 7 hh-rlhf pairs for MiniLM (~300 tokens a
# pair), so the budget, not batch_size 8, sizes the batches there. Raise both for long context.
DEFAULT_TOKEN_BUDGET = 2048

# A training setting: "auto" leaves TrainingConfig.bf16 None (the device decides).
TRAINING_PRECISIONS = ("auto", "bf16", "float32")

STRATEGIES = ("ddp", "fsdp")


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
    # None: bf16 autocast on a bf16-capable CUDA device or a CPU with bf16 units (AMX or
    # AVX-512 BF16; devices.py).
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
    # How several processes share the model: "ddp" replicates it on every rank; "fsdp" shards
    # weights, gradients and AdamW states over the ranks (torch FSDP2), for models whose
    # training state does not fit one GPU. FSDP runs only under torchrun (see .launcher).
    strategy: Literal["ddp", "fsdp"] = "ddp"

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
        # None means "run the epochs"; 0 or below would train nothing (packed) or mean unset (TRL).
        if self.max_steps is not None and self.max_steps < 1:
            raise ValueError(f"max_steps must be positive or None, got {self.max_steps}.")
        if self.learning_rate <= 0:
            raise ValueError(f"learning_rate must be positive, got {self.learning_rate}.")
        # A negative penalty rewards large weights: L-BFGS runs them off to infinity.
        if self.head_l2 < 0:
            raise ValueError(f"head_l2 must be zero or positive, got {self.head_l2}.")
        if self.head_max_iterations < 1:
            raise ValueError(
                f"head_max_iterations must be at least 1, got {self.head_max_iterations}."
            )
        if self.strategy not in STRATEGIES:
            raise ValueError(f"strategy must be 'ddp' or 'fsdp', got {self.strategy!r}.")
        if self.strategy == "fsdp" and not (self.mode == "full" and self.packing):
            raise ValueError("FSDP trains only in full mode with packing.")


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
    # Full mode on packed batches: "ddp" (also for one process) or "fsdp".
    strategy: str | None = None
    # Full mode: the arithmetic it trained in, "bf16" (autocast) or "float32"; "auto" resolves
    # per host, so the job's result says which it was.
    precision: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class Cancelled(Exception):
    pass


class TrainingDiverged(ValueError):
    """The loss or the gradients became NaN or infinite: the weights are no longer a model, so
    training stops rather than hand back one that scores NaN (and whose metrics no JSON holds)."""


def check_finite(value: float, *, what: str, step: int) -> None:
    """Raise :class:`TrainingDiverged` unless ``value`` (the ``what`` of ``step``) is finite."""
    if not math.isfinite(value):
        raise TrainingDiverged(
            f"training diverged at step {step}: the {what} is {value}; lower the learning rate, "
            "or check the base model's weights"
        )


@dataclass
class PreparedPairs:
    chosen_ids: TokenTable
    rejected_ids: TokenTable
    kept: list[int]
    truncated: int
    dropped: int
    # None when no kept example has a margin, so plain BT loss runs unchanged.
    margins: list[float] | None

    @property
    def tokens(self) -> int:
        return self.chosen_ids.total_tokens + self.rejected_ids.total_tokens


# Examples tokenized at a time: the token lists of one chunk live as Python ints (about 36 bytes
# a token) only until the chunk is copied into the TokenTables (4 bytes a token).
ENCODE_CHUNK = 1024


def prepare_pairs(
    model: RewardModel, examples: Sequence[ExampleLike], *, drop_overlong: bool
) -> PreparedPairs:
    """Tokenize ``examples`` a chunk at a time (``example_chunks``): neither their texts nor
    their tokens as Python ints are ever held whole, only the TokenTables."""
    from .examples import example_chunks  # not at import: the settings table needs no tokenizer

    chosen_table, rejected_table = TokenTableBuilder(), TokenTableBuilder()
    kept: list[int] = []
    margins: list[float | None] = []
    overlong_kept = 0
    for start, chunk in example_chunks(examples, ENCODE_CHUNK):
        chosen = model.encode([(example.conversation, example.chosen) for example in chunk])
        rejected = model.encode([(example.conversation, example.rejected) for example in chunk])
        for offset, example in enumerate(chunk):
            overlong = chosen.truncated[offset] or rejected.truncated[offset]
            if drop_overlong and overlong:
                continue
            kept.append(start + offset)
            margins.append(example.margin)
            overlong_kept += overlong
            chosen_table.append(chosen.input_ids[offset])
            rejected_table.append(rejected.input_ids[offset])
    return PreparedPairs(
        chosen_ids=chosen_table.build(),
        rejected_ids=rejected_table.build(),
        kept=kept,
        truncated=overlong_kept,
        dropped=len(examples) - len(kept),
        margins=(
            [margin or 0.0 for margin in margins]
            if any(margin is not None for margin in margins)
            else None
        ),
    )


def loss_summary(losses: Sequence[float]) -> dict[str, Any]:
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


def cancelled_metrics(model: RewardModel, mode: str, pairs: PreparedPairs) -> TrainingMetrics:
    return TrainingMetrics(
        mode=mode,
        device=str(model.device),
        pairs=len(pairs.kept),
        truncated=pairs.truncated,
        dropped=pairs.dropped,
        steps=0,
        **loss_summary([]),
        seconds=0.0,
        pairs_per_second=0.0,
        tokens=0,
        tokens_per_second=0.0,
        cancelled=True,
    )
