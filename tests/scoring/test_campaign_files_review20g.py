"""A deleted campaign's files go: its checkpoints, export snapshots, vector parts and index,
removed by a real default-queue worker once the deletion commits; another campaign's files on
the same encoder stay, and files a job of the deleted campaign writes afterwards go too."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import numpy as np
import pytest
from django.conf import settings
from django.test import Client

from scoring.campaign_files import campaign_files_remove
from scoring.jobs.runner import job_create, job_run
from scoring.loop.vector_store import VectorStore
from scoring.models import Job
from tests.conftest import wait_for
from tests.factories import CampaignFactory, UserFactory

pytestmark = pytest.mark.django_db(transaction=True)

ENCODER = "review20g-encoder"


@pytest.fixture(autouse=True)
def _written_directories():
    """The model and export directories these tests write go afterwards (campaign ids start
    again in the next test database; the vector root is emptied by conftest)."""
    written.clear()
    yield
    for directory in written:
        shutil.rmtree(directory, ignore_errors=True)


written: list[Path] = []


def _blocks(n: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(n)
    return {name: rng.standard_normal((n, 8)).astype(np.float32) for name in ("context", "a", "b")}


def _store_files(campaign_id: int, store: VectorStore, first_id: int) -> list[Path]:
    """What the loop and exports write for a campaign: a checkpoint, a snapshot, a tagged
    part and its index (meta, file and mark), named as their writers name them."""
    checkpoint = Path(settings.ARBITER["MODEL_DIR"]) / f"campaign-{campaign_id}" / "v1"
    checkpoint.mkdir(parents=True, exist_ok=True)
    (checkpoint / "model.safetensors").write_bytes(b"weights" * 1000)
    snapshot = Path(settings.ARBITER["EXPORT_DIR"]) / f"campaign-{campaign_id}" / "v1.jsonl"
    snapshot.parent.mkdir(parents=True, exist_ok=True)
    snapshot.write_text('{"chosen": []}\n')
    written.extend([checkpoint.parent, snapshot.parent])
    ids = np.arange(first_id, first_id + 4)
    part = store.append(ids=ids, blocks=_blocks(4), campaign_id=campaign_id)
    stem = f"index-c{campaign_id}-{time.time_ns():020d}-abc123"
    vectors = Path(store.path)
    for name in (f"index-c{campaign_id}.json", f"{stem}.faiss", f"{stem}.named"):
        (vectors / name).write_bytes(b"{}")
    return [
        checkpoint / "model.safetensors",
        snapshot,
        vectors / str(part),
        vectors / f"index-c{campaign_id}.json",
        vectors / f"{stem}.faiss",
        vectors / f"{stem}.named",
    ]


def _delete_in_the_admin(campaign_id: int) -> None:
    client = Client()
    client.force_login(UserFactory(is_staff=True, is_superuser=True))
    response = client.post(f"/admin/annotation/campaign/{campaign_id}/delete/", {"post": "yes"})
    assert response.status_code == 302, response.content[:2000]


def test_it_removes_a_deleted_campaigns_files_and_keeps_the_other_campaigns(worker):
    deleted, kept = CampaignFactory(), CampaignFactory()
    store = VectorStore(ENCODER)
    gone = _store_files(deleted.pk, store, first_id=1)
    stays = _store_files(kept.pk, store, first_id=100)
    untagged = Path(store.path) / str(store.append(ids=np.arange(200, 203), blocks=_blocks(3)))
    assert all(path.exists() for path in [*gone, *stays, untagged])

    _delete_in_the_admin(deleted.pk)

    wait_for(lambda: not any(path.exists() for path in gone), what="the campaign's files gone")
    assert not (Path(settings.ARBITER["MODEL_DIR"]) / f"campaign-{deleted.pk}").exists()
    assert not (Path(settings.ARBITER["EXPORT_DIR"]) / f"campaign-{deleted.pk}").exists()
    assert all(path.exists() for path in [*stays, untagged])
    # The other campaign's parts are still read: its pairs are found where they were.
    assert VectorStore(ENCODER).missing(list(range(100, 104))) == []
    # A second run finds nothing left and touches nothing else.
    assert campaign_files_remove(campaign_id=deleted.pk) == 0
    assert all(path.exists() for path in [*stays, untagged])


def test_a_campaign_that_exists_keeps_its_files(worker):
    campaign = CampaignFactory()
    files = _store_files(campaign.pk, VectorStore(ENCODER), first_id=1)
    assert campaign_files_remove(campaign_id=campaign.pk) == 0
    assert all(path.exists() for path in files)


def test_files_a_job_writes_after_its_campaign_was_deleted_go_when_it_finishes(worker):
    campaign, other = CampaignFactory(), CampaignFactory()
    store = VectorStore(ENCODER)
    stays = _store_files(other.pk, store, first_id=100)
    job = job_create(campaign=campaign, kind=Job.Kind.TRAIN)
    late: list[Path] = []

    def work_for(_job):  # noqa: ANN202
        def work(_context):  # noqa: ANN202
            _delete_in_the_admin(campaign.pk)  # deleted while the job runs
            # The removal sent on the deletion's commit may already have run: the job then
            # writes what it was writing (a part of its shard, a checkpoint it staged).
            wait_for(
                lambda: not (Path(store.path) / f"index-c{campaign.pk}.json").exists(),
                what="the removal sent on the deletion",
            )
            late.extend(_store_files(campaign.pk, store, first_id=1))
            return {}

        return work

    _store_files(campaign.pk, store, first_id=1)
    job_run(job_id=job.pk, worker="w", work_for=work_for)

    assert late and not Job.objects.filter(pk=job.pk).exists()
    wait_for(lambda: not any(path.exists() for path in late), what="the late files gone")
    assert all(path.exists() for path in stays)


def test_files_of_an_earlier_deleted_campaign_go_with_the_next_deletion(worker):
    first, second, third = CampaignFactory(), CampaignFactory(), CampaignFactory()
    store = VectorStore(ENCODER)
    first_id = first.pk
    removed = _store_files(first_id, store, first_id=1)
    first.delete()
    wait_for(lambda: not any(path.exists() for path in removed), what="the first removal")
    # Written after that removal ran, and no worker sent it again (killed, say).
    stray = _store_files(first_id, store, first_id=1)
    stays = _store_files(third.pk, store, first_id=100)

    _delete_in_the_admin(second.pk)

    wait_for(lambda: not any(path.exists() for path in stray), what="the stray files swept")
    assert all(path.exists() for path in stays)


def test_a_part_removed_between_listing_and_reading_does_not_stop_another_campaigns_scoring():
    """A removal on a shared encoder runs while another campaign's shard refreshes its
    catalogue: a part listed and then gone (here a name whose file is already gone) is
    skipped, and the other campaign's pairs are still found."""
    store = VectorStore(ENCODER)
    store.append(ids=np.arange(100, 104), blocks=_blocks(4), campaign_id=2)
    vanished = Path(store.path) / f"part-{time.time_ns():020d}-deadbeef-c1.npz"
    vanished.symlink_to(Path(store.path) / "removed-meanwhile.npz")

    assert VectorStore(ENCODER).missing([100, 101, 102, 103, 104]) == [104]
