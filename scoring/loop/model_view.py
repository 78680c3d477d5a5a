"""Judgment assistance: the model's view of a pair, for an annotator who already judged it."""

from __future__ import annotations

import math
from typing import Any

from annotation.models import Assignment, Label, Pair
from scoring.models import ModelVersion, PairScore


def model_view_for_assignment(assignment: Assignment) -> dict[str, Any] | None:
    """The model's verdict in the orientation this annotator saw, or None when not allowed.

    Allowed only after the annotator submitted (never before, so it cannot sway the label) and
    when the campaign's ``reveal_model_after_submit`` is on. The score comes from the active
    version, else from the newest version that scored the pair; None when none did.
    """
    if assignment.status != Assignment.Status.SUBMITTED:
        return None
    if not assignment.campaign.reveal_model_after_submit:
        return None
    scores = PairScore.objects.filter(pair_id=assignment.pair_id).select_related("model_version")
    score = scores.filter(model_version__is_active=True).first() or scores.order_by(
        "-model_version__number"
    ).first()
    if score is None or not _finite(score):
        return None
    version: ModelVersion = score.model_version
    if assignment.swapped:
        p_shown_a, reward_shown_a, reward_shown_b = (
            1.0 - score.p_a_better, score.reward_b, score.reward_a
        )
    else:
        p_shown_a, reward_shown_a, reward_shown_b = (
            score.p_a_better, score.reward_a, score.reward_b
        )
    prefers = "A" if p_shown_a > 0.5 else "B" if p_shown_a < 0.5 else "neither"
    label = Label.objects.filter(assignment=assignment).only("preference").first()
    agrees = None
    if label is not None and label.preference != 0 and prefers != "neither":
        shown_preference = -label.preference if assignment.swapped else label.preference
        agrees = (shown_preference > 0) == (prefers == "A")
    return {
        "model_version": version.number,
        "active_version": version.is_active,
        "p_a_better": p_shown_a,
        "reward_a": reward_shown_a,
        "reward_b": reward_shown_b,
        "prefers": prefers,
        "confidence": max(p_shown_a, 1.0 - p_shown_a),
        "agrees_with_you": agrees,
    }


def pair_model_prediction(*, pair: Pair) -> dict[str, Any] | None:
    """The active model version's latest score of the pair: p(A better), or None.

    Shown on the expert review page (registered on ``reviewers.hooks``)."""
    score = (
        PairScore.objects.filter(
            pair=pair, model_version__is_active=True, model_version__campaign_id=pair.campaign_id
        )
        .select_related("model_version")
        .order_by("-created_at", "-id")
        .first()
    )
    if score is None or not _finite(score):
        return None
    return {
        "version": score.model_version.number,
        "p_a_better": score.p_a_better,
        "reward_a": score.reward_a,
        "reward_b": score.reward_b,
    }


def _finite(score: PairScore) -> bool:
    """A score a version gave with non-finite rewards (a diverged checkpoint registered before
    training stopped such runs) says nothing, and is no JSON number."""
    return all(math.isfinite(value) for value in (score.p_a_better, score.reward_a, score.reward_b))
