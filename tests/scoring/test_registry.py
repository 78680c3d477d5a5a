"""The model registry: numbering, activation, rollback, and checkpoints that never finished."""

from __future__ import annotations

import shutil

import pytest
from django.db import IntegrityError, transaction
from transformers import PreTrainedModel

from scoring.loop.model_jobs import job_run_inline
from scoring.loop.registry import (
    RegistryError,
    campaign_model_root,
    model_version_activate,
    model_version_archive,
    model_version_rollback,
)
from scoring.loop.requests import training_request
from scoring.models import Job, ModelVersion
from tests.scoring.loop_support import label_queue, make_loop_campaign, use_tiny_base


@pytest.fixture
def campaign(db, settings, tmp_path, annotator_a, annotator_b, annotator_c):
    use_tiny_base(settings, model_dir=tmp_path / "models")
    campaign = make_loop_campaign(labelled=8, pooled=4, gold=4)
    label_queue(campaign, [annotator_a, annotator_b, annotator_c])
    return campaign


def train(campaign) -> Job:
    return job_run_inline(job=training_request(campaign=campaign, enqueue=False))


def test_versions_are_numbered_per_campaign_in_their_own_directories(campaign):
    train(campaign)
    train(campaign)
    versions = list(ModelVersion.objects.filter(campaign=campaign).order_by("number"))
    root = campaign_model_root(campaign)
    assert [v.number for v in versions] == [1, 2]
    assert [v.checkpoint for v in versions] == [str(root / "v1"), str(root / "v2")]
    assert (root / "v1" / "config.json").is_file() and (root / "v2" / "config.json").is_file()
    # No staging directory is left behind by a completed run.
    assert sorted(path.name for path in root.iterdir()) == ["v1", "v2"]


@pytest.mark.smoke
def test_activation_and_rollback_keep_exactly_one_active_version(campaign):
    train(campaign)
    train(campaign)
    train(campaign)
    active = ModelVersion.objects.get(campaign=campaign, is_active=True)
    assert active.number == 3
    assert model_version_rollback(campaign=campaign).number == 2
    assert model_version_rollback(campaign=campaign).number == 1
    with pytest.raises(RegistryError, match="oldest"):
        model_version_rollback(campaign=campaign)
    model_version_activate(version=ModelVersion.objects.get(campaign=campaign, number=3))
    active = ModelVersion.objects.filter(campaign=campaign, is_active=True)
    assert list(active.values_list("number", flat=True)) == [3]


def test_rollback_skips_a_version_that_never_served_or_whose_checkpoint_is_gone(campaign):
    for _ in range(4):
        train(campaign)
    assert ModelVersion.objects.get(campaign=campaign, is_active=True).number == 4
    # v3 was kept inactive by the activation gate; v2's checkpoint was deleted since.
    ModelVersion.objects.filter(campaign=campaign, number=3).update(
        activation_note="held-out accuracy below the active version's"
    )
    shutil.rmtree(ModelVersion.objects.get(campaign=campaign, number=2).checkpoint)
    assert model_version_rollback(campaign=campaign).number == 1
    with pytest.raises(RegistryError, match="oldest"):
        model_version_rollback(campaign=campaign)
    # Nothing older that can serve: said so, and v4 stays active.
    model_version_activate(version=ModelVersion.objects.get(campaign=campaign, number=4))
    shutil.rmtree(ModelVersion.objects.get(campaign=campaign, number=1).checkpoint)
    with pytest.raises(RegistryError, match="can serve"):
        model_version_rollback(campaign=campaign)
    assert ModelVersion.objects.get(campaign=campaign, is_active=True).number == 4


def test_the_database_refuses_two_active_versions(campaign):
    train(campaign)
    train(campaign)
    with pytest.raises(IntegrityError, match="one_active_model"), transaction.atomic():
        ModelVersion.objects.filter(campaign=campaign).update(is_active=True)


def test_an_archived_version_cannot_be_activated(campaign):
    train(campaign)
    train(campaign)
    old = ModelVersion.objects.get(campaign=campaign, number=1)
    model_version_archive(version=old)
    with pytest.raises(RegistryError, match="archived"):
        model_version_activate(version=old)
    with pytest.raises(RegistryError, match="oldest"):
        model_version_rollback(campaign=campaign)


def test_a_checkpoint_interrupted_half_way_never_becomes_a_version(campaign, monkeypatch):
    train(campaign)
    original_save = PreTrainedModel.save_pretrained

    def save_half_then_die(self, directory, *args, **kwargs):
        original_save(self, directory, *args, **kwargs)  # the weights are on disk...
        raise OSError("disk full")  # ...but the tokenizer never gets written

    monkeypatch.setattr(PreTrainedModel, "save_pretrained", save_half_then_die)
    job = train(campaign)
    assert job.status == Job.Status.FAILED and "disk full" in job.error
    numbers = ModelVersion.objects.filter(campaign=campaign).values_list("number", flat=True)
    assert list(numbers) == [1]
    assert ModelVersion.objects.get(campaign=campaign, number=1).is_active
    root = campaign_model_root(campaign)
    assert sorted(path.name for path in root.iterdir()) == ["v1"]


def test_a_directory_left_by_a_crash_before_commit_does_not_block_the_next_version(campaign):
    root = campaign_model_root(campaign)
    orphan = root / "v1"
    orphan.mkdir(parents=True)
    (orphan / "config.json").write_text("{}")  # a rename whose row never committed
    job = train(campaign)
    assert job.status == Job.Status.SUCCEEDED, job.error
    version = ModelVersion.objects.get(campaign=campaign)
    assert version.number == 1 and version.checkpoint == str(orphan)
    assert (orphan / "model.safetensors").is_file()
    assert any(path.name.startswith(".orphan-v1-") for path in root.iterdir())


def test_a_version_whose_checkpoint_vanished_cannot_be_activated(campaign):
    train(campaign)
    train(campaign)
    old = ModelVersion.objects.get(campaign=campaign, number=1)
    shutil.rmtree(old.checkpoint)
    with pytest.raises(RegistryError, match="missing"):
        model_version_activate(version=old)
    assert ModelVersion.objects.get(campaign=campaign, is_active=True).number == 2


def test_activation_and_archiving_decide_on_the_stored_state_not_the_callers_copy(campaign):
    # Two admins at once: each request read its version before the other one's change.
    train(campaign)
    train(campaign)
    old = ModelVersion.objects.get(campaign=campaign, number=1)
    read_before_the_archive = ModelVersion.objects.get(pk=old.pk)
    model_version_archive(version=old)
    with pytest.raises(RegistryError, match="no longer ready"):
        model_version_activate(version=read_before_the_archive)
    active = ModelVersion.objects.get(campaign=campaign, is_active=True)
    assert active.number == 2  # the failed activation deactivated nothing

    other = ModelVersion.objects.get(campaign=campaign, number=2)
    read_before_the_activation = ModelVersion.objects.get(pk=old.pk)
    ModelVersion.objects.filter(pk=old.pk).update(status=ModelVersion.Status.READY)
    model_version_activate(version=ModelVersion.objects.get(pk=old.pk))
    read_before_the_activation.is_active = False  # what the second request had read
    with pytest.raises(RegistryError, match="before archiving the active one"):
        model_version_archive(version=read_before_the_activation)
    old.refresh_from_db()
    assert old.is_active and old.status == ModelVersion.Status.READY
    assert not ModelVersion.objects.get(pk=other.pk).is_active
