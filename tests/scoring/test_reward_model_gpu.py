"""The reward model's CUDA paths: float32 head fits and bf16 full fine-tunes, each scored in
the precision it was trained in, and checkpoints written on the GPU that a CPU-only host loads.

Skipped where no CUDA device is present (CI has none). Runs without Django on a GPU host:
HF_HUB_OFFLINE=1 python -m pytest -p no:django -p no:cacheprovider --noconftest \
    tests/scoring/test_reward_model_gpu.py -q
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import (
    AutoModelForSequenceClassification,
)

from scoring.reward_model import (
    RewardModel,
    TrainingConfig,
    build_tiny_decoder_base,
    build_tiny_reward_model,
    evaluate,
    load_hh_rlhf,
    train,
)
from tests.scoring.test_reward_model import CONVERSATION, synthetic_pairs

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]

REPO_ROOT = Path(__file__).resolve().parents[2]
HH_RLHF_PATH = REPO_ROOT / "../shared/data/hh-rlhf-harmless-base/test.jsonl.gz"
PROBE = [(CONVERSATION, "happy to help about cooking"), (CONVERSATION, "whatever about cooking")]
PROBE += [(CONVERSATION, f"thank you for asking about {topic}") for topic in ("books", "music")]


@pytest.fixture(scope="module")
def tiny_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_reward_model(tmp_path_factory.mktemp("tiny") / "model")


@pytest.fixture(scope="module")
def head_trained_on_cpu(tiny_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    model = RewardModel.load(tiny_path, device="cpu")
    train(model, synthetic_pairs(200, seed=1), TrainingConfig(mode="head"))
    return model.save(tmp_path_factory.mktemp("head") / "rm")


def test_the_default_device_is_the_gpu(tiny_path: Path) -> None:
    assert RewardModel.load(tiny_path).device.type == "cuda"


def test_a_checkpoint_from_elsewhere_scores_under_bf16_autocast(tiny_path: Path) -> None:
    on_gpu = RewardModel.load(tiny_path, device="cuda")
    assert on_gpu.precision == "bf16"
    on_cpu = RewardModel.load(tiny_path, device="cpu").score_batch(PROBE)
    np.testing.assert_allclose(on_gpu.score_batch(PROBE), on_cpu, rtol=0.05, atol=0.05)


def test_a_scoring_only_load_holds_bf16_weights_and_scores_alike(tiny_path: Path) -> None:
    autocast = RewardModel.load(tiny_path, device="cuda")
    scoring_only = RewardModel.load(tiny_path, device="cuda", inference_only=True)
    assert {parameter.dtype for parameter in scoring_only.model.parameters()} == {torch.bfloat16}
    np.testing.assert_allclose(
        scoring_only.score_batch(PROBE), autocast.score_batch(PROBE), rtol=0.05, atol=0.05
    )
    with pytest.raises(ValueError, match="float32 weights"):
        train(scoring_only, synthetic_pairs(8, seed=1), TrainingConfig(mode="head"))


def test_a_head_fit_loaded_for_scoring_only_keeps_float32(head_trained_on_cpu: Path) -> None:
    model = RewardModel.load(head_trained_on_cpu, device="cuda", inference_only=True)
    assert {parameter.dtype for parameter in model.model.parameters()} == {torch.float32}


def test_a_head_fit_from_cpu_scores_in_float32_on_the_gpu(head_trained_on_cpu: Path) -> None:
    on_cpu = RewardModel.load(head_trained_on_cpu, device="cpu").score_batch(PROBE)
    on_gpu_model = RewardModel.load(head_trained_on_cpu, device="cuda")
    assert on_gpu_model.precision == "float32"
    np.testing.assert_allclose(on_gpu_model.score_batch(PROBE), on_cpu, rtol=1e-3, atol=1e-3)


def test_head_training_on_the_gpu_gives_a_checkpoint_that_scores_alike_on_cpu(
    tiny_path: Path, tmp_path: Path
) -> None:
    model = RewardModel.load(tiny_path, device="cuda")
    metrics = train(model, synthetic_pairs(200, seed=1), TrainingConfig(mode="head"))
    assert metrics.device.startswith("cuda") and not metrics.cancelled
    assert evaluate(model, synthetic_pairs(60, seed=2))["accuracy"] >= 0.9

    reloaded = RewardModel.load(model.save(tmp_path / "rm"), device="cpu")
    assert evaluate(reloaded, synthetic_pairs(60, seed=2))["accuracy"] >= 0.9
    np.testing.assert_allclose(
        reloaded.score_batch(PROBE), model.score_batch(PROBE), rtol=1e-3, atol=1e-3
    )


def test_full_training_on_the_gpu_learns_in_bf16_and_saves_float32_weights(
    tiny_path: Path, tmp_path: Path
) -> None:
    model = RewardModel.load(tiny_path, device="cuda")
    # 20 steps: at 12 the H100 run's loss had fallen by 0.098 (0.693 -> 0.595, the same curve
    # as on CPU), just short of the 0.1 asserted; by 20 it is under 0.05 on CPU.
    config = TrainingConfig(mode="full", max_steps=20, batch_size=8, learning_rate=1e-3)
    metrics = train(model, synthetic_pairs(96, seed=1), config)
    assert metrics.device.startswith("cuda") and metrics.steps == 20
    assert np.mean(metrics.loss_curve[-3:]) < np.mean(metrics.loss_curve[:3]) - 0.1
    assert model.device.type == "cuda" and model.precision == "bf16"
    assert evaluate(model, synthetic_pairs(50, seed=2))["accuracy"] >= 0.9

    saved = model.save(tmp_path / "rm")
    plain = AutoModelForSequenceClassification.from_pretrained(saved)
    # Autocast computes in bf16 but keeps float32 master weights; the checkpoint holds those.
    assert {parameter.dtype for parameter in plain.parameters()} == {torch.float32}
    on_cpu = RewardModel.load(saved, device="cpu")
    assert evaluate(on_cpu, synthetic_pairs(50, seed=2))["accuracy"] >= 0.9
    probe = [(example.conversation, example.chosen) for example in synthetic_pairs(20, seed=3)]
    probe += [(example.conversation, example.rejected) for example in synthetic_pairs(20, seed=3)]
    bf16_scores, float32_scores = model.score_batch(probe), on_cpu.score_batch(probe)
    assert np.corrcoef(bf16_scores, float32_scores)[0, 1] > 0.98


def test_a_decoder_pools_the_last_real_token_on_the_gpu_as_on_cpu(tmp_path: Path) -> None:
    """Padded batches on CUDA pick the same last real token as unpadded scoring on CPU."""
    model = RewardModel.from_base(build_tiny_decoder_base(tmp_path / "base"), device="cuda")
    train(model, synthetic_pairs(120, seed=1), TrainingConfig(mode="head"))
    assert evaluate(model, synthetic_pairs(60, seed=2))["accuracy"] >= 0.9

    on_cpu = RewardModel.load(model.save(tmp_path / "rm"), device="cpu")
    one_at_a_time = np.array([on_cpu.score(conversation, reply) for conversation, reply in PROBE])
    np.testing.assert_allclose(model.score_batch(PROBE), one_at_a_time, rtol=1e-3, atol=1e-3)


def test_minilm_on_the_gpu_learns_hh_rlhf_as_well_as_on_cpu() -> None:
    """The real base model and real human labels: the GPU run matches the CPU run."""
    if not HH_RLHF_PATH.is_file():
        pytest.skip(f"no hh-rlhf data at {HH_RLHF_PATH}")
    examples = load_hh_rlhf(HH_RLHF_PATH, limit=600)
    training, held_out = examples[:400], examples[400:]
    reports = {}
    for device in ("cpu", "cuda"):
        model = RewardModel.from_base(device=device, max_length=256)
        if device == "cuda":
            untrained = evaluate(model, held_out)  # the baseline: the same model untrained
        train(model, training, TrainingConfig(mode="head"))
        reports[device] = evaluate(model, held_out)
    assert reports["cuda"]["n"] == untrained["n"] == 200
    assert reports["cuda"]["accuracy"] >= untrained["accuracy"] + 0.02
    assert abs(reports["cuda"]["accuracy"] - reports["cpu"]["accuracy"]) <= 0.03


def _tiny_decoder_on_gpu(tmp_path: Path) -> RewardModel:
    return RewardModel.from_base(build_tiny_decoder_base(tmp_path / "decoder"), device="cuda")


@pytest.mark.parametrize("kind", ["encoder", "decoder"])
def test_bf16_packed_scoring_matches_padded_scoring_on_cuda(
    kind: str, tiny_path: Path, tmp_path: Path
) -> None:
    model = (
        RewardModel.load(tiny_path, device="cuda", inference_only=True)
        if kind == "encoder"
        else _tiny_decoder_on_gpu(tmp_path)
    )
    items = PROBE + [(CONVERSATION, "a much longer answer " * 20)]
    ids = model.encode(items).input_ids
    assert model.packing
    packed = model.rewards_for_ids(ids)
    model.packing = False
    padded = model.rewards_for_ids(ids)
    # bf16 rounding differs with the kernels' shapes; packing itself changes nothing.
    np.testing.assert_allclose(packed, padded, rtol=0.05, atol=0.05)


def test_packed_bf16_full_training_runs_on_cuda_with_checkpointing(tmp_path: Path) -> None:
    model = _tiny_decoder_on_gpu(tmp_path)
    metrics = train(
        model,
        synthetic_pairs(64, seed=1),
        TrainingConfig(
            mode="full", epochs=2, learning_rate=1e-3, gradient_checkpointing=True,
            token_budget=1024,
        ),
    )
    assert metrics.packing and metrics.device.startswith("cuda") and model.precision == "bf16"
    assert metrics.final_loss is not None and metrics.initial_loss is not None
    assert metrics.final_loss < metrics.initial_loss
    assert {parameter.dtype for parameter in model.model.parameters()} == {torch.float32}


def test_fsdp_through_the_launcher_trains_in_bf16_and_writes_whole_float32_weights(
    tmp_path: Path,
) -> None:
    from scoring.reward_model.launcher import train_distributed

    base = build_tiny_decoder_base(tmp_path / "decoder")
    result = train_distributed(
        base_model=base,
        examples=synthetic_pairs(64, seed=1),
        config=TrainingConfig(
            mode="full", epochs=2, learning_rate=1e-3, token_budget=1024, strategy="fsdp",
            gradient_checkpointing=True,
        ),
        processes=1,
        device="cuda",
        work_root=tmp_path,
    )
    metrics = result.metrics
    assert result.world_size == 1 and metrics.strategy == "fsdp"
    assert metrics.device.startswith("cuda") and result.model.precision == "bf16"
    assert metrics.final_loss is not None and metrics.initial_loss is not None
    assert metrics.final_loss < metrics.initial_loss
    # The bf16 mixed-precision policy computes in bf16 over float32 master shards; rank 0 wrote
    # those, gathered whole.
    saved = result.model.save(tmp_path / "rm")
    plain = AutoModelForSequenceClassification.from_pretrained(saved)
    assert {parameter.dtype for parameter in plain.parameters()} == {torch.float32}
    on_cpu = RewardModel.load(saved, device="cpu")
    assert evaluate(on_cpu, synthetic_pairs(50, seed=2))["accuracy"] >= 0.9
