"""Reward model throughput: scoring and training pairs/s and tokens/s, padded vs packed.

Runs the default all-MiniLM-L6-v2 reward model on real hh-rlhf pairs: scoring and full
fine-tuning each on the old padded path and on the packed (padding-free) path in the same run
(with the share of computed positions that were padding, and the packed/padded ratio), and
head-only training. On a CUDA device it also runs a randomly initialised ~0.6B-parameter
Qwen3-shaped seq-cls model (built from a config, nothing downloaded), and ``--long`` runs it on
synthetic 1K/4K/16K-token pairs. Each GPU figure comes with the share of the GPU's peak dense
bf16 throughput (model FLOPs utilisation), estimating FLOPs as 2·N·tokens (scoring) and
6·N·tokens (training) plus attention, 4·layers·hidden·Σlength² (scoring) and three times that
(training); N: non-embedding weights (an embedding lookup does no matmul); tokens: real,
non-padding tokens. ``--processes N`` adds full fine-tuning as N torchrun processes (gloo on
CPU, NCCL on GPUs); its MFU divides by N GPUs' peak.

    .venv/bin/python benchmarks/reward_model.py --pairs 200
    .venv/bin/python benchmarks/reward_model.py --pairs 256 --score-groups 32768,8192,2048   # CPU
    .venv/bin/python benchmarks/reward_model.py --device cuda --pairs 2000 --long 1024,4096,16384
    .venv/bin/python benchmarks/reward_model.py --device cuda --processes 8
    .venv/bin/python benchmarks/reward_model.py --device cuda --heldout 500   # + accuracy
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

import torch  # noqa: E402
import transformers  # noqa: E402
from transformers import AutoModelForSequenceClassification, AutoTokenizer, Qwen3Config  # noqa: E402

from scoring.reward_model import (  # noqa: E402
    PreferenceExample,
    RewardModel,
    TrainingConfig,
    default_base_path,
    evaluate,
    load_hh_rlhf,
    train,
)
from scoring.reward_model.devices import trains_in_bf16_by_default  # noqa: E402
from scoring.reward_model.packing import pack, pack_width, token_budget_batches  # noqa: E402
from scoring.reward_model.training_types import DEFAULT_TOKEN_BUDGET  # noqa: E402

HH_RLHF_PATH = REPO_ROOT / "../shared/data/hh-rlhf-harmless-base/test.jsonl.gz"

# Dense bf16 peak (no sparsity), TFLOP/s.
PEAK_BF16_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0, "L40S": 362.0}


def load_pairs(count: int) -> list[PreferenceExample]:
    """``count`` hh-rlhf pairs; past the file's 2,312 each further copy is tagged, so it is a
    distinct pair (scoring computes identical transcripts once, which would flatter the rate)."""
    pool = load_hh_rlhf(HH_RLHF_PATH)
    pairs = []
    for index in range(count):
        example = pool[index % len(pool)]
        copy = index // len(pool)
        if copy:
            first, *rest = example.conversation
            tagged = {**first, "content": f"[copy {copy}] {first['content']}"}
            example = dataclasses.replace(example, conversation=[tagged, *rest])
        pairs.append(example)
    return pairs


def non_embedding_parameters(model: torch.nn.Module) -> int:
    embedding_weights = {
        id(module.weight) for module in model.modules() if isinstance(module, torch.nn.Embedding)
    }
    return sum(p.numel() for p in model.parameters() if id(p) not in embedding_weights)


def peak_tflops(device: torch.device, override: float | None) -> float | None:
    if override is not None:
        return override
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((peak for key, peak in PEAK_BF16_TFLOPS.items() if key in name), None)


def share_of_peak(flops_per_second: float, peak: float | None, devices: int = 1) -> str:
    if peak is None:
        return ""
    share = 100 * flops_per_second / (peak * 1e12 * devices)
    return f", {flops_per_second / 1e12:.1f} TFLOP/s = {share:.1f}% of peak bf16"


def attention_flops(model: torch.nn.Module, lengths: list[int], *, training: bool) -> float:
    """QKᵀ and AV: 4·layers·hidden·Σlength² forward (per sequence, causal masks not halved)."""
    config = model.config.get_text_config()
    per = 4 * config.num_hidden_layers * config.hidden_size * sum(n * n for n in lengths)
    return float(per * (3 if training else 1))


def padding_share_padded(model: RewardModel, ids: list[list[int]]) -> float:
    slots = sum(len(batch) * len(ids[batch[0]]) for batch in model._length_sorted_batches(ids))
    return 1.0 - sum(map(len, ids)) / max(slots, 1)


def padding_share_packed(model: RewardModel, ids: list[list[int]]) -> float:
    order = sorted(range(len(ids)), key=lambda index: len(ids[index]), reverse=True)
    lengths = [len(ids[index]) for index in order]
    slots = 0
    for group in token_budget_batches(lengths, model.max_batch_tokens):
        sequences = [ids[order[position]] for position in group]
        slots += pack(sequences, width=pack_width(model.model, [len(s) for s in sequences])).slots
    return 1.0 - sum(lengths) / max(slots, 1)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def step_timer(device: torch.device) -> tuple[list[float], Callable[[float, str], None]]:
    """A training progress callback recording when each optimizer step ends (after a device
    sync), and the list it fills."""
    times: list[float] = []

    def on_progress(fraction: float, message: str) -> None:
        if message.startswith("step "):
            synchronize(device)
            times.append(time.perf_counter())

    return times, on_progress


def bench_scoring(
    label: str, model: RewardModel, pairs: list[PreferenceExample], peak: float | None
) -> None:
    """Padded (the old path) and packed scoring of the same pairs, one after the other."""
    triples = [(pair.conversation, pair.chosen, pair.rejected) for pair in pairs]
    model.prob_a_better_batch(triples[: min(8, len(triples))])  # warm-up (CUDA init, kernels)
    items = [(pair.conversation, pair.chosen) for pair in pairs]
    items += [(pair.conversation, pair.rejected) for pair in pairs]
    ids = model.encode(items).input_ids
    tokens = sum(map(len, ids))
    flops = 2 * non_embedding_parameters(model.model) * tokens
    flops += attention_flops(model.model, [len(i) for i in ids], training=False)
    packs = model.packing
    rates: dict[bool, float] = {}
    for packing in [False, True] if packs else [False]:
        model.packing = packing
        share = (padding_share_packed if packing else padding_share_padded)(model, ids)
        if model.device.type == "cuda":
            # A full untimed pass: kernels chosen and the memory pool grown for these shapes.
            model.prob_a_better_batch(triples)
        synchronize(model.device)
        started = time.perf_counter()
        model.prob_a_better_batch(triples)
        synchronize(model.device)
        seconds = time.perf_counter() - started
        rates[packing] = len(pairs) / seconds
        print(
            f"[{label}] scoring, {'packed' if packing else 'padded'}: {len(pairs)} pairs "
            f"({tokens:,} tokens, {100 * share:.1f}% padding) in {seconds:.2f} s -> "
            f"{len(pairs) / seconds:.1f} pairs/s, {tokens / seconds:,.0f} tokens/s"
            f"{share_of_peak(flops / seconds, peak)}"
        )
    model.packing = packs
    if len(rates) == 2:
        print(f"[{label}] scoring packed/padded: {rates[True] / rates[False]:.2f}x")


def bench_score_groups(
    label: str, model: RewardModel, pairs: list[PreferenceExample], budgets: list[int]
) -> None:
    """Packed scoring of the same pairs in groups of each token budget (``max_batch_tokens``),
    the budgets interleaved pass by pass (best of 2), so a busy moment hits them alike."""
    triples = [(pair.conversation, pair.chosen, pair.rejected) for pair in pairs]
    default = model.max_batch_tokens
    best = dict.fromkeys(budgets, float("inf"))
    for _ in range(2):
        for budget in budgets:
            model.max_batch_tokens = budget
            model.prob_a_better_batch(triples[:8])  # warm-up at this group size
            synchronize(model.device)
            started = time.perf_counter()
            model.prob_a_better_batch(triples)
            synchronize(model.device)
            best[budget] = min(best[budget], time.perf_counter() - started)
    model.max_batch_tokens = default
    first = len(pairs) / best[budgets[0]]
    for budget in budgets:
        rate = len(pairs) / best[budget]
        print(
            f"[{label}] scoring in {budget:,}-token groups"
            f"{' (the default here)' if budget == default else ''}: {rate:.1f} pairs/s, "
            f"{rate / first:.2f}x the {budgets[0]:,}-token groups"
        )


def bench_head_training(label: str, model: RewardModel, pairs: list[PreferenceExample]) -> None:
    metrics = train(model, pairs, TrainingConfig(mode="head"))
    phases = ", ".join(f"{name} {seconds:.2f} s" for name, seconds in metrics.phase_seconds.items())
    print(
        f"[{label}] head training: {metrics.pairs} pairs in {metrics.seconds:.2f} s ({phases}) -> "
        f"{metrics.pairs_per_second:.1f} pairs/s, {metrics.tokens_per_second:,.0f} tokens/s; "
        f"loss {metrics.initial_loss:.3f} -> {metrics.final_loss:.3f}, "
        f"{metrics.truncated} truncated"
    )


def _full_training_arms(
    device: torch.device, steps: int, token_budget: int | None
) -> list[tuple[str, bool, int | None, int | None, bool | None]]:
    """(name, packing, max_steps, token budget, bf16) of each full-training arm. On a CPU the
    padded/packed comparison runs in float32 (the old default) and the job's default (bf16
    autocast where the CPU has bf16 units) is an arm of its own; on a GPU every arm autocasts."""
    float32 = False if device.type == "cpu" else None
    arms: list[tuple[str, bool, int | None, int | None, bool | None]] = [
        ("padded", False, steps, token_budget, float32),
        ("packed", True, steps, token_budget, float32),
    ]
    if token_budget is None:
        job = f"packed, {DEFAULT_TOKEN_BUDGET:,}-token micro-batches"
        arms.append((job, True, None, DEFAULT_TOKEN_BUDGET, float32))
        if device.type == "cpu" and trains_in_bf16_by_default(device):
            arms.append((f"{job}, bf16 autocast", True, None, DEFAULT_TOKEN_BUDGET, None))
    return arms


# Long on purpose: every arm measured the same way in one loop, so their ratios compare like
# with like.
def bench_full_training(
    label: str,
    build: Callable[[], RewardModel],
    pairs: list[PreferenceExample],
    *,
    steps: int,
    batch_size: int,
    peak: float | None,
    device: torch.device,
    token_budget: int | None = None,
) -> None:
    """Full fine-tuning, one arm after the other on the same pairs: the old padded path (TRL,
    batch_size pairs a step), the packed path with the same pairs per step (a budget batch_size
    windows wide, so the pair cap binds and the two differ only in padding), the packed path
    as a job runs it (micro-batches of DEFAULT_TOKEN_BUDGET real tokens, one pass over the
    pairs) and, on a CPU with bf16 units, that again with the job's default bf16 autocast.

    Each arm first trains one untimed step on a fresh model (kernels and allocator warmed), so
    its overall pairs/s, which counts every pair trained in every step, is the comparison. The
    steady rate (first step left out) is printed too, but it flatters the padded path: its
    length-grouped sampler puts the longest batch first (README)."""
    rates: dict[str, tuple[float, float]] = {}
    mean_square: float | None = None  # Σ length² / Σ length of the pairs' sequences
    for name, packing, max_steps, budget, bf16 in _full_training_arms(device, steps, token_budget):
        if not packing and importlib.util.find_spec("trl") is None:
            print(f"[{label}] full training, padded: skipped (TRL, its only path, not installed)")
            continue
        model = build()
        config = TrainingConfig(
            mode="full",
            max_steps=max_steps,
            epochs=1.0,
            batch_size=batch_size,
            packing=packing,
            token_budget=budget or batch_size * 2 * model.max_length,
            bf16=bf16,
        )
        train(build(), pairs, dataclasses.replace(config, max_steps=1))  # warm-up, untimed
        if mean_square is None:  # the same tokenizer in every arm
            encoded = model.encode([(p.conversation, p.chosen) for p in pairs]).input_ids
            encoded += model.encode([(p.conversation, p.rejected) for p in pairs]).input_ids
            mean_square = sum(len(i) ** 2 for i in encoded) / max(sum(map(len, encoded)), 1)
        step_times, on_progress = step_timer(model.device)
        metrics = train(model, pairs, config, on_progress=on_progress)
        line = (
            f"[{label}] full training, {name}: {metrics.steps} steps, "
            f"{metrics.pairs_per_second:.1f} pairs/s and "
            f"{metrics.tokens_per_second:,.0f} tokens/s overall, "
            f"{100 * (metrics.padding_share or 0):.1f}% padding"
        )
        steady = metrics.pairs_per_second
        if len(step_times) >= 3:
            # Pairs per step taken as the run's average.
            steady_seconds = step_times[-1] - step_times[0]
            steady_steps = len(step_times) - 1
            pairs_per_step = metrics.pairs_per_second * metrics.phase_seconds["train"]
            pairs_per_step /= metrics.steps
            steady = steady_steps * pairs_per_step / steady_seconds
            steady_tokens = metrics.tokens * steady_steps / metrics.steps / steady_seconds
            flops = 6 * non_embedding_parameters(model.model) * steady_tokens
            flops += attention_flops(model.model, [1], training=True) * mean_square * steady_tokens
            line += (
                f"; steady {steady:.1f} pairs/s, {steady_tokens:,.0f} tokens/s"
                f"{share_of_peak(flops, peak)}"
            )
        rates[name] = (metrics.pairs_per_second, steady)
        print(line + f"; loss {metrics.loss_curve[0]:.3f} -> {metrics.loss_curve[-1]:.3f}")
        del model
    if "padded" in rates:
        overall, steady = rates.pop("padded")
        for name, (arm_overall, arm_steady) in rates.items():
            print(
                f"[{label}] full training {name}/padded: {arm_overall / overall:.2f}x overall "
                f"pairs/s ({arm_steady / steady:.2f}x steady)"
            )


def bench_distributed(
    label: str,
    base: Path,
    pairs: list[PreferenceExample],
    args: argparse.Namespace,
    peak: float | None,
    device: torch.device,
) -> None:
    """Full fine-tuning as --processes torchrun ranks (the job path), pairs/s over all ranks."""
    from scoring.reward_model.launcher import train_distributed

    config = TrainingConfig(mode="full", max_steps=args.full_steps)
    started = time.perf_counter()
    result = train_distributed(
        base_model=base,
        examples=pairs,
        config=config,
        processes=args.processes,
        device=device.type,
    )
    metrics = result.metrics
    flops = 6 * non_embedding_parameters(result.model.model) * metrics.tokens_per_second
    print(
        f"[{label}] full training, {result.world_size} processes: {metrics.steps} steps, "
        f"{metrics.pairs_per_second:.1f} pairs/s, {metrics.tokens_per_second:,.0f} tokens/s "
        f"(training loop only; {time.perf_counter() - started:.1f} s with start-up)"
        f"{share_of_peak(flops, peak, devices=result.world_size if device.type == 'cuda' else 1)}"
    )


# Long on purpose: every arm at each length in one loop, so their figures share data and warm-up.
def bench_long_context(
    label: str,
    build: Callable[[int], RewardModel],
    lengths: list[int],
    args: argparse.Namespace,
    peak: float | None,
) -> None:
    """Packed scoring and training on synthetic pairs of exactly ``length`` tokens a side.

    Scoring runs with float32 weights under bf16 autocast (a model being trained) and, on a GPU,
    with bf16 weights (what a scoring worker loads). Training runs with gradient checkpointing at
    every length, without it up to ``--long-plain-max`` tokens, and with ``--liger`` also with
    Liger's fused kernels; rates are steady state (the first step, with its kernel compilation
    and optimizer set-up, left out)."""
    import copy

    from scoring.reward_model.packed_training import apply_liger, run_packed_training

    model = build(max(lengths))
    on_gpu = model.device.type == "cuda"
    scorers = [("float32 weights, bf16 autocast" if on_gpu else "float32", model)]
    if on_gpu:
        half = copy.deepcopy(model.model).to(torch.bfloat16)
        scorers.append(("bf16 weights", RewardModel(half, model.tokenizer, device=model.device)))
        if args.liger:
            fused = copy.deepcopy(model.model).to(torch.bfloat16)
            if apply_liger(fused):
                scorer = RewardModel(fused, model.tokenizer, device=model.device)
                scorers.append(("bf16 weights + liger", scorer))
    trainers: list[tuple[str, RewardModel, bool]] = [("checkpointing", model, True)]
    trainers.append(("no checkpointing", model, False))
    if args.liger:
        liger = build(max(lengths))
        if apply_liger(liger.model):
            trainers += [("liger + checkpointing", liger, True), ("liger", liger, False)]
        else:
            print(f"[{label}] --liger: liger-kernel not installed or no CUDA; Liger arms skipped")
    generator = torch.Generator().manual_seed(0)
    vocab = model.model.config.get_text_config().vocab_size
    parameters = non_embedding_parameters(model.model)
    for length in lengths:
        count = max(2, args.long_tokens // (2 * length))
        sides = [
            torch.randint(100, vocab, (length,), generator=generator).tolist()
            for _ in range(2 * count)
        ]
        tokens = 2 * count * length
        flops = 2 * parameters * tokens + attention_flops(
            model.model, [length] * 2 * count, training=False
        )
        for name, scorer in scorers:
            scorer.max_length = length
            scorer.max_batch_tokens = max(args.long_tokens, length)
            # Warm-up at full size (kernels chosen, the memory pool grown), then the best of
            # --long-repeats passes.
            scorer.rewards_for_ids(sides)
            timings = []
            for _ in range(args.long_repeats):
                synchronize(scorer.device)
                started = time.perf_counter()
                scorer.rewards_for_ids(sides)
                synchronize(scorer.device)
                timings.append(time.perf_counter() - started)
            seconds = min(timings)
            print(
                f"[{label}] {length:,}-token scoring, {name}: {count} pairs in {seconds:.2f} s -> "
                f"{count / seconds:.2f} pairs/s, {tokens / seconds:,.0f} tokens/s"
                f"{share_of_peak(flops / seconds, peak)}"
            )
        budget = max(args.long_train_tokens, 2 * length)
        for name, trainer, checkpointing in trainers:
            if not checkpointing and length > args.long_plain_max:
                continue
            step_times, on_step = step_timer(trainer.device)

            config = TrainingConfig(
                mode="full",
                max_steps=args.long_steps,
                gradient_checkpointing=checkpointing,
                token_budget=budget,
                batch_size=10**6,
            )
            try:
                stats = run_packed_training(
                    trainer.model,
                    chosen_ids=sides[:count],
                    rejected_ids=sides[count:],
                    margins=None,
                    config=config,
                    max_length=length,
                    pad_token_id=trainer.tokenizer.pad_token_id,
                    report=on_step,
                    stop_requested=lambda: False,
                )
            except torch.OutOfMemoryError:
                print(f"[{label}] {length:,}-token training, {name}: out of memory")
                torch.cuda.empty_cache()
                torch.cuda.reset_peak_memory_stats()
                continue
            tokens_per_step = stats.tokens / stats.steps
            if len(step_times) >= 3:
                seconds = (step_times[-1] - step_times[0]) / (len(step_times) - 1)
                rate = "steady"
            else:
                seconds = stats.seconds / stats.steps
                rate = "overall"
            tokens_per_second = tokens_per_step / seconds
            flops = 6 * parameters * tokens_per_second
            # Attention per sequence, times sequences per second.
            flops += (
                attention_flops(trainer.model, [length], training=True) * tokens_per_second / length
            )
            memory = ""
            if trainer.device.type == "cuda":
                memory = f", peak memory {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB"
                torch.cuda.reset_peak_memory_stats()
            print(
                f"[{label}] {length:,}-token training, {name} ({stats.steps} steps of "
                f"{tokens_per_step:,.0f} tokens, {rate}): "
                f"{tokens_per_second / (2 * length):.2f} pairs/s, {tokens_per_second:,.0f} tokens/s"
                f"{share_of_peak(flops, peak)}{memory}"
            )


def bench_heldout_accuracy(
    label: str, build: Callable[[], RewardModel], args: argparse.Namespace, device: torch.device
) -> None:
    """Held-out accuracy of both training modes on the real hh-rlhf labels (no pair repeated)."""
    pool = load_hh_rlhf(HH_RLHF_PATH)
    held_out, training = pool[: args.heldout], pool[args.heldout :]
    configs = {
        "head": TrainingConfig(mode="head"),
        "full": TrainingConfig(
            mode="full",
            epochs=args.full_epochs,
            batch_size=args.train_batch_size,
            learning_rate=args.full_learning_rate,
        ),
    }
    if device.type == "cpu" and trains_in_bf16_by_default(device):
        # The default here is bf16 autocast: float32 beside it shows what bf16 costs in accuracy.
        configs["full, bf16 autocast (default here)"] = configs.pop("full")
        configs["full, float32"] = dataclasses.replace(
            configs["full, bf16 autocast (default here)"], bf16=False
        )
    for mode, config in configs.items():
        model = build()
        started = time.perf_counter()
        metrics = train(model, training, config)
        seconds = time.perf_counter() - started
        accuracy = evaluate(model, held_out)["accuracy"]
        print(
            f"[{label}] {mode} training on {metrics.pairs} pairs ({metrics.steps} steps) in "
            f"{seconds:.1f} s -> held-out accuracy {accuracy:.3f} on {len(held_out)} pairs"
        )


def tiny_decoder(max_length: int) -> RewardModel:
    import tempfile

    from scoring.reward_model import build_tiny_decoder_base

    with tempfile.TemporaryDirectory(prefix="bench-tiny-") as directory:
        path = build_tiny_decoder_base(Path(directory) / "base")
        return RewardModel.from_base(path, max_length=max_length)  # loaded: the files can go


def qwen3_like_model(device: torch.device, max_length: int = 512) -> RewardModel:
    """A random ~0.6B Qwen3-shaped reward model, scored with the MiniLM tokenizer's ids."""
    tokenizer = AutoTokenizer.from_pretrained(default_base_path(), local_files_only=True)
    config = Qwen3Config(
        vocab_size=151_936,
        hidden_size=1024,
        intermediate_size=3072,
        num_hidden_layers=28,
        num_attention_heads=16,
        num_key_value_heads=8,
        head_dim=128,
        max_position_embeddings=40_960,
        tie_word_embeddings=True,
        num_labels=1,
        pad_token_id=tokenizer.pad_token_id,
    )
    with torch.device(device):  # initialise the random weights where they will run
        model = AutoModelForSequenceClassification.from_config(config, dtype=torch.float32)
    return RewardModel(model, tokenizer, device=device, max_length=max_length)


def run_model(
    label: str,
    build: Callable[[], RewardModel],
    pairs: list[PreferenceExample],
    args: argparse.Namespace,
    peak: float | None,
) -> None:
    model = build()
    total = sum(p.numel() for p in model.model.parameters())
    print(
        f"[{label}] {total / 1e6:.1f}M parameters "
        f"({non_embedding_parameters(model.model) / 1e6:.1f}M non-embedding), "
        f"max_length {model.max_length}"
    )
    model.batch_size = args.score_batch_size
    bench_scoring(label, model, pairs[: args.pairs], peak)
    if args.score_groups:
        budgets = [int(budget) for budget in args.score_groups.split(",")]
        bench_score_groups(label, model, pairs[: args.pairs], budgets)
    if model.device.type == "cuda" and model.precision == "bf16":
        # What a scoring-only worker runs: bf16 weights (RewardModel.load(inference_only=True)).
        scoring_only = build()
        scoring_only.model.to(torch.bfloat16)
        scoring_only.batch_size = args.score_batch_size
        bench_scoring(f"{label}, bf16 weights", scoring_only, pairs[: args.pairs], peak)
        del scoring_only
    bench_head_training(label, model, pairs[: args.pairs])
    bench_full_training(
        label,
        build,
        pairs[: args.full_steps * args.train_batch_size * 2],
        steps=args.full_steps,
        batch_size=args.train_batch_size,
        peak=peak,
        device=model.device,
        token_budget=args.token_budget,
    )


# Long on purpose: argument parsing and the runs it selects, in the order printed.
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=200, help="hh-rlhf pairs to score/train on")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda if present)")
    parser.add_argument("--full-steps", type=int, default=5, help="full fine-tuning steps")
    parser.add_argument("--train-batch-size", type=int, default=8, help="pairs per step")
    parser.add_argument("--score-batch-size", type=int, default=32, help="sequences per pass")
    parser.add_argument(
        "--score-groups",
        default="",
        help="comma-separated scoring group sizes in tokens, e.g. 32768,8192,2048: packed "
        "scoring at each (max_batch_tokens), interleaved",
    )
    parser.add_argument("--peak-tflops", type=float, default=None, help="override peak bf16")
    parser.add_argument("--skip-large", action="store_true", help="GPU: skip the 0.6B model")
    parser.add_argument(
        "--skip-minilm", action="store_true", help="skip the MiniLM runs (e.g. --long alone)"
    )
    parser.add_argument(
        "--long",
        default="",
        help="comma-separated lengths, e.g. 1024,4096,16384: packed "
        "scoring and training of the 0.6B config (GPU) or a tiny decoder (CPU) at each",
    )
    parser.add_argument("--long-tokens", type=int, default=32_768, help="tokens per --long batch")
    parser.add_argument(
        "--long-steps", type=int, default=4, help="training steps per --long length and arm"
    )
    parser.add_argument(
        "--long-train-tokens", type=int, default=16_384, help="tokens per --long training step"
    )
    parser.add_argument(
        "--long-plain-max",
        type=int,
        default=4_096,
        help="--long training also runs without gradient checkpointing up to this length",
    )
    parser.add_argument(
        "--long-repeats", type=int, default=3, help="--long scoring: timed passes, best kept"
    )
    parser.add_argument(
        "--liger", action="store_true", help="--long: also score and train with Liger"
    )
    parser.add_argument("--processes", type=int, default=0, help="also train as N processes")
    parser.add_argument(
        "--token-budget",
        type=int,
        default=None,
        help="packed full training: tokens per micro-batch (default: train-batch-size pairs "
        "of full windows, so both paths train the same pairs per step)",
    )
    parser.add_argument(
        "--heldout",
        type=int,
        default=0,
        help="also train head and full MiniLM on all other hh-rlhf pairs; report accuracy on N",
    )
    parser.add_argument("--full-epochs", type=float, default=2.0, help="with --heldout")
    parser.add_argument("--full-learning-rate", type=float, default=5e-5, help="with --heldout")
    args = parser.parse_args()

    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    pairs = load_pairs(max(args.pairs, args.full_steps * args.train_batch_size))
    peak = peak_tflops(device, args.peak_tflops)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(
        f"device: {device} ({name}, {torch.get_num_threads()} CPU threads) | "
        f"torch {torch.__version__} | transformers {transformers.__version__} | "
        f"{args.pairs} hh-rlhf pairs"
    )
    if not args.skip_minilm:
        run_model("minilm", lambda: RewardModel.from_base(device=device), pairs, args, peak)
    if args.heldout:
        bench_heldout_accuracy("minilm", lambda: RewardModel.from_base(device=device), args, device)
    if args.processes:
        bench_distributed("minilm", default_base_path(), pairs, args, peak, device)
    if device.type == "cuda" and not args.skip_large:
        run_model("qwen3-0.6b-random", lambda: qwen3_like_model(device), pairs, args, peak)
    if args.long:
        lengths = [int(length) for length in args.long.split(",")]
        if device.type == "cuda":
            bench_long_context(
                "qwen3-0.6b-random",
                lambda length: qwen3_like_model(device, length),
                lengths,
                args,
                peak,
            )
        else:
            bench_long_context("tiny-qwen3 (CPU smoke run)", tiny_decoder, lengths, args, peak)


if __name__ == "__main__":
    main()
