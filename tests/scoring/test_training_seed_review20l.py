"""A training job's ``seed`` draws the fresh reward head in one process as every torchrun rank
draws it (``reward_model.distributed``: ``RewardModel.from_base(seed=...)``), so one process and
N processes train the same model from the same settings."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from scoring.loop.judged_pairs import training_pairs
from scoring.loop.training import JudgedExamples, training_config_from_params
from scoring.reward_model import RewardModel, build_tiny_decoder_base, train
from tests.scoring.loop_support import (
    campaign_models_dir,
    learnable_campaign,
    train_in_this_process,
)

ITEMS = [
    ([{"role": "user", "content": "tell me about cooking"}], "happy to help, here it is"),
    ([{"role": "user", "content": "tell me about music"}], "whatever, figure it out"),
]


@pytest.mark.django_db
def test_a_full_mode_job_draws_its_fresh_head_from_the_jobs_seed(settings, tmp_path):
    # A decoder base has no reward head: from_base draws a fresh one, as for MiniLM.
    base = build_tiny_decoder_base(tmp_path / "decoder")
    settings.ARBITER = {
        **settings.ARBITER,
        "BASE_MODEL": str(base),
        "JOB_HEARTBEAT_SECONDS": 3600.0,
    }
    campaign = learnable_campaign(train=6, gold=2)
    try:
        params = {"mode": "full", "seed": 7, "max_steps": 1, "token_budget": 256}
        version = train_in_this_process(campaign=campaign, params=params)
        trained = RewardModel.load(version.checkpoint)

        # What each rank of a distributed run of the same job does (distributed._train_and_save).
        expected = RewardModel.from_base(base, seed=7)
        config = training_config_from_params(version.job.params)
        train(expected, JudgedExamples(training_pairs(campaign=campaign)), config)

        np.testing.assert_allclose(
            trained.score_batch(ITEMS), expected.score_batch(ITEMS), rtol=1e-4, atol=1e-5
        )
    finally:
        shutil.rmtree(campaign_models_dir(campaign), ignore_errors=True)
