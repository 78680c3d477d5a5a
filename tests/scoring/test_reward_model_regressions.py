"""Reward-model defects a reviewer reproduced, each guarded here: packed decoder rewards read at
an eos that is also the pad token (not where transformers reads them), a window above 16K lost
on reload, ALBERT's pooler activation skipped by packed batches, a RoBERTa-style window past its
position table, training settings that train nothing or diverge, precomputed embeddings of
another example list, left truncation dropping a chat template's BOS, and the staging
directories killed saves left behind.

Runs without Django:
HF_HUB_OFFLINE=1 .venv/bin/python -m pytest -p no:django -p no:cacheprovider \
    tests/scoring/test_reward_model_regressions.py -q
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import (
    AlbertConfig,
    AlbertForSequenceClassification,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    PreTrainedTokenizerBase,
    RobertaConfig,
    RobertaForSequenceClassification,
)

from scoring.reward_model import (
    PairEmbeddings,
    RewardModel,
    TrainingConfig,
    build_tiny_decoder_base,
    build_tiny_reward_model,
    train,
)
from scoring.reward_model.files import STALE_STAGING_SECONDS, staging_directory
from scoring.reward_model.model import default_base_path
from scoring.reward_model.packing import pack, packed_forward
from tests.scoring.test_reward_model import synthetic_pairs

CONVERSATION = [{"role": "user", "content": "How do I boil an egg?"}]
RESPONSES = ["Ten minutes in boiling water.", "no", "Put it in a pan and wait a while."]


def _minilm_tokenizer() -> PreTrainedTokenizerBase:
    return AutoTokenizer.from_pretrained(default_base_path(), local_files_only=True)


@pytest.fixture(scope="module")
def decoder_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_decoder_base(tmp_path_factory.mktemp("decoder") / "base")


@pytest.fixture(scope="module")
def tiny_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_reward_model(tmp_path_factory.mktemp("tiny") / "model")


# -- Decoder rewards where the pad token is the eos token -------------------------------------


@pytest.fixture(scope="module")
def eos_padded_decoder(decoder_base: Path) -> RewardModel:
    """Llama-3-Instruct's shape: every turn ends with eos and there is no pad token, so
    RewardModel pads with eos and every transcript ends in the pad id."""
    tokenizer = AutoTokenizer.from_pretrained(decoder_base)
    tokenizer.chat_template = (
        "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}[SEP]{% endfor %}"
    )
    tokenizer.eos_token = "[SEP]"
    tokenizer.pad_token = None
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        network = AutoModelForSequenceClassification.from_pretrained(decoder_base, num_labels=1)
    model = RewardModel(network, tokenizer, device="cpu")
    assert model.tokenizer.pad_token_id == model.tokenizer.eos_token_id and model.packing
    return model


def _own_rewards(model: RewardModel, sequences: list[list[int]]) -> np.ndarray:
    """Each sequence alone through the model's own seq-cls forward, as HF loads it."""
    with torch.no_grad():
        return np.array(
            [
                model.model(input_ids=torch.tensor([sequence])).logits.item()
                for sequence in sequences
            ]
        )


def test_packed_decoder_rewards_match_the_models_own_forward_when_pad_is_eos(
    eos_padded_decoder: RewardModel,
) -> None:
    model = eos_padded_decoder
    ids = model.encode([(CONVERSATION, response) for response in RESPONSES]).input_ids
    assert all(sequence[-1] == model.tokenizer.eos_token_id for sequence in ids)
    packed = model.score_batch([(CONVERSATION, response) for response in RESPONSES])
    np.testing.assert_allclose(packed, _own_rewards(model, ids), atol=1e-4)


def test_packed_and_padded_decoder_scores_and_features_agree_when_pad_is_eos(
    eos_padded_decoder: RewardModel,
) -> None:
    model = eos_padded_decoder
    items = [(CONVERSATION, response) for response in RESPONSES]
    packed = model.score_batch(items), model.embed_batch(items, normalize=False)
    model.packing = False
    try:
        padded = model.score_batch(items), model.embed_batch(items, normalize=False)
    finally:
        model.packing = True
    np.testing.assert_allclose(packed[0], padded[0], atol=1e-4)
    np.testing.assert_allclose(packed[1], padded[1], atol=1e-4)


def test_packed_training_rows_read_the_reward_where_the_model_does(
    eos_padded_decoder: RewardModel,
) -> None:
    # Training packs a micro-batch's sequences end to end in one row; an all-pad sequence is
    # read at its first token, as transformers' argmax over no real token reads position 0.
    model = eos_padded_decoder
    pad = model.tokenizer.pad_token_id
    ids = model.encode([(CONVERSATION, response) for response in RESPONSES]).input_ids
    sequences = [*ids, [pad, pad, pad]]
    with torch.no_grad():
        rewards, _ = packed_forward(model.model, pack(sequences, width=None, filler_id=pad))
    np.testing.assert_allclose(rewards.numpy(), _own_rewards(model, sequences), atol=1e-4)


def test_an_onnx_export_scores_a_pad_is_eos_decoder_like_the_torch_model(
    eos_padded_decoder: RewardModel, tmp_path: Path
) -> None:
    from scoring.reward_model.onnx_backend import export_onnx
    from scoring.reward_model.scorer import load_scorer

    model = eos_padded_decoder
    items = [(CONVERSATION, response) for response in RESPONSES]
    exported = load_scorer(export_onnx(model, tmp_path / "onnx"))
    np.testing.assert_allclose(model.score_batch(items), exported.score_batch(items), atol=1e-3)


# -- The token window ---------------------------------------------------------------------------


def test_a_window_above_16k_survives_save_and_load(decoder_base: Path, tmp_path: Path) -> None:
    decoder = RewardModel.from_base(decoder_base, device="cpu")
    decoder.max_length = 20_000  # within the tiny Qwen3's 32K positions
    saved = decoder.save(tmp_path / "rm")
    assert RewardModel.load(saved, device="cpu").max_length == 20_000


def _tiny_roberta(tokenizer: PreTrainedTokenizerBase) -> RobertaForSequenceClassification:
    # RoBERTa numbers positions from padding_idx + 1: 514 positions hold 514 - (pad + 1) tokens.
    config = RobertaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=514,
        pad_token_id=tokenizer.pad_token_id,
        num_labels=1,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return RobertaForSequenceClassification(config)


def test_a_roberta_style_window_stops_where_its_position_table_does() -> None:
    tokenizer = _minilm_tokenizer()
    tokenizer.model_max_length = int(1e30)  # no limit of its own: positions alone decide
    network = _tiny_roberta(tokenizer)
    limit = 514 - (tokenizer.pad_token_id + 1)
    with pytest.raises(ValueError, match="positions"):
        RewardModel(network, tokenizer, device="cpu", max_length=limit + 1)
    model = RewardModel(network, tokenizer, device="cpu")
    assert model.max_length == limit
    long_conversation = [{"role": "user", "content": "word " * 1000}]
    assert np.isfinite(model.score(long_conversation, "ok"))


# -- ALBERT through packed batches ---------------------------------------------------------------


def test_albert_packed_rewards_and_features_match_padded() -> None:
    tokenizer = _minilm_tokenizer()
    config = AlbertConfig(
        vocab_size=len(tokenizer),
        embedding_size=32,
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=128,
        max_position_embeddings=512,
        pad_token_id=tokenizer.pad_token_id,
        num_labels=1,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = RewardModel(AlbertForSequenceClassification(config), tokenizer, device="cpu")
    assert model.packing
    items = [(CONVERSATION, response) for response in RESPONSES]
    packed = model.score_batch(items), model.embed_batch(items, normalize=False)
    model.packing = False
    padded = model.score_batch(items), model.embed_batch(items, normalize=False)
    np.testing.assert_allclose(packed[0], padded[0], atol=1e-4)
    assert packed[1].shape == padded[1].shape == (len(items), 64)
    np.testing.assert_allclose(packed[1], padded[1], atol=1e-4)


# -- Training settings and inputs ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ({"max_steps": 0}, "max_steps must be positive"),
        ({"max_steps": -1}, "max_steps must be positive"),
        ({"learning_rate": 0.0}, "learning_rate must be positive"),
        ({"learning_rate": -1e-5}, "learning_rate must be positive"),
        ({"head_l2": -1.0}, "head_l2 must be zero or positive"),
        ({"head_max_iterations": 0}, "head_max_iterations must be at least 1"),
    ],
)
def test_training_settings_that_train_nothing_or_diverge_are_refused(
    setting: dict[str, float], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        TrainingConfig(**setting)  # type: ignore[arg-type]


def test_the_edges_of_the_training_settings_are_accepted() -> None:
    TrainingConfig(max_steps=1, head_l2=0.0, head_max_iterations=1, learning_rate=1e-9)


def test_precomputed_embeddings_of_more_examples_than_given_are_refused(tiny_path: Path) -> None:
    model = RewardModel.load(tiny_path, device="cpu")
    width = model.model.classifier.in_features
    other = PairEmbeddings(
        chosen=np.zeros((30, width), dtype=np.float32),
        rejected=np.ones((30, width), dtype=np.float32),
    )
    with pytest.raises(ValueError, match="one row per example"):
        train(model, synthetic_pairs(10, seed=1), TrainingConfig(mode="head"), embeddings=other)


# -- Left truncation with a chat template ------------------------------------------------------


@pytest.fixture(scope="module")
def templated(decoder_base: Path) -> RewardModel:
    tokenizer = AutoTokenizer.from_pretrained(decoder_base)
    # Llama-3's shape: "{{ bos_token }}" renders the tokenizer's BOS (here [CLS]) as text.
    tokenizer.bos_token = "[CLS]"
    tokenizer.chat_template = (
        "{{ bos_token }}{% for m in messages %}<{{ m['role'] }}> {{ m['content'] }} [SEP]"
        "{% endfor %}"
    )
    network = AutoModelForSequenceClassification.from_pretrained(decoder_base, num_labels=1)
    return RewardModel(network, tokenizer, device="cpu", max_length=64)


def test_left_truncation_keeps_the_templates_bos_token(templated: RewardModel) -> None:
    bos = templated.tokenizer.bos_token_id
    item = ([{"role": "user", "content": "tell me a long story " * 50}], "the dragon slept")
    full = templated.tokenizer(templated.render(*item), add_special_tokens=False)["input_ids"]
    assert full[0] == bos and len(full) > 64
    encoded = templated.encode([item])
    assert encoded.truncated == [True]
    assert encoded.input_ids[0] == [bos, *full[-63:]]


def test_left_truncation_without_a_leading_bos_cuts_from_the_left_only(
    templated: RewardModel,
) -> None:
    tokenizer = templated.tokenizer
    template = tokenizer.chat_template
    tokenizer.chat_template = template.removeprefix("{{ bos_token }}")
    try:
        item = ([{"role": "user", "content": "tell me a long story " * 50}], "the dragon slept")
        full = tokenizer(templated.render(*item), add_special_tokens=False)["input_ids"]
        assert templated.encode([item]).input_ids[0] == full[-64:]
    finally:
        tokenizer.chat_template = template


# -- Staging directories of killed saves --------------------------------------------------------


def _staged(path: Path, *, age_seconds: float) -> Path:
    path.mkdir()
    (path / "model.safetensors").write_text("half a checkpoint")
    then = time.time() - age_seconds
    for entry in (path / "model.safetensors", path):
        os.utime(entry, (then, then))
    return path


def test_a_save_removes_stale_staging_directories_and_keeps_live_ones(
    tiny_path: Path, tmp_path: Path
) -> None:
    stale = _staged(tmp_path / ".rm.partial-killed", age_seconds=STALE_STAGING_SECONDS + 60)
    live = _staged(tmp_path / ".rm.partial-writing", age_seconds=60)
    other_name = _staged(tmp_path / ".rm2.partial-killed", age_seconds=STALE_STAGING_SECONDS + 60)
    RewardModel.load(tiny_path, device="cpu").save(tmp_path / "rm")
    assert not stale.exists()
    assert live.exists() and other_name.exists()
    assert (tmp_path / "rm" / "model.safetensors").is_file()


def test_an_old_staging_directory_with_a_fresh_file_is_kept(tmp_path: Path) -> None:
    # A long save on another host: the directory is old, the file it is writing is not.
    writing = _staged(tmp_path / ".rm.partial-slow", age_seconds=STALE_STAGING_SECONDS + 60)
    (writing / "model.safetensors").write_text("still growing")
    os.utime(writing, (0, 0))
    fresh = staging_directory(tmp_path / "rm")
    assert writing.exists() and fresh.name.startswith(".rm.partial-") and fresh.is_dir()
