"""k-fold cross-validation as a job: `cross_validate --wait` on a real worker (the packaged
MiniLM, head mode, real hh-rlhf pairs), the fold split, and the refusals."""

from __future__ import annotations

import json

import numpy as np
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from annotation.importers import content_hash
from annotation.models import Pair
from scoring.jobs.runner import JobError
from scoring.loop.cross_validation import cross_validation_pairs, fold_of
from scoring.loop.model_jobs import job_run_inline
from scoring.loop.requests import cross_validation_request
from scoring.models import Job, ModelVersion
from scoring.reward_model import load_hh_rlhf
from tests.conftest import HH_RLHF
from tests.factories import CampaignFactory, PairFactory
from tests.scoring.loop_support import use_tiny_base

PAIRS = 30
GOLD = 6


def _seed(campaign):
    """PAIRS verified hh-rlhf pairs (unanimous, the dataset's own side) and GOLD gold ones."""
    examples = load_hh_rlhf(HH_RLHF, limit=PAIRS + GOLD)
    for index, example in enumerate(examples):
        a_chosen = index % 2 == 0
        response_a, response_b = (
            (example.chosen, example.rejected) if a_chosen else (example.rejected, example.chosen)
        )
        conversation = [dict(turn) for turn in example.conversation]
        preference = 1 if a_chosen else -1
        gold = index >= PAIRS
        Pair.objects.create(
            campaign=campaign,
            conversation=conversation,
            response_a=response_a,
            response_b=response_b,
            status=Pair.Status.COMPLETE,
            content_hash=content_hash(conversation, response_a, response_b),
            consensus_preference=preference,
            provenance=Pair.Provenance.GOLD if gold else Pair.Provenance.UNANIMOUS,
            is_gold=gold,
            gold_preference=preference if gold else None,
        )


@pytest.mark.worker
def test_cross_validate_wait_reports_each_fold_mean_and_spread(worker, capsys):
    campaign = CampaignFactory(name="cross-validated")
    _seed(campaign)
    call_command(
        "cross_validate",
        "--campaign",
        campaign.name,
        "--folds",
        "3",
        "--wait",
        "--timeout",
        "300",
    )
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    job = Job.objects.get(campaign=campaign, kind=Job.Kind.CROSS_VALIDATE)
    assert summary["status"] == "succeeded" and summary["job"] == job.pk
    assert summary["folds"] == 3 and summary["mode"] == "head" and summary["pairs"] == PAIRS
    # The split is the seeded hash split: three folds of ten verified pairs, gold left out.
    data = cross_validation_pairs(campaign=campaign, include_gold=False)
    assert all(not pair.is_gold for pair in data.pairs)
    expected_sizes = np.bincount(fold_of(data.pair_ids, folds=3), minlength=3).tolist()
    assert summary["fold_sizes"] == expected_sizes == [10, 10, 10]
    accuracies = summary["accuracies"]
    assert len(accuracies) == 3
    for accuracy, size in zip(accuracies, summary["fold_sizes"], strict=True):
        assert 0.0 <= accuracy <= 1.0 and float(accuracy * size).is_integer()
    assert summary["mean"] == pytest.approx(np.mean(accuracies))
    assert summary["std"] == pytest.approx(np.std(accuracies, ddof=1))
    assert job.result["accuracies"] == accuracies  # stored on the job row
    assert not ModelVersion.objects.filter(campaign=campaign).exists()  # nothing registered


def test_the_fold_split_is_balanced_seeded_and_not_import_order():
    ids = list(range(1, 103))
    folds = fold_of(ids, folds=5)
    assert sorted(np.bincount(folds).tolist()) == [20, 20, 20, 21, 21]
    assert folds == fold_of(ids, folds=5) and folds != fold_of(ids, folds=5, seed=1)
    assert folds[:5] != [0, 1, 2, 3, 4]


def test_cross_validation_refuses_bad_folds_and_too_few_pairs(db, settings, tmp_path):
    use_tiny_base(settings, model_dir=tmp_path / "models")
    campaign = CampaignFactory()
    with pytest.raises(JobError, match="folds must be between 2 and 20"):
        cross_validation_request(campaign=campaign, params={"folds": 1}, enqueue=False)
    with pytest.raises(CommandError, match="folds"):
        call_command("cross_validate", "--campaign", campaign.name, "--folds", "50", "--inline")
    PairFactory.create_batch(
        5,
        campaign=campaign,
        status=Pair.Status.COMPLETE,
        provenance=Pair.Provenance.UNANIMOUS,
        consensus_preference=1,
    )
    job = job_run_inline(
        job=cross_validation_request(campaign=campaign, params={"folds": 3}, enqueue=False)
    )
    assert job.status == Job.Status.FAILED
    assert "needs at least 6 verified pairs" in job.error


def test_include_gold_puts_gold_into_the_folds(db, settings, tmp_path):
    use_tiny_base(settings, model_dir=tmp_path / "models")
    campaign = CampaignFactory()
    PairFactory.create_batch(
        8,
        campaign=campaign,
        status=Pair.Status.COMPLETE,
        provenance=Pair.Provenance.UNANIMOUS,
        consensus_preference=1,
    )
    PairFactory.create_batch(
        4,
        campaign=campaign,
        status=Pair.Status.COMPLETE,
        is_gold=True,
        provenance=Pair.Provenance.GOLD,
        gold_preference=-1,
        consensus_preference=-1,
    )
    job = job_run_inline(
        job=cross_validation_request(
            campaign=campaign, params={"folds": 2, "include_gold": True}, enqueue=False
        )
    )
    assert job.status == Job.Status.SUCCEEDED, job.error
    assert job.result["pairs"] == 12 and sum(job.result["fold_sizes"]) == 12
    assert len(job.result["accuracies"]) == 2


def test_the_pairs_of_one_ranking_item_share_a_fold():
    # A ranking item expands to several pairs that carry its id.
    ids = [5, 5, 5, 9, 9, 9, 11, 11, 11, 14, 14, 14]
    folds = fold_of(ids, folds=3)
    by_item: dict[int, set[int]] = {}
    for pair_id, fold in zip(ids, folds, strict=True):
        by_item.setdefault(pair_id, set()).add(fold)
    assert all(len(item_folds) == 1 for item_folds in by_item.values())
    assert len(set(folds)) == 3  # and the items still spread over every fold
