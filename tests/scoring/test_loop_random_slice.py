"""The random slice of a round: drawn from the whole pool, not the top of the priority order,
marked, and counted apart from the prioritised slice on the dashboard."""

from __future__ import annotations

from annotation.models import Pair, Round
from scoring.dashboard.loop_effect import loop_effect
from scoring.evaluation.maths import bootstrap_mean_difference, proportion_difference
from scoring.loop.rounds import random_slice_size, round_close, round_open_next
from scoring.models import ModelVersion, PairScore
from tests.factories import CampaignFactory, PairFactory


def _pool(campaign, count):
    # Distinct priorities: pair i has priority i, so the priority order is known exactly.
    return [
        PairFactory(campaign=campaign, status=Pair.Status.POOLED, priority=float(i))
        for i in range(count)
    ]


def test_the_random_slice_is_not_the_top_of_the_priority_order(db):
    campaign = CampaignFactory(round_size=20, random_slice_share=0.25)
    pairs = _pool(campaign, 200)
    opened = round_open_next(campaign=campaign)
    in_round = Pair.objects.filter(round=opened)
    random_ids = set(in_round.filter(selection="random").values_list("id", flat=True))
    priority_ids = set(in_round.filter(selection="priority").values_list("id", flat=True))
    assert len(random_ids) == 5 and len(priority_ids) == 15
    assert in_round.exclude(selection__in=["random", "priority"]).count() == 0
    by_priority = [pair.pk for pair in sorted(pairs, key=lambda pair: -pair.priority)]
    # The prioritised slice is exactly the top of what the random draw left in the pool.
    assert priority_ids == set([pk for pk in by_priority if pk not in random_ids][:15])
    # Drawn from all 200: five pairs all among the top 20 has odds of about 1 in 165,000.
    assert not random_ids <= set(by_priority[:20])
    # A second round draws again; the pairs returned to the pool lose their mark.
    round_close(campaign=campaign)
    assert (
        Pair.objects.filter(campaign=campaign, round__isnull=True).exclude(selection="").count()
        == 0
    )
    second = round_open_next(campaign=campaign)
    assert Pair.objects.filter(round=second, selection="random").count() == 5


def test_a_share_of_zero_takes_the_whole_round_by_priority(db):
    campaign = CampaignFactory(round_size=4, random_slice_share=0.0)
    pairs = _pool(campaign, 10)
    opened = round_open_next(campaign=campaign)
    chosen = set(
        Pair.objects.filter(round=opened, selection="priority").values_list("id", flat=True)
    )
    assert chosen == {pair.pk for pair in pairs[-4:]}
    assert random_slice_size(size=500, share=0.1) == 50
    assert random_slice_size(size=4, share=0.1) == 0
    assert random_slice_size(size=5, share=0.1) == 1


def _settle(pair_ids, preference, disagreement):
    # The test plays the humans' verdicts directly (labels are tested elsewhere).
    Pair.objects.filter(pk__in=pair_ids).update(
        status=Pair.Status.COMPLETE,
        consensus_preference=preference,
        provenance=Pair.Provenance.UNANIMOUS,
        disagreement=disagreement,
    )


def test_the_dashboard_counts_each_slice_apart(db):
    campaign = CampaignFactory(round_size=40, random_slice_share=0.5)
    pool = _pool(campaign, 100)
    version = ModelVersion.objects.create(
        campaign=campaign,
        number=1,
        base="tiny",
        checkpoint="/nowhere",
        heldout_accuracy=0.6,
        metrics={"heldout": {"n": 50}},
    )
    # The model prefers A everywhere: a pair humans settle for B is one it mispredicted.
    PairScore.objects.bulk_create(
        PairScore(pair=pair, model_version=version, reward_a=1.0, reward_b=0.0, p_a_better=0.9)
        for pair in pool
    )
    opened = round_open_next(campaign=campaign)
    prioritised = list(Pair.objects.filter(round=opened, selection="priority").order_by("id"))
    drawn = list(Pair.objects.filter(round=opened, selection="random").order_by("id"))
    assert len(prioritised) == 20 and len(drawn) == 20
    # Prioritised: 15 of 20 mispredicted (B chosen), votes split; random: 4 of 20, unanimous.
    _settle([p.pk for p in prioritised[:15]], -1, 0.5)
    _settle([p.pk for p in prioritised[15:]], 1, 0.5)
    _settle([p.pk for p in drawn[:4]], -2, 0.0)
    _settle([p.pk for p in drawn[4:]], 2, 0.0)
    # A version trained after the round, better on held-out gold.
    ModelVersion.objects.create(
        campaign=campaign,
        number=2,
        base="tiny",
        checkpoint="/nowhere",
        round=opened,
        heldout_accuracy=0.7,
        metrics={"heldout": {"n": 50}},
    )
    # A gold model is no loop version: it is neither "the model that chose" nor compared.
    ModelVersion.objects.create(
        campaign=campaign,
        number=3,
        base="tiny",
        checkpoint="/nowhere",
        round=opened,
        kind=ModelVersion.Kind.GOLD,
        heldout_accuracy=0.99,
        metrics={"heldout": {"n": 50}},
    )

    (report,) = loop_effect(campaign=campaign)["rounds"]
    assert report["number"] == opened.number
    priority, random_ = report["slices"]["priority"], report["slices"]["random"]
    assert (priority["pairs"], priority["judged"], priority["scored"]) == (20, 20, 20)
    assert priority["mispredicted"] == 15 and priority["hit_rate"] == 0.75
    assert random_["mispredicted"] == 4 and random_["hit_rate"] == 0.2
    low, high = priority["hit_rate_ci"]
    assert low < 0.75 < high
    assert priority["disagreement"] == 0.5 and random_["disagreement"] == 0.0
    difference, low, high = report["hit_rate_difference"]
    assert difference == proportion_difference(15, 20, 4, 20)[0] and low > 0
    assert "higher than the random one" in report["hit_rate_sentence"]
    assert report["heldout"]["from_version"] == 1 and report["heldout"]["to_version"] == 2
    assert abs(report["heldout"]["change"] - 0.1) < 1e-9
    # 0.6 → 0.7 on 50 pairs each cannot be told from noise.
    assert "within noise" in report["heldout"]["sentence"]


def test_a_small_difference_is_called_within_noise():
    difference, low, high = proportion_difference(6, 20, 5, 20)
    assert low < 0 < high and abs(difference - 0.05) < 1e-12
    result = bootstrap_mean_difference([0.1, 0.2, 0.3] * 4, [0.1, 0.2, 0.3] * 4)
    assert result is not None and result[1] <= 0 <= result[2]
    assert bootstrap_mean_difference([], [1.0]) is None


def test_rounds_are_reported_in_order_and_empty_rounds_skipped(db):
    campaign = CampaignFactory(round_size=10, random_slice_share=0.2)
    _pool(campaign, 30)
    Round.objects.create(campaign=campaign, number=1, status=Round.Status.CLOSED)
    round_open_next(campaign=campaign)
    numbers = [entry["number"] for entry in loop_effect(campaign=campaign)["rounds"]]
    assert numbers == [2]


def test_the_bootstrap_draws_in_bounded_chunks_with_the_same_interval(monkeypatch):
    # A round's slice of 200,000 pairs drew 2,000 × 200,000 indices at once (3.2 GB).
    import tracemalloc

    import numpy as np

    from scoring.evaluation import maths

    values = np.random.default_rng(3).random(5_000)
    whole = maths.bootstrap_mean_interval(values)
    monkeypatch.setattr(maths, "_BOOTSTRAP_CHUNK_ELEMENTS", 5_000 * 7)  # 7 resamples a chunk
    assert maths.bootstrap_mean_interval(values) == whole
    monkeypatch.undo()
    large = np.random.default_rng(4).random(200_000)
    tracemalloc.start()
    try:
        mean, low, high = maths.bootstrap_mean_interval(large)
        difference = maths.bootstrap_mean_difference(large, large[:100_000])
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert low < mean < high and difference is not None
    assert peak < 200 * 1024**2, f"peak {peak / 1024**2:.0f} MiB"
