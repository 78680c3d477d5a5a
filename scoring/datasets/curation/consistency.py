"""The consistency filter: the rules (``CurationRules``), the verdict of each pair from the gold
and best models (and a judge), and the models that give them."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from django.db.models import F

from annotation.models import Campaign
from core.errors import BadRequest
from scoring.datasets.scorers import PoolItem, Scorer
from scoring.jobs.params import JobParams
from scoring.models import ModelVersion, PairScore
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

    gold_version: int | None = None  # default: the active version
    best_version: int | None = None  # default: the best held-out accuracy
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

    def __post_init__(self) -> None:
        for name in ("gold_version", "best_version"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise CurationError(f"{name} must be a version number (1 or more), got {value}")
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
        active = active_model_version(campaign=campaign)
        ready = active is not None and active.status == ModelVersion.Status.READY
        gold = active if active is not None and ready else best
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
