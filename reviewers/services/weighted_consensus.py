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

A changed label re-settles its pair by majority until the next re-estimate, as its last label
did; a changed re-test (in no consensus) leaves the weighted verdict standing and is checked
against it (``reviewers.services.consensus.pair_label_changed``). A re-estimate that turns a
pair's verdict to another direction checks its re-test again, as its submit was
(``reviewers.services.consensus.pairs_retest_recheck``).

The campaign's ``escalation_rules["posterior_threshold"]`` (off unless set) escalates a
weighted verdict whose posterior is below it (reason ``low_posterior``). It is also what
"clear" means: an escalated pair whose weighted verdict reaches it, and that waits only for a
verdict (``no_majority``, ``low_posterior``: ``VERDICT_REASONS``), leaves the expert queue
settled by that verdict (its escalation withdrawn), unless an expert holds an unexpired claim
on it; a decided pair, and one escalated for any other reason, is left to the experts.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from django.db.models import Q
from django.utils import timezone

from annotation.models import Campaign, ConsensusRule, Label, Pair
from annotation.services.pair_state import pairs_settle_weighted
from core.iterables import batched
from reviewers.agreement.dawid_skene import FloatArray, dawid_skene
from reviewers.consensus import escalation_rules_of
from reviewers.models import Escalation
from reviewers.services.consensus import pairs_retest_recheck
from reviewers.services.escalations import escalation_open, escalation_withdraw_for_verdict

logger = logging.getLogger(__name__)

DIRECTIONS = (-1, 0, 1)  # class index = direction + 1


@dataclass(frozen=True)
class ReestimateResult:
    labels: int
    annotators: int
    pairs_settled: int
    escalated: int
    # Escalated pairs the fit settled clearly, taken out of the expert queue.
    withdrawn: int
    # Each annotator's estimated accuracy (P of saying the true direction), by user id.
    accuracy: dict[int, float]


# Labels are read this many at a time into numpy arrays: a campaign of tens of millions of
# labels costs about 18 bytes a label, not a Python tuple each.
LABEL_CHUNK = 50_000
# Verdicts are written, and low posteriors escalated, this many pairs at a time.
WRITE_CHUNK = 1000


@dataclass(frozen=True)
class CampaignLabels:
    """A campaign's labels that count in its consensus, as parallel arrays (one row a label)."""

    pair: npt.NDArray[np.int64]
    annotator: npt.NDArray[np.int64]
    preference: npt.NDArray[np.int64]
    gold_check: npt.NDArray[np.bool_]


def campaign_labels(*, campaign_id: int, chunk: int | None = None) -> CampaignLabels:
    """Stream the labels into arrays, ``chunk`` rows (default ``LABEL_CHUNK``) at a time."""
    chunk = chunk or LABEL_CHUNK
    rows = (
        # Labels set aside (a quarantined annotator's) count in no consensus.
        Label.objects.filter(campaign_id=campaign_id, is_retest=False, set_aside=False)
        .order_by()
        .values_list("pair_id", "annotator_id", "preference", "is_gold_check")
        .iterator(chunk_size=chunk)
    )
    pair, annotator, preference, gold_check = [], [], [], []
    for batch in batched(rows, chunk):
        columns = tuple(zip(*batch, strict=True))
        pair.append(np.array(columns[0], dtype=np.int64))
        annotator.append(np.array(columns[1], dtype=np.int64))
        preference.append(np.array(columns[2], dtype=np.int8))
        gold_check.append(np.array(columns[3], dtype=np.bool_))

    def joined(parts: list[Any], dtype: Any) -> Any:
        return np.concatenate(parts) if parts else np.zeros(0, dtype=dtype)

    return CampaignLabels(
        pair=joined(pair, np.int64),
        annotator=joined(annotator, np.int64),
        preference=joined(preference, np.int8).astype(np.int64),
        gold_check=joined(gold_check, np.bool_),
    )


def campaign_consensus_reestimate(*, campaign_id: int) -> ReestimateResult | None:
    """Fit Dawid–Skene over the campaign's labels and re-settle its completed pairs.

    Idempotent: the same labels give the same verdicts, and an unchanged pair is not written.
    Returns None when the campaign settles by majority. Memory is a few arrays of the labels'
    length, whatever the campaign's size; pairs are written a thousand at a time.
    """
    campaign = Campaign.objects.get(pk=campaign_id)
    if campaign.consensus_rule != ConsensusRule.DAWID_SKENE:
        return None
    labels = campaign_labels(campaign_id=campaign_id)
    gold_ids, gold_answers = _gold_answers(campaign_id=campaign_id)
    pair_ids, item = np.unique(labels.pair, return_inverse=True)
    annotator_ids, annotator = np.unique(labels.annotator, return_inverse=True)
    # Gold pairs with labels anchor the fit at their known direction.
    position = np.searchsorted(pair_ids, gold_ids)
    labelled = position < len(pair_ids)
    labelled[labelled] = pair_ids[position[labelled]] == gold_ids[labelled]
    anchors = dict(
        zip(
            position[labelled].tolist(),
            (np.sign(gold_answers[labelled]) + 1).tolist(),
            strict=True,
        )
    )
    fit = dawid_skene(
        item,
        annotator,
        np.sign(labels.preference) + 1,
        n_items=len(pair_ids),
        n_annotators=len(annotator_ids),
        n_classes=len(DIRECTIONS),
        anchors=anchors,
    )
    if not fit.converged:
        # The verdicts stand (the EM only improves them), but an admin should know.
        logger.warning(
            "Dawid-Skene on campaign %s stopped after %s iterations before converging",
            campaign_id,
            fit.iterations,
        )
    verdicts = weighted_verdicts(
        labels, item=item, pair_ids=pair_ids, gold_ids=gold_ids, posteriors=fit.posteriors
    )
    # A re-test was checked against the verdict it was submitted under: one whose pair's
    # verdict now points another way is checked again (only those: a pool has millions).
    settled = pairs_settle_weighted(rows=verdicts.rows(), direction_changed=pairs_retest_recheck)
    escalated = _escalate_low_posteriors(campaign=campaign, verdicts=verdicts)
    withdrawn = _withdraw_settled_escalations(campaign=campaign, verdicts=verdicts)
    accuracy = fit.annotator_accuracy()
    return ReestimateResult(
        labels=len(labels.pair),
        annotators=len(annotator_ids),
        pairs_settled=settled,
        escalated=escalated,
        withdrawn=withdrawn,
        accuracy={
            int(user_id): float(accuracy[index]) for index, user_id in enumerate(annotator_ids)
        },
    )


def _gold_answers(*, campaign_id: int) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """The campaign's gold pairs with a known answer: (sorted ids, answers)."""
    rows = list(
        Pair.objects.filter(campaign_id=campaign_id, is_gold=True, gold_preference__isnull=False)
        .order_by("id")
        .values_list("id", "gold_preference")
    )
    if not rows:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    ids, answers = zip(*rows, strict=True)
    return np.array(ids, dtype=np.int64), np.array(answers, dtype=np.int64)


@dataclass(frozen=True)
class WeightedVerdicts:
    """The weighted verdict of each labelled pair that is not gold, in pair id order."""

    pair_ids: npt.NDArray[np.int64]
    preferences: npt.NDArray[np.int64]
    posteriors: FloatArray  # of the verdict's direction

    def rows(self) -> Iterator[tuple[int, int, float]]:
        """(pair id, weighted preference, posterior of its direction), one pair at a time."""
        for start in range(0, len(self.pair_ids), WRITE_CHUNK):
            stop = start + WRITE_CHUNK
            yield from zip(
                self.pair_ids[start:stop].tolist(),
                self.preferences[start:stop].tolist(),
                self.posteriors[start:stop].tolist(),
                strict=True,
            )


def weighted_verdicts(
    labels: CampaignLabels,
    *,
    item: npt.NDArray[np.int64],
    pair_ids: npt.NDArray[np.int64],
    gold_ids: npt.NDArray[np.int64],
    posteriors: FloatArray,
) -> WeightedVerdicts:
    """Each pair's verdict from the fit's posteriors and its regular labels (gold checks are
    not its annotation): the direction of highest posterior, with the strength
    the module docstring gives. ``item`` maps each label to its row in ``pair_ids``."""
    n_items = len(pair_ids)
    chosen = posteriors.argmax(axis=1) if n_items else np.zeros(0, dtype=np.int64)
    side = np.asarray(DIRECTIONS)[chosen]
    regular = ~labels.gold_check
    agreeing = regular & (np.sign(labels.preference) == side[item])
    agreeing_sum = np.bincount(item, weights=labels.preference * agreeing, minlength=n_items)
    agreeing_count = np.bincount(item, weights=agreeing, minlength=n_items)
    regular_count = np.bincount(item, weights=regular, minlength=n_items)
    mean = agreeing_sum / np.maximum(agreeing_count, 1)
    # The mean rounded half away from zero; a direction no label chose has strength 1.
    strength = np.where(
        agreeing_count > 0, np.copysign(np.floor(np.abs(mean) + 0.5), mean), side
    ).astype(np.int64)
    strength[side == 0] = 0
    kept = (regular_count > 0) & ~np.isin(pair_ids, gold_ids)
    return WeightedVerdicts(
        pair_ids=pair_ids[kept],
        preferences=strength[kept],
        posteriors=posteriors[np.arange(n_items), chosen][kept],
    )


def posterior_threshold(campaign: Campaign) -> float | None:
    raw = escalation_rules_of(campaign.escalation_rules).get("posterior_threshold")
    try:
        threshold = float(raw) if raw is not None else 0.0
    except (TypeError, ValueError):
        return None
    return threshold if threshold > 0 else None


def _escalate_low_posteriors(*, campaign: Campaign, verdicts: WeightedVerdicts) -> int:
    threshold = posterior_threshold(campaign)
    if threshold is None:
        return 0
    low = verdicts.posteriors < threshold
    low_ids, low_posteriors = verdicts.pair_ids[low].tolist(), verdicts.posteriors[low].tolist()
    escalated = 0
    for start in range(0, len(low_ids), WRITE_CHUNK):
        posterior_of = dict(
            zip(
                low_ids[start : start + WRITE_CHUNK],
                low_posteriors[start : start + WRITE_CHUNK],
                strict=True,
            )
        )
        # Only pairs the weighted rule settled and nobody escalated yet: a re-run opens
        # nothing new.
        for pair in Pair.objects.filter(
            pk__in=posterior_of,
            status=Pair.Status.COMPLETE,
            provenance=Pair.Provenance.DAWID_SKENE,
        ).select_related("campaign"):
            opened = escalation_open(
                pair=pair,
                reason=Escalation.Reason.LOW_POSTERIOR,
                detail=f"weighted consensus posterior {posterior_of[pair.pk]:.2f} < {threshold:g}",
                disagreement=pair.disagreement or 0.0,
            )
            escalated += opened is not None
    return escalated


# The reasons that ask only for a verdict: the labels' majority found none (the majority is a
# weighted campaign's stand-in until its re-estimate), or an earlier estimate's posterior was
# below the threshold. Every other reason (a flag, "both bad", opposite directions, a re-test,
# the model, an admin) asks an expert about more than the verdict, and stays.
VERDICT_REASONS = frozenset({Escalation.Reason.NO_MAJORITY, Escalation.Reason.LOW_POSTERIOR})


def _withdraw_settled_escalations(*, campaign: Campaign, verdicts: WeightedVerdicts) -> int:
    """Take out of the expert queue the escalated pairs whose weighted verdict now reaches the
    campaign's posterior threshold (the campaign's "clear"; none set: none is), when all they
    wait for is a verdict and no expert holds a claim (``escalation_withdraw_for_verdict``):
    they are settled with that verdict. How many."""
    threshold = posterior_threshold(campaign)
    if threshold is None:
        return 0
    clear = verdicts.posteriors >= threshold
    ids = verdicts.pair_ids[clear].tolist()
    preferences = verdicts.preferences[clear].tolist()
    posteriors = verdicts.posteriors[clear].tolist()
    now = timezone.now()
    withdrawn = 0
    for start in range(0, len(ids), WRITE_CHUNK):
        stop = start + WRITE_CHUNK
        verdict_of = {
            pair_id: (preference, posterior)
            for pair_id, preference, posterior in zip(
                ids[start:stop], preferences[start:stop], posteriors[start:stop], strict=True
            )
        }
        # A plain read first: escalated pairs are few, and most re-runs find none to take.
        candidates = (
            Escalation.objects.filter(
                pair_id__in=verdict_of,
                status=Escalation.Status.OPEN,
                reason__in=VERDICT_REASONS,
            )
            .filter(Q(claimed_by__isnull=True) | Q(claim_expires_at__lt=now))
            .order_by("pair_id")
            .values_list("pair_id", flat=True)
        )
        for pair_id in candidates:
            preference, posterior = verdict_of[pair_id]
            withdrawn += escalation_withdraw_for_verdict(
                pair_id=pair_id,
                preference=preference,
                posterior=posterior,
                answered=VERDICT_REASONS,
                now=now,
            )
    return withdrawn
