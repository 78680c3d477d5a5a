"""The parameters of model jobs (train, loop, score): one typed schema each.

``TrainParams`` for a train job (the reward model's options, recorded on the row when the job
is created, see ``scoring.loop.training``), ``LoopParams`` for "Retrain now" (training plus
what the loop does after it), ``ScoreParams`` for scoring the pool. The API, the dashboard and
the management commands build them through ``from_params`` (``scoring.jobs.params``); a bad
value is a JobError (400) naming the field.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from scoring.jobs.params import JobParams
from scoring.jobs.runner import JobError
from scoring.jobs.shards import shard_size_of

MODES = ("head", "full")
# scoring.reward_model.training_types.STRATEGIES and TRAINING_PRECISIONS (not imported: it would
# load torch here).
STRATEGIES = ("ddp", "fsdp")
TRAINING_PRECISIONS = ("auto", "bf16", "float32")
# TrainParams fields that are TrainingConfig options (scoring.reward_model).
_CONFIG_PARAMS = (
    "max_length",
    "drop_overlong",
    "seed",
    "head_l2",
    "learning_rate",
    "epochs",
    "max_steps",
    "batch_size",
    "gradient_accumulation_steps",
    "warmup_ratio",
    "token_budget",
    "gradient_checkpointing",
    "liger",
    "strategy",
)
_POSITIVE = (
    "max_length",
    "max_steps",
    "batch_size",
    "gradient_accumulation_steps",
    "token_budget",
    "processes",
)


@dataclass(frozen=True)
class TrainParams(JobParams):
    error = JobError
    choices = {"mode": MODES, "strategy": STRATEGIES, "precision": TRAINING_PRECISIONS}

    mode: str = "head"
    # A model directory; None: settings.ARBITER["BASE_MODEL"], else the packaged MiniLM.
    base_model: str | None = None
    max_length: int | None = None
    drop_overlong: bool | None = None
    seed: int | None = None
    head_l2: float | None = None
    learning_rate: float | None = None
    epochs: float | None = None
    max_steps: int | None = None
    batch_size: int | None = None
    gradient_accumulation_steps: int | None = None
    warmup_ratio: float | None = None
    # Full mode: real tokens per packed micro-batch, activation recomputation, Liger kernels.
    token_budget: int | None = None
    gradient_checkpointing: bool | None = None
    liger: bool | None = None
    # Full mode: training processes on this host (torchrun ranks; gloo on a CPU host).
    processes: int | None = None
    # Full mode: "ddp" (a whole model per process) or "fsdp" (sharded; always through torchrun).
    strategy: str | None = None
    # Full mode: "auto" (bf16 autocast where the hardware has bf16), "bf16" or "float32".
    precision: str | None = None
    # Train on this share of the gold pairs too (None or 0: all held out).
    train_on_gold_share: float | None = None
    activate: bool = True

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise JobError(f"mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        share = self.train_on_gold_share
        if share is not None and not 0.0 <= share <= 1.0:
            raise JobError("train_on_gold_share must be between 0 and 1")
        if (self.processes or 1) > 1 and self.mode != "full":
            raise JobError("several processes train only in full mode")
        if self.strategy is not None and self.strategy not in STRATEGIES:
            raise JobError(
                f"strategy must be one of {', '.join(STRATEGIES)}, got {self.strategy!r}"
            )
        if self.precision is not None and self.precision not in TRAINING_PRECISIONS:
            raise JobError(
                f"precision must be one of {', '.join(TRAINING_PRECISIONS)}, got {self.precision!r}"
            )
        if self.strategy == "fsdp" and self.mode != "full":
            raise JobError("fsdp trains only in full mode")
        for name in _POSITIVE:
            value = getattr(self, name)
            if value is not None and value < 1:
                raise JobError(f"{name} must be a positive whole number, got {value}")
        # A negative L2 penalty rewards large weights: the head's fit runs off to inf.
        if self.head_l2 is not None and self.head_l2 < 0:
            raise JobError(f"head_l2 must be zero or more, got {self.head_l2}")
        if self.learning_rate is not None and self.learning_rate <= 0:
            raise JobError(f"learning_rate must be positive, got {self.learning_rate}")

    def training_config(self) -> Any:
        """The reward model's TrainingConfig (imports torch: call it in a worker)."""
        from scoring.reward_model import TrainingConfig

        options = {name: getattr(self, name) for name in _CONFIG_PARAMS}
        options = {name: value for name, value in options.items() if value is not None}
        if self.precision in ("bf16", "float32"):
            options["bf16"] = self.precision == "bf16"
        try:
            return TrainingConfig(mode=self.mode, **options)  # type: ignore[arg-type]  # checked in __post_init__
        except (TypeError, ValueError) as error:
            raise JobError(f"bad training parameters: {error}") from error


@dataclass(frozen=True)
class LoopParams(TrainParams):
    # Score the pool and raise the priority of pairs near the model's mistakes.
    prioritise: bool = True
    # Let gold pairs steer retrieval (off keeps gold a clean held-out measure).
    retrieve_from_gold: bool = True
    round_size: int | None = None  # None: the campaign's round_size
    # Pairs a scoring shard holds (#13); None: settings.ARBITER["SHARD_SIZE"] (20,000).
    shard_size: int | None = None
    reason: str | None = None  # why the loop ran ("retrain now", "round complete")

    def __post_init__(self) -> None:
        super().__post_init__()
        # 0 would open a round of no pairs, which never completes.
        if self.round_size is not None and self.round_size < 1:
            raise JobError(f"round_size must be a positive whole number, got {self.round_size}")
        if self.shard_size is not None:
            shard_size_of({"shard_size": self.shard_size})  # a JobError naming the bounds


@dataclass(frozen=True)
class ScoreParams(JobParams):
    error = JobError

    retrieve_from_gold: bool = True
    # Pairs a scoring shard holds (#13); None: settings.ARBITER["SHARD_SIZE"] (20,000).
    shard_size: int | None = None

    def __post_init__(self) -> None:
        if self.shard_size is not None:
            shard_size_of({"shard_size": self.shard_size})  # a JobError naming the bounds


MAX_FOLDS = 20


@dataclass(frozen=True)
class CrossValidateParams(TrainParams):
    """k-fold cross-validation of a training configuration on the verified labels
    (``scoring.loop.cross_validation``): nothing is registered or activated."""

    folds: int = 5
    # Put the gold pairs into the folds too (off: only human consensus, gold stays aside).
    include_gold: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 2 <= self.folds <= MAX_FOLDS:
            raise JobError(f"folds must be between 2 and {MAX_FOLDS}, got {self.folds}")
        if (self.processes or 1) > 1 or self.strategy == "fsdp":
            raise JobError("cross-validation trains each fold in one process, without FSDP")
        if self.train_on_gold_share:
            raise JobError("cross-validation takes include_gold, not train_on_gold_share")
