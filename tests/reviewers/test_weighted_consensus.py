"""A Dawid–Skene campaign: labels through the real engine, re-settled by the weighted rule."""

from __future__ import annotations

import math
import random
import re

import pytest

from annotation.models import ConsensusRule, Label, Outcome, Pair
from annotation.services.assignments import assignment_next
from annotation.services.labels import LabelInput, label_submit, to_canonical
from annotation.services.pair_state import pairs_settle_weighted
from reviewers.models import Escalation
from reviewers.services.weighted_consensus import campaign_consensus_reestimate
from scoring.datasets.export import ExportFilters
from scoring.datasets.export.rows import export_rows
from scoring.loop.judged_pairs import training_pairs
from tests.conftest import wait_for
from tests.factories import CampaignFactory, PairFactory, UserFactory

pytestmark = pytest.mark.django_db

ACCURACIES = [0.95, 0.9, 0.85, 0.1]  # three good annotators and one adversarial


def _label_campaign(campaign, *, accuracies, pairs=90, gold=20, seed=11, strengths=(1,)):
    rng = random.Random(seed)
    truth = {}
    for _ in range(pairs):
        pair = PairFactory(campaign=campaign)
        truth[pair.pk] = rng.choice((1, -1))
    for _ in range(gold):
        answer = rng.choice((1, -1))
        pair = PairFactory(
            campaign=campaign, is_gold=True, gold_preference=answer, status=Pair.Status.COMPLETE
        )
        truth[pair.pk] = answer
    users = UserFactory.create_batch(len(accuracies))
    busy = True
    while busy:
        busy = False
        for user, accuracy in zip(users, accuracies, strict=True):
            assignment = assignment_next(campaign=campaign, annotator=user, rng=rng)
            if assignment is None:
                continue
            busy = True
            right = truth[assignment.pair_id]
            canonical = right if rng.random() < accuracy else -right
            if len(strengths) > 1:
                canonical *= rng.choice(strengths)
            shown = to_canonical(canonical, swapped=assignment.swapped)
            label_submit(assignment=assignment, data=LabelInput(preference=shown))
    return truth, users


def _campaign(scale="binary", **rules):
    return CampaignFactory(
        scale=scale,
        annotators_per_pair=3,
        gold_share=0.25,
        consensus_rule=ConsensusRule.DAWID_SKENE,
        escalation_rules={"no_majority": True, "opposite_directions": False, **rules},
    )


def test_weighted_consensus_beats_the_majority_on_the_adversarys_pairs():
    campaign = _campaign()
    truth, users = _label_campaign(campaign, accuracies=ACCURACIES)
    adversary = users[-1]
    majority = dict(
        Pair.objects.filter(campaign=campaign, is_gold=False).values_list(
            "pk", "consensus_preference"
        )
    )
    result = campaign_consensus_reestimate(campaign_id=campaign.pk)
    assert result is not None and result.pairs_settled > 0
    estimated = [result.accuracy[user.pk] for user in users]
    assert estimated[-1] < 0.3 and min(estimated[:3]) > 0.7
    weighted = dict(
        Pair.objects.filter(campaign=campaign, is_gold=False).values_list(
            "pk", "consensus_preference"
        )
    )
    theirs = set(
        Pair.objects.filter(
            campaign=campaign, is_gold=False, labels__annotator=adversary
        ).values_list("pk", flat=True)
    )
    assert theirs
    weighted_right = sum(weighted[pk] == truth[pk] for pk in theirs)
    majority_right = sum(majority[pk] == truth[pk] for pk in theirs)
    assert weighted_right > majority_right
    # Provenance and posterior are stored on every pair the labels settled.
    settled = Pair.objects.filter(campaign=campaign, is_gold=False, status=Pair.Status.COMPLETE)
    assert {pair.provenance for pair in settled} == {Pair.Provenance.DAWID_SKENE}
    assert all(0.5 <= pair.consensus_posterior <= 1.0 for pair in settled)
    # The export carries the posterior.
    rows = [
        row
        for _ranked, row in export_rows(
            campaign=campaign, filters=ExportFilters(provenance=("dawid_skene",))
        )
    ]
    assert rows and all(row["provenance"] == "dawid_skene" for row in rows)
    posteriors = {pair.pk: pair.consensus_posterior for pair in settled}
    assert all(row["consensus_posterior"] == posteriors[row["pair_id"]] for row in rows)
    # Idempotent: a second run changes nothing.
    again = campaign_consensus_reestimate(campaign_id=campaign.pk)
    assert again is not None and again.pairs_settled == 0


def test_it_equals_the_majority_when_annotators_are_equally_good():
    campaign = _campaign()
    _label_campaign(campaign, accuracies=[0.85] * 4, seed=4)
    majority = dict(
        Pair.objects.filter(
            campaign=campaign, status=Pair.Status.COMPLETE, is_gold=False
        ).values_list("pk", "consensus_preference")
    )
    campaign_consensus_reestimate(campaign_id=campaign.pk)
    weighted = dict(Pair.objects.filter(pk__in=majority).values_list("pk", "consensus_preference"))
    assert weighted == majority


def test_a_posterior_below_the_threshold_escalates_once():
    campaign = _campaign(posterior_threshold=0.99)
    _label_campaign(campaign, accuracies=[0.8, 0.8, 0.7, 0.6], pairs=40, gold=10, seed=2)
    result = campaign_consensus_reestimate(campaign_id=campaign.pk)
    assert result is not None and result.escalated > 0
    low = Escalation.objects.filter(campaign=campaign, reason=Escalation.Reason.LOW_POSTERIOR)
    assert low.count() == result.escalated
    assert all(e.pair.status == Pair.Status.ESCALATED for e in low)
    assert all(e.pair.consensus_posterior < 0.99 for e in low)
    again = campaign_consensus_reestimate(campaign_id=campaign.pk)
    assert again is not None and again.escalated == 0


def test_a_majority_campaign_is_left_alone():
    campaign = CampaignFactory()
    assert campaign_consensus_reestimate(campaign_id=campaign.pk) is None


@pytest.mark.django_db(transaction=True)
def test_the_worker_re_settles_a_weighted_campaign_after_its_labels(worker, settings):
    settings.CONSENSUS_REESTIMATE_DEBOUNCE_SECONDS = 1
    campaign = _campaign()
    _label_campaign(campaign, accuracies=ACCURACIES, pairs=15, gold=5)
    settled = Pair.objects.filter(campaign=campaign, is_gold=False, status=Pair.Status.COMPLETE)
    assert settled.exists()

    def all_weighted() -> bool:
        return not settled.exclude(provenance=Pair.Provenance.DAWID_SKENE).exists()

    wait_for(all_weighted, timeout=90, what="the debounced Dawid-Skene re-estimate")
    assert all(pair.consensus_posterior is not None for pair in settled)


def _verdicts(campaign):
    """pair id -> (preference, posterior) of the pairs the weighted rule settled."""
    rows = Pair.objects.filter(campaign=campaign, provenance=Pair.Provenance.DAWID_SKENE)
    return {
        pk: (preference, posterior)
        for pk, preference, posterior in rows.values_list(
            "pk", "consensus_preference", "consensus_posterior"
        )
    }


def test_labels_set_aside_count_in_no_weighted_verdict():
    campaign = _campaign()
    _truth, users = _label_campaign(campaign, accuracies=ACCURACIES)
    adversary = users[-1]
    Label.objects.filter(annotator=adversary).update(set_aside=True)
    campaign_consensus_reestimate(campaign_id=campaign.pk)
    with_set_aside = _verdicts(campaign)
    assert with_set_aside
    Label.objects.filter(annotator=adversary).delete()
    campaign_consensus_reestimate(campaign_id=campaign.pk)
    without = _verdicts(campaign)
    assert without.keys() == with_set_aside.keys()
    for pk, (preference, posterior) in without.items():
        assert with_set_aside[pk][0] == preference
        assert with_set_aside[pk][1] == pytest.approx(posterior)


def test_a_weighted_verdict_never_makes_a_both_bad_pair_a_chosen_rejected_one():
    campaign = _campaign()
    both_bad = PairFactory(
        campaign=campaign,
        status=Pair.Status.COMPLETE,
        provenance=Pair.Provenance.MAJORITY,
        consensus_preference=0,
        consensus_outcome=Outcome.BOTH_BAD,
    )
    assert pairs_settle_weighted(rows=[(both_bad.pk, 1, 0.99)]) == 0
    both_bad.refresh_from_db()
    assert (both_bad.consensus_preference, both_bad.consensus_outcome) == (0, Outcome.BOTH_BAD)
    # One stored so before this fix is still no training pair.
    Pair.objects.filter(pk=both_bad.pk).update(
        consensus_preference=1, provenance=Pair.Provenance.DAWID_SKENE
    )
    assert both_bad.pk not in [pair.pk for pair in training_pairs(campaign=campaign).pairs]


def _round_half_away(value):
    return int(math.copysign(math.floor(abs(value) + 0.5), value))


def test_labels_read_and_verdicts_written_in_small_chunks_give_the_rule_s_verdicts(monkeypatch):
    """The arrays built chunk by chunk and the vectorised verdicts give, pair by pair, what
    the rule says: the direction of highest posterior, with the mean strength of the regular
    labels that chose it (rounded half away from zero), or 1 when none did."""
    from reviewers.services import weighted_consensus

    campaign = _campaign(scale="five_point")
    _label_campaign(campaign, accuracies=ACCURACIES, pairs=40, gold=10, strengths=(0, 1, 2, 2))
    monkeypatch.setattr(weighted_consensus, "LABEL_CHUNK", 7)
    monkeypatch.setattr(weighted_consensus, "WRITE_CHUNK", 5)
    labels = weighted_consensus.campaign_labels(campaign_id=campaign.pk)
    expected_rows = sorted(
        Label.objects.filter(campaign=campaign, is_retest=False, set_aside=False).values_list(
            "pair_id", "annotator_id", "preference", "is_gold_check"
        )
    )
    assert sorted(
        zip(
            labels.pair.tolist(),
            labels.annotator.tolist(),
            labels.preference.tolist(),
            labels.gold_check.tolist(),
            strict=True,
        )
    ) == [(p, a, pref, bool(g)) for p, a, pref, g in expected_rows]
    result = campaign_consensus_reestimate(campaign_id=campaign.pk)
    assert result is not None and result.pairs_settled > 0
    stored = _verdicts(campaign)
    assert len(stored) == result.pairs_settled
    regular = {}
    for pair_id, _annotator, preference, gold_check in expected_rows:
        if not gold_check:
            regular.setdefault(pair_id, []).append(preference)
    strengths = set()
    for pair_id, (preference, posterior) in stored.items():
        side = (preference > 0) - (preference < 0)
        agreeing = [p for p in regular[pair_id] if (p > 0) - (p < 0) == side]
        if side == 0:
            expected = 0
        elif agreeing:
            expected = _round_half_away(sum(agreeing) / len(agreeing))
        else:
            expected = side
        assert preference == expected
        assert 1 / 3 <= posterior <= 1.0
        strengths.add(abs(preference))
    assert strengths >= {1, 2}  # the five-point strengths were exercised


def test_a_re_estimate_that_changes_nothing_locks_no_row():
    """The usual re-run (every 30 s on a busy campaign) reads and compares; it locks and writes
    only the pairs whose verdict changes (locking a million unchanged rows dirtied every page)."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    campaign = CampaignFactory()
    pairs = [
        PairFactory(
            campaign=campaign,
            status=Pair.Status.COMPLETE,
            provenance=Pair.Provenance.MAJORITY,
            consensus_preference=1,
            labels_count=3,
        )
        for _ in range(3)
    ]
    verdicts = [(pair.pk, 2, 0.9) for pair in pairs]
    with CaptureQueriesContext(connection) as first:
        assert pairs_settle_weighted(rows=verdicts) == 3
    assert any("FOR UPDATE" in query["sql"] for query in first.captured_queries)
    with CaptureQueriesContext(connection) as again:
        assert pairs_settle_weighted(rows=verdicts) == 0
    assert not any("FOR UPDATE" in query["sql"] for query in again.captured_queries)
    assert not any(query["sql"].startswith("UPDATE") for query in again.captured_queries)
    # One verdict moves: only that pair is locked and written.
    verdicts[1] = (pairs[1].pk, -1, 0.7)
    with CaptureQueriesContext(connection) as moved:
        assert pairs_settle_weighted(rows=verdicts) == 1
    (locking,) = [query["sql"] for query in moved.captured_queries if "FOR UPDATE" in query["sql"]]
    locked_ids = re.search(r'"id" IN \(([^)]*)\)', locking).group(1)
    assert [int(pair_id) for pair_id in locked_ids.split(",")] == [pairs[1].pk]
    stored = {
        pair.pk: (pair.consensus_preference, pair.consensus_posterior, pair.provenance)
        for pair in Pair.objects.filter(pk__in=[pair.pk for pair in pairs])
    }
    assert stored == {
        pairs[0].pk: (2, 0.9, Pair.Provenance.DAWID_SKENE),
        pairs[1].pk: (-1, 0.7, Pair.Provenance.DAWID_SKENE),
        pairs[2].pk: (2, 0.9, Pair.Provenance.DAWID_SKENE),
    }
