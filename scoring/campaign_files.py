"""The files a deleted campaign leaves: its rows go by cascade, its files go here.

What a campaign stores outside the database, each place named from its id alone:

- ``MODEL_DIR/campaign-<id>/``: its model versions' checkpoints (``v<n>``), staging and orphan
  directories of registrations cut short;
- ``EXPORT_DIR/campaign-<id>/``: its export snapshots' files;
- under ``VECTOR_ROOT``, in every encoder's directory: its tagged part files
  (``part-…-c<id>.npz``) and its retrieval index (``index-c<id>…``). An encoder's directory
  serves many campaigns: the other campaigns' parts, and untagged parts, stay.

Import uploads are not here: a finished import removes its upload, and the uploads no
unfinished job names (a deleted campaign's queued import) are swept once a day old
(``import_jobs_fail_stale``). Evaluation sets and pair scores are rows only.

A version or snapshot written before ``MODEL_DIR`` or ``EXPORT_DIR`` was changed lies in the
``campaign-<id>`` directory of the earlier store, which its row names (an absolute path, as
the writers store it from an absolute store): the deletion reads those directories before the
rows go and hands them to the removal (``stored_campaign_directories``). Only a directory
named ``campaign-<id>`` for the deleted id, holding the file or checkpoint its row named, is
removed; a relative path (a store given relative to a worker's directory) is left.

``campaign_files_remove`` runs once the deletion commits (``scoring.remove_campaign_files``).
A job of the campaign still running then may write a file after it (a part, a checkpoint
being staged): its worker finds its job gone and sends the task again on finishing, and each
run also sweeps the files of every other campaign that no longer exists
(``deleted_campaign_files_remove``), so nothing stays behind for good.
"""

from __future__ import annotations

import logging
import re
import shutil
from pathlib import Path, PurePath
from typing import Any

from django.conf import settings
from django.db.models import Max

from annotation.models import Campaign
from scoring.datasets.export.snapshots import export_directory
from scoring.jobs.runner import campaign_files_remove_send
from scoring.loop.registry import campaign_model_root
from scoring.loop.vector_store import campaign_vector_files_remove, vector_file_campaigns
from scoring.models import ExportSnapshot, ModelVersion

logger = logging.getLogger(__name__)

_CAMPAIGN_DIR_PREFIX = "campaign-"
# What the writers name inside a campaign's directory: a version's checkpoint (``v3``) and a
# snapshot's file (``export-v3.jsonl``, its ties and outcomes files beside it).
_STORED_NAME = re.compile(r"v\d+|export-v\d+[.\w-]*")


def _stores() -> list[Path]:
    """The local stores holding a directory per campaign (``campaign-<id>``)."""
    return [Path(settings.ARBITER["MODEL_DIR"]), Path(settings.ARBITER["EXPORT_DIR"])]


def _campaign_directories(campaign_id: int) -> list[Path]:
    """The campaign's directories, named as their writers name them (from its id alone)."""
    campaign = Campaign(pk=int(campaign_id))
    return [campaign_model_root(campaign), export_directory(campaign=campaign)]


def _is_campaign_directory(campaign_id: int, directory: str) -> bool:
    """Whether ``directory`` is an absolute path, with no ``..``, named for this campaign."""
    path = PurePath(directory)
    return (
        "\x00" not in directory
        and path.is_absolute()
        and ".." not in path.parts
        and path.name == f"{_CAMPAIGN_DIR_PREFIX}{campaign_id}"
    )


def _former_directory(campaign_id: int, stored: str) -> Path | None:
    """The ``campaign-<id>`` directory holding ``stored`` (a path a row of the campaign
    recorded), if that is where the writers put it: named as they name it, directly inside
    an absolute directory named for this campaign. None otherwise."""
    path = PurePath(stored)
    if not _STORED_NAME.fullmatch(path.name) or not _is_campaign_directory(
        campaign_id, str(path.parent)
    ):
        return None
    return Path(path.parent)


def stored_campaign_directories(*, campaign_id: int) -> list[str]:
    """The directories the campaign's versions and snapshots were written to, outside today's
    stores (an earlier ``MODEL_DIR`` or ``EXPORT_DIR``); read before its rows are deleted."""
    stored = [
        *ModelVersion.objects.filter(campaign_id=campaign_id).values_list("checkpoint", flat=True),
        *ExportSnapshot.objects.filter(campaign_id=campaign_id).values_list("path", flat=True),
    ]
    current = set(_campaign_directories(campaign_id))
    found: dict[Path, None] = {}
    for path in stored:
        directory = _former_directory(campaign_id, path)
        if directory is not None and directory not in current:
            found[directory] = None
    return [str(directory) for directory in found]


def campaign_files_remove(*, campaign_id: int, directories: list[str] | None = None) -> int:
    """Remove the files of campaign ``campaign_id``, which must no longer exist (a campaign
    that does keeps everything: this is never a way to empty a live one); how many top-level
    entries went. Safe to run twice, or beside another run: what is already gone is skipped.

    ``directories``: its directories under earlier stores (``stored_campaign_directories``);
    each must be named for this campaign, else it stays."""
    campaign_id = int(campaign_id)
    if Campaign.objects.filter(pk=campaign_id).exists():
        logger.warning("campaign %s exists: its files stay", campaign_id)
        return 0
    removed = 0
    former = [
        Path(directory)
        for directory in directories or []
        if _is_campaign_directory(campaign_id, directory)
    ]
    for directory in [*_campaign_directories(campaign_id), *former]:
        # A link named like a campaign's directory is removed, never followed out of the store.
        if directory.is_symlink():
            directory.unlink(missing_ok=True)
            removed += 1
        elif directory.is_dir():
            shutil.rmtree(directory, ignore_errors=True)
            removed += 1
    removed += campaign_vector_files_remove(campaign_id)
    if removed:
        logger.info("removed %s file(s) of deleted campaign %s", removed, campaign_id)
    return removed


def campaign_deleted(sender: type[Campaign], instance: Campaign, **kwargs: Any) -> None:
    """``pre_delete`` receiver: send the removal of the campaign's files once its deletion
    commits (nothing, if it rolls back), with the directories its rows name under earlier
    stores (read now: the rows go with it)."""
    campaign_files_remove_send(
        campaign_id=instance.pk,
        directories=stored_campaign_directories(campaign_id=instance.pk),
    )


def _stored_campaign_ids() -> set[int]:
    ids: set[int] = set()
    for store in _stores():
        if not store.is_dir():
            continue
        for entry in store.iterdir():
            digits = entry.name.removeprefix(_CAMPAIGN_DIR_PREFIX)
            if (
                entry.name.startswith(_CAMPAIGN_DIR_PREFIX)
                and digits.isascii()
                and digits.isdigit()
            ):
                ids.add(int(digits))
    return ids | vector_file_campaigns()


def deleted_campaign_files_remove() -> list[int]:
    """Remove the files of campaigns that no longer exist; their ids.

    The files are listed before the campaigns are read, so a campaign created meanwhile is
    never taken for a deleted one. Only ids below the highest campaign id count as deleted
    (ids are never reused): a store pointed at another or a restored database, whose
    campaigns stop short of the files' ids, keeps those files."""
    stored = _stored_campaign_ids()
    if not stored:
        return []
    newest = Campaign.objects.aggregate(newest=Max("pk"))["newest"]
    if newest is None:
        return []
    existing = set(Campaign.objects.filter(pk__in=stored).values_list("pk", flat=True))
    deleted = sorted(pk for pk in stored - existing if pk < newest)
    for campaign_id in deleted:
        campaign_files_remove(campaign_id=campaign_id)
    return deleted
