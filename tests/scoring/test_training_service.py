"""Training a campaign's reward model through the job services, inline (tiny base model)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from django.core.management import call_command
from transformers import AutoModelForSequenceClassification

from annotation.models import Label, Pair
from scoring.loop.judged_pairs import heldout_pairs, pair_texts, training_pairs
from scoring.loop.model_jobs import job_run_inline
from scoring.loop.requests import training_request
from scoring.loop.training import job_params_for_training
from scoring.loop.vector_store import vector_store
from scoring.models import Job, ModelVersion
from scoring.reward_model import RewardModel
from tests.factories import PairFactory
from tests.scoring.loop_support import label_queue, make_loop_campaign, use_tiny_base


@pytest.fixture
def tiny(settings, tmp_path):
    return use_tiny_base(settings, model_dir=tmp_path / "models")


@pytest.fixture
def labelled_campaign(db, annotator_a, annotator_b, annotator_c):
    campaign = make_loop_campaign(labelled=10, pooled=6, gold=4)
    label_queue(campaign, [annotator_a, annotator_b, annotator_c])
    return campaign


def test_it_trains_on_consensus_pairs_and_holds_gold_out(labelled_campaign):
    campaign = labelled_campaign
    tie = PairFactory(
        campaign=campaign,
        status=Pair.Status.COMPLETE,
        consensus_preference=0,
        provenance=Pair.Provenance.UNANIMOUS,
    )
    unresolved = PairFactory(
        campaign=campaign, status=Pair.Status.ESCALATED, provenance=Pair.Provenance.UNRESOLVED
    )
    data = training_pairs(campaign=campaign)
    heldout = heldout_pairs(campaign=campaign)
    gold = Pair.objects.filter(campaign=campaign, is_gold=True)
    gold_ids = set(gold.values_list("id", flat=True))
    assert len(data) == 10
    assert not gold_ids & set(data.pair_ids)
    assert tie.pk not in data.pair_ids and unresolved.pk not in data.pair_ids
    assert set(heldout.pair_ids) == gold_ids
    # Consensus of the simulated annotators, in canonical orientation.
    assert all(
        preference == (1 if pair.pk % 2 == 0 else -1)
        for pair, preference in zip(data.pairs, data.preferences, strict=True)
    )


def test_a_share_of_gold_can_move_to_training_and_leaves_the_held_out_set(labelled_campaign):
    campaign = labelled_campaign
    everything = training_pairs(campaign=campaign, train_on_gold_share=1.0)
    assert len(everything) == 14
    assert len(heldout_pairs(campaign=campaign, train_on_gold_share=1.0)) == 0


@pytest.mark.smoke
def test_a_train_job_registers_an_active_version_evaluated_on_gold(labelled_campaign, tiny):
    campaign = labelled_campaign
    job = training_request(campaign=campaign, enqueue=False)
    job = job_run_inline(job=job)
    assert job.status == Job.Status.SUCCEEDED, job.error
    version = ModelVersion.objects.get(campaign=campaign)
    assert version.is_active and version.number == 1 and version.mode == "head"
    assert job.result["version"] == 1 and job.result["checkpoint"] == version.checkpoint
    assert version.heldout_accuracy == pytest.approx(job.result["heldout_accuracy"])
    assert version.metrics["heldout"]["n"] == 4
    snapshot = version.label_snapshot
    assert snapshot["pairs"] == 10 and snapshot["labels"] == 30
    assert snapshot["max_label_id"] == Label.objects.latest("id").pk
    assert len(snapshot["digest"]) == 64
    # Loadable as a plain Hugging Face model.
    hf_model = AutoModelForSequenceClassification.from_pretrained(version.checkpoint)
    assert hf_model.config.num_labels == 1
    assert job.progress == 1.0 and job.log_lines.count() >= 4


def test_head_mode_accuracy_from_cached_vectors_matches_the_checkpoint(
    labelled_campaign, tiny, settings
):
    # Exact only with float32 features: the tiny random model's rewards are near ties that
    # int8 features can flip (the README gives the effect of each codec on MiniLM).
    settings.ARBITER = {**settings.ARBITER, "VECTOR_FEATURE_CODEC": "f32"}
    campaign = labelled_campaign
    job = job_run_inline(job=training_request(campaign=campaign, enqueue=False))
    version = ModelVersion.objects.get(campaign=campaign)
    reloaded = RewardModel.load(version.checkpoint)
    gold = heldout_pairs(campaign=campaign)
    p_a = reloaded.prob_a_better_batch(pair_texts(gold, 0, len(gold)))
    correct = (p_a - 0.5) * np.sign(gold.preferences) > 0
    assert job.result["heldout_accuracy"] == pytest.approx(float(np.mean(correct)))


def test_a_second_training_reuses_cached_embeddings(labelled_campaign, tiny):
    campaign = labelled_campaign
    job_run_inline(job=training_request(campaign=campaign, enqueue=False))
    store = vector_store(ModelVersion.objects.get(campaign=campaign).metrics["encoder"])
    parts = store.part_names()
    assert store.refresh().distinct == 14  # 10 training + 4 gold
    second = job_run_inline(job=training_request(campaign=campaign, enqueue=False))
    assert second.status == Job.Status.SUCCEEDED
    assert store.part_names() == parts  # nothing written again
    assert any("embedded 0 new pairs" in line.message for line in second.log_lines.all())
    versions = ModelVersion.objects.filter(campaign=campaign).order_by("number")
    assert [v.number for v in versions] == [1, 2]
    assert [v.is_active for v in versions] == [False, True]


def test_it_fails_the_job_with_a_clear_message_when_nothing_is_labelled(db, tiny):
    campaign = make_loop_campaign(labelled=3, pooled=2, gold=2)
    job = job_run_inline(job=training_request(campaign=campaign, enqueue=False))
    assert job.status == Job.Status.FAILED
    assert "no verified pairs to train on" in job.error
    assert not ModelVersion.objects.exists()


def test_it_rejects_an_unknown_mode():
    from scoring.jobs.runner import JobError

    with pytest.raises(JobError, match="mode"):
        job_params_for_training(mode="huge")


def test_the_command_trains_inline_and_prints_json_last(labelled_campaign, tiny, capsys):
    call_command("train_reward_model", "--campaign", labelled_campaign.name, "--inline")
    last = capsys.readouterr().out.strip().splitlines()[-1]
    summary = json.loads(last)
    version = ModelVersion.objects.get(campaign=labelled_campaign)
    assert summary["status"] == "succeeded"
    assert summary["version"] == version.number
    assert summary["checkpoint"] == version.checkpoint
    assert summary["heldout_accuracy"] == pytest.approx(version.heldout_accuracy)


def test_the_command_without_wait_only_queues_the_job(
    labelled_campaign, tiny, capsys, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        call_command("train_reward_model", "--campaign", labelled_campaign.name)
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    job = Job.objects.get(pk=summary["job"])
    assert job.status == Job.Status.QUEUED and job.kind == Job.Kind.TRAIN
    assert len(callbacks) == 1  # the task is sent once the job row is committed


def test_pairs_imported_as_gold_are_the_held_out_set(db, tmp_path, capsys):
    import gzip

    from tests.conftest import HH_RLHF

    with gzip.open(HH_RLHF, "rt", encoding="utf-8") as lines:
        rows = [next(lines) for _ in range(6)]
    seed = tmp_path / "seed.jsonl"
    seed.write_text("".join(rows[:4]))
    pool = tmp_path / "pool.jsonl"
    pool.write_text("".join(rows[4:]))
    call_command("import_pairs", str(seed), "--campaign", "gold import", "--as-gold")
    call_command("import_pairs", str(pool), "--campaign", "gold import", "--pool")
    campaign = Pair.objects.filter(campaign__name="gold import").first().campaign
    heldout = heldout_pairs(campaign=campaign)
    assert len(heldout) == 4 and all(pair.is_gold for pair in heldout.pairs)
    assert heldout.preferences == [1, 1, 1, 1]  # hh-rlhf's chosen side becomes response A
    assert len(training_pairs(campaign=campaign)) == 0  # gold is never trained on
