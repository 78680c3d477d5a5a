"""ONNX export and ONNX Runtime scoring (scoring.reward_model.onnx_backend) with tiny random
models; the real default model's ONNX and int8 forms on 200 real pairs are checked in
test_reward_model_minilm.py, beside the head training they share.

HF_HUB_OFFLINE=1 .venv/bin/python -m pytest -p no:django tests/scoring/test_reward_model_onnx.py -q
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from scoring.reward_model import (
    RewardModel,
    build_tiny_decoder_base,
    build_tiny_reward_model,
    load_scorer,
)
from scoring.reward_model.onnx_backend import (
    ONNX_FILE,
    OnnxExportError,
    OnnxRewardModel,
    export_onnx,
    is_onnx_model,
    length_sorted_batches,
    read_manifest,
)

CONVERSATION = [{"role": "user", "content": "How do I boil an egg?"}]
RESPONSES = [
    "Put it in boiling water for nine minutes.",
    "Eggs are oval.",
    "",
    "Boil it. " * 300,  # longer than the window: cut from the left, as the torch model does
    "Put it in boiling water for nine minutes.",  # a duplicate scores exactly the same
]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> RewardModel:
    path = build_tiny_reward_model(tmp_path_factory.mktemp("tiny") / "model")
    model = RewardModel.load(path, device="cpu", max_length=128)
    model.precision = "float32"
    return model


def test_an_exported_model_loads_through_load_scorer_and_not_as_a_torch_model(
    tiny: RewardModel, tmp_path: Path
) -> None:
    out = export_onnx(tiny, tmp_path / "onnx")
    assert is_onnx_model(out) and not is_onnx_model(tmp_path)
    manifest = read_manifest(out)
    assert manifest["quantization"] is None and manifest["max_length"] == 128
    loaded = load_scorer(out)
    assert isinstance(loaded, OnnxRewardModel)
    with pytest.raises(ValueError, match="is an ONNX export: open it with load_scorer"):
        RewardModel.load(out)
    assert loaded.precision == "float32" and loaded.max_length == 128
    # The tokenizer and config travel with it, so it scores any text on its own.
    assert (out / "config.json").is_file() and (out / "tokenizer_config.json").is_file()


def test_onnx_float32_rewards_match_torch_within_1e3(tiny: RewardModel, tmp_path: Path) -> None:
    onnx_model = load_scorer(export_onnx(tiny, tmp_path / "onnx"))
    # A BERT encoder is fused: one Attention node per layer, fused layer norms and GELU.
    fusions = read_manifest(tmp_path / "onnx")["fusions"]
    layers = tiny.model.config.num_hidden_layers
    assert fusions["Attention"] == layers and fusions["SkipLayerNormalization"] == 2 * layers
    # Its pooler reads the first token only, so the last layer runs on that token after attention.
    assert read_manifest(tmp_path / "onnx")["last_layer_first_token_only"] is True
    items = [(CONVERSATION, response) for response in RESPONSES]
    expected = tiny.score_batch(items)
    got = onnx_model.score_batch(items)
    np.testing.assert_allclose(got, expected, atol=1e-3)
    assert got[0] == got[4]
    # One at a time (no padding) gives the same rewards as the padded batch.
    single = [onnx_model.score(CONVERSATION, response) for response in RESPONSES]
    np.testing.assert_allclose(single, got, atol=1e-5)
    pairs = [(CONVERSATION, RESPONSES[0], RESPONSES[1]), (CONVERSATION, RESPONSES[2], RESPONSES[0])]
    np.testing.assert_allclose(
        onnx_model.prob_a_better_batch(pairs), tiny.prob_a_better_batch(pairs), atol=1e-3
    )
    assert onnx_model.prob_a_better(CONVERSATION, RESPONSES[0], RESPONSES[0]) == 0.5


def test_a_decoder_reward_model_exports_too(tmp_path: Path) -> None:
    base = build_tiny_decoder_base(tmp_path / "decoder-base")
    model = RewardModel.from_base(base, device="cpu", max_length=64)
    model.precision = "float32"
    onnx_model = load_scorer(export_onnx(model, tmp_path / "onnx"))
    manifest = read_manifest(tmp_path / "onnx")
    assert manifest["fusions"] == {}  # not a BERT-style graph
    assert manifest["last_layer_first_token_only"] is False
    items = [(CONVERSATION, response) for response in RESPONSES]
    np.testing.assert_allclose(onnx_model.score_batch(items), model.score_batch(items), atol=1e-3)


def test_export_replaces_an_existing_model_and_leaves_no_staging(
    tiny: RewardModel, tmp_path: Path
) -> None:
    out = tmp_path / "onnx"
    export_onnx(tiny, out, quantize="int8")
    assert read_manifest(out)["quantization"] == "int8"
    export_onnx(tiny, out)
    assert read_manifest(out)["quantization"] is None
    dynamic = load_scorer(export_onnx(tiny, out, quantize="int8-dynamic"))
    assert dynamic.precision == "int8-dynamic"
    assert np.all(np.isfinite(dynamic.score_batch([(CONVERSATION, r) for r in RESPONSES])))
    assert sorted(path.name for path in tmp_path.iterdir()) == ["onnx"]


def test_export_refuses_an_unknown_quantisation_and_writes_nothing(
    tiny: RewardModel, tmp_path: Path
) -> None:
    with pytest.raises(OnnxExportError, match="quantize"):
        export_onnx(tiny, tmp_path / "onnx", quantize="int4")
    assert list(tmp_path.iterdir()) == []


def test_batches_hold_rows_of_nearly_one_length_so_little_padding_is_computed() -> None:
    lengths = [100, 12, 95, 91, 89, 50, 48, 300, 11, 10]
    input_ids = [[7] * length for length in lengths]
    batches = list(
        length_sorted_batches(input_ids, batch_size=32, max_batch_tokens=10_000, max_padding=0.1)
    )
    assert [[lengths[index] for index in batch] for batch in batches] == [
        [300],
        [100, 95, 91],
        [89],
        [50, 48],
        [12, 11],
        [10],
    ]
    # Without the bound, the size and token limits alone decide (one batch here).
    assert len(list(length_sorted_batches(input_ids, batch_size=32, max_batch_tokens=10_000))) == 1


def test_onnx_scores_do_not_depend_on_how_rows_are_batched(
    tiny: RewardModel, tmp_path: Path
) -> None:
    onnx_model = load_scorer(export_onnx(tiny, tmp_path / "onnx"))
    assert isinstance(onnx_model, OnnxRewardModel) and onnx_model.max_padding == 0.1
    items = [(CONVERSATION, response) for response in RESPONSES]
    tight = onnx_model.score_batch(items)
    onnx_model.max_padding = 1.0  # one padded batch
    np.testing.assert_allclose(onnx_model.score_batch(items), tight, atol=1e-5)


def test_loading_a_directory_without_a_model_fails_clearly(tmp_path: Path) -> None:
    (tmp_path / ONNX_FILE).write_bytes(b"")
    with pytest.raises(FileNotFoundError):
        OnnxRewardModel.load(tmp_path)
