"""An FSDP (or DDP) full fine-tuning of a tiny random Qwen3-shaped decoder through the real
launcher (torchrun), without Django: checks that the strategy runs on this host and that the
checkpoint rank 0 writes is a whole model transformers loads.

    .venv/bin/python benchmarks/fsdp_training.py --device cuda --processes 1 --strategy fsdp

Prints one JSON line: world size, strategy, device, the loss per step, seconds, the training
accuracy of the checkpoint as ``AutoModelForSequenceClassification`` loads it (float32, CPU), and
the largest difference between its rewards and ours (``RewardModel``) on the same tokens.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
from tokenizers import Tokenizer  # noqa: E402
from tokenizers.models import WordLevel  # noqa: E402
from tokenizers.pre_tokenizers import Whitespace  # noqa: E402
from transformers import AutoModelForSequenceClassification, PreTrainedTokenizerFast  # noqa: E402

from scoring.reward_model import (  # noqa: E402
    PreferenceExample,
    RewardModel,
    TrainingConfig,
    build_tiny_decoder_base,
)
from scoring.reward_model.launcher import train_distributed  # noqa: E402

TOPICS = ["weather", "cooking", "travel", "music", "sports", "books"]


def learnable_pairs(count: int, seed: int) -> list[PreferenceExample]:
    rng = random.Random(seed)
    pairs = []
    for index in range(count):
        topic = rng.choice(TOPICS)
        conversation = [{"role": "user", "content": f"tell me about {topic}"}]
        helpful = f"happy to help, here is a careful answer about {topic} {index}"
        dismissive = f"whatever, figure out {topic} yourself {index}"
        pairs.append(PreferenceExample(conversation, helpful, dismissive, topic))
    return pairs


def word_tokenizer(path: Path, pairs: list[PreferenceExample]) -> Path:
    """A word-level tokenizer over the pairs' words, so the script needs no packaged model (the
    GPU machine has transformers and tokenizers but not the MiniLM package)."""
    texts = [
        " ".join([turn["content"] for turn in pair.conversation] + [pair.chosen, pair.rejected])
        for pair in pairs
    ]
    words = sorted({word for text in texts for word in text.split()} | {"user", "assistant", ":"})
    special = {"pad_token": "[PAD]", "unk_token": "[UNK]", "eos_token": "[EOS]"}
    vocab = {token: index for index, token in enumerate([*special.values(), *words])}
    model = Tokenizer(WordLevel(vocab, unk_token=special["unk_token"]))
    model.pre_tokenizer = Whitespace()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=model, **special)
    tokenizer.save_pretrained(path)
    return path


# Long on purpose: launch, reload and the checks of one JSON line, in the order they run.
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--processes", type=int, default=1)
    parser.add_argument("--strategy", choices=("ddp", "fsdp"), default="fsdp")
    parser.add_argument("--pairs", type=int, default=64)
    parser.add_argument("--epochs", type=float, default=2.0)
    parser.add_argument("--gradient-checkpointing", action="store_true")
    args = parser.parse_args()
    pairs = learnable_pairs(args.pairs, seed=0)
    with tempfile.TemporaryDirectory(prefix="fsdp-bench-") as work:
        vocab = word_tokenizer(Path(work) / "vocab", pairs)
        base = build_tiny_decoder_base(Path(work) / "base", vocab_from=vocab)
        config = TrainingConfig(
            mode="full",
            epochs=args.epochs,
            learning_rate=1e-3,
            token_budget=512,
            strategy=args.strategy,
            gradient_checkpointing=args.gradient_checkpointing,
        )
        started = time.perf_counter()
        result = train_distributed(
            base_model=base,
            examples=pairs,
            config=config,
            processes=args.processes,
            device=args.device,
            work_root=work,
        )
        seconds = time.perf_counter() - started
        checkpoint = result.model.save(Path(work) / "trained")
        # Read back as a plain transformers model, float32 on the CPU: a whole model, not shards.
        loaded = AutoModelForSequenceClassification.from_pretrained(checkpoint)
        ours = RewardModel.load(checkpoint, device="cpu")
        ours.precision = "float32"
        sample = pairs[:16]
        chosen = ours.encode([(pair.conversation, pair.chosen) for pair in sample]).input_ids
        rejected = ours.encode([(pair.conversation, pair.rejected) for pair in sample]).input_ids
        with torch.no_grad():
            rewards = [
                float(loaded(input_ids=torch.tensor([ids])).logits[0, 0])
                for ids in chosen + rejected
            ]
        ours_rewards = ours.rewards_for_ids(chosen + rejected)
    print(
        json.dumps(
            {
                "world_size": result.world_size,
                "strategy": result.metrics.strategy,
                "device": result.metrics.device,
                "losses": [round(loss, 4) for loss in result.metrics.loss_curve],
                "seconds": round(seconds, 1),
                "train_accuracy": sum(
                    a > b
                    for a, b in zip(rewards[: len(sample)], rewards[len(sample) :], strict=True)
                )
                / len(sample),
                "reward_max_diff_vs_transformers": max(
                    abs(a - b) for a, b in zip(ours_rewards.tolist(), rewards, strict=True)
                ),
            }
        )
    )


if __name__ == "__main__":
    main()
