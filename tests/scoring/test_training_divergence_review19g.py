"""A training run whose loss or weights go NaN or infinite stops with ``TrainingDiverged``
instead of handing back a model that scores NaN with NaN metrics (which the job then tried to
register: nothing checked, and no JSON holds NaN).

Runs without Django:
HF_HUB_OFFLINE=1 .venv/bin/python -m pytest -p no:django -p no:cacheprovider \
    tests/scoring/test_training_divergence_review19g.py -q
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from scoring.reward_model import RewardModel, TrainingConfig, build_tiny_reward_model, train

CONVERSATION = [{"role": "user", "content": "How do I boil an egg?"}]
PAIRS = [(CONVERSATION, f"Ten minutes in boiling water, take {i}.", f"no {i}") for i in range(6)]


@pytest.fixture(scope="module")
def tiny_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_reward_model(tmp_path_factory.mktemp("tiny") / "model")


def _broken_model(tiny_path: Path) -> RewardModel:
    """A model whose every output is NaN, as after a diverged step."""
    model = RewardModel.load(tiny_path, device="cpu")
    with torch.no_grad():
        model.model.bert.embeddings.LayerNorm.weight[0] = float("nan")
    return model


@pytest.mark.parametrize("packing", [True, False])
def test_full_training_with_a_nan_loss_raises(tiny_path: Path, packing: bool) -> None:
    config = TrainingConfig(mode="full", max_steps=2, bf16=False, packing=packing)
    with pytest.raises(ValueError, match="diverged at step 1") as raised:
        train(_broken_model(tiny_path), PAIRS, config)
    # Named, so a job fails saying so: "TrainingDiverged: training diverged at step 1: ...".
    assert type(raised.value).__name__ == "TrainingDiverged"


def test_an_infinite_loss_raises_too(tiny_path: Path) -> None:
    model = RewardModel.load(tiny_path, device="cpu")
    pairs = [(*pair, None, float("inf")) for pair in PAIRS]
    with pytest.raises(ValueError, match="diverged at step 1: the .* is inf"):
        train(model, pairs, TrainingConfig(mode="full", max_steps=2, bf16=False))


def test_a_head_fit_on_nan_features_raises_and_leaves_the_model_untouched(
    tiny_path: Path,
) -> None:
    model = _broken_model(tiny_path)
    head_before = model.model.classifier.weight.detach().clone()
    precision_before = model.precision
    with pytest.raises(ValueError, match="not finite|diverged"):
        train(model, PAIRS, TrainingConfig(mode="head"))
    assert torch.equal(model.model.classifier.weight, head_before)
    assert model.precision == precision_before


def test_a_sound_run_still_trains(tiny_path: Path) -> None:
    model = RewardModel.load(tiny_path, device="cpu")
    metrics = train(model, PAIRS, TrainingConfig(mode="full", max_steps=2, bf16=False))
    assert metrics.steps == 2 and metrics.final_loss is not None
    assert train(model, PAIRS, TrainingConfig(mode="head")).final_loss is not None
