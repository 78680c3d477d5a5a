"""Curation jobs: their parameters, creation and run."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.contrib.auth.models import User
from django.db import transaction

from annotation.models import Campaign
from scoring.datasets.curation.consistency import (
    CurationError,
    CurationParams,
    ModelChoice,
    best_model_choice,
    gold_model_choice,
    model_version_scorer,
)
from scoring.datasets.curation.decontamination import evaluation_sets_unknown
from scoring.datasets.curation.pool import CurationResult, pool_curate
from scoring.datasets.llm_judge import llm_judge_configured, llm_judge_scorer
from scoring.datasets.scorers import Scorer
from scoring.jobs.runner import (
    ACTIVE_STATUSES,
    JobCancelled,
    JobClaim,
    JobConflict,
    JobContext,
    JobError,
    JobWork,
    job_create,
    job_enqueue,
    job_run,
    worker_name,
)
from scoring.jobs.shards import shards_run_inline
from scoring.loop.pool_scoring import shard_score_work, silver_score_hand_off
from scoring.loop.training import gold_model_train
from scoring.models import Job, ModelVersion

# --- Jobs ---------------------------------------------------------------------------------

# Where a curation job keeps its counts while it runs (replaced by its result at the end).
CARRIED_COUNTS = "curation_counts"

def curation_create(
    *,
    campaign: Campaign,
    params: Mapping[str, Any] | CurationParams | None = None,
    user: User | None = None,
    enqueue: bool = True,
) -> Job:
    """Record a queued curation job (params validated now) and enqueue it on the gpu queue.
    Raises JobConflict while another curation of the campaign is queued or running."""
    if not isinstance(params, CurationParams):
        params = CurationParams.from_params(params)
    unknown = evaluation_sets_unknown(campaign=campaign, set_names=params.evaluation_sets or ())
    if unknown:
        raise CurationError(f"evaluation_sets: unknown evaluation set {', '.join(unknown)}")
    # Fail now, not in the worker, when a named version is missing or nothing is trained.
    best = best_model_choice(campaign=campaign, number=params.best_version).version
    if params.gold_version is not None or not params.train_gold:
        gold_model_choice(campaign=campaign, number=params.gold_version, best=best)
    author = user if user is not None and user.is_authenticated else None
    with transaction.atomic():
        # Two curations of one pool at once would each train a gold model and write verdicts
        # over each other's, both counting the same pairs. The campaign row's lock makes two
        # requests at the same moment take turns here.
        Campaign.objects.select_for_update(no_key=True).filter(pk=campaign.pk).first()
        running = (
            Job.objects.filter(campaign=campaign, kind=Job.Kind.CURATE, status__in=ACTIVE_STATUSES)
            .order_by("id")
            .first()
        )
        if running is not None:
            raise JobConflict(running)
        job = job_create(
            campaign=campaign, kind=Job.Kind.CURATE, params=params.as_params(), user=author
        )
        if enqueue:
            job_enqueue(job=job)
    return job


def _gold_model(
    *, job: Job, context: JobContext, params: CurationParams, best: ModelVersion, train: bool
) -> ModelChoice:
    """The gold model: trained in the job's first part (``params.train_gold``) and found again
    by id in its last part, or an existing version (``gold_model_choice``)."""
    if not train:
        return gold_model_choice(campaign=job.campaign, number=params.gold_version, best=best)
    sources = ", ".join(params.gold_sources)
    chosen_by = f"trained for this curation on human-verified pairs only ({sources})"
    trained_id = (job.result or {}).get("gold_version_id")
    if trained_id is not None:
        return ModelChoice(ModelVersion.objects.get(pk=trained_id), chosen_by)
    with context.stage(0.0, 0.3, "training the gold model"):
        version = gold_model_train(
            job=job, context=context, sources=params.gold_sources, mode=params.gold_mode
        )
    job.result = {**(job.result or {}), "gold_version_id": version.pk}
    return ModelChoice(version, chosen_by)


# Stays long: the job's steps in order (choose the models, hand the scoring to shards, pick
# the scorers and the judge, curate, report), each a few lines that read best as one story.
def _curation_work(job: Job, scorers: Mapping[str, Scorer]) -> JobWork:
    # Stays long: see _curation_work.
    def work(context: JobContext) -> dict[str, Any]:
        params = CurationParams.from_params(job.params)
        # Injected scorers (tests, notebooks) stand in for the models: nothing to train.
        train = params.train_gold and params.gold_version is None and not scorers
        try:
            best_choice = best_model_choice(campaign=job.campaign, number=params.best_version)
            gold_choice = _gold_model(
                job=job, context=context, params=params, best=best_choice.version, train=train
            )
        except CurationError as error:
            raise JobError(str(error)) from error
        gold_version, best_version = gold_choice.version, best_choice.version
        start = 0.3 if train else 0.0
        # --- issue #13: the models score the silver pool in shards on every gpu worker first
        # (the job's last part then finds every score stored). Injected scorers skip it.
        sharded = not scorers and params.shard_scoring
        if sharded and job.stage == Job.Stage.MAIN:
            silver_score_hand_off(
                versions=list({gold_version.pk: gold_version, best_version.pk: best_version}
                              .values()),
                context=context,
                recurate=params.recurate,
                progress_range=(start, start + 0.6 * (1 - start)),
            )
        # --- end issue #13
        gold = scorers.get("gold") or model_version_scorer(gold_version)
        best = scorers.get("best") or (
            gold if best_version.pk == gold_version.pk else model_version_scorer(best_version)
        )
        context.log(
            f"gold model v{gold_version.number} ({gold_choice.chosen_by}); best model "
            f"v{best_version.number} ({best_choice.chosen_by})"
        )

        def on_progress(fraction: float, message: str) -> None:
            if context.should_stop():
                raise JobCancelled  # verdicts written so far stay; a new run resumes
            context.progress(fraction, message)

        judge = scorers.get("judge")
        if judge is None and params.llm_judge:
            if llm_judge_configured():
                judge = llm_judge_scorer()
                context.log("an LLM judge is configured: it may keep pairs the models reject")

        def store_counts(counts: CurationResult) -> None:
            # In the batch's transaction (context.owned: this worker's job row locked first),
            # so that a run taken over after a worker died goes on from the counts of the
            # verdicts it finds written.
            job.result = {**(job.result or {}), CARRIED_COUNTS: counts.as_dict()}
            Job.objects.filter(pk=job.pk).update(result=job.result)

        carried = (job.result or {}).get(CARRIED_COUNTS)
        curating_from = start + 0.6 * (1 - start) if sharded else start
        with context.stage(curating_from, 1.0, "curating"):
            result = pool_curate(
                campaign=job.campaign,
                gold=gold,
                best=best,
                rules=params.rules(),
                judge=judge,
                evaluation_sets=params.evaluation_sets,
                recurate=params.recurate,
                on_progress=on_progress,
                near_duplicate_threshold=params.near_duplicate_threshold,
                carried=CurationResult.from_dict(carried) if carried else None,
                on_counts=store_counts,
                batch_transaction=context.owned,
            )
        context.log(
            f"{result.kept} kept, {result.discarded} discarded, {result.recycled} recycled, "
            f"{result.contaminated} contaminated, {result.duplicates} duplicates"
        )
        return {
            **result.as_dict(),
            "gold_version": gold_version.number,
            "best_version": best_version.number,
            "gold_model": gold_choice.as_dict(),
            "best_model": best_choice.as_dict(),
        }

    return work


def curation_run(
    *,
    job_id: int,
    worker: str = "",
    scorers: Mapping[str, Scorer] | None = None,
    reraise: bool = True,
) -> JobClaim:
    """Claim the curation job and run it. ``scorers`` may supply "gold", "best" and "judge"
    (tests, notebooks); otherwise the chosen model versions score the pool, in shards that
    every gpu worker takes (without ``worker``: in this process, shards included)."""

    def run() -> JobClaim:
        return job_run(
            job_id=job_id,
            worker=worker or "inline:" + worker_name(),
            work_for=lambda job: _curation_work(job, dict(scorers or {})),
            reraise=reraise,
        )

    claim = run()
    if worker or claim.job is None:
        return claim
    # --- issue #13: in-process runs score their shards here, then run the job's last part.
    claim.job.refresh_from_db()
    if claim.job.status == Job.Status.RUNNING and claim.job.stage == Job.Stage.SHARDS:
        shards_run_inline(job=claim.job, worker="inline:" + worker_name(),
                          work_for=shard_score_work)
        claim = run()
    return claim
