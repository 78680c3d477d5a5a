"""The model registry: one ``ModelVersion`` per trained model, one active per campaign.

A version exists only once its checkpoint is complete on disk:

1. the reward-model package saves the checkpoint atomically to a staging directory private to
   the job attempt (``campaign-<id>/.job-<job>-attempt-<n>``);
2. in one short transaction that locks the campaign row, the next number ``n`` is taken, the
   staging directory is renamed to ``campaign-<id>/v<n>`` and the row is inserted.

An interrupted run leaves at most a staging directory (never a version; the job's next attempt
removes it before it stages its own); a crash between the
rename and the commit leaves an orphan ``v<n>`` directory without a row, which the next
registration moves aside before reusing the number.

The same transaction records the version's id in the job's result (``registered_version_id``,
fenced by the attempt, as a loop job records the round it closed, and by the job's cancel flag:
a cancel asked before it commits registers nothing, and the staging directory is removed). The
activation the job asks for is fenced the same way: a cancel asked after the registration leaves
the version registered and not activated. An attempt restarted after its worker was lost, or
released after a transient error, finds the version an earlier attempt registered
(``model_version_registered_by``) and goes on from it instead of training again.

A loop version is registered as ``NOT_JUDGED`` (its ``activation_note``) until the activation
gate judges it: activating clears the note, a refusal replaces it with the reason. Rollback
takes only versions whose note is empty, so never one the gate did not let serve.
"""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.db import transaction

from annotation.models import Campaign, Round
from core.errors import Conflict
from scoring.jobs.runner import JobCancelled, JobLost
from scoring.models import Job, ModelVersion
from scoring.selectors import active_model_version

if TYPE_CHECKING:
    from scoring.reward_model import RewardModel


class RegistryError(Conflict):
    """A registry request that cannot be honoured (e.g. nothing to roll back to)."""

    code = "registry_error"


# A loop version's activation_note until the activation gate has judged it.
NOT_JUDGED = "not judged by the activation gate"

# The key of a job's result that names the version the job registered.
REGISTERED_VERSION_KEY = "registered_version_id"


def campaign_model_root(campaign: Campaign) -> Path:
    return Path(settings.ARBITER["MODEL_DIR"]) / f"campaign-{campaign.pk}"


def model_version_registered_by(*, job: Job, kind: str) -> ModelVersion | None:
    """The version of ``kind`` an earlier attempt of ``job`` registered (see the module
    docstring), if it is still ready and its checkpoint is on disk; else None."""
    recorded = (job.result or {}).get(REGISTERED_VERSION_KEY)
    if recorded is None:
        return None
    version = ModelVersion.objects.filter(
        pk=recorded, job_id=job.pk, kind=kind, status=ModelVersion.Status.READY
    ).first()
    if version is None or not Path(version.checkpoint).is_dir():
        return None
    return version


def _job_lock_for_registry(job: Job) -> dict[str, Any] | None:
    """Lock the job's row, in a transaction, for a write it fences (a registration, an
    activation); its stored result. Raises JobLost when this attempt no longer owns the job,
    JobCancelled when a cancel was asked: the caller then writes nothing."""
    row = (
        Job.objects.select_for_update()
        .filter(pk=job.pk, status=Job.Status.RUNNING, attempts=job.attempts)
        .values("result", "cancel_requested")
        .first()
    )
    if row is None:
        raise JobLost(f"job {job.pk} is no longer owned by this worker")
    if row["cancel_requested"]:
        raise JobCancelled
    result: dict[str, Any] | None = row["result"]
    return result


def model_version_register(
    *,
    campaign: Campaign,
    job: Job,
    model: RewardModel,
    base: str,
    mode: str,
    label_snapshot: dict[str, Any],
    metrics: dict[str, Any],
    heldout_accuracy: float | None,
    round_: Round | None = None,
    kind: str = ModelVersion.Kind.LOOP,
) -> ModelVersion:
    """Save the checkpoint, then create the version row and record it in the job's result (see
    the module docstring).

    Only the job's current owner registers, and only while no cancel was asked: a worker that
    lost its job raises JobLost, one whose job was cancelled JobCancelled, and neither leaves
    anything behind.
    """
    root = campaign_model_root(campaign)
    staging = root / f".job-{job.pk}-attempt-{job.attempts}"
    _remove_earlier_attempts_staging(root, job)
    model.save(staging)
    renamed: Path | None = None
    try:
        with transaction.atomic():
            # The job's row first, then the campaign's, as an activation takes them: a cancel
            # (an UPDATE of the job's row) lands before this commits or after it.
            stored = _job_lock_for_registry(job)
            # Serialises numbering per campaign; NO KEY UPDATE does not block label inserts.
            Campaign.objects.select_for_update(no_key=True).filter(pk=campaign.pk).first()
            last = ModelVersion.objects.filter(campaign=campaign).order_by("-number").first()
            number = (last.number + 1) if last else 1
            final = root / f"v{number}"
            if final.exists():
                # Left by a crash after a rename whose row never committed: not a version.
                os.rename(final, root / f".orphan-v{number}-{uuid.uuid4().hex[:8]}")
            os.rename(staging, final)
            renamed = final
            version = ModelVersion(
                campaign=campaign,
                number=number,
                base=base[:500],
                mode=mode,
                checkpoint=str(final),
                job=job,
                round=round_,
                label_snapshot=label_snapshot,
                metrics=metrics,
                heldout_accuracy=heldout_accuracy,
                kind=kind,
                activation_note=NOT_JUDGED if kind == ModelVersion.Kind.LOOP else "",
            )
            version.full_clean(exclude=["campaign", "job", "round"])
            version.save()
            recorded = {**(stored or {}), REGISTERED_VERSION_KEY: version.pk}
            Job.objects.filter(pk=job.pk).update(result=recorded)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        if renamed is not None and renamed.exists():
            # The row did not commit, so this directory is not a version: move it aside.
            os.rename(renamed, root / f".orphan-{renamed.name}-{uuid.uuid4().hex[:8]}")
        raise
    job.result = recorded
    return version


def _remove_earlier_attempts_staging(root: Path, job: Job) -> None:
    """Remove what earlier attempts of ``job`` staged and never registered (a whole checkpoint
    each, or half of one): a worker killed mid-registration cannot remove its own, and no
    later save reuses its name. An earlier attempt no longer owns the job, so it can register
    nothing from there (``_job_lock_for_registry``)."""
    for attempt in range(job.attempts):
        name = f".job-{job.pk}-attempt-{attempt}"
        for leftover in [root / name, *root.glob(f".{name}.partial-*")]:
            shutil.rmtree(leftover, ignore_errors=True)


FIRST_VERSION_MIN_ACCURACY = 0.5
FIRST_VERSION_MIN_HELDOUT = 50


def activation_gate_reason(
    *,
    accuracy: float | None,
    heldout: int,
    active_accuracy: float | None,
    active_number: int | None,
    tolerance: float,
) -> str:
    """Why a newly trained version must not become active, or "" when it may.

    It may when its held-out accuracy is not below the active version's by more than
    ``tolerance`` (the campaign's ``activation_tolerance``). With no active version, a first
    version needs at least 0.5 when it was measured on 50 or more held-out pairs (on fewer,
    accuracy is too noisy to refuse it). Without a measure on either side, nothing to compare.
    """
    if accuracy is None:
        return ""
    if active_number is None:
        if heldout >= FIRST_VERSION_MIN_HELDOUT and accuracy < FIRST_VERSION_MIN_ACCURACY:
            return (
                f"held-out accuracy {accuracy:.3f} on {heldout} pairs is below "
                f"{FIRST_VERSION_MIN_ACCURACY:.1f}, the minimum for a first version"
            )
        return ""
    # Compared as a drop, not ``accuracy < active - tolerance``: 0.8 - 0.1 is
    # 0.7000000000000001 in binary floating point, which refused 140/200 against 160/200 at a
    # tolerance of 0.1, exactly at it. Accuracies are ratios of counts: 1e-9 is far below any.
    if active_accuracy is not None and active_accuracy - accuracy > tolerance + 1e-9:
        return (
            f"held-out accuracy {accuracy:.3f} is more than {tolerance:.3f} below the active "
            f"v{active_number}'s {active_accuracy:.3f}"
        )
    return ""


def model_version_activate_if_better(
    *, version: ModelVersion, job: Job | None = None
) -> tuple[ModelVersion, str]:
    """Activate ``version`` if the campaign's activation gate lets it; else record why not.

    Returns the version and the reason it stayed inactive ("" if activated). The comparison
    and the activation happen under the campaign's row lock, so two trainings finishing
    together are compared with whichever is active at that moment. With the ``job`` that
    registered it, the gate is fenced as the registration is (``_job_lock_for_registry``): a
    job cancelled since judges and activates nothing (JobCancelled).
    """
    with transaction.atomic():
        if job is not None:
            _job_lock_for_registry(job)
        campaign = (
            Campaign.objects.select_for_update(no_key=True).filter(pk=version.campaign_id).first()
        )
        active = ModelVersion.objects.filter(
            campaign_id=version.campaign_id, is_active=True
        ).first()
        reason = activation_gate_reason(
            accuracy=version.heldout_accuracy,
            heldout=int((version.label_snapshot or {}).get("heldout_gold_pairs") or 0),
            active_accuracy=active.heldout_accuracy if active else None,
            active_number=active.number if active else None,
            tolerance=float(campaign.activation_tolerance if campaign else 0.0),
        )
        if reason:
            ModelVersion.objects.filter(pk=version.pk).update(activation_note=reason[:300])
            version.refresh_from_db()
            return version, reason
        return model_version_activate(version=version), ""


def model_version_activate(*, version: ModelVersion) -> ModelVersion:
    """Make this version the campaign's active one (and no other)."""
    if version.status != ModelVersion.Status.READY:
        raise RegistryError(f"v{version.number} is {version.status}; only ready versions run")
    if version.kind == ModelVersion.Kind.GOLD:
        raise RegistryError(f"v{version.number} is Stage 2's gold model; it never serves")
    if not Path(version.checkpoint).is_dir():
        raise RegistryError(f"the checkpoint of v{version.number} is missing on disk")
    with transaction.atomic():
        Campaign.objects.select_for_update(no_key=True).filter(pk=version.campaign_id).first()
        # Deactivate first: the partial unique constraint allows one active row at a time.
        ModelVersion.objects.filter(campaign_id=version.campaign_id, is_active=True).exclude(
            pk=version.pk
        ).update(is_active=False)
        # Still ready under the campaign's lock: an archive that came first wins (the check
        # above read the caller's copy); raising undoes the deactivation too.
        if not ModelVersion.objects.filter(pk=version.pk, status=ModelVersion.Status.READY).update(
            is_active=True, activation_note=""
        ):
            raise RegistryError(f"v{version.number} is no longer ready; it was not activated")
    version.refresh_from_db()
    return version


def model_version_rollback(*, campaign: Campaign) -> ModelVersion:
    """Activate the newest ready version older than the active one that could serve: not one
    the activation gate refused or never judged (``activation_note``: it never served, being
    worse than the version of its day, or never compared with it), nor one whose checkpoint
    is gone from disk."""
    with transaction.atomic():
        # The campaign's lock, as activation takes it, before the active version is read: an
        # activation committing after that read would be undone by a rollback from the
        # version it replaced.
        Campaign.objects.select_for_update(no_key=True).filter(pk=campaign.pk).first()
        active = active_model_version(campaign=campaign)
        if active is None:
            raise RegistryError("no active version to roll back from")
        older = ModelVersion.objects.filter(
            campaign=campaign,
            number__lt=active.number,
            status=ModelVersion.Status.READY,
            kind=ModelVersion.Kind.LOOP,
        )
        if not older.exists():
            raise RegistryError(f"v{active.number} is the oldest version; nothing to roll back to")
        for previous in older.filter(activation_note="").order_by("-number"):
            if Path(previous.checkpoint).is_dir():
                return model_version_activate(version=previous)
        raise RegistryError(
            f"no version older than v{active.number} can serve: the activation gate refused "
            "them or never judged them, or their checkpoints are gone"
        )


def model_version_archive(*, version: ModelVersion) -> ModelVersion:
    """Retire a version (it stays listed with its metrics but can no longer be activated)."""
    if version.is_active:
        raise RegistryError("activate another version before archiving the active one")
    with transaction.atomic():
        # The campaign's lock, as activation takes it, and the version's state read under it,
        # not from the caller's copy: an activation that came first wins.
        Campaign.objects.select_for_update(no_key=True).filter(pk=version.campaign_id).first()
        if not ModelVersion.objects.filter(pk=version.pk, is_active=False).update(
            status=ModelVersion.Status.ARCHIVED
        ):
            raise RegistryError("activate another version before archiving the active one")
    version.refresh_from_db()
    return version
