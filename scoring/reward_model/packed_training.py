"""Full fine-tuning on packed, token-budgeted batches, in one process or as one rank of many.

Written by hand rather than through TRL's ``RewardTrainer``: TRL (1.x) has no padding-free mode
for reward models, and every ``*ForSequenceClassification`` head pools one position per row, so
a packed row needs our own pooling (:mod:`.packing`). The loop is the usual one: AdamW, linear
warm-up and decay (transformers' schedule), gradient accumulation, bf16 autocast over float32
master weights where the GPU has bf16, optional gradient checkpointing and Liger kernels.

Batches. Pairs are grouped by length (shuffled by ``seed``, sorted within chunks of about 32
batches), cut into micro-batches of at most ``token_budget`` real tokens per process (both sides
of a pair stay in one micro-batch; a pair over the budget goes alone) and at most
``batch_size`` pairs (a cap for very short pairs; the default budget binds first on hh-rlhf),
and the micro-batches are shuffled. One optimizer step takes
``gradient_accumulation_steps × world_size`` consecutive micro-batches; with several processes
(DDP), rank ``r`` takes the ``r``-th of each group, so N processes step exactly like one process
accumulating N times as many micro-batches (the same global batch). The plan wraps around at
its end, so every rank runs the same number of steps. Gradients are clipped to
``max_grad_norm`` (1.0, the Trainer's default) before each step.

Strategies. ``ddp`` keeps a whole replica per rank and all-reduces gradients once per step.
``fsdp`` (torch's FSDP2, ``fully_shard``) shards each encoder/decoder layer, then the rest of the
model, over the ranks: weights, gradients and AdamW states live in 1/N shards (DTensors), a
layer's weights are all-gathered just before its forward and backward and freed after. On CUDA
with bf16 the gathered weights are bf16 and gradients are reduced in float32 over float32 master
shards (``MixedPrecisionPolicy``); on CPU everything stays float32. Gradients are
reduce-scattered after every micro-batch, not once per step as DDP does: skipping the sync would
keep whole unsharded gradients per rank, the memory FSDP is there to save. The sum is the same.
Clipping and AdamW work on the sharded DTensor parameters directly; after training every rank
takes part in :func:`gather_full_state_dict`, which hands rank 0 the whole weights on the CPU
for the checkpoint.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard
from transformers import PreTrainedModel, get_linear_schedule_with_warmup

from .devices import training_autocast, training_bf16
from .memory import release_freed_memory
from .packing import PackedBatch, pack, pack_width, packed_forward
from .training_types import check_finite

ProgressCallback = Callable[[float, str], None]
StopCheck = Callable[[], bool]

_GROUP_CHUNK_BATCHES = 32


def plan_micro_batches(
    pair_tokens: Sequence[int],
    token_budget: int,
    *,
    seed: int,
    epochs: float,
    max_pairs: int | None = None,
) -> list[list[int]]:
    """Micro-batches of pair indices for ``epochs`` passes (a fraction keeps a prefix)."""
    count = len(pair_tokens)
    rng = np.random.default_rng(seed)
    batches: list[list[int]] = []
    for _ in range(max(math.ceil(epochs), 1)):
        order = rng.permutation(count)
        chunk_tokens = token_budget * _GROUP_CHUNK_BATCHES
        epoch_batches: list[list[int]] = []
        chunk: list[int] = []
        used = 0
        for index in [*order.tolist(), None]:
            if index is not None:
                chunk.append(index)
                used += pair_tokens[index]
            if chunk and (index is None or used >= chunk_tokens):
                chunk.sort(key=lambda item: -pair_tokens[item])
                epoch_batches.extend(_budget_groups(chunk, pair_tokens, token_budget, max_pairs))
                chunk, used = [], 0
        rng.shuffle(epoch_batches)
        batches.extend(epoch_batches)
    if epochs < math.ceil(epochs):
        per_epoch = len(batches) / max(math.ceil(epochs), 1)
        batches = batches[: max(1, round(per_epoch * epochs))]
    return batches


def _budget_groups(
    indices: list[int], pair_tokens: Sequence[int], budget: int, max_pairs: int | None
) -> list[list[int]]:
    groups: list[list[int]] = []
    group: list[int] = []
    used = 0
    for index in indices:
        full = used + pair_tokens[index] > budget or (
            max_pairs is not None and len(group) >= max_pairs
        )
        if group and full:
            groups.append(group)
            group, used = [], 0
        group.append(index)
        used += pair_tokens[index]
    if group:
        groups.append(group)
    return groups


class PackedRewardModule(nn.Module):  # type: ignore[misc]  # torch is untyped here
    """The rewards of a packed batch as one module call, so DDP's forward hooks see it."""

    def __init__(self, model: PreTrainedModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, batch: PackedBatch) -> torch.Tensor:
        rewards, _ = packed_forward(self.model, batch)
        return rewards


@dataclass
class PackedRunStats:
    steps: int
    losses: list[float]
    pairs: int
    tokens: int
    slots: int
    seconds: float
    cancelled: bool


def shardable_layers(model: PreTrainedModel) -> list[nn.Module]:
    """The repeated blocks FSDP shards one by one: the children of the model's outermost
    ``ModuleList``s (a decoder's ``layers``, BERT's ``encoder.layer``)."""
    layers: list[nn.Module] = []
    taken: list[str] = []
    for name, module in model.named_modules():
        if isinstance(module, nn.ModuleList) and not any(
            name.startswith(prefix) for prefix in taken
        ):
            layers.extend(module)
            taken.append(name + ".")
    return layers


def shard_with_fsdp(
    module: nn.Module, model: PreTrainedModel, *, device: torch.device, bf16: bool
) -> None:
    """Apply FSDP2 to ``module`` (which holds ``model``): each layer, then the rest as the root,
    over every rank of the default process group, on ``device``'s type.

    Layers first, so the root's own group holds only embeddings, final norm, pooler and head.
    The mesh is named rather than left to FSDP, whose default is the host's accelerator even
    when the ranks train on the CPU over gloo.
    """
    mesh = init_device_mesh(device.type, (torch.distributed.get_world_size(),))
    # On the CPU, gloo gathers float32 weights; bf16 autocast (if on) still casts for compute.
    policy = (
        MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)
        if bf16 and device.type == "cuda"
        else MixedPrecisionPolicy()
    )
    for layer in shardable_layers(model):
        fully_shard(layer, mesh=mesh, mp_policy=policy)
    fully_shard(module, mesh=mesh, mp_policy=policy)


def gather_full_state_dict(model: PreTrainedModel) -> dict[str, torch.Tensor]:
    """The whole weights of an FSDP-sharded ``model``, on the CPU of rank 0 (an empty dict on
    other ranks). Every rank must call it: each tensor is all-gathered in turn."""
    weights: dict[str, torch.Tensor] = get_model_state_dict(
        model, options=StateDictOptions(full_state_dict=True, cpu_offload=True)
    )
    return weights


def _set_checkpointing(model: PreTrainedModel, enabled: bool) -> None:
    # transformers 5 renamed gradient_checkpointing_* to activation_checkpointing_*.
    if hasattr(model, "activation_checkpointing_enable"):
        if enabled:
            model.activation_checkpointing_enable(
                activation_checkpointing_kwargs={"use_reentrant": False}
            )
        else:
            model.activation_checkpointing_disable()
    elif enabled:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    else:
        model.gradient_checkpointing_disable()


def apply_liger(model: PreTrainedModel) -> bool:
    """Liger's fused kernels (RMSNorm, SwiGLU, RoPE) where installed and on CUDA; else False."""
    device = next(model.parameters()).device
    if device.type != "cuda":
        return False
    try:
        from liger_kernel.transformers import _apply_liger_kernel_to_instance
    except ImportError:
        return False
    _apply_liger_kernel_to_instance(model=model)
    return True


def _prepare_model(model: PreTrainedModel, config: Any) -> None:
    torch.manual_seed(config.seed)
    model.train()
    if config.disable_dropout:
        # As TRL's RewardTrainer does by default (disable_dropout=True): a reward is read from
        # one position, and dropout noise there slows learning markedly on small batches.
        for layer in model.modules():
            if isinstance(layer, nn.Dropout):
                layer.p = 0.0
    if config.gradient_checkpointing:
        _set_checkpointing(model, True)


def _wrap_for_strategy(
    model: PreTrainedModel, config: Any, *, device: torch.device, world_size: int, bf16: bool
) -> nn.Module:
    """The module the loop calls: sharded in place under FSDP, DDP-wrapped across processes."""
    module: nn.Module = PackedRewardModule(model)
    if config.strategy == "fsdp":
        shard_with_fsdp(module, model, device=device, bf16=bf16)
    elif world_size > 1:
        module = nn.parallel.DistributedDataParallel(
            module, device_ids=[device.index] if device.type == "cuda" else None
        )
    return module


def _step_plan(pair_tokens: list[int], config: Any, per_step: int) -> tuple[list[list[int]], int]:
    """Micro-batches and the number of optimizer steps (``per_step`` micro-batches each)."""
    plan = plan_micro_batches(
        pair_tokens,
        config.token_budget,
        seed=config.seed,
        epochs=config.epochs,
        max_pairs=config.batch_size,
    )
    total_steps = max(math.ceil(len(plan) / per_step), 1)
    if config.max_steps is not None:
        # As the Trainer does: max_steps wins over epochs, running more passes where needed.
        total_steps = config.max_steps
        passes = math.ceil(total_steps * per_step / len(plan))
        if passes > 1:
            plan = plan_micro_batches(
                pair_tokens,
                config.token_budget,
                seed=config.seed,
                epochs=config.epochs * passes,
                max_pairs=config.batch_size,
            )
    return plan, total_steps


def _pair_loss(
    rewards: torch.Tensor, margins: torch.Tensor | None, indices: list[int], config: Any
) -> torch.Tensor:
    """Bradley-Terry loss of a micro-batch whose rewards are its chosen sides, then rejected."""
    chosen, rejected = rewards[: len(indices)], rewards[len(indices) :]
    difference = chosen - rejected
    if margins is not None:
        difference = difference - margins[indices].to(rewards.device)
    loss = -nn.functional.logsigmoid(difference).mean()
    if config.center_rewards_coefficient is not None:
        loss = loss + config.center_rewards_coefficient * torch.mean((chosen + rejected) ** 2)
    return loss


def _pack_pairs(
    model: PreTrainedModel,
    chosen_ids: Sequence[Sequence[int]],
    rejected_ids: Sequence[Sequence[int]],
    indices: list[int],
    pad_token_id: int,
    device: torch.device,
) -> PackedBatch:
    """One micro-batch: its pairs' chosen sides, then their rejected sides, packed."""
    sequences = [chosen_ids[i] for i in indices] + [rejected_ids[i] for i in indices]
    return pack(
        sequences,
        width=pack_width(model, [len(sequence) for sequence in sequences]),
        filler_id=pad_token_id,
        device=device,
    )


def run_packed_training(
    model: PreTrainedModel,
    *,
    chosen_ids: Sequence[Sequence[int]],
    rejected_ids: Sequence[Sequence[int]],
    margins: Sequence[float] | None,
    config: Any,
    max_length: int,
    pad_token_id: int,
    report: ProgressCallback,
    stop_requested: StopCheck,
    rank: int = 0,
    world_size: int = 1,
) -> PackedRunStats:
    """Train ``model`` in place (``config``: a :class:`.training.TrainingConfig`).

    With ``world_size > 1`` the default process group must be initialised; every rank calls this
    with the same pairs and config. Losses are the global means per optimizer step.
    """
    # Long (~95 lines) on purpose: one optimizer-step loop whose accumulation, gradient sync,
    # clipping and counting read best in one place; set-up and loss live in the helpers above.
    device = next(model.parameters()).device
    _prepare_model(model, config)
    use_bf16 = training_bf16(config.bf16, device)
    fsdp = config.strategy == "fsdp"
    module = _wrap_for_strategy(model, config, device=device, world_size=world_size, bf16=use_bf16)
    pair_tokens = [
        len(chosen) + len(rejected)
        for chosen, rejected in zip(chosen_ids, rejected_ids, strict=True)
    ]
    per_step = config.gradient_accumulation_steps * world_size
    plan, total_steps = _step_plan(pair_tokens, config, per_step)
    # Built after sharding: under FSDP it sees, and keeps AdamW states for, this rank's shards.
    optimizer = torch.optim.AdamW(
        model.parameters(),
        lr=config.learning_rate,
        weight_decay=config.weight_decay,
        # Fused AdamW: on MiniLM's 22.7M parameters a CPU step takes 15 ms against 66 ms for
        # the default multi-tensor one. FSDP's sharded DTensors keep the default on CPU.
        fused=device.type == "cuda" or (device.type == "cpu" and config.strategy != "fsdp"),
    )
    scheduler = get_linear_schedule_with_warmup(
        optimizer, math.ceil(config.warmup_ratio * total_steps), total_steps
    )
    margin_values = torch.tensor(list(margins), dtype=torch.float32) if margins else None
    losses: list[float] = []
    pairs = tokens = slots = 0
    cancelled = False
    started = time.perf_counter()
    for step in range(total_steps):
        step_loss = torch.zeros((), dtype=torch.float64, device=device)
        for micro in range(config.gradient_accumulation_steps):
            indices = plan[(step * per_step + micro * world_size + rank) % len(plan)]
            batch = _pack_pairs(model, chosen_ids, rejected_ids, indices, pad_token_id, device)
            last_micro = micro == config.gradient_accumulation_steps - 1
            # DDP all-reduces gradients once per optimizer step, on its last micro-batch (FSDP
            # reduce-scatters after each one, see the module's docstring).
            sync = (
                module.no_sync()
                if world_size > 1 and not fsdp and not last_micro
                else contextlib.nullcontext()
            )
            with sync:
                with training_autocast(device, use_bf16):
                    rewards = module(batch).float()
                loss = _pair_loss(rewards, margin_values, indices, config)
                (loss / config.gradient_accumulation_steps).backward()
            step_loss += loss.detach().double() / config.gradient_accumulation_steps
            pairs += len(indices)
            tokens += batch.tokens
            slots += batch.slots
        if world_size > 1:
            torch.distributed.all_reduce(step_loss)
            step_loss /= world_size
        # Every rank sees the same global loss, and the same norm below (DDP's reduced
        # gradients; FSDP's full_tensor is a collective), so all ranks stop together.
        check_finite(float(step_loss), what="loss", step=step + 1)
        if config.max_grad_norm is not None:
            norm = nn.utils.clip_grad_norm_(model.parameters(), config.max_grad_norm)
            # A finite loss can still bring NaN gradients, whose step would leave NaN weights.
            norm = norm.full_tensor() if hasattr(norm, "full_tensor") else norm
            check_finite(float(norm), what="gradient norm", step=step + 1)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(float(step_loss))
        report((step + 1) / total_steps, f"step {step + 1}/{total_steps}, loss {losses[-1]:.4f}")
        if stop_requested():
            cancelled = True
            break
    seconds = time.perf_counter() - started
    # Not during training: a trim every 10 steps held MiniLM at 1.5 GB instead of 3.7 GB but
    # cost 6-18% of the pairs/s (pages faulted back in); after it, the worker gives them back.
    release_freed_memory()
    if world_size > 1:
        counts = torch.tensor([pairs, tokens, slots], dtype=torch.float64, device=device)
        torch.distributed.all_reduce(counts)
        pairs, tokens, slots = (int(value) for value in counts.tolist())
    if config.gradient_checkpointing:
        _set_checkpointing(model, False)
    model.eval()
    return PackedRunStats(
        steps=len(losses),
        losses=losses,
        pairs=pairs,
        tokens=tokens,
        slots=slots,
        seconds=seconds,
        cancelled=cancelled,
    )
