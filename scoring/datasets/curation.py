"""Stage 2 automatic curation of the unverified ("silver") pool, as in Skywork-Reward-V2.

The pool: pairs of a campaign that carry a source chosen/rejected label
(``Pair.silver_preference`` non-zero), no human label, no consensus and are not gold.

1. Decontamination: a pair whose conversation shares a word 13-gram (lowercase, punctuation
   dropped, n-grams never crossing a turn) with a prompt of the campaign's evaluation sets
   (``EvaluationPrompt``) is dropped (``curation="contaminated"``). Evaluation prompts shorter
   than 13 words have no 13-gram; they contaminate a pair when one of its turns is the same
   word sequence.
2. Deduplication on (conversation, chosen, rejected): ``content_hash`` already makes pairs
   unique within a campaign in one orientation; here the key ignores the A/B order, and a
   silver pair is dropped (``curation="duplicate"``) when an earlier silver pair or a
   human-verified pair (labelled, gold or with a consensus) of the campaign has the same key.
   The human label wins.
3. Consistency filter: the gold model (trained only on human-verified labels) and the current
   best model each give p(A better). ``agree = p`` when the source label prefers A, else
   ``1 - p``. A pair is ``kept`` when both agree above ``keep_threshold`` (0.5 by default), or
   when a judge is configured and agrees above ``judge_threshold``. The rest are
   ``discarded``; with ``recycle`` on, a discarded pair both models confidently reverse
   (``1 - agree >= recycle_threshold`` for each, 0.9 by default) is ``recycled``: exports flip
   its chosen and rejected and mark it (``source_label_flipped``). The source label itself is
   never changed.

Scorers are plain callables (items → p(A better) per item), so the rules can be tested with
known answers; ``model_version_scorer`` builds one from a registered model version, reusing
the version's stored ``PairScore`` rows and scoring only the rest. When an OpenAI-compatible
model is configured (ARBITER_LLM_URL, ARBITER_LLM_MODEL), curation jobs use it as the judge
(`scoring.datasets.llm_judge`; job parameter ``llm_judge: false`` turns it off).
"""

from __future__ import annotations

import gzip
import hashlib
import json
import re
from array import array
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.db.models import F, Q, QuerySet

from annotation.importers import canonical_json
from annotation.models import Campaign, Pair
from scoring.datasets.llm_judge import llm_judge_configured, llm_judge_scorer
from scoring.datasets.scorers import PoolItem, Scorer
from scoring.jobs.runner import (
    JobCancelled,
    JobClaim,
    JobContext,
    JobError,
    JobWork,
    job_create,
    job_enqueue,
    job_run,
    worker_name,
)
from scoring.models import EvaluationItem, EvaluationPrompt, Job, ModelVersion, PairScore

NGRAM = 13
KEPT, DISCARDED, RECYCLED = "kept", "discarded", "recycled"
DUPLICATE, CONTAMINATED = "duplicate", "contaminated"
DEFAULT_BATCH_SIZE = 256
MAX_EVALUATION_SET_BYTES = 200 * 1024**2
_WORD = re.compile(r"[^\W_]+")


class CurationError(ValueError):
    """Curation cannot run: no model version, bad thresholds, unreadable evaluation set."""


ProgressCallback = Callable[[float, str], None]


@dataclass(frozen=True)
class CurationRules:
    keep_threshold: float = 0.5
    recycle: bool = False
    recycle_threshold: float = 0.9
    judge_threshold: float = 0.5

    def __post_init__(self) -> None:
        for name in ("keep_threshold", "recycle_threshold", "judge_threshold"):
            value = getattr(self, name)
            if not 0.0 <= value < 1.0:
                raise CurationError(f"{name} must lie in [0, 1), got {value}")
        if self.recycle and self.recycle_threshold <= 1.0 - self.keep_threshold:
            # Otherwise a pair could be both "kept" and "confidently reversed".
            raise CurationError("recycle_threshold must exceed 1 - keep_threshold")

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> CurationRules:
        known = {name: params[name] for name in cls.__dataclass_fields__ if name in params}
        try:
            values = {
                name: (bool(value) if name == "recycle" else float(value))
                for name, value in known.items()
            }
        except (TypeError, ValueError) as error:
            raise CurationError(f"bad threshold: {error}") from error
        return cls(**values)


def _agreement(silver: np.ndarray, p_a_better: np.ndarray) -> np.ndarray:
    p = np.asarray(p_a_better, dtype=np.float64)
    if p.shape != silver.shape or not np.all(np.isfinite(p)) or np.any((p < 0) | (p > 1)):
        raise CurationError("a scorer must return one probability in [0, 1] per pair")
    return np.where(silver > 0, p, 1.0 - p)


def curation_verdicts(
    *,
    silver_preferences: Sequence[int] | np.ndarray,
    p_gold: Sequence[float] | np.ndarray,
    p_best: Sequence[float] | np.ndarray,
    rules: CurationRules | None = None,
    p_judge: Sequence[float] | np.ndarray | None = None,
) -> list[str]:
    """kept / discarded / recycled for each pair, from each model's p(A better)."""
    rules = rules or CurationRules()
    silver = np.sign(np.asarray(silver_preferences, dtype=np.int64))
    if np.any(silver == 0):
        raise CurationError("a tie carries no chosen/rejected label to check")
    agree_gold = _agreement(silver, np.asarray(p_gold))
    agree_best = _agreement(silver, np.asarray(p_best))
    kept = (agree_gold > rules.keep_threshold) & (agree_best > rules.keep_threshold)
    if p_judge is not None:
        kept |= _agreement(silver, np.asarray(p_judge)) > rules.judge_threshold
    recycled = np.zeros_like(kept)
    if rules.recycle:
        reversed_by_both = (1.0 - agree_gold >= rules.recycle_threshold) & (
            1.0 - agree_best >= rules.recycle_threshold
        )
        recycled = ~kept & reversed_by_both
    verdicts = np.where(kept, KEPT, np.where(recycled, RECYCLED, DISCARDED))
    return [str(verdict) for verdict in verdicts]


# --- Decontamination ----------------------------------------------------------------------


def normalised_words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def word_ngrams(words: Sequence[str], n: int = NGRAM) -> Iterator[tuple[str, ...]]:
    for start in range(len(words) - n + 1):
        yield tuple(words[start : start + n])


@dataclass
class EvaluationIndex:
    """13-grams of evaluation prompts, and the whole word sequence of shorter ones."""

    ngrams: set[int] = field(default_factory=set)
    short_prompts: set[tuple[str, ...]] = field(default_factory=set)
    prompts: int = 0

    def add(self, text: str) -> None:
        words = normalised_words(text)
        if not words:
            return
        self.prompts += 1
        if len(words) < NGRAM:
            self.short_prompts.add(tuple(words))
            return
        self.ngrams.update(hash(gram) for gram in word_ngrams(words))

    def contaminates(self, turns: Iterable[str]) -> bool:
        if not self.ngrams and not self.short_prompts:
            return False
        for text in turns:
            words = normalised_words(text)
            if tuple(words) in self.short_prompts:
                return True
            if any(hash(gram) in self.ngrams for gram in word_ngrams(words)):
                return True
        return False


def evaluation_index(
    *, campaign: Campaign, set_names: Sequence[str] | None = None
) -> EvaluationIndex:
    index = EvaluationIndex()
    prompts = EvaluationPrompt.objects.filter(campaign=campaign)
    if set_names:
        prompts = prompts.filter(set_name__in=set_names)
    for text in prompts.values_list("text", flat=True).iterator(chunk_size=2000):
        index.add(text)
    # Uploaded evaluation sets (scoring.evaluation): the campaign's and the shared ones, so one
    # upload serves both evaluation and decontamination.
    items = EvaluationItem.objects.filter(
        Q(evaluation_set__campaign=campaign) | Q(evaluation_set__campaign__isnull=True)
    )
    if set_names:
        items = items.filter(evaluation_set__name__in=set_names)
    for text in items.values_list("prompt", flat=True).iterator(chunk_size=2000):
        index.add(text)
    return index


def _prompt_from_record(record: Any) -> str | None:
    if isinstance(record, str):
        return record
    if not isinstance(record, Mapping):
        return None
    for key in ("prompt", "text", "question", "instruction", "input"):
        value = record.get(key)
        if isinstance(value, str) and value.strip():
            return value
    for key in ("conversation", "messages", "chosen"):
        turns = record.get(key)
        if isinstance(turns, list):
            users = [
                str(turn.get("content", ""))
                for turn in turns
                if isinstance(turn, Mapping) and turn.get("role") == "user"
            ]
            if users:
                return "\n".join(users)
    return None


def evaluation_prompts_from_file(path: str | Path) -> list[str]:
    path = Path(path)
    try:
        with path.open("rb") as handle:
            return evaluation_prompts_read(handle, filename=path.name)
    except OSError as error:
        raise CurationError(f"cannot read evaluation set {path.name}: {error}") from error


def evaluation_prompts_read(handle: BinaryIO, *, filename: str) -> list[str]:
    """Prompts from JSONL / JSON / Parquet (a prompt, text or question field, or the user turns
    of a message list) or plain text (one prompt a line), told by the file name; ``.gz`` is
    decompressed. Evaluation sets are small (RewardBench: ~3,000 prompts), so it reads whole."""
    name = filename.lower()
    try:
        raw = handle.read(MAX_EVALUATION_SET_BYTES + 1)
        if len(raw) > MAX_EVALUATION_SET_BYTES:
            raise CurationError(f"{filename} is larger than {MAX_EVALUATION_SET_BYTES} bytes")
        if name.endswith(".gz"):
            raw = gzip.decompress(raw)
            name = name.removesuffix(".gz")
        if name.endswith(".parquet"):
            import pyarrow as pa
            import pyarrow.parquet as pq

            records: Iterable[Any] = pq.read_table(pa.BufferReader(raw)).to_pylist()
        else:
            content = raw.decode("utf-8")
            if name.endswith(".jsonl"):
                records = [json.loads(line) for line in content.splitlines() if line.strip()]
            elif name.endswith(".json"):
                data = json.loads(content)
                if isinstance(data, dict):
                    data = data.get("data", data.get("prompts", []))
                records = data if isinstance(data, list) else []
            else:
                records = [line for line in content.splitlines() if line.strip()]
    except CurationError:
        raise
    except (OSError, ValueError, EOFError, pa_errors()) as error:
        raise CurationError(f"cannot read evaluation set {filename}: {error}") from error
    prompts = [prompt for prompt in map(_prompt_from_record, records) if prompt]
    if not prompts:
        raise CurationError(f"no prompts found in {filename}")
    return prompts


def pa_errors() -> type[Exception]:
    import pyarrow as pa

    return pa.ArrowException


def evaluation_set_upload(*, campaign: Campaign, set_name: str, prompts: Iterable[str]) -> int:
    """Replace the campaign's evaluation set of that name; returns how many prompts it holds."""
    set_name = set_name.strip()
    if not set_name:
        raise CurationError("an evaluation set needs a name")
    rows = [
        EvaluationPrompt(campaign=campaign, set_name=set_name, text=text)
        for text in prompts
        if text and text.strip()
    ]
    with transaction.atomic():
        EvaluationPrompt.objects.filter(campaign=campaign, set_name=set_name).delete()
        EvaluationPrompt.objects.bulk_create(rows, batch_size=2000)
    return len(rows)


# --- The pool -----------------------------------------------------------------------------


def curation_pool(*, campaign: Campaign, recurate: bool = False) -> QuerySet[Pair]:
    """Unverified pairs with a source label; already curated ones only with ``recurate``."""
    pool = Pair.objects.filter(
        campaign=campaign,
        is_gold=False,
        provenance="",
        labels_count=0,
        silver_preference__isnull=False,
    ).exclude(silver_preference=0)
    return pool if recurate else pool.filter(curation="")


def _reference_pairs(campaign: Campaign, *, recurate: bool) -> QuerySet[Pair]:
    """Pairs a pooled pair must not duplicate: human-verified ones (labelled, gold or with a
    consensus) and, unless everything is curated again, silver pairs curated before."""
    reference = Q(is_gold=True) | Q(labels_count__gt=0) | ~Q(provenance="")
    if not recurate:
        reference |= Q(curation__in=[KEPT, DISCARDED, RECYCLED])
    return Pair.objects.filter(campaign=campaign).filter(reference)


def dedupe_key(conversation: Sequence[Mapping[str, str]], response_a: str, response_b: str) -> int:
    """64 bits of a digest of the conversation and the two responses in either order."""
    first, second = sorted((response_a, response_b))
    digest = hashlib.blake2b(canonical_json(conversation, first, second), digest_size=8)
    return int.from_bytes(digest.digest(), "big")


def _turn_texts(conversation: Any) -> list[str]:
    return [
        str(turn.get("content", "")) for turn in conversation or [] if isinstance(turn, Mapping)
    ]


@dataclass
class CurationResult:
    pool: int = 0
    contaminated: int = 0
    duplicates: int = 0
    scored: int = 0
    kept: int = 0
    discarded: int = 0
    recycled: int = 0
    kept_by_judge: int = 0
    evaluation_prompts: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


def _mark(ids: Sequence[int], curation: str) -> None:
    if ids:
        Pair.objects.filter(pk__in=ids).update(curation=curation)


def _screen(
    *,
    campaign: Campaign,
    pool: QuerySet[Pair],
    index: EvaluationIndex,
    result: CurationResult,
    recurate: bool,
) -> array:
    """Pass 1: drop contaminated and duplicate pairs; return the ids left to score."""
    seen: set[int] = set()
    for conversation, response_a, response_b in (
        _reference_pairs(campaign, recurate=recurate)
        .values_list("conversation", "response_a", "response_b")
        .iterator(chunk_size=2000)
    ):
        seen.add(dedupe_key(conversation, response_a, response_b))
    survivors, contaminated, duplicates = array("q"), array("q"), array("q")
    rows = pool.order_by("pk").values_list("pk", "conversation", "response_a", "response_b")
    for pair_id, conversation, response_a, response_b in rows.iterator(chunk_size=2000):
        result.pool += 1
        if index.contaminates(_turn_texts(conversation)):
            contaminated.append(pair_id)
            continue
        key = dedupe_key(conversation, response_a, response_b)
        if key in seen:
            duplicates.append(pair_id)
        else:
            seen.add(key)
            survivors.append(pair_id)
    # Marked once the scan is over: SQLite gives no isolation between a query being read and
    # writes to the same table on the connection.
    for ids, verdict in ((contaminated, CONTAMINATED), (duplicates, DUPLICATE)):
        for start in range(0, len(ids), 2000):
            _mark(ids[start : start + 2000].tolist(), verdict)
    result.contaminated, result.duplicates = len(contaminated), len(duplicates)
    return survivors


def pool_curate(
    *,
    campaign: Campaign,
    gold: Scorer,
    best: Scorer,
    rules: CurationRules | None = None,
    judge: Scorer | None = None,
    evaluation_sets: Sequence[str] | None = None,
    recurate: bool = False,
    batch_size: int = DEFAULT_BATCH_SIZE,
    on_progress: ProgressCallback | None = None,
) -> CurationResult:
    """Decontaminate, deduplicate, then keep/discard/recycle the campaign's silver pool.

    Verdicts are written a batch at a time, so an interrupted run resumes where it stopped
    (the pool is the pairs not curated yet).
    """
    rules = rules or CurationRules()
    report = on_progress or (lambda _fraction, _message: None)
    result = CurationResult()
    index = evaluation_index(campaign=campaign, set_names=evaluation_sets)
    result.evaluation_prompts = index.prompts
    pool = curation_pool(campaign=campaign, recurate=recurate)
    survivors = _screen(campaign=campaign, pool=pool, index=index, result=result, recurate=recurate)
    report(
        0.1,
        f"{result.pool} pooled; {result.contaminated} contaminated, "
        f"{result.duplicates} duplicates dropped",
    )
    for start in range(0, len(survivors), batch_size):
        ids = survivors[start : start + batch_size].tolist()
        rows = (
            Pair.objects.filter(pk__in=ids)
            .order_by("pk")
            .values_list("pk", "conversation", "response_a", "response_b", "silver_preference")
        )
        items = [PoolItem(pk, list(conv or []), a, b, silver) for pk, conv, a, b, silver in rows]
        if not items:
            continue
        silver = np.array([item.silver_preference for item in items])
        p_gold = gold(items)
        p_best = p_gold if best is gold else best(items)
        by_models = curation_verdicts(
            silver_preferences=silver, p_gold=p_gold, p_best=p_best, rules=rules
        )
        verdicts = by_models
        undecided = [index for index, verdict in enumerate(by_models) if verdict != KEPT]
        if judge is not None and undecided:
            # The judge can only keep what the models did not: ask it about those pairs alone
            # (each question is two calls to the model); the kept ones stay kept whatever it
            # would say, so they get an even 0.5.
            p_judge = np.full(len(items), 0.5)
            p_judge[undecided] = judge([items[index] for index in undecided])
            verdicts = curation_verdicts(
                silver_preferences=silver,
                p_gold=p_gold,
                p_best=p_best,
                rules=rules,
                p_judge=p_judge,
            )
            result.kept_by_judge += sum(
                1
                for mine, theirs in zip(verdicts, by_models, strict=True)
                if mine == KEPT and theirs != KEPT
            )
        for verdict in (KEPT, DISCARDED, RECYCLED):
            chosen = [item.pair_id for item, v in zip(items, verdicts, strict=True) if v == verdict]
            _mark(chosen, verdict)
            setattr(result, verdict, getattr(result, verdict) + len(chosen))
        result.scored += len(items)
        report(
            0.1 + 0.9 * result.scored / len(survivors),
            f"scored {result.scored} of {len(survivors)}: {result.kept} kept, "
            f"{result.discarded} discarded, {result.recycled} recycled",
        )
    return result


# --- Models -------------------------------------------------------------------------------


def curation_models(
    *, campaign: Campaign, gold_number: int | None = None, best_number: int | None = None
) -> tuple[ModelVersion, ModelVersion]:
    """(gold, best). Gold: the numbered version, else the active one, else the best on held-out
    gold. Best: the numbered version, else the highest held-out accuracy (newest on ties)."""
    versions = ModelVersion.objects.filter(campaign=campaign, status=ModelVersion.Status.READY)

    def numbered(number: int) -> ModelVersion:
        version = versions.filter(number=number).first()
        if version is None:
            raise CurationError(f"no ready model version {number} in this campaign")
        return version

    ranked = versions.order_by(F("heldout_accuracy").desc(nulls_last=True), "-number")
    best = numbered(best_number) if best_number is not None else ranked.first()
    if best is None:
        raise CurationError("curation needs a trained model version; train one first")
    if gold_number is not None:
        gold = numbered(gold_number)
    else:
        gold = versions.filter(is_active=True).first() or best
    return gold, best


def model_version_scorer(version: ModelVersion, *, batch_size: int = 64) -> Scorer:
    """p(A better) by this version: stored PairScore rows first, the checkpoint for the rest."""
    loaded: list[Any] = []

    def score(items: Sequence[PoolItem]) -> np.ndarray:
        stored = dict(
            PairScore.objects.filter(
                model_version=version, pair_id__in=[item.pair_id for item in items]
            ).values_list("pair_id", "p_a_better")
        )
        missing = [item for item in items if item.pair_id not in stored]
        if missing:
            if not loaded:
                from scoring.reward_model import RewardModel

                model = RewardModel.load(version.checkpoint, inference_only=True)
                model.batch_size = batch_size
                loaded.append(model)
            p = loaded[0].prob_a_better_batch(
                [(item.conversation, item.response_a, item.response_b) for item in missing]
            )
            stored.update(zip((item.pair_id for item in missing), p.tolist(), strict=True))
        return np.array([stored[item.pair_id] for item in items], dtype=np.float64)

    return score


# --- Jobs ---------------------------------------------------------------------------------

_PARAM_NAMES = {
    "gold_version",
    "best_version",
    "evaluation_sets",
    "recurate",
    *CurationRules.__dataclass_fields__,
}


def curation_create(
    *,
    campaign: Campaign,
    params: Mapping[str, Any] | None = None,
    user: AbstractBaseUser | None = None,
    enqueue: bool = True,
) -> Job:
    """Record a queued curation job (params validated now) and enqueue it on the gpu queue."""
    params = dict(params or {})
    unknown = sorted(set(params) - _PARAM_NAMES)
    if unknown:
        raise CurationError(f"unknown parameter {', '.join(unknown)}")
    CurationRules.from_params(params)
    curation_models(
        campaign=campaign,
        gold_number=params.get("gold_version"),
        best_number=params.get("best_version"),
    )
    author = user if user is not None and user.is_authenticated else None
    with transaction.atomic():
        job = job_create(campaign=campaign, kind=Job.Kind.CURATE, params=params, user=author)
        if enqueue:
            job_enqueue(job=job)
    return job


def _curation_work(job: Job, scorers: Mapping[str, Scorer]) -> JobWork:
    params = job.params or {}

    def work(context: JobContext) -> dict[str, Any]:
        try:
            rules = CurationRules.from_params(params)
            gold_version, best_version = curation_models(
                campaign=job.campaign,
                gold_number=params.get("gold_version"),
                best_number=params.get("best_version"),
            )
        except CurationError as error:
            raise JobError(str(error)) from error
        gold = scorers.get("gold") or model_version_scorer(gold_version)
        best = scorers.get("best") or (
            gold if best_version.pk == gold_version.pk else model_version_scorer(best_version)
        )
        context.log(f"gold model v{gold_version.number}, best model v{best_version.number}")

        def on_progress(fraction: float, message: str) -> None:
            if context.should_stop():
                raise JobCancelled  # verdicts written so far stay; a new run resumes
            context.progress(fraction, message)

        judge = scorers.get("judge")
        if judge is None and params.get("llm_judge", True):
            if llm_judge_configured():
                judge = llm_judge_scorer()
                context.log("an LLM judge is configured: it may keep pairs the models reject")

        result = pool_curate(
            campaign=job.campaign,
            gold=gold,
            best=best,
            rules=rules,
            judge=judge,
            evaluation_sets=params.get("evaluation_sets"),
            recurate=bool(params.get("recurate", False)),
            on_progress=on_progress,
        )
        context.log(
            f"{result.kept} kept, {result.discarded} discarded, {result.recycled} recycled, "
            f"{result.contaminated} contaminated, {result.duplicates} duplicates"
        )
        return {
            **result.as_dict(),
            "gold_version": gold_version.number,
            "best_version": best_version.number,
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
    (tests, notebooks); otherwise the chosen model versions score the pool."""
    return job_run(
        job_id=job_id,
        worker=worker or worker_name(),
        work_for=lambda job: _curation_work(job, dict(scorers or {})),
        reraise=reraise,
    )
