"""Review 19: in a weighted (Dawid–Skene) campaign a re-estimate stores its verdicts with the
provenance ``dawid_skene``, replacing the vote's ``unanimous`` or ``majority``; the gold model's
sources found none of those pairs, so by default it learnt from gold and adjudicated pairs only.
Such a pair now counts by the votes behind its verdict: unanimous when every counting label
picked the verdict's side."""

from __future__ import annotations

import pytest

from annotation.models import Label, Outcome, Pair
from reviewers.services.weighted_consensus import campaign_consensus_reestimate
from scoring.loop.judged_pairs import gold_training_pairs
from tests.reviewers.test_weighted_consensus import ACCURACIES, _campaign, _label_campaign

pytestmark = pytest.mark.django_db


def _unanimous_by_votes(pair: Pair) -> bool:
    labels = Label.objects.filter(pair=pair, is_retest=False, set_aside=False)
    verdict = pair.consensus_preference or 0
    return all(
        label.outcome == Outcome.PREFERENCE and label.preference * verdict > 0 for label in labels
    )


def test_reestimated_pairs_count_as_unanimous_or_majority_by_their_votes():
    campaign = _campaign()
    _label_campaign(campaign, accuracies=ACCURACIES, pairs=40, seed=7)
    assert campaign_consensus_reestimate(campaign_id=campaign.pk) is not None
    settled = list(
        Pair.objects.filter(campaign=campaign, provenance=Pair.Provenance.DAWID_SKENE)
        .exclude(consensus_preference=0)
        .exclude(status=Pair.Status.ESCALATED)
    )
    unanimous = {pair.pk for pair in settled if _unanimous_by_votes(pair)}
    majority = {pair.pk for pair in settled} - unanimous
    assert unanimous and majority  # the seed gives both kinds

    assert set(gold_training_pairs(campaign=campaign, sources=("unanimous",)).pair_ids) == (
        unanimous
    )
    assert set(gold_training_pairs(campaign=campaign, sources=("majority",)).pair_ids) == majority
    both = gold_training_pairs(campaign=campaign, sources=("unanimous", "majority"))
    assert sorted(both.pair_ids) == sorted(unanimous | majority)  # each once
    by_id = dict(zip(both.pair_ids, both.preferences, strict=True))
    assert all(by_id[pair.pk] == pair.consensus_preference for pair in settled)
