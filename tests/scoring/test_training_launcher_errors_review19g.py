"""A failed torchrun rank's own error reaches the job's error. The launcher kept the last 40
lines of stderr, which torchrun's failure summary fills ("traceback : To enable traceback
see ..."), so a job failed without saying why (a base model that is not one, a diverged loss).

Runs without Django:
HF_HUB_OFFLINE=1 .venv/bin/python -m pytest -p no:django --noconftest \
    tests/scoring/test_training_launcher_errors_review19g.py -q
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from scoring.reward_model import TrainingConfig, build_tiny_reward_model
from scoring.reward_model.checkpoint import save_checkpoint
from scoring.reward_model.launcher import DistributedTrainingError, train_distributed

CONVERSATION = [{"role": "user", "content": "How do I boil an egg?"}]
PAIRS = [(CONVERSATION, f"Ten minutes in boiling water, take {i}.", f"no {i}") for i in range(6)]
FULL = TrainingConfig(mode="full", max_steps=2, bf16=False)


def _error_of_two_process_run(base: Path, work_root: Path) -> list[str]:
    with pytest.raises(DistributedTrainingError) as raised:
        train_distributed(
            base_model=base, examples=PAIRS, config=FULL, processes=2, work_root=work_root
        )
    return str(raised.value).splitlines()


def test_a_base_model_every_rank_fails_to_load_is_named(tmp_path: Path) -> None:
    not_a_model = tmp_path / "empty"
    not_a_model.mkdir()
    lines = _error_of_two_process_run(not_a_model, tmp_path)
    causes = [line for line in lines[1:3] if line.startswith(("rank 0: ", "rank 1: "))]
    assert len(causes) == 2, lines[:5]
    assert all("config.json" in cause for cause in causes)


def test_a_diverged_rank_says_so(tmp_path: Path) -> None:
    good = build_tiny_reward_model(tmp_path / "good")
    network = AutoModelForSequenceClassification.from_pretrained(good)
    with torch.no_grad():
        network.bert.embeddings.LayerNorm.weight[0] = float("nan")
    broken = save_checkpoint(network, AutoTokenizer.from_pretrained(good), tmp_path / "broken")
    lines = _error_of_two_process_run(broken, tmp_path)
    assert any("TrainingDiverged: training diverged at step 1" in line for line in lines[1:3])
