"""Evaluation sets: upload (per campaign or shared), and the worker job that scores a model
version on them and stores accuracy per subset and overall with 95% Wilson intervals.

Every ready version is evaluated on every set it can see (its campaign's and the shared ones):
``evaluations_enqueue_pending`` (run by the beat every minute, and right after an upload) asks
for one ``evaluate`` job per version that lacks a result for the current content of a set.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Sequence
from typing import Any

from django.contrib.auth.models import User
from django.db import transaction
from django.db.models import Q

from annotation.models import Campaign
from scoring.evaluation.maths import accuracy_report
from scoring.evaluation.reading import EvaluationRecord, EvaluationSetError
from scoring.jobs.runner import (
    ACTIVE_STATUSES,
    JobClaim,
    JobContext,
    JobError,
    job_create,
    job_enqueue,
    job_run,
)
from scoring.models import EvaluationItem, EvaluationResult, EvaluationSet, Job, ModelVersion

# Pairs read from the database and scored per step: bounded memory for any set size.
CHUNK_PAIRS = 256


def _prompt_text(conversation: Sequence[dict[str, str]]) -> str:
    return "\n".join(turn["content"] for turn in conversation if turn["role"] == "user")


def _digest(records: Sequence[EvaluationRecord]) -> str:
    digest = hashlib.sha256()
    for record in records:
        row = [record.conversation, record.chosen, record.rejected, record.subset]
        digest.update(json.dumps(row, sort_keys=True, ensure_ascii=False).encode())
        digest.update(b"\n")
    return digest.hexdigest()


def evaluation_set_upload(
    *,
    campaign: Campaign | None,
    name: str,
    records: Sequence[EvaluationRecord],
    filename: str = "",
    user: User | None = None,
    enqueue_pending: bool = True,
) -> EvaluationSet:
    """Create the set, or replace the pairs of the set of that name (its results go with them).
    Uploading the same content again changes nothing and keeps the results. With
    ``enqueue_pending`` the ready versions that can see the set are queued for evaluation."""
    name = name.strip()
    if not name:
        raise EvaluationSetError("an evaluation set needs a name")
    if len(name) > 200:
        raise EvaluationSetError("an evaluation set's name has at most 200 characters")
    if not records:
        raise EvaluationSetError("an evaluation set needs at least one pair")
    sha256 = _digest(records)
    subsets: dict[str, int] = {}
    for record in records:
        subsets[record.subset] = subsets.get(record.subset, 0) + 1
    with transaction.atomic():
        existing = (
            EvaluationSet.objects.select_for_update()
            .filter(campaign=campaign, name=name)
            .first()
        )
        if existing is not None and existing.sha256 == sha256:
            return existing
        if existing is not None:
            existing.items.all().delete()
            existing.results.all().delete()
            evaluation_set = existing
            evaluation_set.sha256 = sha256
            evaluation_set.filename = filename[:500]
            evaluation_set.pairs_count = len(records)
            evaluation_set.subsets = dict(sorted(subsets.items()))
            evaluation_set.created_by = user
            evaluation_set.save()
        else:
            evaluation_set = EvaluationSet.objects.create(
                campaign=campaign,
                name=name,
                filename=filename[:500],
                sha256=sha256,
                pairs_count=len(records),
                subsets=dict(sorted(subsets.items())),
                created_by=user,
            )
        EvaluationItem.objects.bulk_create(
            (
                EvaluationItem(
                    evaluation_set=evaluation_set,
                    position=position,
                    subset=record.subset,
                    conversation=record.conversation,
                    chosen=record.chosen,
                    rejected=record.rejected,
                    prompt=_prompt_text(record.conversation),
                )
                for position, record in enumerate(records)
            ),
            batch_size=1000,
        )
        if enqueue_pending:
            transaction.on_commit(lambda: evaluations_enqueue_pending(campaign=campaign))
    return evaluation_set


def evaluation_sets_for_campaign(*, campaign: Campaign) -> list[EvaluationSet]:
    """The campaign's own sets and the shared ones."""
    return list(
        EvaluationSet.objects.filter(Q(campaign=campaign) | Q(campaign__isnull=True)).order_by(
            "name", "id"
        )
    )


def _missing_sets(version: ModelVersion, sets: Sequence[EvaluationSet]) -> list[EvaluationSet]:
    done = {
        (set_id, sha)
        for set_id, sha in EvaluationResult.objects.filter(model_version=version).values_list(
            "evaluation_set_id", "set_sha256"
        )
    }
    return [item for item in sets if (item.pk, item.sha256) not in done]


def evaluation_request(
    *,
    version: ModelVersion,
    sets: Sequence[EvaluationSet] | None = None,
    user: User | None = None,
    enqueue: bool = True,
) -> Job:
    """An ``evaluate`` job for ``version`` on ``sets`` (default: every set it can see). A queued
    or running evaluation of the same version on the same sets is returned instead."""
    chosen = list(sets) if sets is not None else evaluation_sets_for_campaign(
        campaign=version.campaign
    )
    set_ids = sorted(item.pk for item in chosen)
    params = {"version": version.pk, "sets": set_ids}
    active = Job.objects.filter(
        campaign=version.campaign, kind=Job.Kind.EVALUATE, status__in=ACTIVE_STATUSES
    )
    for job in active:
        if job.params.get("version") == version.pk and job.params.get("sets") == set_ids:
            return job
    job = job_create(campaign=version.campaign, kind=Job.Kind.EVALUATE, params=params, user=user)
    if enqueue:
        job_enqueue(job=job)
    return job


def evaluations_enqueue_pending(*, campaign: Campaign | None = None) -> list[int]:
    """Ask for the evaluations that ready versions lack (of ``campaign``, or of every campaign
    when ``campaign`` is None or the set was shared); returns the jobs' ids."""
    versions = ModelVersion.objects.filter(status=ModelVersion.Status.READY).select_related(
        "campaign"
    )
    if campaign is not None:
        versions = versions.filter(campaign=campaign)
    busy = {
        job.params.get("version")
        for job in Job.objects.filter(kind=Job.Kind.EVALUATE, status__in=ACTIVE_STATUSES)
    }
    sets_by_campaign: dict[int, list[EvaluationSet]] = {}
    jobs: list[int] = []
    for version in versions.order_by("campaign_id", "number"):
        if version.pk in busy:
            continue
        sets = sets_by_campaign.setdefault(
            version.campaign_id, evaluation_sets_for_campaign(campaign=version.campaign)
        )
        missing = _missing_sets(version, sets)
        if missing:
            jobs.append(evaluation_request(version=version, sets=missing).pk)
    return jobs


# --- The worker job --------------------------------------------------------------------------


def _item_chunks(evaluation_set: EvaluationSet) -> Iterator[list[EvaluationItem]]:
    items = EvaluationItem.objects.filter(evaluation_set=evaluation_set).order_by("position")
    chunk: list[EvaluationItem] = []
    for item in items.only("conversation", "chosen", "rejected", "subset").iterator(
        chunk_size=CHUNK_PAIRS
    ):
        chunk.append(item)
        if len(chunk) == CHUNK_PAIRS:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def evaluation_work(job: Job):  # noqa: ANN201 - a JobWork callable
    version = ModelVersion.objects.select_related("campaign").filter(
        pk=job.params.get("version")
    ).first()
    if version is None:
        raise JobError(f"model version {job.params.get('version')} no longer exists")
    sets = list(EvaluationSet.objects.filter(pk__in=job.params.get("sets", [])).order_by("name"))

    def work(context: JobContext) -> dict[str, Any]:
        from scoring.reward_model import load_scorer

        if not sets:
            return {"version": version.number, "sets": {}}
        with context.stage(0.0, 0.05, f"loading model version {version.number}"):
            model = load_scorer(version.checkpoint)
        total = sum(item.pairs_count for item in sets)
        done = 0
        summaries: dict[str, Any] = {}
        for evaluation_set in sets:
            sha256 = evaluation_set.sha256
            probabilities: list[float] = []
            subsets: list[str] = []
            for chunk in _item_chunks(evaluation_set):
                context.check()
                batch = [(item.conversation, item.chosen, item.rejected) for item in chunk]
                probabilities.extend(float(p) for p in model.prob_a_better_batch(batch))
                subsets.extend(item.subset for item in chunk)
                done += len(chunk)
                context.progress(
                    0.05 + 0.95 * done / max(total, 1), f"{evaluation_set.name}: {done}/{total}"
                )
            report = accuracy_report(probabilities, subsets)
            result = evaluation_result_store(
                version=version, evaluation_set=evaluation_set, sha256=sha256, report=report,
                job=job,
            )
            if result is not None:
                summaries[evaluation_set.name] = report
                context.log(
                    f"{evaluation_set.name}: accuracy {report['accuracy']:.3f} "
                    f"[{report['ci_low']:.3f}, {report['ci_high']:.3f}] on {report['n']} pairs"
                )
        return {"version": version.number, "sets": summaries}

    return work


def evaluation_result_store(
    *,
    version: ModelVersion,
    evaluation_set: EvaluationSet,
    sha256: str,
    report: dict[str, Any],
    job: Job | None = None,
) -> EvaluationResult | None:
    """Upsert the result, unless the set changed while it was scored (then None: the next
    pending check evaluates the new content)."""
    with transaction.atomic():
        current = EvaluationSet.objects.select_for_update().filter(pk=evaluation_set.pk).first()
        if current is None or current.sha256 != sha256:
            return None
        result, _created = EvaluationResult.objects.update_or_create(
            model_version=version,
            evaluation_set=current,
            defaults={
                "job": job,
                "set_sha256": sha256,
                "accuracy": report["accuracy"],
                "n": report["n"],
                "ci_low": report["ci_low"],
                "ci_high": report["ci_high"],
                "subsets": report["subsets"],
            },
        )
    return result


def evaluation_run(*, job_id: int, worker: str, reraise: bool = True) -> JobClaim:
    return job_run(job_id=job_id, worker=worker, work_for=evaluation_work, reraise=reraise)
