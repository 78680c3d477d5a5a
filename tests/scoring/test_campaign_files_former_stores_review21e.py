"""Review 21e: a deleted campaign's checkpoints and exports written before MODEL_DIR or
EXPORT_DIR was changed go too (their rows name them); anything not named for the campaign,
or named by a relative path, stays."""

from __future__ import annotations

from pathlib import Path

import pytest

from scoring.campaign_files import campaign_files_remove, stored_campaign_directories
from scoring.jobs.runner import REMOVE_CAMPAIGN_FILES_TASK
from scoring.models import ExportSnapshot, Job, ModelVersion
from scoring.tasks.cleanup import remove_campaign_files_task
from tests.factories import CampaignFactory


def _write(path: Path, data: bytes = b"x") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def _export(campaign, version: int, path: str) -> ExportSnapshot:
    job = Job.objects.create(campaign=campaign, kind=Job.Kind.EXPORT, status=Job.Status.SUCCEEDED)
    return ExportSnapshot.objects.create(
        job=job, campaign=campaign, version=version, format="jsonl", path=path
    )


@pytest.mark.django_db
def test_a_deleted_campaigns_files_under_earlier_stores_go(
    tmp_path, settings, sent_tasks, django_capture_on_commit_callbacks
):
    old_models, old_exports = tmp_path / "old-models", tmp_path / "old-exports"
    settings.ARBITER = {
        **settings.ARBITER,
        "MODEL_DIR": tmp_path / "models",
        "EXPORT_DIR": tmp_path / "exports",
    }
    campaign, other = CampaignFactory(), CampaignFactory()
    checkpoint = old_models / f"campaign-{campaign.pk}" / "v1"
    _write(checkpoint / "model.safetensors")
    ModelVersion.objects.create(campaign=campaign, number=1, base="t", checkpoint=str(checkpoint))
    snapshot = _write(old_exports / f"campaign-{campaign.pk}" / "export-v1.jsonl")
    _export(campaign, 1, str(snapshot))
    ties = _write(old_exports / f"campaign-{campaign.pk}" / "export-v1.ties.jsonl")
    # The other campaign's files under the same earlier store stay.
    kept = _write(old_models / f"campaign-{other.pk}" / "v1" / "model.safetensors")
    ModelVersion.objects.create(campaign=other, number=1, base="t", checkpoint=str(kept.parent))

    with django_capture_on_commit_callbacks(execute=True):
        campaign_id = campaign.pk
        campaign.delete()

    [(name, args)] = sent_tasks
    assert name == REMOVE_CAMPAIGN_FILES_TASK
    assert remove_campaign_files_task(*args) == 2
    assert not checkpoint.exists()
    assert not snapshot.exists() and not ties.exists()
    assert not (old_models / f"campaign-{campaign_id}").exists()
    assert kept.exists()


@pytest.mark.django_db
def test_only_directories_named_for_the_campaign_and_absolute_are_taken(tmp_path, settings):
    settings.ARBITER = {**settings.ARBITER, "MODEL_DIR": tmp_path / "models"}
    campaign = CampaignFactory()
    elsewhere = _write(tmp_path / "shared" / "v1" / "model.safetensors")
    ModelVersion.objects.create(
        campaign=campaign, number=1, base="t", checkpoint=str(elsewhere.parent)
    )
    ModelVersion.objects.create(
        campaign=campaign, number=2, base="t", checkpoint=f"models/campaign-{campaign.pk}/v2"
    )
    ModelVersion.objects.create(
        campaign=campaign,
        number=3,
        base="t",
        checkpoint=str(
            tmp_path / f"campaign-{campaign.pk}" / ".." / f"campaign-{campaign.pk}" / "v3"
        ),
    )
    odd = _write(tmp_path / "odd" / f"campaign-{campaign.pk}" / "notes.txt")
    _export(campaign, 1, str(odd))

    assert stored_campaign_directories(campaign_id=campaign.pk) == []

    campaign_id = campaign.pk
    campaign.delete()
    # A directory handed in that is not named for the campaign is refused as well.
    assert (
        campaign_files_remove(campaign_id=campaign_id, directories=[str(tmp_path / "shared")]) == 0
    )
    assert elsewhere.exists() and odd.exists()
