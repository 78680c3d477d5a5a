"""Campaigns, pairs, rounds, assignments, labels and the evidence behind them.

Orientation: every stored preference is canonical (A and B as imported). What an annotator
saw is kept on the assignment (`swapped`), and the API and pages speak in the shown
orientation. Preference values: 2 = A much better, 1 = A better, 0 = tie, -1 = B better,
-2 = B much better.

One module per part of the work (``campaigns``, ``pairs``, ``labels``, ``tools``, ``imports``,
and ``choices`` for what they share); every name is re-exported here, so the app's models are
still imported from ``annotation.models`` and its migrations name the same paths.
"""

from __future__ import annotations

from annotation.models.campaigns import Campaign, CampaignMember, MemberTransition, Round
from annotation.models.choices import (
    ASPECT_MAX_POINTS,
    DEFAULT_ESCALATION_RULES,
    MAX_RESPONSES,
    MIN_RESPONSES,
    SCALE_VALUES,
    BothBadRoute,
    ConsensusRule,
    ItemKind,
    Outcome,
    RankingExpansion,
    Scale,
    default_escalation_rules,
)
from annotation.models.imports import ImportJob
from annotation.models.labels import Assignment, Evidence, Label, LeaseGuard, Rewrite
from annotation.models.pairs import Pair
from annotation.models.tools import CodeRun, Corpus, Document

__all__ = [
    "ASPECT_MAX_POINTS",
    "DEFAULT_ESCALATION_RULES",
    "MAX_RESPONSES",
    "MIN_RESPONSES",
    "SCALE_VALUES",
    "Assignment",
    "BothBadRoute",
    "Campaign",
    "CampaignMember",
    "CodeRun",
    "ConsensusRule",
    "Corpus",
    "Document",
    "Evidence",
    "ImportJob",
    "ItemKind",
    "Label",
    "LeaseGuard",
    "MemberTransition",
    "Outcome",
    "Pair",
    "RankingExpansion",
    "Rewrite",
    "Round",
    "Scale",
    "default_escalation_rules",
]
