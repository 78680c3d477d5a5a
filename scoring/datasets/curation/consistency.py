"""The consistency filter: the rules (``CurationRules``), the verdict of each pair from the gold
and best models (and a judge), and the models that give them."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from django.db.models import F, Q, QuerySet

from annotation.models import Campaign
from core.errors import BadRequest
from scoring.datasets.curation.near_duplicates import near_duplicate_threshold_problem
from scoring.datasets.scorers import PoolItem, Scorer
from scoring.jobs.params import JobParams
from scoring.jobs.runner import JobError
from scoring.jobs.shards import shard_size_of
from scoring.loop.judged_pairs import DEFAULT_GOLD_SOURCES, GOLD_SOURCES
from scoring.loop.params import MODES
from scoring.models import EvaluationResult, EvaluationSet, ModelVersion, PairScore
from scoring.selectors import active_model_version

if TYPE_CHECKING:  # torch is imported only where a model is loaded
    from scoring.reward_model import Scorer as ModelScorer

KEPT, DISCARDED, RECYCLED = "kept", "discarded", "recycled"
DUPLICATE, CONTAMINATED = "duplicate", "contaminated"
DEFAULT_BATCH_SIZE = 256


class CurationError(BadRequest, ValueError):
    """Curation cannot run: no model version, bad thresholds, unreadable evaluation set."""

    code = "curation_error"


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


@dataclass(frozen=True)
class CurationParams(JobParams):
    """A curate job's parameters (the API, the dashboard form and curate_pool build it)."""

    error = CurationError

    # The gold model: this version; else (train_gold) one trained for this curation on the
    # human-verified pairs of gold_sources; else the newest gold model, else the active one.
    gold_version: int | None = None
    train_gold: bool = True
    gold_sources: tuple[str, ...] = DEFAULT_GOLD_SOURCES
    gold_mode: str = "head"
    # The best model: this version; else the best loop version on the evaluation sets (mean
    # accuracy), else on held-out gold accuracy.
    best_version: int | None = None
    keep_threshold: float = 0.5
    recycle: bool = False
    recycle_threshold: float = 0.9
    judge_threshold: float = 0.5
    evaluation_sets: tuple[str, ...] | None = None  # default: all of the campaign's
    recurate: bool = False
    # The models score the silver pool first, in shards that every gpu worker takes (#13).
    shard_scoring: bool = True
    shard_size: int | None = None  # None: settings.ARBITER["SHARD_SIZE"] (20,000)
    # Use the configured LLM judge (ARBITER_LLM_URL) when there is one.
    llm_judge: bool = True
    # Drop near-duplicates too (MinHash, scoring.datasets.curation.near_duplicates); None: only
    # exact repeats. Off by default: MinHash runs at a few hundred pairs a second.
    near_duplicate_threshold: float | None = None

    def __post_init__(self) -> None:
        for name in ("gold_version", "best_version"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise CurationError(f"{name} must be a version number (1 or more), got {value}")
        object.__setattr__(self, "gold_sources", tuple(dict.fromkeys(self.gold_sources)))
        unknown = sorted(set(self.gold_sources) - set(GOLD_SOURCES))
        if unknown:
            raise CurationError(f"unknown gold_sources {', '.join(unknown)}")
        if self.train_gold and self.gold_version is None and not self.gold_sources:
            raise CurationError("gold_sources must name at least one kind of verified pair")
        problem = near_duplicate_threshold_problem(self.near_duplicate_threshold)
        if problem:
            raise CurationError(problem)
        if self.shard_size is not None:
            # The shards' own rule, checked now: else the job fails only in the worker.
            try:
                shard_size_of({"shard_size": self.shard_size})
            except JobError as error:
                raise CurationError(str(error)) from None
        if self.gold_mode not in MODES:
            raise CurationError(f"gold_mode must be one of {', '.join(MODES)}")
        self.rules()  # checks the thresholds

    def rules(self) -> CurationRules:
        return CurationRules(
            keep_threshold=self.keep_threshold,
            recycle=self.recycle,
            recycle_threshold=self.recycle_threshold,
            judge_threshold=self.judge_threshold,
        )


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


# --- Models -------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelChoice:
    """A model version chosen for curation, and in words why (the job's result says it)."""

    version: ModelVersion
    chosen_by: str
    # Mean accuracy over the evaluation sets when they chose it.
    evaluation_accuracy: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "version": self.version.number,
            "kind": self.version.kind,
            "chosen_by": self.chosen_by,
            "evaluation_accuracy": self.evaluation_accuracy,
            "heldout_accuracy": self.version.heldout_accuracy,
        }


def _ready(campaign: Campaign) -> QuerySet[ModelVersion]:
    return ModelVersion.objects.filter(campaign=campaign, status=ModelVersion.Status.READY)


def _numbered(campaign: Campaign, number: int) -> ModelVersion:
    version = _ready(campaign).filter(number=number).first()
    if version is None:
        raise CurationError(f"no ready model version {number} in this campaign")
    return version


def best_model_choice(*, campaign: Campaign, number: int | None = None) -> ModelChoice:
    """The best loop version: the highest mean accuracy over the campaign's evaluation sets
    (its own and the shared ones; only versions evaluated on every set, on its current
    content, compete), else, saying so, the highest held-out gold accuracy (newest on ties)."""
    if number is not None:
        return ModelChoice(_numbered(campaign, number), f"version {number} was asked for")
    versions = _ready(campaign).filter(kind=ModelVersion.Kind.LOOP)
    sets = dict(
        EvaluationSet.objects.filter(
            Q(campaign=campaign) | Q(campaign__isnull=True)
        ).values_list("pk", "sha256")
    )
    reason = "held-out gold accuracy: the campaign has no evaluation set"
    if sets:
        accuracies: dict[int, list[float]] = {}
        for version_id, set_id, sha256, accuracy in EvaluationResult.objects.filter(
            model_version__in=versions, evaluation_set_id__in=sets
        ).values_list("model_version_id", "evaluation_set_id", "set_sha256", "accuracy"):
            if sets[set_id] == sha256:
                accuracies.setdefault(version_id, []).append(accuracy)
        complete = {
            version_id: sum(values) / len(values)
            for version_id, values in accuracies.items()
            if len(values) == len(sets)
        }
        if complete:
            by_id = {version.pk: version for version in versions.filter(pk__in=complete)}
            best_id = max(complete, key=lambda pk: (complete[pk], by_id[pk].number))
            return ModelChoice(
                by_id[best_id],
                f"mean accuracy over the campaign's {len(sets)} evaluation sets",
                complete[best_id],
            )
        reason = (
            "held-out gold accuracy: no version is evaluated on every evaluation set yet"
        )
    ranked = versions.order_by(F("heldout_accuracy").desc(nulls_last=True), "-number")
    best = ranked.first()
    if best is None:
        raise CurationError("curation needs a trained model version; train one first")
    return ModelChoice(best, reason)


def gold_model_choice(
    *, campaign: Campaign, number: int | None = None, best: ModelVersion | None = None
) -> ModelChoice:
    """An existing gold model: the numbered version, else the newest gold-kind version, else
    (saying it is not one) the active version, else ``best``. ``CurationParams.train_gold``
    trains a new one instead (``scoring.loop.training.gold_model_train``)."""
    if number is not None:
        return ModelChoice(_numbered(campaign, number), f"version {number} was asked for")
    gold = _ready(campaign).filter(kind=ModelVersion.Kind.GOLD).order_by("-number").first()
    if gold is not None:
        return ModelChoice(gold, "the newest gold model (trained on human-verified pairs)")
    active = active_model_version(campaign=campaign)
    if active is not None and active.status == ModelVersion.Status.READY:
        return ModelChoice(
            active, "no gold model: the active version, trained on the loop's labels"
        )
    if best is None:
        raise CurationError("curation needs a trained model version; train one first")
    return ModelChoice(best, "no gold model and no active version: the best version")


def curation_models(
    *, campaign: Campaign, gold_number: int | None = None, best_number: int | None = None
) -> tuple[ModelVersion, ModelVersion]:
    """(gold, best) among existing versions: ``gold_model_choice`` and ``best_model_choice``."""
    best = best_model_choice(campaign=campaign, number=best_number).version
    gold = gold_model_choice(campaign=campaign, number=gold_number, best=best).version
    return gold, best


def model_version_scorer(version: ModelVersion, *, batch_size: int = 64) -> Scorer:
    """p(A better) by this version: stored PairScore rows first, the checkpoint for the rest."""
    loaded: list[ModelScorer] = []

    def score(items: Sequence[PoolItem]) -> np.ndarray:
        stored = dict(
            PairScore.objects.filter(
                model_version=version, pair_id__in=[item.pair_id for item in items]
            ).values_list("pair_id", "p_a_better")
        )
        missing = [item for item in items if item.pair_id not in stored]
        if missing:
            if not loaded:
                from scoring.reward_model import load_scorer

                model = load_scorer(version.checkpoint)
                model.batch_size = batch_size
                loaded.append(model)
            p = loaded[0].prob_a_better_batch(
                [(item.conversation, item.response_a, item.response_b) for item in missing]
            )
            stored.update(zip((item.pair_id for item in missing), p.tolist(), strict=True))
        return np.array([stored[item.pair_id] for item in items], dtype=np.float64)

    return score
