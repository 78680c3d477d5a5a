"""Reliability-weighted consensus: a campaign's pairs settled by Dawid–Skene.

A campaign whose ``consensus_rule`` is ``dawid_skene`` settles each pair by the majority the
moment its last label arrives (under the pair's row lock, as every campaign does), and a
debounced Celery task (``reviewers.reestimate_consensus``, at most one per campaign per
``settings.CONSENSUS_REESTIMATE_DEBOUNCE_SECONDS``, 30 by default) then re-estimates every
annotator's reliability by EM over all the campaign's labels, gold pairs anchoring it, and
re-settles the completed pairs with the weighted verdict, its posterior and ``dawid_skene``
provenance. One estimate over the whole
campaign is what makes Dawid–Skene worth having (an annotator's reliability is learned from
every pair they labelled), and it is too slow to run under a pair lock on every label.

Classes are directions (B, tie, A): a five-point scale's strengths are too sparse per
annotator for a 5x5 confusion matrix. The weighted verdict keeps the strength of the labels
that chose its direction (their mean, rounded half away from zero), or 1 when none did.

The campaign's ``escalation_rules["posterior_threshold"]`` (off unless set) escalates a
weighted verdict whose posterior is below it (reason ``low_posterior``).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass

import numpy as np
from celery import current_app
from django.conf import settings
from django.core.cache import cache

from annotation.models import Campaign, ConsensusRule, Label, Pair
from annotation.services.pair_state import pairs_settle_weighted
from reviewers.agreement.dawid_skene import FloatArray, dawid_skene
from reviewers.consensus import direction, round_half_away
from reviewers.models import Escalation
from reviewers.services.escalations import escalation_open

logger = logging.getLogger(__name__)

DIRECTIONS = (-1, 0, 1)  # class index = direction + 1


@dataclass(frozen=True)
class ReestimateResult:
    labels: int
    annotators: int
    pairs_settled: int
    escalated: int
    # Each annotator's estimated accuracy (P of saying the true direction), by user id.
    accuracy: dict[int, float]


def consensus_reestimate_later(*, campaign_id: int) -> None:
    """Ask for a re-estimate after the debounce window unless one is already asked for: the
    first label of a window enqueues it, the rest of the window rides along."""
    window = settings.CONSENSUS_REESTIMATE_DEBOUNCE_SECONDS
    try:
        if not cache.add(f"reestimate-consensus:{campaign_id}", 1, window):
            return
        current_app.send_task(
            "reviewers.reestimate_consensus", args=(campaign_id,), countdown=window
        )
    except Exception:  # best effort after a commit: the next label asks again
        logger.warning("could not enqueue the consensus re-estimate of campaign %s", campaign_id)


def campaign_consensus_reestimate(*, campaign_id: int) -> ReestimateResult | None:
    """Fit Dawid–Skene over the campaign's labels and re-settle its completed pairs.

    Idempotent: the same labels give the same verdicts, and an unchanged pair is not written.
    Returns None when the campaign settles by majority.
    """
    campaign = Campaign.objects.get(pk=campaign_id)
    if campaign.consensus_rule != ConsensusRule.DAWID_SKENE:
        return None
    rows = list(
        # Labels set aside (a quarantined annotator's) count in no consensus.
        Label.objects.filter(campaign_id=campaign_id, is_retest=False, set_aside=False).values_list(
            "pair_id", "annotator_id", "preference", "is_gold_check"
        )
    )
    gold = {
        pair_id: known
        for pair_id, known in Pair.objects.filter(
            campaign_id=campaign_id, is_gold=True, gold_preference__isnull=False
        ).values_list("id", "gold_preference")
        if known is not None
    }
    pair_ids = sorted({pair_id for pair_id, *_rest in rows})
    annotator_ids = sorted({annotator_id for _pair, annotator_id, *_rest in rows})
    item_of = {pair_id: index for index, pair_id in enumerate(pair_ids)}
    annotator_of = {user_id: index for index, user_id in enumerate(annotator_ids)}
    fit = dawid_skene(
        [item_of[pair_id] for pair_id, *_rest in rows],
        [annotator_of[annotator_id] for _pair, annotator_id, *_rest in rows],
        [direction(preference) + 1 for _pair, _annotator, preference, _gold in rows],
        n_items=len(pair_ids),
        n_annotators=len(annotator_ids),
        n_classes=len(DIRECTIONS),
        anchors={
            item_of[pair_id]: direction(known) + 1
            for pair_id, known in gold.items()
            if pair_id in item_of
        },
    )
    verdicts = _verdicts(rows, gold=gold, item_of=item_of, posteriors=fit.posteriors)
    settled = pairs_settle_weighted(rows=verdicts)
    escalated = _escalate_low_posteriors(campaign=campaign, verdicts=verdicts)
    accuracy = fit.annotator_accuracy()
    return ReestimateResult(
        labels=len(rows),
        annotators=len(annotator_ids),
        pairs_settled=settled,
        escalated=escalated,
        accuracy={user_id: float(accuracy[annotator_of[user_id]]) for user_id in annotator_ids},
    )


def _verdicts(
    rows: list[tuple[int, int, int, bool]],
    *,
    gold: dict[int, int],
    item_of: dict[int, int],
    posteriors: FloatArray,
) -> list[tuple[int, int, float]]:
    """(pair id, weighted preference, posterior of its direction) for each labelled pair that
    is not gold, from the regular labels and the fit's posteriors."""
    regular: dict[int, list[int]] = defaultdict(list)
    for pair_id, _annotator, preference, is_gold_check in rows:
        if not is_gold_check:
            regular[pair_id].append(preference)
    verdicts = []
    for pair_id, preferences in regular.items():
        if pair_id in gold:
            continue
        posterior = posteriors[item_of[pair_id]]
        chosen = int(np.argmax(posterior))
        verdicts.append(
            (
                pair_id,
                weighted_preference(preferences, DIRECTIONS[chosen]),
                float(posterior[chosen]),
            )
        )
    return verdicts


def weighted_preference(preferences: list[int], side: int) -> int:
    """The verdict's strength: the mean of the labels that chose its direction, else 1."""
    agreeing = [preference for preference in preferences if direction(preference) == side]
    if side == 0:
        return 0
    if not agreeing:
        return side
    return round_half_away(sum(agreeing) / len(agreeing))


def posterior_threshold(campaign: Campaign) -> float | None:
    raw = (campaign.escalation_rules or {}).get("posterior_threshold")
    try:
        threshold = float(raw) if raw is not None else 0.0
    except (TypeError, ValueError):
        return None
    return threshold if threshold > 0 else None


def _escalate_low_posteriors(*, campaign: Campaign, verdicts: list[tuple[int, int, float]]) -> int:
    threshold = posterior_threshold(campaign)
    if threshold is None:
        return 0
    low = {
        pair_id: posterior for pair_id, _preference, posterior in verdicts if posterior < threshold
    }
    escalated = 0
    # Only pairs the weighted rule settled and nobody escalated yet: a re-run opens nothing new.
    for pair in Pair.objects.filter(
        pk__in=low, status=Pair.Status.COMPLETE, provenance=Pair.Provenance.DAWID_SKENE
    ).select_related("campaign"):
        opened = escalation_open(
            pair=pair,
            reason=Escalation.Reason.LOW_POSTERIOR,
            detail=f"weighted consensus posterior {low[pair.pk]:.2f} < {threshold:g}",
            disagreement=pair.disagreement or 0.0,
        )
        escalated += opened is not None
    return escalated
