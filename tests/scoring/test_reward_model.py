"""Behaviour of scoring.reward_model on tiny random models (the real MiniLM run lives in
test_reward_model_minilm.py).

Run without Django:
HF_HUB_OFFLINE=1 .venv/bin/python -m pytest -p no:django -p no:cacheprovider \
    tests/scoring/test_reward_model.py -q
"""

from __future__ import annotations

import dataclasses
import json
import math
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import (
    AutoConfig,
    AutoModelForSequenceClassification,
    AutoTokenizer,
)

from scoring.reward_model import (
    PreferenceExample,
    RewardModel,
    TrainingConfig,
    build_tiny_decoder_base,
    build_tiny_reward_model,
    embed_pairs,
    evaluate,
    parse_hh_rlhf_pair,
    train,
)
from scoring.reward_model.devices import cpu_has_bf16_units, training_bf16
from scoring.reward_model.model import CPU_MAX_BATCH_TOKENS

TOPICS = ["weather", "cooking", "travel", "music", "sports", "movies", "books", "gardening"]
HELPFUL = [
    "thank you for asking, here is a careful and helpful answer",
    "happy to help, here are clear and safe steps",
    "good question, let me explain it kindly",
]
DISMISSIVE = [
    "no. go away and figure it out yourself",
    "whatever, that is a stupid question",
    "not my problem, stop asking",
]


def synthetic_pairs(
    count: int, seed: int, *, flipped_category: str | None = None
) -> list[PreferenceExample]:
    """Helpful replies beat dismissive ones; in ``flipped_category`` the label is reversed."""
    rng = random.Random(seed)
    examples = []
    for _ in range(count):
        topic = rng.choice(TOPICS)
        helpful = f"{rng.choice(HELPFUL)} about {topic}"
        dismissive = f"{rng.choice(DISMISSIVE)} about {topic}"
        conversation = [{"role": "user", "content": f"tell me about {topic} please"}]
        if topic == flipped_category:
            examples.append(PreferenceExample(conversation, dismissive, helpful, topic))
        else:
            examples.append(PreferenceExample(conversation, helpful, dismissive, topic))
    return examples


@pytest.fixture(scope="module")
def tiny_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_reward_model(tmp_path_factory.mktemp("tiny") / "model")


@pytest.fixture
def tiny(tiny_path: Path) -> RewardModel:
    return RewardModel.load(tiny_path, device="cpu")


@pytest.fixture(scope="module")
def head_trained(tiny_path: Path) -> RewardModel:
    model = RewardModel.load(tiny_path, device="cpu")
    train(model, synthetic_pairs(200, seed=1), TrainingConfig(mode="head"))
    return model


CONVERSATION = [
    {"role": "user", "content": "How do I boil an egg?"},
    {"role": "assistant", "content": "Do you want it soft or hard?"},
    {"role": "user", "content": "Hard, please."},
]


def test_it_builds_a_small_bert_reward_model_with_one_output(tiny: RewardModel) -> None:
    parameters = sum(parameter.numel() for parameter in tiny.model.parameters())
    assert 1_000_000 < parameters < 10_000_000
    assert tiny.model.config.num_labels == 1
    assert math.isfinite(tiny.score(CONVERSATION, "Boil it for ten minutes."))


def test_it_rejects_a_model_with_more_than_one_output(tiny_path: Path) -> None:
    config = AutoConfig.from_pretrained(tiny_path, num_labels=2)
    model = AutoModelForSequenceClassification.from_config(config)
    with pytest.raises(ValueError, match="num_labels=1"):
        RewardModel(model, AutoTokenizer.from_pretrained(tiny_path), device="cpu")


def test_prob_a_better_is_the_sigmoid_of_the_reward_difference(
    head_trained: RewardModel,
) -> None:
    response_a, response_b = "happy to help about cooking", "whatever about cooking"
    difference = head_trained.score(CONVERSATION, response_a) - head_trained.score(
        CONVERSATION, response_b
    )
    expected = 1 / (1 + math.exp(-difference))
    assert abs(difference) > 0.1
    # Scored in one padded batch vs one at a time: float32 noise only.
    assert head_trained.prob_a_better(CONVERSATION, response_a, response_b) == pytest.approx(
        expected, abs=1e-4
    )


def test_identical_responses_are_even_odds(head_trained: RewardModel) -> None:
    assert head_trained.prob_a_better(CONVERSATION, "Ten minutes.", "Ten minutes.") == 0.5


def test_batch_results_match_one_at_a_time_results(head_trained: RewardModel) -> None:
    responses = ["Ten minutes.", "go away", "happy to help, " * 30, "Put it in boiling water."]
    items = [(CONVERSATION, response) for response in responses]
    singles = [head_trained.score(*item) for item in items]
    # Padding changes float32 rounding, nothing more.
    np.testing.assert_allclose(head_trained.score_batch(items), singles, rtol=1e-4, atol=1e-5)

    triples = [(CONVERSATION, a, b) for a, b in zip(responses, responses[::-1], strict=True)]
    single_probs = [head_trained.prob_a_better(*triple) for triple in triples]
    np.testing.assert_allclose(
        head_trained.prob_a_better_batch(triples), single_probs, rtol=0, atol=1e-4
    )


def test_embeddings_are_unit_vectors_of_the_head_width(head_trained: RewardModel) -> None:
    embeddings = head_trained.embed_batch([(CONVERSATION, "a"), (CONVERSATION, "b c d")])
    assert embeddings.shape == (2, head_trained.model.config.hidden_size)
    np.testing.assert_allclose(np.linalg.norm(embeddings, axis=1), 1.0, atol=1e-5)


def test_a_saved_model_reloads_with_the_same_scores(
    head_trained: RewardModel, tmp_path: Path
) -> None:
    items = [(CONVERSATION, "happy to help"), (CONVERSATION, "go away")]
    saved = head_trained.save(tmp_path / "checkpoint")
    assert (saved / "model.safetensors").is_file()
    reloaded = RewardModel.load(saved, device="cpu")
    np.testing.assert_allclose(
        reloaded.score_batch(items), head_trained.score_batch(items), atol=1e-6
    )


def test_hugging_face_loads_a_head_trained_checkpoint_with_the_same_scores(
    head_trained: RewardModel, tmp_path: Path
) -> None:
    saved = head_trained.save(tmp_path / "checkpoint")
    model = AutoModelForSequenceClassification.from_pretrained(saved).eval()
    tokenizer = AutoTokenizer.from_pretrained(saved)
    response = "thank you for asking, here is a careful answer"
    text = head_trained.render(CONVERSATION, response)
    with torch.no_grad():
        logit = model(**tokenizer(text, return_tensors="pt")).logits.item()
    assert logit == pytest.approx(head_trained.score(CONVERSATION, response), abs=1e-5)


def test_head_training_learns_a_synthetic_preference(tiny: RewardModel) -> None:
    held_out = synthetic_pairs(100, seed=2)
    before = evaluate(tiny, held_out)["accuracy"]
    metrics = train(tiny, synthetic_pairs(200, seed=1), TrainingConfig(mode="head"))
    after = evaluate(tiny, held_out)["accuracy"]
    assert after >= 0.95 > before + 0.2
    assert metrics.mode == "head" and metrics.pairs == 200
    assert metrics.final_loss is not None and metrics.initial_loss is not None
    assert metrics.final_loss < 0.5 * metrics.initial_loss
    assert metrics.pairs_per_second > 0 and metrics.tokens > 0


def test_head_training_on_precomputed_embeddings_matches_computing_them(
    tiny_path: Path,
) -> None:
    examples = synthetic_pairs(60, seed=3)
    computed = RewardModel.load(tiny_path, device="cpu")
    train(computed, examples, TrainingConfig(mode="head"))
    cached = RewardModel.load(tiny_path, device="cpu")
    embeddings = embed_pairs(cached, examples)
    train(cached, examples, TrainingConfig(mode="head"), embeddings=embeddings)
    items = [(example.conversation, example.chosen) for example in examples[:5]]
    np.testing.assert_allclose(cached.score_batch(items), computed.score_batch(items), atol=1e-5)


def test_head_training_stops_when_asked_and_leaves_the_model_untouched(
    tiny: RewardModel,
) -> None:
    items = [(CONVERSATION, "happy to help"), (CONVERSATION, "go away")]
    before = tiny.score_batch(items)
    metrics = train(tiny, synthetic_pairs(100, seed=1), should_stop=lambda: True)
    assert metrics.cancelled
    np.testing.assert_array_equal(tiny.score_batch(items), before)
    assert tiny.precision == "bf16"  # as loaded: a checkpoint from elsewhere


def test_full_training_lowers_the_loss_on_cpu(tiny: RewardModel) -> None:
    progress: list[tuple[float, str]] = []
    config = TrainingConfig(mode="full", max_steps=12, batch_size=8, learning_rate=1e-3)
    metrics = train(
        tiny,
        synthetic_pairs(96, seed=1),
        config,
        on_progress=lambda fraction, message: progress.append((fraction, message)),
    )
    assert metrics.mode == "full" and metrics.device == "cpu" and not metrics.cancelled
    assert metrics.steps == 12
    # 0.10 in float32, 0.098 under bf16 autocast (the default on a CPU with bf16 units).
    assert np.mean(metrics.loss_curve[-3:]) < np.mean(metrics.loss_curve[:3]) - 0.08
    assert metrics.tokens_per_second > 0 and metrics.pairs_per_second > 0
    fractions = [fraction for fraction, _ in progress]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    assert evaluate(tiny, synthetic_pairs(50, seed=2))["accuracy"] >= 0.9


def test_full_training_stops_after_the_step_where_stop_was_requested(
    tiny: RewardModel,
) -> None:
    config = TrainingConfig(mode="full", max_steps=50, batch_size=4)
    metrics = train(tiny, synthetic_pairs(40, seed=1), config, should_stop=lambda: True)
    assert metrics.cancelled
    assert metrics.steps == 1
    json.dumps(metrics.as_dict(), allow_nan=False)  # storable in a JSON column


def with_margin(examples: list[PreferenceExample], margin: float) -> list[PreferenceExample]:
    return [dataclasses.replace(example, margin=margin) for example in examples]


def test_head_training_widens_reward_gaps_for_pairs_with_a_margin(tiny_path: Path) -> None:
    examples, probe = synthetic_pairs(100, seed=1), synthetic_pairs(30, seed=2)

    def mean_gap(model: RewardModel) -> float:
        chosen = model.score_batch([(example.conversation, example.chosen) for example in probe])
        rejected = model.score_batch(
            [(example.conversation, example.rejected) for example in probe]
        )
        return float(np.mean(chosen - rejected))

    plain = RewardModel.load(tiny_path, device="cpu")
    train(plain, examples, TrainingConfig(mode="head", head_l2=1.0))
    margined = RewardModel.load(tiny_path, device="cpu")
    train(margined, with_margin(examples, 4.0), TrainingConfig(mode="head", head_l2=1.0))
    assert mean_gap(margined) > mean_gap(plain) + 1.0


def test_full_training_passes_margins_to_the_loss(tiny: RewardModel) -> None:
    config = TrainingConfig(mode="full", max_steps=2, batch_size=8, warmup_ratio=0.5)
    metrics = train(tiny, with_margin(synthetic_pairs(16, seed=1), 1.0), config)
    # Untrained rewards barely differ, so the first loss is about −log σ(−1) = softplus(1).
    assert metrics.initial_loss == pytest.approx(math.log1p(math.e), abs=0.01)


def test_left_truncation_keeps_the_response(tiny: RewardModel) -> None:
    long_conversation = [
        {"role": "user", "content": "tell me a very long story " * 200},
        {"role": "assistant", "content": "once upon a time " * 200},
        {"role": "user", "content": "and then?"},
    ]
    encoded = tiny.encode([(long_conversation, "the dragon slept")])
    assert encoded.truncated == [True]
    assert len(encoded.input_ids[0]) == tiny.max_length
    response_ids = tiny.tokenizer("the dragon slept", add_special_tokens=False)["input_ids"]
    assert encoded.input_ids[0][0] == tiny.tokenizer.cls_token_id
    assert encoded.input_ids[0][-len(response_ids) - 1 : -1] == response_ids
    first = tiny.score(long_conversation, "the dragon slept")
    second = tiny.score(long_conversation, "the knight fled in terror")
    assert first != second


def test_training_counts_truncated_pairs_or_drops_them(tiny: RewardModel) -> None:
    long_conversation = [{"role": "user", "content": "tell me about weather " * 300}]
    examples = (
        synthetic_pairs(20, seed=1)
        + [PreferenceExample(long_conversation, "happy to help", "go away")] * 3
    )
    cut = train(tiny, examples, TrainingConfig(mode="head"))
    assert (cut.truncated, cut.dropped, cut.pairs) == (3, 0, 23)
    dropped = train(tiny, examples, TrainingConfig(mode="head", drop_overlong=True))
    assert (dropped.truncated, dropped.dropped, dropped.pairs) == (0, 3, 20)


def test_max_length_is_configurable_and_bounded(tiny: RewardModel) -> None:
    examples = synthetic_pairs(10, seed=1)
    metrics = train(tiny, examples, TrainingConfig(mode="head", max_length=12))
    assert tiny.max_length == 12 and metrics.truncated == 10
    with pytest.raises(ValueError, match="exceeds"):
        tiny.max_length = 100_000


def test_an_interrupted_save_leaves_no_checkpoint(
    tiny: RewardModel, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def fail_midway(*args: object, **kwargs: object) -> None:
        raise OSError("disk full")

    # The model weights are written first; the failure comes while writing the tokenizer.
    monkeypatch.setattr(tiny.tokenizer, "save_pretrained", fail_midway)
    with pytest.raises(OSError, match="disk full"):
        tiny.save(tmp_path / "checkpoint")
    assert list(tmp_path.iterdir()) == []


def test_a_failed_save_keeps_the_previous_checkpoint(
    tiny: RewardModel, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tiny.save(tmp_path / "checkpoint")
    before = RewardModel.load(target, device="cpu").score(CONVERSATION, "hi")

    def fail_midway(*args: object, **kwargs: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(tiny.tokenizer, "save_pretrained", fail_midway)
    with pytest.raises(OSError, match="disk full"):
        tiny.save(target)
    assert [path.name for path in tmp_path.iterdir()] == ["checkpoint"]
    assert RewardModel.load(target, device="cpu").score(CONVERSATION, "hi") == before


def test_evaluate_reports_accuracy_per_category(head_trained: RewardModel) -> None:
    examples = synthetic_pairs(80, seed=4, flipped_category="cooking")
    examples.append(PreferenceExample(CONVERSATION, "happy to help", "go away"))
    report = evaluate(head_trained, examples)
    assert report["n"] == 81
    per_category = report["per_category"]
    assert set(per_category) <= set(TOPICS) and "cooking" in per_category
    assert per_category["cooking"]["accuracy"] == 0.0
    assert all(
        per_category[topic]["accuracy"] == 1.0 for topic in per_category if topic != "cooking"
    )
    assert sum(entry["n"] for entry in per_category.values()) == 80
    cooking = per_category["cooking"]["n"]
    assert report["accuracy"] == pytest.approx((81 - cooking) / 81)


def test_it_applies_the_tokenizers_chat_template(tiny_path: Path) -> None:
    tokenizer = AutoTokenizer.from_pretrained(tiny_path)
    tokenizer.chat_template = (
        "{% for message in messages %}<{{ message['role'] }}>{{ message['content'] }}\n{% endfor %}"
    )
    model = RewardModel(
        AutoModelForSequenceClassification.from_pretrained(tiny_path), tokenizer, device="cpu"
    )
    assert model.uses_chat_template
    assert model.render([{"role": "user", "content": "hi"}], "hello") == (
        "<user>hi\n<assistant>hello\n"
    )
    # The template owns the special tokens, so none are added around it.
    ids = model.encode([([{"role": "user", "content": "hi"}], "hello")]).input_ids[0]
    assert tokenizer.cls_token_id not in ids


def test_plain_transcripts_join_role_and_content_lines(tiny: RewardModel) -> None:
    assert tiny.render(CONVERSATION[:1], "Ten minutes.") == (
        "user: How do I boil an egg?\nassistant: Ten minutes."
    )


def test_head_training_works_for_a_decoder_that_scores_the_last_token(tmp_path: Path) -> None:
    """Qwen/Llama-style models apply the head to every position and keep the last real token."""
    tokenizer = AutoTokenizer.from_pretrained(build_tiny_decoder_base(tmp_path / "base"))

    model = RewardModel.from_base(tmp_path / "base", device="cpu")
    assert type(model.model).__name__ == "Qwen3ForSequenceClassification"
    train(model, synthetic_pairs(120, seed=1), TrainingConfig(mode="head"))
    assert evaluate(model, synthetic_pairs(60, seed=2))["accuracy"] >= 0.9

    saved = model.save(tmp_path / "rm")
    reloaded = AutoModelForSequenceClassification.from_pretrained(saved).eval()
    text = model.render(CONVERSATION, "happy to help")
    with torch.no_grad():
        logit = reloaded(**tokenizer(text, return_tensors="pt")).logits.item()
    assert logit == pytest.approx(model.score(CONVERSATION, "happy to help"), abs=1e-4)


def test_it_parses_hh_rlhf_pairs_whose_responses_mention_human() -> None:
    shared = "\n\nHuman: Can you help?\n\nAssistant: Sure.\n\nHuman: Rob a house?"
    example = parse_hh_rlhf_pair(
        shared + "\n\nAssistant: No.  Human: why not?",
        shared + "\n\nAssistant: Go at night.",
    )
    assert [turn["role"] for turn in example.conversation] == ["user", "assistant", "user"]
    assert example.conversation[-1]["content"] == "Rob a house?"
    assert (example.chosen, example.rejected) == ("No.  Human: why not?", "Go at night.")


def test_evaluate_accepts_plain_tuples(head_trained: RewardModel) -> None:
    pairs = [(CONVERSATION, "happy to help", "go away", "manners")] * 2
    assert evaluate(head_trained, pairs) == {
        "accuracy": 1.0,
        "n": 2,
        "per_category": {"manners": {"accuracy": 1.0, "n": 2}},
    }


def test_the_precision_to_score_in_travels_with_the_checkpoint(
    tiny_path: Path, tmp_path: Path
) -> None:
    model = RewardModel.load(tiny_path, device="cpu")
    assert model.precision == "bf16"  # a checkpoint from elsewhere: autocast on a GPU
    train(model, synthetic_pairs(60, seed=1), TrainingConfig(mode="head"))
    assert model.precision == "float32"
    saved = model.save(tmp_path / "rm")
    assert json.loads((saved / "config.json").read_text())["arbiter_precision"] == "float32"
    assert RewardModel.load(saved, device="cpu").precision == "float32"
    with pytest.raises(ValueError, match="precision"):
        model.precision = "fp8"


def test_full_training_records_its_precision_and_keeps_float32_weights(
    tiny: RewardModel,
) -> None:
    pairs = synthetic_pairs(16, seed=1)
    metrics = train(tiny, pairs, TrainingConfig(mode="full", max_steps=1, bf16=False))
    assert tiny.precision == metrics.precision == "float32"
    metrics = train(tiny, pairs, TrainingConfig(mode="full", max_steps=1, bf16=True))
    # Scored under autocast on a GPU, in float32 on a CPU; the job's result says what ran.
    assert tiny.precision == metrics.precision == "bf16"
    assert metrics.as_dict()["precision"] == "bf16"
    assert {parameter.dtype for parameter in tiny.model.parameters()} == {torch.float32}


def test_the_precision_setting_resolves_per_device_and_refuses_bf16_where_a_gpu_lacks_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: False)
    old_gpu = torch.device("cuda")
    with pytest.raises(ValueError, match="no bf16"):
        training_bf16(True, old_gpu)
    assert training_bf16(None, old_gpu) is False  # auto: float32 there
    assert training_bf16(False, old_gpu) is False
    assert training_bf16(None, torch.device("cpu")) is cpu_has_bf16_units()
    assert training_bf16(True, torch.device("cpu")) is True  # forced: emulated where no bf16 units


@pytest.mark.parametrize(
    ("amx", "avx512_bf16", "expected"),
    [(True, False, True), (False, True, True), (False, False, False)],
)
def test_a_cpu_has_bf16_units_with_amx_tiles_or_avx512_bf16(
    monkeypatch: pytest.MonkeyPatch, amx: bool, avx512_bf16: bool, expected: bool
) -> None:
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16, raising=False)
    assert cpu_has_bf16_units() is expected
    assert training_bf16(None, torch.device("cpu")) is expected


def test_cpu_training_autocasts_to_bf16_where_the_cpu_has_bf16_units(tiny: RewardModel) -> None:
    seen: list[torch.dtype] = []
    layer = next(m for m in tiny.model.modules() if isinstance(m, torch.nn.Linear))
    layer.register_forward_hook(lambda module, inputs, output: seen.append(output.dtype))
    pairs = synthetic_pairs(16, seed=1)
    expected = torch.bfloat16 if cpu_has_bf16_units() else torch.float32
    for bf16, dtype in ((None, expected), (False, torch.float32), (True, torch.bfloat16)):
        seen.clear()
        train(tiny, pairs, TrainingConfig(mode="full", max_steps=1, bf16=bf16))
        assert set(seen) == {dtype}, bf16
    # A CPU scores in float32 whatever the model trained in.
    seen.clear()
    tiny.score_batch([(CONVERSATION, "happy to help")])
    assert set(seen) == {torch.float32}


def test_a_scoring_only_load_stays_float32_where_it_would_not_score_in_bf16(
    tiny_path: Path,
) -> None:
    model = RewardModel.load(tiny_path, device="cpu", inference_only=True)
    assert {parameter.dtype for parameter in model.model.parameters()} == {torch.float32}


def test_training_refuses_a_model_without_float32_weights(tiny_path: Path) -> None:
    model = RewardModel.load(tiny_path, device="cpu", dtype=torch.bfloat16)
    for mode in ("head", "full"):
        with pytest.raises(ValueError, match="float32 weights"):
            train(model, synthetic_pairs(8, seed=1), TrainingConfig(mode=mode, max_steps=1))


def test_a_cpu_model_scores_in_small_groups_unless_told_otherwise(tiny_path: Path) -> None:
    # Small groups stay in a CPU's cache (README, reward_model.py row); GPUs keep large ones.
    assert RewardModel.load(tiny_path, device="cpu").max_batch_tokens == CPU_MAX_BATCH_TOKENS
    model = AutoModelForSequenceClassification.from_pretrained(tiny_path)
    chosen = RewardModel(
        model, AutoTokenizer.from_pretrained(tiny_path), device="cpu", max_batch_tokens=60
    )
    assert chosen.max_batch_tokens == 60
    sequences = chosen.encode(
        [(CONVERSATION, " ".join(TOPICS[: count % 8 + 1]) * count) for count in (40, 25, 9, 3)]
    ).input_ids
    assert sum(map(len, sequences)) > 2 * 60  # several groups
    # Groups of at most 60 real tokens give the rewards of one group holding everything.
    grouped = chosen.rewards_for_ids(sequences)
    chosen.max_batch_tokens = 100_000
    np.testing.assert_allclose(grouped, chosen.rewards_for_ids(sequences), atol=1e-5)


def test_padded_training_counts_only_the_pairs_it_trained_on(tiny: RewardModel) -> None:
    # Accelerate collates one batch ahead: 4 batches of 8 for 3 steps, 24 pairs trained.
    config = TrainingConfig(mode="full", max_steps=3, batch_size=8, packing=False)
    metrics = train(tiny, synthetic_pairs(96, seed=1), config)
    assert metrics.steps == 3
    trained = metrics.pairs_per_second * metrics.phase_seconds["train"]
    assert trained == pytest.approx(24)
