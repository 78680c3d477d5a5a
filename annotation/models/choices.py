"""The campaign's choices and bounds that several models (and forms, importers, exports) share."""

from __future__ import annotations

from django.db import models

# Re-exported: the rules' defaults live with their bounds, where code without Django reads them.
from annotation.escalation_rules import DEFAULT_ESCALATION_RULES as DEFAULT_ESCALATION_RULES


class Scale(models.TextChoices):
    BINARY = "binary", "Binary (A or B)"
    THREE_POINT = "three_point", "Three-point (A, tie, B)"
    FIVE_POINT = "five_point", "Five-point (A much better … B much better)"


SCALE_VALUES: dict[str, tuple[int, ...]] = {
    Scale.BINARY: (1, -1),
    Scale.THREE_POINT: (1, 0, -1),
    Scale.FIVE_POINT: (2, 1, 0, -1, -2),
}


def default_escalation_rules() -> dict[str, object]:
    return dict(DEFAULT_ESCALATION_RULES)


class Outcome(models.TextChoices):
    """What a label (or a pair's consensus) says beyond which response is better.

    ``both_bad`` and ``both_good`` carry preference 0, so the preference maths (consensus
    strength, disagreement, alpha) count them as "neither is better"; the outcome keeps them
    apart from a plain tie, and neither ever becomes a chosen/rejected pair.
    """

    PREFERENCE = "preference", "A preference (or a tie)"
    BOTH_BAD = "both_bad", "Both bad"
    BOTH_GOOD = "both_good", "Both good"


class BothBadRoute(models.TextChoices):
    """Where a pair goes when its consensus is "both bad"."""

    NONE = "none", "Nowhere: keep it apart in the export"
    EXPERT = "expert", "To an expert (escalation)"
    REWRITE = "rewrite", "To the rewrite step"


# Largest number of points an aspect's scale may have (scale_max - scale_min + 1).
ASPECT_MAX_POINTS = 10


class ConsensusRule(models.TextChoices):
    MAJORITY = "majority", "Majority of directions"
    DAWID_SKENE = "dawid_skene", "Dawid-Skene (reliability-weighted)"


class ItemKind(models.TextChoices):
    PAIR = "pair", "Pairs (A/B)"
    RANKING = "ranking", "Rankings of 2 to 9 responses"


class RankingExpansion(models.TextChoices):
    """How a consensus ranking becomes chosen/rejected pairs (training and export)."""

    ALL_PAIRS = "all_pairs", "Every pair of differently ranked responses"
    BEST_VS_EACH = "best_vs_each", "Each best response against each lower one"
    ADJACENT = "adjacent", "Each rank group against the next"


# A K-wise item holds this many responses at least and at most.
MIN_RESPONSES = 2
MAX_RESPONSES = 9
