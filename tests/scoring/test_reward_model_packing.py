"""Padding-free (packed) batches: the same loss, rewards and gradients as padded batches, on a
tiny decoder (Qwen3-shaped, last-token reward) and a tiny encoder (BERT, [CLS] reward).

Runs without Django:
HF_HUB_OFFLINE=1 .venv/bin/python -m pytest -p no:django -p no:cacheprovider \
    tests/scoring/test_reward_model_packing.py -q
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from scoring.reward_model import (
    RewardModel,
    TrainingConfig,
    build_tiny_decoder_base,
    build_tiny_reward_model,
    train,
)
from scoring.reward_model.packed_training import _set_checkpointing, plan_micro_batches
from scoring.reward_model.packing import (
    PACKED_ATTENTION,
    pack,
    pack_width,
    packed_forward,
    token_budget_batches,
)
from tests.scoring.test_reward_model import CONVERSATION, synthetic_pairs

TOLERANCE = 1e-5


@pytest.fixture(scope="module", params=["decoder", "encoder"])
def tiny_model(request, tmp_path_factory) -> RewardModel:
    root = tmp_path_factory.mktemp(request.param)
    if request.param == "decoder":
        return RewardModel.from_base(build_tiny_decoder_base(root / "base"))
    return RewardModel.load(build_tiny_reward_model(root / "rm"))


def _pairs_ids(model: RewardModel) -> tuple[list[list[int]], list[list[int]]]:
    examples = synthetic_pairs(6, seed=3)
    # Lengths differ a lot, so padded batches carry real padding.
    conversations = [
        [{"role": "user", "content": "tell me more " * (3 * index + 1)}]
        for index in range(len(examples))
    ]
    chosen = model.encode([(c, e.chosen) for c, e in zip(conversations, examples, strict=True)])
    rejected = model.encode(
        [(c, e.rejected + " really" * index) for index, (c, e) in enumerate(
            zip(conversations, examples, strict=True)
        )]
    )
    return chosen.input_ids, rejected.input_ids


def _loss(rewards: torch.Tensor, count: int) -> torch.Tensor:
    return -torch.nn.functional.logsigmoid(rewards[:count] - rewards[count:]).mean()


def _gradients(model: RewardModel) -> dict[str, torch.Tensor]:
    grads = {
        name: parameter.grad.detach().clone()
        for name, parameter in model.model.named_parameters()
        if parameter.grad is not None
    }
    model.model.zero_grad(set_to_none=True)
    return grads


@pytest.mark.parametrize("rows", ["one", "window"])
def test_a_packed_batch_has_the_loss_rewards_and_gradients_of_the_padded_batch(
    tiny_model: RewardModel, rows: str
) -> None:
    model = tiny_model
    chosen, rejected = _pairs_ids(model)
    sequences = chosen + rejected
    assert len({len(sequence) for sequence in sequences}) > 3
    module = model.model.float()
    module.eval()  # no dropout: both passes must see the same function
    module.zero_grad(set_to_none=True)

    input_ids, attention_mask = model._pad(sequences)
    padded_rewards = module(input_ids=input_ids, attention_mask=attention_mask).logits.reshape(-1)
    padded_loss = _loss(padded_rewards, len(chosen))
    padded_loss.backward()
    padded_grads = _gradients(model)

    # One row (flash-attention; an encoder on the CPU: packed_attention) or rows as wide as the
    # longest sequence (SDPA with a block-diagonal mask).
    width = None if rows == "one" else max(map(len, sequences))
    batch = pack(sequences, width=width, filler_id=model.tokenizer.pad_token_id)
    assert batch.tokens == sum(map(len, sequences))
    if width is None:
        assert batch.slots == batch.tokens  # one row: not a single filler token
    else:
        assert 1 < batch.input_ids.shape[0] < len(sequences)
        assert batch.input_ids.shape[1] == width
    packed_rewards, features = packed_forward(module, batch)
    if width is None and model.model.base_model_prefix == "bert":
        assert module.config._attn_implementation == PACKED_ATTENTION
    packed_loss = _loss(packed_rewards, len(chosen))
    packed_loss.backward()
    packed_grads = _gradients(model)

    assert torch.allclose(packed_rewards, padded_rewards, atol=TOLERANCE, rtol=0)
    assert abs(packed_loss.item() - padded_loss.item()) <= TOLERANCE
    assert padded_grads.keys() == packed_grads.keys() and len(padded_grads) > 10
    for name, gradient in padded_grads.items():
        assert torch.allclose(packed_grads[name], gradient, atol=TOLERANCE, rtol=0), name
    # The features are what the reward head reads, as in head-mode training.
    assert features.shape == (len(sequences), features.shape[1])


def test_an_encoder_on_the_cpu_packs_one_row_and_attends_per_sequence_in_bf16_too(
    tmp_path: Path,
) -> None:
    # Under CPU bf16 autocast packed_attention multiplies in bf16 itself (not through SDPA):
    # its rewards must still be those of the padded batch under the same autocast.
    model = RewardModel.load(build_tiny_reward_model(tmp_path / "rm"))
    chosen, rejected = _pairs_ids(model)
    sequences = chosen + rejected
    assert pack_width(model.model, [len(sequence) for sequence in sequences]) is None
    module = model.model.float().eval()
    input_ids, attention_mask = model._pad(sequences)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        padded = module(input_ids=input_ids, attention_mask=attention_mask).logits.reshape(-1)
        packed, _ = packed_forward(module, pack(sequences, width=None))
    assert module.config._attn_implementation == PACKED_ATTENTION
    assert packed.dtype == padded.dtype == torch.bfloat16
    assert torch.allclose(packed.float(), padded.float(), atol=3e-2, rtol=0)
    # Padded batches through a model set to packed_attention are plain SDPA: unchanged.
    with torch.no_grad():
        again = module(input_ids=input_ids, attention_mask=attention_mask).logits.reshape(-1)
        module.config._attn_implementation = "sdpa"
        sdpa = module(input_ids=input_ids, attention_mask=attention_mask).logits.reshape(-1)
    assert torch.equal(again, sdpa)


def test_an_encoder_outside_transformers_attention_interface_keeps_its_masked_rows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Such a model would ignore the per-sequence attention and attend across the whole row.
    model = RewardModel.load(build_tiny_reward_model(tmp_path / "rm"))
    monkeypatch.setattr(type(model.model), "_supports_attention_backend", False)
    assert pack_width(model.model, [3, 5]) == 5
    model.model.eval()
    chosen, rejected = _pairs_ids(model)
    sequences = chosen + rejected
    packed = model.rewards_for_ids(sequences)
    model.packing = False
    assert abs(packed - model.rewards_for_ids(sequences)).max() < TOLERANCE
    assert model.model.config._attn_implementation == "sdpa"


def test_per_sequence_attention_survives_gradient_checkpointings_recomputation(
    tmp_path: Path,
) -> None:
    # Checkpointing reruns each layer's forward pass during backward, after packed_forward has
    # returned: the layers must still attend per sequence then, or gradients would mix pairs.
    model = RewardModel.load(build_tiny_reward_model(tmp_path / "rm"))
    chosen, rejected = _pairs_ids(model)
    batch = pack(chosen + rejected, width=None)
    module = model.model.float().train()
    for layer in module.modules():
        if isinstance(layer, torch.nn.Dropout):
            layer.p = 0.0
    gradients = []
    for checkpointing in (False, True):
        if checkpointing:
            _set_checkpointing(module, True)
        rewards, _ = packed_forward(module, batch)
        _loss(rewards, len(chosen)).backward()
        gradients.append(_gradients(model))
    assert module.is_activation_checkpointing
    assert module.config._attn_implementation == PACKED_ATTENTION
    plain, recomputed = gradients
    assert plain.keys() == recomputed.keys() and len(plain) > 10
    for name, gradient in plain.items():
        assert torch.allclose(recomputed[name], gradient, atol=TOLERANCE, rtol=0), name


def test_packing_fills_rows_first_fit_and_keeps_sequences_whole() -> None:
    sequences = [[1] * 5, [2] * 3, [3] * 4, [4] * 2, [5] * 1]
    batch = pack(sequences, width=6, filler_id=0)
    assert batch.input_ids.shape == (3, 6)
    for index, sequence in enumerate(sequences):
        row, start, length = batch.row[index], batch.start[index], batch.lengths[index]
        assert batch.input_ids[row, start : start + length].tolist() == sequence
        assert batch.position_ids[row, start : start + length].tolist() == list(range(length))
    assert batch.slots - batch.tokens == 18 - 15
    mask = batch.block_diagonal_mask()[:, 0]
    # Within a row, tokens of different sequences never see each other.
    # Longest first: [5, 1], [4, 2], [3]: the 4 and the 2 share a row, their blocks apart.
    assert batch.row[2] == batch.row[3] and batch.row[0] == batch.row[4]
    row = batch.row[2]
    assert mask[row, batch.start[2], batch.start[2] + 3]
    assert not mask[row, batch.start[2], batch.start[3]]
    assert not mask[row, batch.start[3] + 1, batch.start[2]]
    with pytest.raises(ValueError, match="empty"):
        pack([[1], []])


def test_token_budget_batches_hold_at_most_the_budget() -> None:
    lengths = [300, 200, 900, 100, 100, 50, 700]
    batches = list(token_budget_batches(lengths, 512))
    assert [index for batch in batches for index in batch] == list(range(len(lengths)))
    for batch in batches:
        assert len(batch) == 1 or sum(lengths[index] for index in batch) <= 512
    assert [2] in batches  # over the budget: alone


def test_the_training_plan_covers_every_pair_once_per_epoch_within_the_budget() -> None:
    tokens = [(index * 37) % 400 + 20 for index in range(300)]
    plan = plan_micro_batches(tokens, 1024, seed=1, epochs=2)
    seen = sorted(index for batch in plan for index in batch)
    assert seen == sorted(list(range(300)) * 2)
    assert all(sum(tokens[index] for index in batch) <= 1024 for batch in plan)
    assert plan == plan_micro_batches(tokens, 1024, seed=1, epochs=2)
    assert plan != plan_micro_batches(tokens, 1024, seed=2, epochs=2)
    half = plan_micro_batches(tokens, 1024, seed=1, epochs=0.5)
    assert 0 < len(half) < len(plan) / 2


def test_packed_full_training_learns_and_reports_no_padding(tmp_path: Path) -> None:
    model = RewardModel.load(build_tiny_reward_model(tmp_path / "rm"))
    examples = synthetic_pairs(48, seed=5)
    metrics = train(
        model,
        examples,
        TrainingConfig(mode="full", epochs=3, learning_rate=3e-4, token_budget=512, seed=0),
    )
    assert metrics.packing is True and metrics.world_size == 1
    assert metrics.final_loss is not None and metrics.initial_loss is not None
    assert metrics.final_loss < metrics.initial_loss
    # An encoder on the CPU packs every micro-batch into one row: no filler at all.
    assert metrics.padding_share == 0.0
    assert metrics.tokens > 0 and metrics.steps >= 3
    better = model.prob_a_better(CONVERSATION, "happy to help about music", "whatever about music")
    assert better > 0.5


def _saved_activation_bytes(model: RewardModel, examples: list, checkpointing: bool):
    """Train one step; return its metrics and the bytes autograd kept for the backward pass."""
    saved = [0]

    def keep(tensor: torch.Tensor) -> torch.Tensor:
        saved[0] += tensor.numel() * tensor.element_size()
        return tensor

    config = TrainingConfig(
        mode="full", max_length=4096, gradient_checkpointing=checkpointing, token_budget=16_384,
        max_steps=1, learning_rate=1e-4,
    )
    with torch.autograd.graph.saved_tensors_hooks(keep, lambda tensor: tensor):
        metrics = train(model, examples, config)
    return metrics, saved[0]


def test_a_4096_token_training_step_with_gradient_checkpointing(tmp_path: Path) -> None:
    base = build_tiny_decoder_base(tmp_path / "base")
    long_question = " ".join(f"word{index}" for index in range(2500))  # ~5,000 tokens
    examples = [
        ([{"role": "user", "content": long_question}], "a kind answer", "go away"),
        ([{"role": "user", "content": "short question"}], "a kind answer", "go away"),
    ]
    model = RewardModel.from_base(base)
    metrics, checkpointed = _saved_activation_bytes(model, examples, checkpointing=True)
    assert model.max_length == 4096
    # The long pair was cut from the left to 4,096 tokens a side, and counted.
    assert metrics.truncated == 1 and metrics.dropped == 0
    assert metrics.steps == 1 and metrics.final_loss is not None
    assert metrics.tokens > 2 * 4096
    assert not model.model.is_activation_checkpointing  # switched off again after training
    # Checkpointing keeps only each layer's input for the backward pass, not its activations.
    _, plain = _saved_activation_bytes(RewardModel.from_base(base), examples, checkpointing=False)
    assert checkpointed < plain / 2


def test_over_long_pairs_can_be_dropped_and_are_counted(tmp_path: Path) -> None:
    model = RewardModel.from_base(build_tiny_decoder_base(tmp_path / "base"))
    long_question = " ".join(f"word{index}" for index in range(300))
    examples = [([{"role": "user", "content": long_question}], "yes", "no")] + [
        ([{"role": "user", "content": "hi"}], "hello there", "no") for _ in range(3)
    ]
    metrics = train(
        model,
        examples,
        TrainingConfig(mode="full", max_length=128, drop_overlong=True, max_steps=1),
    )
    assert metrics.dropped == 1 and metrics.truncated == 0 and metrics.pairs == 3


def test_packed_scoring_gives_the_rewards_and_features_of_padded_scoring(
    tiny_model: RewardModel,
) -> None:
    model = tiny_model
    model.model.eval()
    chosen, rejected = _pairs_ids(model)
    sequences = chosen + rejected
    assert model.packing  # both tiny architectures pack
    model.max_batch_tokens = 64  # several packed batches
    packed_rewards = model.rewards_for_ids(sequences)
    packed_features = model.features_for_ids(sequences)
    model.packing = False
    try:
        padded_rewards = model.rewards_for_ids(sequences)
        padded_features = model.features_for_ids(sequences)
    finally:
        model.packing = True
    assert abs(packed_rewards - padded_rewards).max() < TOLERANCE
    assert abs(packed_features - padded_features).max() < TOLERANCE
    assert packed_features.shape == padded_features.shape
