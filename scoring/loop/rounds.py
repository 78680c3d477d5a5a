"""Rounds of the active-learning loop: close, train, score, prioritise, open the next.

``round_close_and_advance`` runs as one ``loop`` job, its steps on the progress bar:
close (0–2 %), train and evaluate on gold (2–50 %), score the pool (50–90 %), prioritise
(90–97 %), open the next round (97–100 %).

Closing a round returns its untouched pairs (no slot taken, no label: never taken, or every
lease skipped or lapsed) to the pool, where they compete on priority for the next round; pairs
already being labelled stay in annotation. The
next round takes the ``campaign.round_size`` highest-priority pooled pairs (ties by id, i.e.
import order). Running the loop again after a failure is safe: with no round open the close
is a no-op. A loop job restarted after its worker was lost (or released after a transient
error) does not close again: it trains for the round an earlier attempt closed, which the job
recorded in the transaction that closed it. Opening is recorded the same way, so a finishing
stage run again reports the round its earlier attempt opened.

When a loop starts automatically: campaigns with ``auto_retrain`` are checked by the periodic
task ``scoring.check_round_completion`` (``rounds_check_completion``): an open round some of
whose pairs settled and none of whose other pairs can still progress (no lease out, and in a
members-only campaign no active annotator member left who never had it: skipped by every
member, or its annotators removed) starts a loop job. A periodic check, not the label submit
path, keeps the annotators' requests free of this work; it is a few indexed queries per
campaign with auto-retrain on.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from django.db import transaction
from django.db.models import Exists, F, OuterRef, Q, QuerySet
from django.utils import timezone

from annotation.models import Assignment, Campaign, CampaignMember, Pair, Round
from annotation.selectors import campaign_active_annotators
from annotation.services.imports import campaign_rounds_lock
from annotation.services.pair_state import pairs_queue, pairs_return_to_pool
from scoring.jobs.claims import job_owned
from scoring.jobs.runner import (
    ACTIVE_STATUSES,
    EXCLUSIVE_KINDS,
    JobContext,
    JobError,
    JobLost,
)
from scoring.jobs.shards import shard_size_of
from scoring.loop.judged_pairs import training_pairs_exist
from scoring.loop.pool_scoring import (
    pool_score_hand_off,
    pool_score_summary,
    remember_model,
    scored_version,
    scoring_log_line,
)
from scoring.loop.prioritisation import pool_prioritise
from scoring.loop.requests import loop_request
from scoring.loop.training import (
    job_params_for_campaign,
    model_train,
    training_preflight,
    version_result,
)
from scoring.models import Job, ModelVersion
from scoring.selectors import active_model_version

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ClosedRound:
    round: Round
    returned_to_pool: int


def round_close(*, campaign: Campaign, now: datetime | None = None) -> ClosedRound | None:
    """Close the campaign's open round; None when no round is open."""
    now = now or timezone.now()
    with transaction.atomic():
        # An import that found this round open queues its pairs into it, unseen here until it
        # commits (nor does it lock the round: foreign keys are checked at commit). A close
        # meanwhile would return none of them and leave them queued in a closed round for
        # good. The import holds this lock until it commits.
        campaign_rounds_lock(campaign.pk)
        current = (
            # OF self: the default ordering joins the campaign, whose row every label's
            # commit in the campaign needs (its foreign-key check).
            Round.objects.select_for_update(of=("self",))
            .filter(campaign=campaign, status=Round.Status.OPEN)
            .first()
        )
        if current is None:
            return None
        Round.objects.filter(pk=current.pk).update(status=Round.Status.CLOSED, closed_at=now)
        returned = pairs_return_to_pool(round_=current)
    current.refresh_from_db()
    return ClosedRound(current, returned)


def round_open_next(
    *, campaign: Campaign, size: int | None = None, prioritised_with: ModelVersion | None = None
) -> Round | None:
    """Open a round with pooled pairs; None if one holding pairs is open or the pool holds
    none a member could take (an open round without a pair is filled instead).

    ``Round.chosen_by_version`` records whose scores set the priorities it takes: the version a
    loop job scored and prioritised with (``prioritised_with``), which an admin may have rolled
    back from meanwhile; else the campaign's active version.

    ``campaign.random_slice_share`` of the round is drawn first, uniformly at random from the
    whole pool (``selection="random"``): the baseline against which the rest, the
    highest-priority pooled pairs (``selection="priority"``), is measured. Drawing it first
    keeps it a sample of the pool the priority order chose from. In a members-only campaign
    the pool leaves out pairs every active member already had (``_pooled_takeable``).
    """
    size = size if size is not None else campaign.round_size
    with transaction.atomic():
        campaign_rounds_lock(campaign.pk)  # an import may be opening a round too
        current = Round.objects.filter(campaign=campaign, status=Round.Status.OPEN).first()
        # An open round with no pair is one an import of duplicates only opened (it opens the
        # round before it reads a row): it is filled here rather than left open and empty,
        # which would keep this loop's round from opening and, holding no pair, never look
        # complete to ``rounds_check_completion``. The lock above keeps imports out meanwhile.
        if current is not None and Pair.objects.filter(round=current).exists():
            return None
        pooled = _pooled_takeable(campaign)
        if not pooled.exists():
            return None
        chooser = prioritised_with or active_model_version(campaign=campaign)
        # Whose scores set the priorities read below (the loop-effect panel's hit rate).
        chosen_by = chooser.number if chooser is not None else None
        if current is not None:
            Round.objects.filter(pk=current.pk).update(
                chosen_by_version=chosen_by, opened_at=timezone.now()
            )
            current.refresh_from_db()
            opened = current
        else:
            last = Round.objects.filter(campaign=campaign).order_by("-number").first()
            opened = Round.objects.create(
                campaign=campaign,
                number=(last.number + 1) if last else 1,
                chosen_by_version=chosen_by,
            )
        # Set-based UPDATEs … WHERE id IN (SELECT … ORDER BY random() | priority LIMIT n): the
        # chosen ids never travel through Python, whatever the round size.
        random_size = random_slice_size(size=size, share=campaign.random_slice_share)
        drawn = 0
        if random_size:
            drawn = pairs_queue(
                pair_ids=pooled.order_by("?").values("pk")[:random_size],
                round_=opened,
                selection=Pair.Selection.RANDOM,
            )
        by_priority = pooled.order_by("-priority", "id").values("pk")[: size - drawn]
        pairs_queue(pair_ids=by_priority, round_=opened, selection=Pair.Selection.PRIORITY)
    return opened


def _pooled_takeable(campaign: Campaign) -> QuerySet[Pair]:
    """The pool a round takes from: pooled, not gold, and, in a members-only campaign, not a
    pair every active annotator member already had (nobody judges a pair twice): a pair they
    all skipped or let lapse went back to the pool when its round closed, and queued again,
    first by priority and id, it would fill rounds that never settle a pair and so never
    complete. It stays pooled, for a member who joins later. The test is per pair, and only
    pairs someone had (an indexed probe) look at the members."""
    pooled = Pair.objects.filter(campaign=campaign, status=Pair.Status.POOLED, is_gold=False)
    if campaign.open_to_all:
        return pooled
    had_any = Assignment.objects.filter(pair_id=OuterRef("pk"))
    return pooled.exclude(Exists(had_any) & ~Exists(_takers(campaign)))


def random_slice_size(*, size: int, share: float) -> int:
    """Pairs of a round of ``size`` drawn at random: the share of it, rounded half up.

    In decimal, from the share as written (``repr``): in binary floating point 50 × 0.29 is
    14.499999999999998, which would round down to 14."""
    if share <= 0 or size < 1:
        return 0
    exact = Decimal(repr(share)) * size
    return min(size, int(exact.quantize(Decimal(1), rounding=ROUND_HALF_UP)))


def round_close_and_advance(*, campaign: Campaign, context: JobContext) -> dict[str, Any]:
    """The whole loop (see the module docstring); ``context.job`` is the loop job.

    The scoring step runs in shards on any gpu workers: this function returns through
    ``JobHandedOff`` once it has planned them, and the job's task runs it again in stage
    ``finishing`` once the last shard is done, which prioritises and opens the round.
    """
    job = context.job
    params = job.params
    include_gold = bool(params.get("retrieve_from_gold", True))
    if job.stage == Job.Stage.MAIN:
        _loop_train_and_hand_off(campaign=campaign, context=context, include_gold=include_gold)
    result = {
        name: value
        for name, value in (job.result or {}).items()
        if name not in _INTERNAL_RESULT_KEYS
    }
    version = None
    if "score_version_id" in (job.result or {}):
        version = scored_version(job)
        result["scoring"] = pool_score_summary(job=job, version=version, include_gold=include_gold)
        context.log(scoring_log_line(result["scoring"]))
        with context.stage(0.9, 0.97, "prioritising"):
            result["prioritisation"] = pool_prioritise(
                version=version, context=context, include_gold=include_gold
            )
    with context.stage(0.97, 1.0, "opening the next round"):
        opened = _loop_round_open(
            campaign=campaign, context=context, size=params.get("round_size"), scored=version
        )
    if opened is not None:
        queued = Pair.objects.filter(round=opened).count()
        result["opened_round"] = opened.number
        result["queued"] = queued
        context.log(f"opened round {opened.number} with {queued} pairs")
    else:
        context.log("no round opened: the pool is empty or a round is already open")
    return result


_INTERNAL_RESULT_KEYS = frozenset(
    {
        "score_version_id",
        "include_gold",
        "shard_progress",
        "queue",
        "inline",
        "closed_round_id",
        "opened_round_id",
    }
)


def _loop_round_open(
    *,
    campaign: Campaign,
    context: JobContext,
    size: int | None,
    scored: ModelVersion | None = None,
) -> Round | None:
    """Open the next round for the loop job, once (``_loop_round_step_once``); the round this
    job opened, or None. An attempt run again after its worker was lost before the job finished
    reports the round an earlier attempt opened, rather than finding a round open and reporting
    none. ``scored``: the version the job scored and prioritised the pool with, if it did; the
    round records it as the one that chose it, even after a rollback since."""
    return _loop_round_step_once(
        context=context,
        key="opened_round_id",
        done="opened",
        step=lambda: round_open_next(campaign=campaign, size=size, prioritised_with=scored),
    )


def _loop_round_close(*, campaign: Campaign, context: JobContext) -> Round | None:
    """Close the open round for the loop job, once (``_loop_round_step_once``); the round this
    job closed, or None. An attempt restarted after its worker was lost, or released after a
    transient error, finds the round an earlier attempt closed and trains for it, rather than
    finding no round open and registering a version of no round (a round opened since, by an
    import, is not this job's to close)."""
    closed: list[ClosedRound] = []

    def close() -> Round | None:
        result = round_close(campaign=campaign)
        if result is None:
            return None
        closed.append(result)
        return result.round

    round_ = _loop_round_step_once(
        context=context, key="closed_round_id", done="closed", step=close
    )
    if closed:
        context.log(
            f"closed round {closed[0].round.number}; {closed[0].returned_to_pool} untouched "
            "pairs went back to the pool"
        )
    return round_


def _loop_round_step_once(
    *, context: JobContext, key: str, done: str, step: Callable[[], Round | None]
) -> Round | None:
    """Run ``step`` (a round's close or open) for the loop job, once: the step and the job's
    record of its round (``key`` in the job's result) commit together, fenced by the attempt
    (the job's row is locked before the step: a worker that lost the job changes no round).
    An attempt run again returns the round the record names instead of running the step."""
    job = context.job
    recorded = (job.result or {}).get(key)
    if recorded is not None:
        earlier = Round.objects.filter(pk=recorded).first()
        if earlier is not None:
            context.log(f"round {earlier.number} was {done} by an earlier attempt")
        return earlier
    with transaction.atomic():
        # The rounds lock first (the step takes it too): waiting on an import that holds it,
        # minutes for a large file, must not hold the job's row meanwhile, which would block
        # the job's heartbeat until the sweep took the job for lost.
        campaign_rounds_lock(job.campaign_id)
        owned = job_owned(job).select_for_update()
        row = owned.only("result").first()
        if row is None:
            raise JobLost(f"job {job.pk} is no longer owned by this worker")
        round_ = step()
        if round_ is None:
            return None
        # Added to the row's result as stored (what this attempt holds in memory may not be).
        owned.update(result={**(row.result or {}), key: round_.pk})
    job.result = {**(job.result or {}), key: round_.pk}
    return round_


def _loop_train_and_hand_off(
    *, campaign: Campaign, context: JobContext, include_gold: bool
) -> None:
    """Close the round, train, and give the scoring to shards (raises ``JobHandedOff``)."""
    params = context.job.params
    # Fail on bad parameters, and on settings this host cannot train, before the round closes.
    training_preflight(params)
    shard_size_of(params)
    with context.stage(0.0, 0.02, "closing the round"):
        closed = _loop_round_close(campaign=campaign, context=context)
    result: dict[str, Any] = {}
    closed_note = ""
    if closed is not None:
        result = {"closed_round": closed.number, "closed_round_id": closed.pk}
        closed_note = (
            f"; round {closed.number} was closed, and no round opens until the next retrain"
        )
        context.cancel_leaves += closed_note
    trained = None
    with context.stage(0.02, 0.5, "training"):
        gold_share = float(params.get("train_on_gold_share") or 0.0)
        if training_pairs_exist(campaign=campaign, train_on_gold_share=gold_share):
            try:
                trained = model_train(job=context.job, context=context, round_=closed)
            finally:
                # Once it registered a version model_train says so in place of the round's note
                # (a cancel may stop it after that, at the activation gate).
                if not context.cancel_leaves.endswith(closed_note):
                    context.cancel_leaves += closed_note
            result["trained"] = version_result(trained.version)
        else:
            context.log("no verified pairs yet: nothing to train on")
    # A version the activation gate kept inactive does not steer the next round.
    version = active_model_version(campaign=campaign)
    context.job.result = result
    if version is not None and params.get("prioritise", True):
        if trained is not None and trained.version.pk == version.pk:
            remember_model(version, trained.model)  # shards run here reuse it
        context.log(f"scoring the pool with v{version.number}")
        pool_score_hand_off(
            version=version,
            context=context,
            include_gold=include_gold,
            progress_range=(0.5, 0.9),
        )
    elif version is None:
        context.log("no model yet: the next round takes pairs in priority, then import, order")


def rounds_check_completion() -> list[int]:
    """Start a loop job for each auto-retrain campaign whose open round is done."""
    started = []
    busy = Job.objects.filter(kind__in=EXCLUSIVE_KINDS, status__in=ACTIVE_STATUSES).values(
        "campaign_id"
    )
    for current in (
        Round.objects.filter(status=Round.Status.OPEN, campaign__auto_retrain=True)
        .exclude(campaign_id__in=busy)
        .select_related("campaign")
    ):
        if not _round_done_and_loop_idle(current):
            continue
        campaign = current.campaign
        try:
            # The campaign's own settings (its base model, mode, ...), as the form shows them;
            # the worker checks the base model before it closes the round.
            params = job_params_for_campaign(campaign=campaign, check_base_model=False)
        except JobError as error:
            logger.warning("campaign %s: no automatic retrain: %s", campaign.pk, error)
            continue
        with transaction.atomic():
            # Read again under the campaign's row lock, which a model job's creation takes (and
            # every loop job is created, so is running or has ended, before it closes a round):
            # what was read above may be stale. A check that read round N done, then a loop
            # job that closed N, failed, or opened N + 1 in the meantime (a second beat, or
            # "Retrain now"), would otherwise start a loop that closes N + 1 just opened, or
            # retry the failed one.
            Campaign.objects.select_for_update(no_key=True).filter(pk=campaign.pk).first()
            if not _round_done_and_loop_idle(current):
                continue
            job = loop_request(campaign=campaign, user=None, params=params, reason="round complete")
        started.append(job.pk)
    return started


def _round_done_and_loop_idle(current: Round) -> bool:
    """``current`` is still open, holds pairs, at least one of them settled and none of the
    others can still progress (``_pairs_waiting``), and its campaign has no model job queued
    or running, nor a last retrain that failed or was cancelled."""
    if not Round.objects.filter(pk=current.pk, status=Round.Status.OPEN).exists():
        return False
    pairs = Pair.objects.filter(round=current)
    unsettled_statuses = (Pair.Status.QUEUED, Pair.Status.IN_ANNOTATION)
    unsettled = pairs.filter(status__in=unsettled_statuses)
    # A round none of whose pairs settled is not done, even with nobody to take them (no
    # active member yet): closing it would train on nothing new and queue the same pairs
    # again, a loop a minute. A filter on the status, not NOT IN (the unsettled ids): an
    # import queues all its pairs into the open round, and a NOT IN over more ids than fit
    # in work_mem compares each row with all of them.
    if not pairs.exclude(status__in=unsettled_statuses).exists():
        return False
    if _pairs_waiting(unsettled, campaign=current.campaign).exists():
        return False
    jobs = Job.objects.filter(campaign_id=current.campaign_id)
    if jobs.filter(kind__in=EXCLUSIVE_KINDS, status__in=ACTIVE_STATUSES).exists():
        return False
    latest = (
        jobs.filter(kind__in=(Job.Kind.TRAIN, Job.Kind.LOOP)).order_by("-id").only("status").first()
    )
    # Not restarted every minute after a failure, nor a minute after an admin's cancel: the
    # job is on the dashboard, and "Retrain now" resumes the loop.
    return latest is None or latest.status not in (Job.Status.FAILED, Job.Status.CANCELLED)


def _pairs_waiting(unsettled: QuerySet[Pair], *, campaign: Campaign) -> QuerySet[Pair]:
    """Of a round's unsettled pairs, those that can still progress: a lease is out on it, or
    a slot is free and someone could take it. In a members-only campaign that is an active
    annotator member who never had the pair (``annotation.selectors.retest_taker_exists``'s
    rule); a pair every member skipped, or whose members were removed, waits for nobody, and
    would keep the round from ever looking complete. A campaign open to all may always get
    someone new: its unsettled pairs all wait. One query; ``exists()`` stops at the first."""
    if campaign.open_to_all:
        return unsettled
    leased = Assignment.objects.filter(pair_id=OuterRef("pk"), status=Assignment.Status.ACTIVE)
    return unsettled.filter(
        Exists(leased) | (Q(slots_taken__lt=F("slot_cap")) & Exists(_takers(campaign)))
    )


def _takers(campaign: Campaign) -> QuerySet[CampaignMember]:
    """The members-only campaign's active annotator members who never had the pair of the
    enclosing query (``OuterRef("pk")`` inside an ``Exists``): who could still take it."""
    had_it = Assignment.objects.filter(
        pair_id=OuterRef(OuterRef("pk")), annotator_id=OuterRef("user_id")
    )
    return campaign_active_annotators(campaign_id=campaign.pk).exclude(Exists(had_it))
