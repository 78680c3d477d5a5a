"""What happens when a label arrives: consensus, escalation rules and re-tests."""

from __future__ import annotations

import random

from django.db.models import F

from annotation.models import Campaign, Label, Pair
from reviewers.consensus import consensus_of
from reviewers.models import Escalation
from reviewers.services.escalations import escalation_open


def _max_value(campaign: Campaign) -> int:
    return max(campaign.allowed_preferences)


def _regular_preferences(pair: Pair) -> list[Label]:
    return list(
        Label.objects.filter(pair=pair, is_retest=False, is_gold_check=False).order_by("id")
    )


def pair_label_recorded(*, pair: Pair, label: Label, rng: random.Random | None = None) -> None:
    """Called inside the submit transaction, with the pair row locked."""
    campaign = pair.campaign
    if label.is_retest:
        _retest_recorded(pair=pair, label=label, campaign=campaign)
        return
    labels = _regular_preferences(pair)
    if len(labels) < campaign.annotators_per_pair:
        return
    pair_consensus_update(pair=pair, labels=labels, rng=rng)


def pair_consensus_update(
    *, pair: Pair, labels: list[Label] | None = None, rng: random.Random | None = None
) -> None:
    campaign = pair.campaign
    labels = labels if labels is not None else _regular_preferences(pair)
    rules = campaign.escalation_rules or {}
    consensus = consensus_of([lab.preference for lab in labels], max_value=_max_value(campaign))
    Pair.objects.filter(pk=pair.pk).update(
        consensus_preference=consensus.preference,
        provenance=consensus.provenance,
        disagreement=consensus.disagreement,
        status=Pair.Status.COMPLETE,
    )
    reasons: list[tuple[str, str]] = []
    if consensus.preference is None and rules.get("no_majority", True):
        reasons.append((Escalation.Reason.NO_MAJORITY, "labels split with no majority"))
    threshold = float(rules.get("disagreement_threshold", 0.5))
    if (
        consensus.opposite_directions
        and rules.get("opposite_directions", True)
        and consensus.disagreement > threshold
    ):
        reasons.append(
            (
                Escalation.Reason.OPPOSITE_DIRECTIONS,
                f"A and B both chosen; disagreement {consensus.disagreement:.2f} > {threshold}",
            )
        )
    flagged = [lab for lab in labels if lab.flags]
    if flagged and rules.get("flags", True):
        names = sorted({name for lab in flagged for name in lab.flags})
        reasons.append((Escalation.Reason.FLAGGED, "flags: " + ", ".join(names)))
    for reason, detail in reasons:
        escalation_open(pair=pair, reason=reason, detail=detail, disagreement=consensus.disagreement)
    if not reasons:
        _maybe_schedule_retest(pair=pair, campaign=campaign, rng=rng)


def _maybe_schedule_retest(*, pair: Pair, campaign: Campaign, rng: random.Random | None) -> None:
    """Send a share of completed pairs back for one more, different annotator."""
    rng = rng or random.Random()  # noqa: S311 - sampling, not security
    if campaign.retest_share <= 0 or rng.random() >= campaign.retest_share:
        return
    Pair.objects.filter(pk=pair.pk).update(
        slot_cap=F("slot_cap") + 1, status=Pair.Status.IN_ANNOTATION
    )


def _retest_recorded(*, pair: Pair, label: Label, campaign: Campaign) -> None:
    Pair.objects.filter(pk=pair.pk).update(status=Pair.Status.COMPLETE)
    rules = campaign.escalation_rules or {}
    if pair.consensus_preference is None or not rules.get("retest_contradiction", True):
        return
    consensus_direction = (pair.consensus_preference > 0) - (pair.consensus_preference < 0)
    retest_direction = (label.preference > 0) - (label.preference < 0)
    if consensus_direction != retest_direction:
        escalation_open(
            pair=pair,
            reason=Escalation.Reason.RETEST_CONTRADICTION,
            detail=f"re-test said {label.preference}, consensus {pair.consensus_preference}",
            disagreement=pair.disagreement or 0.0,
        )
