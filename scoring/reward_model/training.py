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
    autocast on a bf16 GPU or a CPU with bf16 units (``config.bf16``), optional gradient
    checkpointing; one process, or one rank of a torchrun job replicated by DDP or sharded by
    FSDP, see :mod:`.distributed`). With ``packing=False``,
    or for an architecture that :func:`.packing.supports_packing` does not know, TRL's
    ``RewardTrainer`` on padded, length-grouped batches. Either way sequences are pre-tokenized
    and cut from the left so the response survives (TRL alone could only drop sequences longer
    than ``max_length``).

Both modes report progress through ``on_progress(fraction, message)`` and poll
``should_stop()``; a stopped run returns metrics with ``cancelled=True`` (head mode then leaves
the model untouched; full mode leaves it partly trained, so do not save it). A loss, gradient
norm or head fit that turns NaN or infinite raises :class:`TrainingDiverged` (the same holds:
do not save a full-mode model then).
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np
import torch

from .devices import training_bf16
from .examples import ExampleLike, as_preference_examples
from .head import find_reward_head
from .model import RewardModel
from .packed_training import apply_liger, run_packed_training
from .packing import supports_packing
from .token_table import TokenTable
from .training_types import (
    DEFAULT_TOKEN_BUDGET,
    Cancelled,
    PairEmbeddings,
    PreparedPairs,
    ProgressCallback,
    StopCheck,
    TrainingConfig,
    TrainingDiverged,
    TrainingMetrics,
    cancelled_metrics,
    check_finite,
    loss_summary,
    prepare_pairs,
)
from .trl_training import (
    train_with_trl,
)

__all__ = [
    "DEFAULT_TOKEN_BUDGET",
    "PairEmbeddings",
    "ProgressCallback",
    "StopCheck",
    "TrainingConfig",
    "TrainingDiverged",
    "TrainingMetrics",
    "embed_pairs",
    "train",
]

# Share of the progress bar given to feature extraction in head mode (the slow part).
_EMBEDDING_SHARE = 0.9


def embed_pairs(model: RewardModel, examples: Sequence[ExampleLike]) -> PairEmbeddings:
    """Precompute head-mode features, e.g. to cache them across several head fits."""
    examples = as_preference_examples(examples)
    chosen = model.encode([(example.conversation, example.chosen) for example in examples])
    rejected = model.encode([(example.conversation, example.rejected) for example in examples])
    features = model.features_for_ids(chosen.input_ids + rejected.input_ids)
    return PairEmbeddings(chosen=features[: len(examples)], rejected=features[len(examples) :])


def _check_trainable(
    model: RewardModel,
    config: TrainingConfig,
    *,
    embeddings: PairEmbeddings | None,
    world_size: int,
) -> None:
    weights = next(model.model.parameters()).dtype
    if weights != torch.float32:
        # Head fits fold into float32 weights, and AdamW needs float32 master weights.
        raise ValueError(
            f"Training needs float32 weights; this model holds {weights} weights "
            "(loaded with inference_only=True or a dtype). Load it in float32 to train it."
        )
    if embeddings is not None and config.mode != "head":
        raise ValueError("Precomputed embeddings only apply to head mode.")
    if world_size > 1 and not (config.mode == "full" and config.packing):
        raise ValueError("Several processes train only in full mode with packing.")
    if config.strategy == "fsdp" and not torch.distributed.is_initialized():
        raise ValueError(
            "FSDP needs a process group: run it through the launcher (torchrun), even for one "
            "process."
        )


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
    ``(conversation, chosen, rejected[, category[, margin]])``, in any sequence that slices: they
    are read a chunk at a time (``examples.example_chunks``), so a lazy sequence keeps the
    texts out of memory. ``embeddings`` (head mode only)
    must align row for row with ``examples``. A
    ``config.max_length`` becomes the model's window from then on (and is saved with it).
    """
    config = config or TrainingConfig()
    _check_trainable(model, config, embeddings=embeddings, world_size=world_size)
    report = on_progress or (lambda fraction, message: None)
    stop_requested = should_stop or (lambda: False)
    if config.max_length is not None:
        model.max_length = config.max_length
    started = time.perf_counter()
    report(0.0, "tokenizing")
    pairs = prepare_pairs(model, examples, drop_overlong=config.drop_overlong)
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


def _train_head(
    model: RewardModel,
    pairs: PreparedPairs,
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
            raise Cancelled

    try:
        if embeddings is None:
            features = model.features_for_ids(
                TokenTable.concatenate([pairs.chosen_ids, pairs.rejected_ids]), on_batch=on_batch
            )
            chosen, rejected = features[:count], features[count:]
        else:
            examples = len(pairs.kept) + pairs.dropped
            chosen, rejected = _select_precomputed(
                embeddings, pairs.kept, head.in_features, expected_rows=examples
            )
        embed_seconds = time.perf_counter() - embed_started
        fit_started = time.perf_counter()
        losses, iterations = _fit_linear_head(
            head, chosen, rejected, pairs.margins, config, report, stop_requested
        )
    except Cancelled:
        model.precision = precision_before
        return cancelled_metrics(model, "head", pairs)
    except BaseException:
        model.precision = precision_before  # a failed fit (diverged, say) leaves it untouched too
        raise
    return TrainingMetrics(
        mode="head",
        device=str(model.device),
        pairs=count,
        truncated=pairs.truncated,
        dropped=pairs.dropped,
        steps=iterations,
        **loss_summary(losses),
        seconds=0.0,
        pairs_per_second=0.0,
        tokens=pairs.tokens,
        tokens_per_second=0.0,
        phase_seconds={"embed": embed_seconds, "fit": time.perf_counter() - fit_started},
    )


def _select_precomputed(
    embeddings: PairEmbeddings, kept: list[int], width: int, *, expected_rows: int
) -> tuple[np.ndarray, np.ndarray]:
    chosen = np.asarray(embeddings.chosen, dtype=np.float32)
    rejected = np.asarray(embeddings.rejected, dtype=np.float32)
    if chosen.shape != rejected.shape or chosen.ndim != 2 or chosen.shape[1] != width:
        raise ValueError(
            f"Precomputed embeddings must both have shape (pairs, {width}); "
            f"got {chosen.shape} and {rejected.shape}."
        )
    if chosen.shape[0] != expected_rows:
        raise ValueError(
            f"Precomputed embeddings must have one row per example ({expected_rows}); "
            f"got {chosen.shape[0]}."
        )
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
            raise Cancelled
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
    mean_reward = float((all_features.float() @ folded).mean())
    # Checked before the head is written: NaN or infinite features (a base model with broken
    # weights) give a NaN fit, which must not become a model that scores NaN.
    check_finite(losses[-1], what="head-fit loss", step=max(iterations, 1))
    if not (bool(torch.isfinite(folded).all()) and np.isfinite(mean_reward)):
        raise TrainingDiverged(
            "the fitted reward head is not finite: check the base model's weights"
        )
    with torch.no_grad():
        head.weight.copy_(folded.to(head.weight).unsqueeze(0))
        if head.bias is not None:
            head.bias.fill_(-mean_reward)
    return losses, iterations


def _train_full(
    model: RewardModel,
    pairs: PreparedPairs,
    config: TrainingConfig,
    report: ProgressCallback,
    stop_requested: StopCheck,
    rank: int,
    world_size: int,
) -> TrainingMetrics:
    if config.packing and supports_packing(model.model):
        return _train_packed(model, pairs, config, report, stop_requested, rank, world_size)
    if world_size > 1 or config.strategy == "fsdp":
        raise ValueError(f"{type(model.model).__name__} cannot be trained packed.")
    return train_with_trl(model, pairs, config, report, stop_requested)


def _train_packed(
    model: RewardModel,
    pairs: PreparedPairs,
    config: TrainingConfig,
    report: ProgressCallback,
    stop_requested: StopCheck,
    rank: int,
    world_size: int,
) -> TrainingMetrics:
    device = model.device
    use_bf16 = training_bf16(config.bf16, device)
    # Scored later the way it was trained: bf16 autocast on a GPU (a CPU scores in float32).
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
        **loss_summary(stats.losses),
        seconds=0.0,
        pairs_per_second=stats.pairs / max(stats.seconds, 1e-9),
        tokens=stats.tokens,
        tokens_per_second=stats.tokens / max(stats.seconds, 1e-9),
        cancelled=stats.cancelled,
        phase_seconds={"train": stats.seconds},
        padding_share=1.0 - stats.tokens / max(stats.slots, 1),
        world_size=world_size,
        packing=True,
        strategy=config.strategy,
        precision=model.precision,
    )
