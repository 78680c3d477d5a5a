"""The deployment table: scoring latency and throughput of the default reward model per format.

Arms, all measured in the same run and interleaved (batch by batch, round robin), so that a
machine shared with other jobs slows every arm alike:

* ``torch-fp32``: the torch model in float32 (the baseline; what a CPU worker runs today);
* ``onnx-fp32``: the same model exported to ONNX, scored by ONNX Runtime;
* ``onnx-int8``: that export quantised to int8 (``export_model --quantize int8``: weight-only,
  block-wise int8 weights, float32 activations);
* ``onnx-int8-dyn``: ``--quantize int8-dynamic`` (``quantize_dynamic``: per-channel int8
  weights, int8 activations with one scale per tensor, int8 arithmetic);
* on a CUDA device also ``cuda-fp32`` (float32 weights, no autocast), ``torch-bf16`` and
  ``torch-fp16`` (half-precision weights, as the GPU worker serves);
* on a CPU with bf16 units (AMX or AVX-512 BF16) also ``cpu-bf16-autocast``: the torch model
  under CPU bf16 autocast. Not a product path (a CPU scores in float32, so a version's scores do
  not depend on the CPU that scored them); it shows what that rule costs in speed.

The model is all-MiniLM-L6-v2 with a reward head trained (head mode) on ``--train`` hh-rlhf
pairs; ``--heldout`` other pairs are scored by every arm. Reported per arm: per-pair latency at
batch 1 (median over ``--latency-pairs`` pairs, one ``prob_a_better`` call each), pairs/s at
batch 32 (all held-out pairs, 32 pairs = 64 transcripts per call), agreement with torch-fp32
(same preferred side), held-out accuracy (the human-chosen side preferred) and its change
against torch-fp32 with a 95% paired bootstrap interval, and the ratio of pairs/s to torch-fp32.

The ONNX arms are exported as ``export_model`` writes them: traced with eager attention and
rewritten by ONNX Runtime's transformer optimizer (fused Attention, SkipLayerNormalization,
BiasGelu and embedding nodes for BERT-style encoders), scored with idle threads sleeping rather
than spinning, in length-sorted batches whose rows are within 10% of the batch's longest (ONNX
Runtime computes every padded position; the torch arm scores padding-free packed batches). The
padding this leaves is printed as padded/real tokens. ``--checkpoint DIR`` keeps the trained
model there and reuses it on the next run (the same model for every run; training is most of a
run's time on a busy CPU); any saved reward model directory serves, e.g. a full-mode version.

    .venv/bin/python benchmarks/deploy.py [--train 300] [--heldout 400] [--latency-pairs 40]
        [--threads N] [--max-length 512] [--checkpoint DIR]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from scoring.evaluation.maths import bootstrap_mean_interval  # noqa: E402
from scoring.reward_model import (  # noqa: E402
    RewardModel,
    TrainingConfig,
    load_hh_rlhf,
    train,
)
from scoring.reward_model.devices import cpu_has_bf16_units  # noqa: E402
from scoring.reward_model.onnx_backend import (  # noqa: E402
    DEFAULT_BATCH_SIZE,
    DEFAULT_MAX_BATCH_TOKENS,
    DEFAULT_MAX_PADDING,
    OnnxRewardModel,
    export_onnx,
    length_sorted_batches,
)

HH_RLHF_PATH = REPO_ROOT / "../shared/data/hh-rlhf-harmless-base/test.jsonl.gz"
BATCH_PAIRS = 32

Pair = tuple[list[dict[str, str]], str, str]


def build_arms(
    model: RewardModel, workdir: Path, threads: int
) -> dict[str, Callable[[list[Pair]], np.ndarray]]:
    arms: dict[str, Callable[[list[Pair]], np.ndarray]] = {"torch-fp32": model.prob_a_better_batch}
    quantizations = (("onnx-fp32", None), ("onnx-int8", "int8"), ("onnx-int8-dyn", "int8-dynamic"))
    for name, quantize in quantizations:
        path = export_onnx(model, workdir / name, quantize=quantize)
        arms[name] = OnnxRewardModel.load(path, threads=threads).prob_a_better_batch
    if cpu_has_bf16_units():  # main() builds the model on the CPU

        def cpu_bf16(pairs: list[Pair]) -> np.ndarray:
            with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
                return model.prob_a_better_batch(pairs)

        arms["cpu-bf16-autocast"] = cpu_bf16
    if torch.cuda.is_available():
        saved = model.save(workdir / "checkpoint")
        on_gpu = (
            ("cuda-fp32", torch.float32),
            ("torch-bf16", torch.bfloat16),
            ("torch-fp16", torch.float16),
        )
        for name, dtype in on_gpu:
            gpu = RewardModel.load(saved, device="cuda", dtype=dtype)
            # No autocast: the arm runs in its weights' own precision.
            gpu.precision = "float32"

            def run(pairs: list[Pair], gpu: RewardModel = gpu) -> np.ndarray:
                result = gpu.prob_a_better_batch(pairs)
                torch.cuda.synchronize()
                return result

            arms[name] = run
    return arms


def padded_share(model: RewardModel, pairs: list[Pair]) -> float:
    """Padded over real tokens in the ONNX arms' batches, calls of BATCH_PAIRS pairs as timed."""
    real = padded = 0
    for start in range(0, len(pairs), BATCH_PAIRS):
        batch = pairs[start : start + BATCH_PAIRS]
        items = [(conversation, response) for conversation, a, b in batch for response in (a, b)]
        ids = model.encode(items).input_ids
        for rows in length_sorted_batches(
            ids,
            batch_size=DEFAULT_BATCH_SIZE,
            max_batch_tokens=DEFAULT_MAX_BATCH_TOKENS,
            max_padding=DEFAULT_MAX_PADDING,
        ):
            real += sum(len(ids[row]) for row in rows)
            padded += len(rows) * max(len(ids[row]) for row in rows)
    return padded / real


# Long on purpose: training, export, interleaved measurement and the table, in the order they run.
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--train", type=int, default=300)
    parser.add_argument("--heldout", type=int, default=400)
    parser.add_argument("--latency-pairs", type=int, default=40)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--max-length", type=int, default=None)
    parser.add_argument("--checkpoint", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    examples = load_hh_rlhf(HH_RLHF_PATH, limit=args.train + args.heldout)
    training, held_out = examples[: args.train], examples[args.train :]
    started = time.perf_counter()
    if args.checkpoint is not None and (args.checkpoint / "config.json").is_file():
        model = RewardModel.load(args.checkpoint, device="cpu", max_length=args.max_length)
        trained = f"{args.checkpoint}, as saved there"
    else:
        model = RewardModel.from_base(device="cpu", max_length=args.max_length)
        train(model, training, TrainingConfig(mode="head"))
        trained = (
            f"all-MiniLM-L6-v2 + head on {len(training)} hh-rlhf pairs, trained in "
            f"{time.perf_counter() - started:.0f} s"
        )
        if args.checkpoint is not None:
            model.save(args.checkpoint)
    print(
        f"model: {trained}; "
        f"max_length {model.max_length}; {args.threads} threads; {len(held_out)} held-out "
        f"pairs; load average {os.getloadavg()[0]:.1f}"
    )
    pairs: list[Pair] = [
        (list(example.conversation), example.chosen, example.rejected) for example in held_out
    ]

    with tempfile.TemporaryDirectory(prefix="arbiter-deploy-bench-") as tmp:
        arms = build_arms(model, Path(tmp), args.threads)
        print(f"ONNX batches: {padded_share(model, pairs):.2f} padded/real tokens")
        names = list(arms)
        for run in arms.values():  # warm-up: first calls allocate and pick kernels
            run(pairs[:BATCH_PAIRS])

        latencies: dict[str, list[float]] = {name: [] for name in names}
        for index, pair in enumerate(pairs[: args.latency_pairs]):
            order = names[index % len(names) :] + names[: index % len(names)]
            for name in order:
                started = time.perf_counter()
                arms[name]([pair])
                latencies[name].append(time.perf_counter() - started)

        spent = dict.fromkeys(names, 0.0)
        probabilities: dict[str, list[np.ndarray]] = {name: [] for name in names}
        for number, start in enumerate(range(0, len(pairs), BATCH_PAIRS)):
            batch = pairs[start : start + BATCH_PAIRS]
            order = names[number % len(names) :] + names[: number % len(names)]
            for name in order:
                started = time.perf_counter()
                probabilities[name].append(arms[name](batch))
                spent[name] += time.perf_counter() - started

    baseline = np.concatenate(probabilities["torch-fp32"])
    base_rate = len(pairs) / spent["torch-fp32"]
    header = (
        f"{'arm':<17} {'batch-1 ms/pair':>15} {'batch-32 pairs/s':>17} {'× torch-fp32':>13} "
        f"{'agreement':>10} {'accuracy':>9} {'Δ accuracy [95%]':>24}"
    )
    print(header)
    print("-" * len(header))
    for name in names:
        p = np.concatenate(probabilities[name])
        rate = len(pairs) / spent[name]
        agreement = float(np.mean((p > 0.5) == (baseline > 0.5)))
        accuracy = float(np.mean(p > 0.5))
        # Paired: the same pairs under both arms, so resample pairs, not the two arms apart.
        change, low, high = bootstrap_mean_interval(
            (p > 0.5).astype(np.float64) - (baseline > 0.5).astype(np.float64)
        )
        print(
            f"{name:<17} {1000 * statistics.median(latencies[name]):>15.1f} {rate:>17.1f} "
            f"{rate / base_rate:>12.2f}× {agreement:>10.3f} {accuracy:>9.3f} "
            f"{f'{change:+.3f} [{low:+.3f}, {high:+.3f}]':>24}"
        )
    print(
        "agreement: same preferred side as torch-fp32; accuracy: the human-chosen side "
        "preferred; Δ accuracy: against torch-fp32 on the same pairs, with a 95% paired "
        "bootstrap interval; all arms measured in this run, interleaved; load average "
        f"{os.getloadavg()[0]:.1f} at the end"
    )


if __name__ == "__main__":
    main()
