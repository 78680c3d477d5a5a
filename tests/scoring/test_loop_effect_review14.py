"""Review 14 of the loop's effect: cross-validation folds by prompt group, the hit-rate
comparison's minimum of pairs a side, the random slice's half-up rounding, and the held-out
change of a round whose closing loop job failed."""

from __future__ import annotations

from collections import defaultdict
from datetime import timedelta

import pytest
from django.utils import timezone

from annotation.importers import content_hash
from annotation.models import Campaign, Pair, Round
from scoring.dashboard.loop_effect import loop_effect
from scoring.evaluation.maths import BOOTSTRAP_MIN_N
from scoring.jobs.runner import JobError
from scoring.loop import rounds as rounds_module
from scoring.loop.cross_validation import cross_validation_pairs, fold_of_pairs
from scoring.loop.model_jobs import job_run_inline
from scoring.loop.requests import cross_validation_request, loop_request
from scoring.loop.rounds import random_slice_size, round_open_next
from scoring.models import Job, ModelVersion, PairScore
from tests.factories import CampaignFactory, PairFactory
from tests.scoring.loop_support import learnable_campaign, train_in_this_process, use_tiny_base

# 1. Cross-validation folds by prompt group.


def _verified(campaign: Campaign, conversation: list, a: str, b: str, preference: int) -> Pair:
    return Pair.objects.create(
        campaign=campaign,
        conversation=conversation,
        response_a=a,
        response_b=b,
        content_hash=content_hash(conversation, a, b),
        status=Pair.Status.COMPLETE,
        consensus_preference=preference,
        provenance=Pair.Provenance.UNANIMOUS,
    )


def test_mirrored_pairs_and_pairs_of_one_prompt_share_a_fold(db):
    campaign = CampaignFactory()
    for index in range(10):
        conversation = [{"role": "user", "content": f"Question {index}?"}]
        good, bad, other = f"Good answer {index}", f"Bad answer {index}", f"Other {index}"
        _verified(campaign, conversation, good, bad, 1)
        _verified(campaign, conversation, bad, good, -1)  # the same judgement, swapped
        if index % 2:
            _verified(campaign, conversation, good, other, 1)  # the same prompt, another reply
    data = cross_validation_pairs(campaign=campaign, include_gold=False)
    assert len(data) == 25
    folds = fold_of_pairs(data, folds=5)
    assert folds == fold_of_pairs(data, folds=5)  # seeded: the same split again
    by_prompt: dict[str, set[int]] = defaultdict(set)
    for pair, fold in zip(data.pairs, folds, strict=True):
        by_prompt[str(Pair.objects.get(pk=pair.pk).conversation)].add(fold)
    assert len(by_prompt) == 10
    split = [prompt for prompt, parts in by_prompt.items() if len(parts) > 1]
    assert not split, f"{len(split)} of 10 prompts straddle train and test folds"
    assert set(folds) == set(range(5))  # the ten prompts still spread over every fold


def test_the_minimum_counts_prompts_not_pairs(db, settings, tmp_path):
    use_tiny_base(settings, model_dir=tmp_path / "models")
    campaign = CampaignFactory()
    for index in range(3):  # six pairs, but three prompts: three folds need six
        conversation = [{"role": "user", "content": f"Question {index}?"}]
        _verified(campaign, conversation, f"good {index}", f"bad {index}", 1)
        _verified(campaign, conversation, f"bad {index}", f"good {index}", -1)
    job = job_run_inline(
        job=cross_validation_request(campaign=campaign, params={"folds": 3}, enqueue=False)
    )
    assert job.status == Job.Status.FAILED
    assert "needs at least 6 verified pairs with distinct prompts" in job.error
    assert "have 3" in job.error


# 2. The hit-rate comparison waits for BOOTSTRAP_MIN_N scored pairs a side.


def _scored_round(size: int) -> Round:
    campaign = CampaignFactory(round_size=size, random_slice_share=0.5)
    pool = [PairFactory(campaign=campaign, status=Pair.Status.POOLED) for _ in range(size)]
    version = ModelVersion.objects.create(campaign=campaign, number=1, base="t", checkpoint="/x")
    PairScore.objects.bulk_create(
        PairScore(pair=p, model_version=version, reward_a=1.0, reward_b=0.0, p_a_better=0.9)
        for p in pool
    )
    opened = round_open_next(campaign=campaign)
    assert opened is not None
    common = {
        "status": Pair.Status.COMPLETE,
        "provenance": Pair.Provenance.UNANIMOUS,
        "disagreement": 0.0,
    }
    # The model said A everywhere: the prioritised slice all missed, the random one all hit.
    Pair.objects.filter(round=opened, selection="priority").update(
        consensus_preference=-1, **common
    )
    Pair.objects.filter(round=opened, selection="random").update(consensus_preference=1, **common)
    return opened


def test_hit_rate_sentence_waits_for_ten_pairs_a_side(db):
    opened = _scored_round(6)
    (report,) = loop_effect(campaign=opened.campaign)["rounds"]
    assert report["slices"]["priority"]["scored"] == 3 == report["slices"]["random"]["scored"]
    assert report["hit_rate_difference"] is None
    sentence = report["hit_rate_sentence"]
    assert "not enough labelled pairs" in sentence, sentence
    assert f"(at least {BOOTSTRAP_MIN_N} in each)" in sentence, sentence


def test_hit_rate_sentence_compares_from_ten_pairs_a_side(db):
    opened = _scored_round(2 * BOOTSTRAP_MIN_N)
    (report,) = loop_effect(campaign=opened.campaign)["rounds"]
    assert report["slices"]["priority"]["scored"] == BOOTSTRAP_MIN_N
    assert report["slices"]["random"]["scored"] == BOOTSTRAP_MIN_N
    assert report["hit_rate_difference"] is not None
    assert "higher than the random one" in report["hit_rate_sentence"]


# 3. The random slice's size is rounded half up, exactly.


def test_random_slice_size_rounds_exact_halves_up():
    # 50 * 0.29 is 14.499999999999998 in binary floating point.
    assert random_slice_size(size=50, share=0.29) == 15
    assert random_slice_size(size=90, share=0.35) == 32
    assert random_slice_size(size=5, share=0.1) == 1
    assert random_slice_size(size=4, share=0.1) == 0
    assert random_slice_size(size=500, share=0.1) == 50
    assert random_slice_size(size=7, share=1.0) == 7
    assert random_slice_size(size=0, share=0.5) == 0
    assert random_slice_size(size=10, share=0.0) == 0


# 4. A round closed by a loop job that then failed gets its held-out change.


def _version(campaign: Campaign, number: int, **fields: object) -> ModelVersion:
    return ModelVersion.objects.create(
        campaign=campaign,
        number=number,
        base="tiny",
        checkpoint="/nowhere",
        metrics={"heldout": {"n": 50}},
        **fields,
    )


def test_the_first_version_after_the_close_naming_no_round_is_the_rounds(db):
    campaign = CampaignFactory(round_size=10, random_slice_share=0.5)
    PairFactory.create_batch(10, campaign=campaign, status=Pair.Status.POOLED)
    v1 = _version(campaign, 1, heldout_accuracy=0.6)
    opened = round_open_next(campaign=campaign)
    Pair.objects.filter(round=opened).update(
        status=Pair.Status.COMPLETE,
        consensus_preference=1,
        provenance=Pair.Provenance.UNANIMOUS,
        disagreement=0.0,
    )
    # A version trained while the round was open (no round) is not the round's.
    _version(campaign, 2, heldout_accuracy=0.55)
    closed_at = timezone.now()
    Round.objects.filter(pk=opened.pk).update(status=Round.Status.CLOSED, closed_at=closed_at)
    ModelVersion.objects.filter(pk=v1.pk).update(created_at=closed_at - timedelta(hours=2))
    ModelVersion.objects.filter(number=2, campaign=campaign).update(
        created_at=closed_at - timedelta(hours=1)
    )
    # The loop that closed it failed; "Retrain now" then closed nothing: no round named.
    _version(campaign, 3, heldout_accuracy=0.7)
    _version(campaign, 4, heldout_accuracy=0.8)
    (report,) = loop_effect(campaign=campaign)["rounds"]
    assert report["heldout"] is not None
    assert (report["heldout"]["from_version"], report["heldout"]["to_version"]) == (2, 3)


def test_a_version_naming_the_round_comes_first(db):
    campaign = CampaignFactory(round_size=10, random_slice_share=0.5)
    PairFactory.create_batch(10, campaign=campaign, status=Pair.Status.POOLED)
    _version(campaign, 1, heldout_accuracy=0.6)
    opened = round_open_next(campaign=campaign)
    Round.objects.filter(pk=opened.pk).update(
        status=Round.Status.CLOSED, closed_at=timezone.now() - timedelta(minutes=5)
    )
    _version(campaign, 2, heldout_accuracy=0.65)  # no round, after the close
    _version(campaign, 3, heldout_accuracy=0.7, round=opened)
    (report,) = loop_effect(campaign=campaign)["rounds"]
    assert (report["heldout"]["from_version"], report["heldout"]["to_version"]) == (2, 3)


def test_round_closed_by_a_failed_loop_gets_its_heldout_change(db, settings, tmp_path, monkeypatch):
    use_tiny_base(settings, model_dir=tmp_path / "models")
    campaign = learnable_campaign(train=12, gold=8)
    campaign.round_size = 10
    campaign.random_slice_share = 0.5
    campaign.save()
    v1 = train_in_this_process(campaign=campaign, params={"mode": "head"})
    PairFactory.create_batch(12, campaign=campaign, status=Pair.Status.POOLED)
    opened = round_open_next(campaign=campaign)
    Pair.objects.filter(round=opened).update(
        status=Pair.Status.COMPLETE,
        consensus_preference=1,
        provenance=Pair.Provenance.UNANIMOUS,
        disagreement=0.0,
    )
    # The loop closes the round, then training fails (e.g. out of memory on the GPU worker).
    real_train = rounds_module.model_train

    def failing_train(**kwargs: object) -> None:
        raise JobError("CUDA out of memory")

    monkeypatch.setattr(rounds_module, "model_train", failing_train)
    failed = job_run_inline(
        job=loop_request(campaign=campaign, params={"mode": "head"}, enqueue=False)
    )
    assert failed.status == Job.Status.FAILED
    assert Round.objects.get(pk=opened.pk).status == Round.Status.CLOSED
    (before,) = [r for r in loop_effect(campaign=campaign)["rounds"] if r["number"] == 1]
    assert before["heldout"] is None  # nothing trained since the close yet
    # The admin presses "Retrain now": this loop closes nothing and trains on R's labels.
    monkeypatch.setattr(rounds_module, "model_train", real_train)
    again = job_run_inline(
        job=loop_request(campaign=campaign, params={"mode": "head"}, enqueue=False)
    )
    assert again.status == Job.Status.SUCCEEDED, again.error
    v2 = ModelVersion.objects.filter(campaign=campaign).latest("number")
    assert v2.number == v1.number + 1
    report = next(
        r for r in loop_effect(campaign=campaign)["rounds"] if r["number"] == opened.number
    )
    assert report["heldout"] is not None, "the round's held-out change never shows"
    assert report["heldout"]["from_version"] == v1.number
    assert report["heldout"]["to_version"] == v2.number


@pytest.mark.parametrize("share", [0.29, 0.35])
def test_a_round_takes_the_half_up_random_slice(db, share):
    size = 50 if share == 0.29 else 90
    campaign = CampaignFactory(round_size=size, random_slice_share=share)
    PairFactory.create_batch(size + 10, campaign=campaign, status=Pair.Status.POOLED)
    opened = round_open_next(campaign=campaign)
    drawn = Pair.objects.filter(round=opened, selection=Pair.Selection.RANDOM).count()
    assert drawn == (15 if share == 0.29 else 32)


def test_after_a_rollback_the_hit_rate_reads_the_model_that_chose_the_round(db):
    """v1 and then v2 scored the pool; the admin rolled back to v1, whose priorities chose the
    round: the hit rate is v1's, not that of v2, the newest version that scored the pairs."""
    from annotation.models import Pair as PairModel
    from scoring.dashboard.loop_effect import loop_effect
    from scoring.loop.rounds import round_open_next
    from scoring.models import ModelVersion, PairScore
    from tests.factories import CampaignFactory, PairFactory

    campaign = CampaignFactory(round_size=10, random_slice_share=0.0)
    pool = [PairFactory(campaign=campaign, status=PairModel.Status.POOLED) for _ in range(10)]

    def scored(version, p):
        PairScore.objects.bulk_create(
            PairScore(pair=pair, model_version=version, reward_a=0.0, reward_b=0.0, p_a_better=p)
            for pair in pool
        )

    v1 = ModelVersion.objects.create(
        campaign=campaign, number=1, base="t", checkpoint="/x", activation_note=""
    )
    scored(v1, 0.1)  # v1 prefers B everywhere
    v2 = ModelVersion.objects.create(
        campaign=campaign, number=2, base="t", checkpoint="/x", activation_note=""
    )
    scored(v2, 0.9)  # v2 prefers A everywhere
    ModelVersion.objects.filter(pk=v1.pk).update(is_active=True)  # the rollback
    opened = round_open_next(campaign=campaign)
    assert opened is not None and opened.chosen_by_version == 1
    # Humans agree with v1 on every pair: the model that chose the round missed none.
    PairModel.objects.filter(round=opened).update(
        status=PairModel.Status.COMPLETE,
        consensus_preference=-1,
        provenance=PairModel.Provenance.UNANIMOUS,
        disagreement=0.0,
    )
    (report,) = loop_effect(campaign=campaign)["rounds"]
    priority = report["slices"]["priority"]
    assert priority["scored"] == 10
    assert priority["hit_rate"] == 0.0
