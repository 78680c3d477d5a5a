"""Evaluation sets: upload (per campaign or shared), and the worker job that scores a model
version on them and stores accuracy per subset and overall with 95% Wilson intervals.

Every ready version is evaluated on every set it can see (its campaign's and the shared ones):
``evaluations_enqueue_pending`` (run by the beat every minute, and right after an upload) asks
for one ``evaluate`` job per version on the sets it lacks a result for (as their content is now)
that none of its queued or running evaluate jobs is scoring.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, BinaryIO

from django.conf import settings
from django.contrib.auth.models import User
from django.db import IntegrityError, transaction
from django.db.models import Max, Q, QuerySet

from annotation.models import Campaign
from core.queue import QUEUE_UNAVAILABLE_REASON, QueueUnavailable
from scoring.evaluation.maths import (
    SubsetCounts,
    counts_merge,
    report_from_counts,
    subset_counts,
)
from scoring.evaluation.reading import EvaluationRecord, EvaluationSetError, read_evaluation_set
from scoring.jobs.runner import (
    ACTIVE_STATUSES,
    JobClaim,
    JobContext,
    JobError,
    JobHandedOff,
    job_create,
    job_enqueue,
    job_run,
)
from scoring.jobs.shards import (
    ShardContext,
    ShardWork,
    job_hand_off_to_shards,
    shard_size_of,
    shards_run_inline,
    shards_summary,
)
from scoring.loop.pool_scoring import score_chunk_size, version_model
from scoring.models import (
    EvaluationItem,
    EvaluationResult,
    EvaluationSet,
    Job,
    JobShard,
    ModelVersion,
)

# Pairs read from the database and scored per step: bounded memory for any set size.
CHUNK_PAIRS = 256
# Pairs written per INSERT when a set is stored; an upload's time limit is checked between them.
ITEMS_PER_BATCH = 1000
# Said with an upload that was stored while the broker was down (page and API).
EVALUATION_DEFERRED_NOTE = (
    "The task queue is unavailable for a moment, so its evaluation was not queued yet; it "
    "will be once the queue is back (the periodic check asks for missing results)."
)


def _prompt_text(conversation: Sequence[dict[str, str]]) -> str:
    return "\n".join(turn["content"] for turn in conversation if turn["role"] == "user")


def _digest(records: Sequence[EvaluationRecord]) -> str:
    digest = hashlib.sha256()
    for record in records:
        row = [record.conversation, record.chosen, record.rejected, record.subset]
        digest.update(json.dumps(row, sort_keys=True, ensure_ascii=False).encode())
        digest.update(b"\n")
    return digest.hexdigest()


def _now() -> float:
    return time.monotonic()


@dataclass(frozen=True)
class UploadDeadline:
    """The inline-import time limit of an upload in a web request (ARBITER_IMPORT_INLINE_MAX_
    SECONDS), counted once across reading the file and storing its pairs."""

    seconds: float
    ends: float

    @classmethod
    def start(cls) -> UploadDeadline | None:
        """From now; None when the limit is 0 (no limit)."""
        seconds = float(settings.ARBITER.get("IMPORT_INLINE_MAX_SECONDS", 20.0))
        return cls(seconds=seconds, ends=_now() + seconds) if seconds else None

    def check(self, filename: str) -> None:
        """Refuse (a 400, as a slow read is refused) once the limit has passed."""
        if _now() > self.ends:
            raise EvaluationSetError(
                f"{filename}: reading and storing the file took longer than the limit of "
                f"{self.seconds:g} s"
            )


def evaluation_set_read_upload(
    *, upload: BinaryIO, filename: str, deadline: UploadDeadline | None = None
) -> list[EvaluationRecord]:
    """Read an uploaded set in a web request (page or API): the reader's limits plus the
    inline-import time limit (``deadline``, default: one from now), which storing the set then
    shares (``evaluation_set_upload``), so a slow or huge upload is refused rather than held."""
    if deadline is None:
        deadline = UploadDeadline.start()
    max_seconds = deadline.seconds if deadline is not None else None
    return read_evaluation_set(upload, filename=filename, max_seconds=max_seconds)


def evaluation_set_upload_file(
    *,
    campaign: Campaign | None,
    name: str,
    upload: BinaryIO,
    filename: str,
    user: User | None = None,
) -> tuple[EvaluationSet, str]:
    """Read an upload in a web request (page or API), store it and queue the evaluations it
    asks for, reading and storing within one inline time limit (``UploadDeadline``).

    Returns the set and a note for the user: empty, or ``EVALUATION_DEFERRED_NOTE`` when the
    set was stored but the broker was down as its evaluations were queued (their jobs are
    failed unsent, which the periodic ``evaluations_enqueue_pending`` does not count, so it
    asks for them once the broker is back). A stored set is never answered as a failure."""
    deadline = UploadDeadline.start()
    records = evaluation_set_read_upload(upload=upload, filename=filename, deadline=deadline)
    evaluation_set, changed = _evaluation_set_store(
        campaign=campaign,
        name=name,
        records=records,
        filename=filename,
        user=user,
        deadline=deadline,
    )
    deferred: list[bool] = []

    def enqueue() -> None:
        try:
            evaluations_enqueue_pending(campaign=campaign)
        except QueueUnavailable:
            # core.queue logged it and failed the job it could not send.
            deferred.append(True)

    if changed:
        # Run at once when no transaction surrounds the call (a request), else at its commit.
        transaction.on_commit(enqueue)
    return evaluation_set, EVALUATION_DEFERRED_NOTE if deferred else ""


def evaluation_set_upload(
    *,
    campaign: Campaign | None,
    name: str,
    records: Sequence[EvaluationRecord],
    filename: str = "",
    user: User | None = None,
    enqueue_pending: bool = True,
    deadline: UploadDeadline | None = None,
) -> EvaluationSet:
    """Create the set, or replace the pairs of the set of that name (its results go with them).
    Uploading the same content again changes nothing and keeps the results. With
    ``enqueue_pending`` the ready versions that can see the set are queued for evaluation once
    it is committed (a broker outage raises QueueUnavailable from the commit). ``deadline``:
    refuse (EvaluationSetError, nothing changed) once it has passed, checked before the set is
    locked and between batches of pairs written."""
    evaluation_set, changed = _evaluation_set_store(
        campaign=campaign,
        name=name,
        records=records,
        filename=filename,
        user=user,
        deadline=deadline,
    )
    if changed and enqueue_pending:
        transaction.on_commit(lambda: evaluations_enqueue_pending(campaign=campaign))
    return evaluation_set


def _evaluation_set_store(
    *,
    campaign: Campaign | None,
    name: str,
    records: Sequence[EvaluationRecord],
    filename: str,
    user: User | None,
    deadline: UploadDeadline | None,
) -> tuple[EvaluationSet, bool]:
    """``evaluation_set_upload`` without queueing: the set, and whether its content changed.
    One transaction: a refusal part-way (the deadline) leaves the set's previous content."""
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
    fields = {
        "filename": filename[:500],
        "sha256": sha256,
        "pairs_count": len(records),
        "subsets": dict(sorted(subsets.items())),
        "created_by": user,
    }
    label = filename or name
    if deadline is not None:
        deadline.check(label)
    locked = EvaluationSet.objects.select_for_update().filter(campaign=campaign, name=name)
    with transaction.atomic():
        evaluation_set, created = locked.first(), False
        if evaluation_set is None:
            try:
                with transaction.atomic():
                    evaluation_set = EvaluationSet.objects.create(
                        campaign=campaign, name=name, **fields
                    )
                created = True
            except IntegrityError:
                # A concurrent upload created the set of that name after our look-up (there
                # was no row to lock yet): its row is committed now, so replace it as below.
                evaluation_set = locked.get()
        if not created:
            if evaluation_set.sha256 == sha256:
                return evaluation_set, False
            evaluation_set.items.all().delete()
            evaluation_set.results.all().delete()
            for key, value in fields.items():
                setattr(evaluation_set, key, value)
            evaluation_set.save()
        _items_create(evaluation_set, records, deadline=deadline, label=label)
    return evaluation_set, True


def _items_create(
    evaluation_set: EvaluationSet,
    records: Sequence[EvaluationRecord],
    *,
    deadline: UploadDeadline | None = None,
    label: str = "",
) -> None:
    """The set's pairs, in upload order, each with its prompt's text for decontamination;
    ``ITEMS_PER_BATCH`` per INSERT, ``deadline`` checked before each."""
    for start in range(0, len(records), ITEMS_PER_BATCH):
        if deadline is not None:
            deadline.check(label)
        EvaluationItem.objects.bulk_create(
            [
                EvaluationItem(
                    evaluation_set=evaluation_set,
                    position=position,
                    subset=record.subset,
                    conversation=record.conversation,
                    chosen=record.chosen,
                    rejected=record.rejected,
                    prompt=_prompt_text(record.conversation),
                )
                for position, record in enumerate(
                    records[start : start + ITEMS_PER_BATCH], start=start
                )
            ]
        )


def evaluation_set_delete(*, evaluation_set: EvaluationSet) -> None:
    """Delete the set with its pairs and results. An evaluation job that was to score it
    skips it (its result is not stored: ``evaluation_result_store`` finds no set)."""
    evaluation_set.delete()


def evaluation_sets_for_campaign(*, campaign: Campaign) -> list[EvaluationSet]:
    """The campaign's own sets and the shared ones."""
    return list(
        EvaluationSet.objects.filter(Q(campaign=campaign) | Q(campaign__isnull=True)).order_by(
            "name", "id"
        )
    )


def _missing_sets(
    version: ModelVersion, sets: Sequence[EvaluationSet], *, asked: set[int]
) -> list[EvaluationSet]:
    """The sets the version has no result for, as their content is now, and no active job of
    it (``asked``: their ids) is scoring."""
    done = {
        (set_id, sha)
        for set_id, sha in EvaluationResult.objects.filter(model_version=version).values_list(
            "evaluation_set_id", "set_sha256"
        )
    }
    return [item for item in sets if (item.pk, item.sha256) not in done and item.pk not in asked]


def _version_evaluations_lock(version: ModelVersion) -> None:
    """Hold off other requests for the version's evaluations until this transaction commits.

    ``evaluate`` is not an exclusive kind, so ``job_create`` takes no lock: without this, two
    callers at once (the beat's sweep and an upload's, or a sweep and a request by hand) both
    find no active evaluation and both queue one, and the version is scored twice on the gpu
    queue. Taken before that check. NO KEY UPDATE leaves inserts that reference the version
    (its results) unblocked.
    """
    ModelVersion.objects.select_for_update(no_key=True, of=("self",)).filter(pk=version.pk).first()


def evaluation_request(
    *,
    version: ModelVersion,
    sets: Sequence[EvaluationSet] | None = None,
    user: User | None = None,
    enqueue: bool = True,
    shard_size: int | None = None,
    queue: str | None = None,
) -> Job:
    """An ``evaluate`` job for ``version`` on ``sets`` (default: every set it can see). A queued
    or running evaluation of the same version on the same sets is returned instead.
    ``shard_size``: pairs per shard (default SHARD_SIZE); ``queue`` overrides the route.

    The job records the sets' content it was asked for in ``result["set_sha256"]`` ({set id:
    SHA-256}; a sharded job's plan rewrites it with the content it planned), so that the sweep
    can tell a failed evaluation of the current content from one of content since replaced."""
    chosen = (
        list(sets) if sets is not None else evaluation_sets_for_campaign(campaign=version.campaign)
    )
    set_ids = sorted(item.pk for item in chosen)
    params: dict[str, Any] = {"version": version.pk, "sets": set_ids}
    if shard_size is not None:
        params["shard_size"] = shard_size
    with transaction.atomic():
        _version_evaluations_lock(version)
        active = Job.objects.filter(
            campaign=version.campaign, kind=Job.Kind.EVALUATE, status__in=ACTIVE_STATUSES
        )
        for job in active:
            if job.params.get("version") == version.pk and job.params.get("sets") == set_ids:
                return job
        job = job_create(
            campaign=version.campaign, kind=Job.Kind.EVALUATE, params=params, user=user
        )
        job.result = {"set_sha256": {str(item.pk): item.sha256 for item in chosen}}
        job.save(update_fields=["result"])
    if enqueue:
        job_enqueue(job=job, queue=queue)
    return job


def evaluations_enqueue_pending(*, campaign: Campaign | None = None) -> list[int]:
    """Ask for the evaluations that ready versions lack (of ``campaign``, or of every campaign
    when ``campaign`` is None or the set was shared); returns the jobs' ids.

    A set that a queued or running evaluate job of the version already covers is not asked for
    again; the version's other missing sets are, at once (a set uploaded while the previous
    set's job waits on the gpu queue gets a job of its own)."""
    versions = ModelVersion.objects.filter(status=ModelVersion.Status.READY).select_related(
        "campaign"
    )
    if campaign is not None:
        versions = versions.filter(campaign=campaign)
    asked = _sets_being_evaluated(Job.objects.all())
    sets_by_campaign: dict[int, list[EvaluationSet]] = {}
    jobs: list[int] = []
    for version in versions.order_by("campaign_id", "number"):
        sets = sets_by_campaign.setdefault(
            version.campaign_id, evaluation_sets_for_campaign(campaign=version.campaign)
        )
        if not _missing_sets(version, sets, asked=asked.get(version.pk, set())):
            continue
        with transaction.atomic():
            _version_evaluations_lock(version)
            # Read again under the lock: another sweep may have asked since the reads above.
            now_asked = _sets_being_evaluated(Job.objects.filter(params__version=version.pk))
            missing = _missing_sets(version, sets, asked=now_asked.get(version.pk, set()))
            if not missing or _evaluation_ended_unfinished(version, missing):
                continue
            # Its task is sent when this transaction commits, after the lock is let go.
            jobs.append(evaluation_request(version=version, sets=missing).pk)
    return jobs


def _sets_being_evaluated(jobs: QuerySet[Job]) -> dict[int, set[int]]:
    """{version id: ids of the sets its queued or running evaluate jobs (of ``jobs``) score}."""
    asked: dict[int, set[int]] = {}
    for params in jobs.filter(kind=Job.Kind.EVALUATE, status__in=ACTIVE_STATUSES).values_list(
        "params", flat=True
    ):
        asked.setdefault(params.get("version"), set()).update(params.get("sets") or ())
    return asked


def _evaluation_ended_unfinished(version: ModelVersion, sets: Sequence[EvaluationSet]) -> bool:
    """Whether the latest evaluate job of ``version`` on these sets, as their content is now,
    failed or was cancelled. The sweep does not ask for it again: not every minute after a
    failure, nor a minute after an admin's cancel (as ``rounds_check_completion`` for
    retrains); asking by hand still does. Not counted: a job that failed because the broker was
    down (it never ran), and one asked for other content of a set (its recorded
    ``set_sha256`` differs, or it recorded none): new content is evaluated again."""
    latest = (
        Job.objects.filter(
            campaign_id=version.campaign_id,
            kind=Job.Kind.EVALUATE,
            params__version=version.pk,
            params__sets=sorted(item.pk for item in sets),
        )
        .exclude(status=Job.Status.FAILED, error=QUEUE_UNAVAILABLE_REASON)
        .order_by("-id")
        .only("status", "result")
        .first()
    )
    if latest is None or latest.status not in (Job.Status.FAILED, Job.Status.CANCELLED):
        return False
    recorded = (latest.result or {}).get("set_sha256") or {}
    return all(recorded.get(str(item.pk)) == item.sha256 for item in sets)


# --- The worker job --------------------------------------------------------------------------
#
# A job over at most ``shard_size`` pairs (the job's parameter, else SHARD_SIZE) scores them in
# its own worker. A larger one splits its sets' pairs into id ranges (``scoring.jobs.shards``):
# any worker on the job's queue takes a shard, scores its pairs with the version and stores the
# correct and scored pairs per set and subset on the shard row; the last shard sends the job on,
# and its last part sums the shards' counts into each set's report. Counts add up exactly, so
# the sharded result is the unsharded one.


def _evaluation_targets(set_ids: Sequence[int]) -> QuerySet[EvaluationItem]:
    return EvaluationItem.objects.filter(evaluation_set_id__in=list(set_ids))


def _sets_as_read(set_ids: Sequence[int]) -> list[EvaluationSet]:
    """The sets with ``last_item_id``, their last pair's id, read in the same statement as
    their SHA-256 (one snapshot): the pairs of that content (``_items_as_read``)."""
    return list(
        EvaluationSet.objects.filter(pk__in=list(set_ids))
        .annotate(last_item_id=Max("items__id"))
        .order_by("name")
    )


def _items_as_read(sets: Sequence[EvaluationSet]) -> QuerySet[EvaluationItem]:
    """The pairs of the sets' content as ``_sets_as_read`` read it. A set replaced since has
    new pairs with higher ids, left out here: read by id alone, a set replaced (B) and put back
    (A) while A was scored had B's pairs scored and stored as A's result (the SHA-256 matched
    again); this way its count falls short and nothing is stored."""
    scope = Q(pk__in=[])
    for item in sets:
        scope |= Q(evaluation_set_id=item.pk, id__lte=getattr(item, "last_item_id", None) or 0)
    return EvaluationItem.objects.filter(scope)


def _chunk_size() -> int:
    # The pool's scoring step (SCORE_CHUNK), at most CHUNK_PAIRS: pairs are two transcripts.
    return max(1, min(CHUNK_PAIRS, score_chunk_size()))


def _item_chunks(items: QuerySet[EvaluationItem], after: int = 0) -> Iterator[list[EvaluationItem]]:
    """The items in id order, ``_chunk_size()`` at a time, by keyset pagination."""
    size = _chunk_size()
    while True:
        chunk = list(
            items.filter(id__gt=after)
            .order_by("id")
            .only("id", "evaluation_set_id", "conversation", "chosen", "rejected", "subset")[:size]
        )
        if not chunk:
            return
        yield chunk
        after = chunk[-1].pk


def _chunk_counts(model: Any, chunk: Sequence[EvaluationItem]) -> dict[str, SubsetCounts]:
    """Correct and scored pairs of the chunk per set (keyed by its id, as text) and subset."""
    batch = [(item.conversation, item.chosen, item.rejected) for item in chunk]
    probabilities = [float(p) for p in model.prob_a_better_batch(batch)]
    by_set: dict[str, tuple[list[float], list[str]]] = {}
    for item, p in zip(chunk, probabilities, strict=True):
        values, subsets = by_set.setdefault(str(item.evaluation_set_id), ([], []))
        values.append(p)
        subsets.append(item.subset)
    return {key: subset_counts(values, subsets) for key, (values, subsets) in by_set.items()}


def _counts_add(total: dict[str, SubsetCounts], part: dict[str, SubsetCounts]) -> None:
    for key, counts in part.items():
        total[key] = counts_merge(total.get(key, {}), counts)


def evaluation_work(job: Job):  # noqa: ANN201 - a JobWork callable
    version = (
        ModelVersion.objects.select_related("campaign").filter(pk=job.params.get("version")).first()
    )
    if version is None:
        raise JobError(f"model version {job.params.get('version')} no longer exists")
    sets = _sets_as_read(job.params.get("sets", []))

    def work(context: JobContext) -> dict[str, Any]:
        if not sets:
            return {"version": version.number, "sets": {}}
        if job.stage == Job.Stage.MAIN:
            _hand_off_large(context, sets)
            counts = _evaluate_here(context, version, sets)
            sha256 = {str(item.pk): item.sha256 for item in sets}
        else:  # the last part, once every shard is done
            counts = {}
            for part in JobShard.objects.filter(job=job).values_list("result", flat=True):
                _counts_add(counts, (part or {}).get("counts", {}))
            sha256 = (job.result or {}).get("set_sha256", {})
        summaries: dict[str, Any] = {}
        for evaluation_set in sets:
            key = str(evaluation_set.pk)
            report = report_from_counts(counts.get(key, {}))
            stored = None
            if key in sha256 and report["n"] == evaluation_set.pairs_count:
                stored = evaluation_result_store(
                    version=version,
                    evaluation_set=evaluation_set,
                    sha256=sha256[key],
                    report=report,
                    job=job,
                )
            if stored is None:
                context.log(f"{evaluation_set.name} changed while it was scored; not stored")
                continue
            # A shared set may bear the name of one of the campaign's own: keep both.
            label = evaluation_set.name
            if evaluation_set.campaign_id is None and any(
                other.name == label and other.campaign_id is not None for other in sets
            ):
                label = f"{label} (shared)"
            summaries[label] = report
            context.log(
                f"{evaluation_set.name}: accuracy {report['accuracy']:.3f} "
                f"[{report['ci_low']:.3f}, {report['ci_high']:.3f}] on {report['n']} pairs"
            )
        result: dict[str, Any] = {"version": version.number, "sets": summaries}
        if job.stage != Job.Stage.MAIN:
            summary = shards_summary(job)
            result.update(shards=summary["shards"], workers=summary["workers"])
        return result

    return work


def _hand_off_large(context: JobContext, sets: Sequence[EvaluationSet]) -> None:
    """Give a job over more than its shard size of pairs to shards (raises JobHandedOff)."""
    job = context.job
    size = shard_size_of(job.params)
    if sum(item.pairs_count for item in sets) <= size:
        return
    # Each set's content when planned: a set replaced meanwhile is not stored.
    job.result = {
        **(job.result or {}),
        "set_sha256": {str(item.pk): item.sha256 for item in sets},
    }
    shards = job_hand_off_to_shards(
        context=context,
        targets=_items_as_read(sets),
        size=size,
        progress_range=(0.0, 0.95),
        queue=context.queue,
        inline=context.inline,
    )
    if shards:
        raise JobHandedOff(f"job {job.pk} continues in {shards} shards")


def _evaluate_here(
    context: JobContext, version: ModelVersion, sets: Sequence[EvaluationSet]
) -> dict[str, SubsetCounts]:
    with context.stage(0.0, 0.05, f"loading model version {version.number}"):
        model = version_model(version)
    total = sum(item.pairs_count for item in sets)
    counts: dict[str, SubsetCounts] = {}
    done = 0
    for evaluation_set in sets:
        for chunk in _item_chunks(_items_as_read([evaluation_set])):
            context.check()
            _counts_add(counts, _chunk_counts(model, chunk))
            done += len(chunk)
            context.progress(
                0.05 + 0.95 * done / max(total, 1), f"{evaluation_set.name}: {done}/{total}"
            )
    return counts


def evaluation_shard_work(shard: JobShard) -> ShardWork:
    """Score the shard's pairs; store their correct and scored counts per set and subset."""
    job = shard.job
    version = (
        ModelVersion.objects.select_related("campaign").filter(pk=job.params.get("version")).first()
    )
    if version is None:
        raise JobError(f"model version {job.params.get('version')} no longer exists")
    items = _evaluation_targets(job.params.get("sets", [])).filter(
        id__gte=shard.first_id, id__lte=shard.last_id
    )

    def work(context: ShardContext) -> None:
        model = version_model(version)
        counts: dict[str, SubsetCounts] = {}
        scored = 0
        # Counted in memory and written once: a shard taken over starts again from zero.
        for chunk in _item_chunks(items, after=shard.first_id - 1):
            context.check()
            _counts_add(counts, _chunk_counts(model, chunk))
            scored += len(chunk)
        context.check()
        context.store_result({"counts": counts}, scored=scored)

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


def evaluation_run(
    *, job_id: int, worker: str, reraise: bool = True, queue: str | None = None
) -> JobClaim:
    """Claim the job and run it. An inline worker (``inline:…``) runs the job's shards itself,
    then its last part; a Celery worker leaves them to the shard tasks."""
    claim = job_run(
        job_id=job_id, worker=worker, work_for=evaluation_work, reraise=reraise, queue=queue
    )
    job = claim.job
    if not worker.startswith("inline:") or job is None:
        return claim
    job.refresh_from_db()
    if job.status == Job.Status.RUNNING and job.stage == Job.Stage.SHARDS:
        shards_run_inline(job=job, worker=worker, work_for=evaluation_shard_work)
        claim = job_run(job_id=job_id, worker=worker, work_for=evaluation_work, reraise=reraise)
    return claim
