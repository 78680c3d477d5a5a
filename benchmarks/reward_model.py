"""Reward model throughput: scoring and training pairs/s and tokens/s.

Runs the default all-MiniLM-L6-v2 reward model on real hh-rlhf pairs: scoring, head-only
training and a few steps of full fine-tuning. On a CUDA device it also runs a randomly
initialised ~0.6B-parameter Qwen3-shaped seq-cls model (built from a config, nothing
downloaded) and reports the share of the GPU's peak dense bf16 throughput achieved, estimating
FLOPs as 2·params·tokens for scoring and 6·params·tokens for training (params: non-embedding
weights, since an embedding lookup does no matmul; tokens: real, non-padding tokens).

    .venv/bin/python benchmarks/reward_model.py --pairs 200
    .venv/bin/python benchmarks/reward_model.py --device cuda --pairs 2000
    .venv/bin/python benchmarks/reward_model.py --device cuda --heldout 500   # + accuracy
"""

from __future__ import annotations

import argparse
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

HH_RLHF_PATH = REPO_ROOT / "../shared/data/hh-rlhf-harmless-base/test.jsonl.gz"

# Dense bf16 peak (no sparsity), TFLOP/s.
PEAK_BF16_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0, "L40S": 362.0}


def load_pairs(count: int) -> list[PreferenceExample]:
    pool = load_hh_rlhf(HH_RLHF_PATH)
    return [pool[index % len(pool)] for index in range(count)]


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


def share_of_peak(flops_per_second: float, peak: float | None) -> str:
    if peak is None:
        return ""
    share = 100 * flops_per_second / (peak * 1e12)
    return f", {flops_per_second / 1e12:.1f} TFLOP/s = {share:.1f}% of peak bf16"


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bench_scoring(
    label: str, model: RewardModel, pairs: list[PreferenceExample], peak: float | None
) -> None:
    triples = [(pair.conversation, pair.chosen, pair.rejected) for pair in pairs]
    model.prob_a_better_batch(triples[: min(8, len(triples))])  # warm-up (CUDA init, kernels)
    items = [(pair.conversation, pair.chosen) for pair in pairs]
    items += [(pair.conversation, pair.rejected) for pair in pairs]
    tokens = model.encode(items).token_count
    synchronize(model.device)
    started = time.perf_counter()
    model.prob_a_better_batch(triples)
    synchronize(model.device)
    seconds = time.perf_counter() - started
    flops = 2 * non_embedding_parameters(model.model) * tokens / seconds
    print(
        f"[{label}] scoring: {len(pairs)} pairs ({tokens:,} tokens) in {seconds:.2f} s -> "
        f"{len(pairs) / seconds:.1f} pairs/s, {tokens / seconds:,.0f} tokens/s"
        f"{share_of_peak(flops, peak)}"
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


def bench_full_training(
    label: str,
    model: RewardModel,
    pairs: list[PreferenceExample],
    *,
    steps: int,
    batch_size: int,
    peak: float | None,
) -> None:
    config = TrainingConfig(mode="full", max_steps=steps, batch_size=batch_size)
    step_times: list[float] = []

    def on_progress(fraction: float, message: str) -> None:
        if message.startswith("step "):
            synchronize(model.device)
            step_times.append(time.perf_counter())

    needed = steps * batch_size
    metrics = train(model, pairs[:needed], config, on_progress=on_progress)
    line = (
        f"[{label}] full training: {metrics.steps} steps x {batch_size} pairs on {metrics.device} "
        f"in {metrics.phase_seconds['train']:.2f} s -> {metrics.pairs_per_second:.1f} pairs/s, "
        f"{metrics.tokens_per_second:,.0f} tokens/s overall"
    )
    if len(step_times) >= 3:
        # Steady state: leave out the first step (optimizer creation, warm-up kernels).
        steady_seconds = step_times[-1] - step_times[0]
        steady_steps = len(step_times) - 1
        steady_pairs = steady_steps * batch_size / steady_seconds
        steady_tokens = metrics.tokens * steady_steps / metrics.steps / steady_seconds
        flops = 6 * non_embedding_parameters(model.model) * steady_tokens
        line += (
            f"; steady {steady_pairs:.1f} pairs/s, {steady_tokens:,.0f} tokens/s"
            f"{share_of_peak(flops, peak)}"
        )
    print(line + f"; loss {metrics.loss_curve[0]:.3f} -> {metrics.loss_curve[-1]:.3f}")


def bench_heldout_accuracy(
    label: str, build: Callable[[], RewardModel], args: argparse.Namespace
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


def qwen3_like_model(device: torch.device) -> RewardModel:
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
    return RewardModel(model, tokenizer, device=device, max_length=512)


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
        build(),
        pairs,
        steps=args.full_steps,
        batch_size=args.train_batch_size,
        peak=peak,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=200, help="hh-rlhf pairs to score/train on")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda if present)")
    parser.add_argument("--full-steps", type=int, default=5, help="full fine-tuning steps")
    parser.add_argument("--train-batch-size", type=int, default=8, help="pairs per step")
    parser.add_argument("--score-batch-size", type=int, default=32, help="sequences per pass")
    parser.add_argument("--peak-tflops", type=float, default=None, help="override peak bf16")
    parser.add_argument("--skip-large", action="store_true", help="GPU: skip the 0.6B model")
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
    run_model("minilm", lambda: RewardModel.from_base(device=device), pairs, args, peak)
    if args.heldout:
        bench_heldout_accuracy("minilm", lambda: RewardModel.from_base(device=device), args)
    if device.type == "cuda" and not args.skip_large:
        run_model("qwen3-0.6b-random", lambda: qwen3_like_model(device), pairs, args, peak)


if __name__ == "__main__":
    main()
