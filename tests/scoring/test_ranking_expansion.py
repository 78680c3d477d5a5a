"""Rankings to chosen/rejected pairs: the three rules, ties kept apart, and the export's rows
with their provenance (item, both ranks, rule)."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import pytest

from annotation.models import ItemKind, Pair
from scoring.datasets.export import (
    MAIN_SCHEMA,
    UNRANKED_SCHEMA,
    ExportFilters,
    export_rows,
    export_write,
    unranked_path,
)
from scoring.loop.judged_pairs import gold_pairs, training_pairs
from scoring.loop.ranking_pairs import RankedPair, ranking_pairs, tied_pairs
from scoring.loop.training import _examples
from tests.factories import CampaignFactory, PairFactory, ranking_item

STRICT = [[3], [1], [0], [2]]  # four responses, no ties
TIED = [[2], [0, 1], [3]]  # 2 best, 0 and 1 tied, 3 worst


@pytest.mark.parametrize(
    ("rule", "strict_count", "tied_count"),
    [("all_pairs", 6, 5), ("best_vs_each", 3, 3), ("adjacent", 3, 4)],
)
def test_each_rule_gives_its_count_of_pairs(rule, strict_count, tied_count):
    assert len(ranking_pairs(STRICT, rule)) == strict_count
    assert len(ranking_pairs(TIED, rule)) == tied_count


@pytest.mark.parametrize("rule", ["all_pairs", "best_vs_each", "adjacent"])
@pytest.mark.parametrize("ranking", [STRICT, TIED, [[0, 1, 2]], [[4], [0, 1], [2, 3]]])
def test_chosen_always_ranks_above_rejected_and_ties_never_pair(rule, ranking):
    rank = {index: position for position, group in enumerate(ranking, 1) for index in group}
    for pair in ranking_pairs(ranking, rule):
        assert rank[pair.chosen] < rank[pair.rejected]
        assert (pair.chosen_rank, pair.rejected_rank) == (rank[pair.chosen], rank[pair.rejected])
    tied = {frozenset((tie.first, tie.second)) for tie in tied_pairs(ranking)}
    paired = {frozenset((pair.chosen, pair.rejected)) for pair in ranking_pairs(ranking, rule)}
    assert not tied & paired


def test_the_rules_pick_these_pairs_from_a_tied_ranking():
    assert ranking_pairs(TIED, "best_vs_each") == [
        RankedPair(2, 0, 1, 2),
        RankedPair(2, 1, 1, 2),
        RankedPair(2, 3, 1, 3),
    ]
    assert ranking_pairs(TIED, "adjacent") == [
        RankedPair(2, 0, 1, 2),
        RankedPair(2, 1, 1, 2),
        RankedPair(0, 3, 2, 3),
        RankedPair(1, 3, 2, 3),
    ]
    assert set(ranking_pairs(TIED, "all_pairs")) == {
        *ranking_pairs(TIED, "adjacent"),
        RankedPair(2, 3, 1, 3),
    }
    assert [(tie.first, tie.second, tie.rank) for tie in tied_pairs(TIED)] == [(0, 1, 2)]


def test_an_everything_tied_ranking_gives_no_pairs():
    assert ranking_pairs([[0, 1, 2]], "all_pairs") == []
    assert len(tied_pairs([[0, 1, 2]])) == 3


def test_an_unknown_rule_is_refused():
    with pytest.raises(ValueError, match="unknown ranking expansion"):
        ranking_pairs(TIED, "borda")


def ranked_item(campaign, ranking, *, n: int = 0) -> Pair:
    return ranking_item(
        campaign,
        n=n,
        conversation=[{"role": "user", "content": f"Rank answers {n}."}],
        status=Pair.Status.COMPLETE,
        labels_count=3,
        provenance=Pair.Provenance.MAJORITY,
        consensus_ranking=ranking,
        consensus_preference=0,
        disagreement=0.1,
    )


@pytest.mark.parametrize(("rule", "count"), [("all_pairs", 5), ("adjacent", 4)])
def test_export_expands_a_consensus_ranking_and_sends_ties_to_the_ties_file(
    db, tmp_path: Path, rule, count
):
    campaign = CampaignFactory(item_kind=ItemKind.RANKING, ranking_expansion=rule)
    item = ranked_item(campaign, TIED)
    path = tmp_path / "out.parquet"
    result = export_write(
        campaign=campaign,
        filters=ExportFilters(ties="separate"),
        file_format="parquet",
        destination=path,
    )
    rows = pq.read_table(path).to_pylist()
    assert pq.read_schema(path).names == MAIN_SCHEMA.names
    assert len(rows) == count == result.manifest["counts"]["rows"]
    for row in rows:
        provenance = row["ranking_pair"]
        assert provenance["item"] == item.pk == row["pair_id"]
        assert provenance["rule"] == rule
        assert provenance["first_rank"] < provenance["second_rank"]
        assert row["chosen"][-1]["content"] == f"answer 0.{provenance['first_index']}"
        assert row["rejected"][-1]["content"] == f"answer 0.{provenance['second_index']}"
        assert row["chosen"][0] == {"role": "user", "content": "Rank answers 0."}
        assert row["provenance"] == "majority"
    best_first = {
        (r["ranking_pair"]["first_index"], r["ranking_pair"]["second_index"]) for r in rows
    }
    assert (2, 3) in best_first if rule == "all_pairs" else (2, 3) not in best_first
    (tie,) = pq.read_table(unranked_path(path)).to_pylist()
    assert pq.read_schema(unranked_path(path)).names == UNRANKED_SCHEMA.names
    assert tie["preference"] == 0
    assert (tie["response_a"][-1]["content"], tie["response_b"][-1]["content"]) == (
        "answer 0.0",
        "answer 0.1",
    )
    assert tie["ranking_pair"]["first_rank"] == tie["ranking_pair"]["second_rank"] == 2


def test_jsonl_export_names_the_rule_and_pairwise_rows_have_no_ranking_pair(db, campaign):
    PairFactory(
        campaign=campaign,
        status=Pair.Status.COMPLETE,
        labels_count=3,
        provenance=Pair.Provenance.UNANIMOUS,
        consensus_preference=1,
    )
    ((ranked, row),) = list(export_rows(campaign=campaign, filters=ExportFilters()))
    assert ranked and row["ranking_pair"] is None
    ranking_campaign = CampaignFactory(item_kind=ItemKind.RANKING, ranking_expansion="best_vs_each")
    ranked_item(ranking_campaign, STRICT)
    rows = [row for ranked, row in export_rows(campaign=ranking_campaign, filters=ExportFilters())]
    assert [
        (r["ranking_pair"]["first_index"], r["ranking_pair"]["second_index"]) for r in rows
    ] == [
        (3, 1),
        (3, 0),
        (3, 2),
    ]


def test_training_reads_a_ranking_item_as_its_expanded_pairs(db):
    campaign = CampaignFactory(item_kind=ItemKind.RANKING, ranking_expansion="adjacent")
    item = ranked_item(campaign, TIED)
    data = training_pairs(campaign=campaign)
    assert len(data) == 4 and data.preferences == [1] * 4
    examples = [(chosen, rejected) for _c, chosen, rejected, _category in _examples(data)[0:4]]
    assert examples == [
        ("answer 0.2", "answer 0.0"),
        ("answer 0.2", "answer 0.1"),
        ("answer 0.0", "answer 0.3"),
        ("answer 0.1", "answer 0.3"),
    ]
    assert {pair.pk for pair in data.pairs} == {item.pk}
    # The expansion survives a subset (cross-validation's folds) and joining gold pairs.
    gold = PairFactory(campaign=campaign, is_gold=True, gold_preference=-1, status="complete")
    joined = data.subset([3, 1]) + gold_pairs(campaign=campaign)
    texts = [(chosen, rejected) for _c, chosen, rejected, _category in _examples(joined)[0:3]]
    assert texts == [
        ("answer 0.1", "answer 0.3"),
        ("answer 0.2", "answer 0.1"),
        (gold.response_b, gold.response_a),
    ]


def test_a_head_mode_job_trains_on_the_expanded_pairs_of_ranking_items(db, settings, tmp_path):
    from scoring.loop.model_jobs import job_run_inline
    from scoring.loop.requests import training_request
    from scoring.models import Job, ModelVersion
    from tests.scoring.loop_support import use_tiny_base

    use_tiny_base(settings, model_dir=tmp_path / "models")
    campaign = CampaignFactory(item_kind=ItemKind.RANKING, ranking_expansion="all_pairs")
    for n in range(3):
        ranked_item(campaign, TIED if n % 2 else STRICT, n=n)
    job = job_run_inline(job=training_request(campaign=campaign, enqueue=False))
    assert job.status == Job.Status.SUCCEEDED, job.error
    version = ModelVersion.objects.get(campaign=campaign)
    assert version.mode == "head"
    # Two strict items give 6 pairs each, the tied one 5.
    assert version.label_snapshot["pairs"] == 17


def test_head_mode_evaluation_of_expanded_pairs_uses_their_own_responses(db, settings, tmp_path):
    """Cross-validation holds out expanded pairs: read from cached vectors (head mode), their
    rewards must be those of the responses they compare, as a forward pass gives them, not those
    of the item's stored pair."""
    from scoring.loop.model_jobs import job_run_inline
    from scoring.loop.pool_scoring import load_version_model
    from scoring.loop.requests import training_request
    from scoring.loop.training import evaluate_pairs
    from scoring.models import Job, ModelVersion
    from tests.scoring.loop_support import use_tiny_base

    use_tiny_base(settings, model_dir=tmp_path / "models")
    campaign = CampaignFactory(item_kind=ItemKind.RANKING, ranking_expansion="all_pairs")
    for n in range(4):
        ranked_item(campaign, STRICT, n=n)
    job = job_run_inline(job=training_request(campaign=campaign, enqueue=False))
    assert job.status == Job.Status.SUCCEEDED, job.error
    version = ModelVersion.objects.get(campaign=campaign)
    model = load_version_model(version)
    data = training_pairs(campaign=campaign)
    # Half the expanded pairs flipped, so that accuracy depends on each pair's own responses.
    flipped = data.subset(range(len(data)))
    flipped.preferences[::2] = [-1] * len(flipped.preferences[::2])
    for judged in (data, flipped):
        from_vectors = evaluate_pairs(model=model, data=judged, key=version.metrics["encoder"])
        forward = evaluate_pairs(model=model, data=judged, key=None)
        assert from_vectors is not None and forward is not None
        assert from_vectors["accuracy"] == pytest.approx(forward["accuracy"])
    assert evaluate_pairs(model=model, data=flipped, key=None)["accuracy"] != pytest.approx(
        evaluate_pairs(model=model, data=data, key=None)["accuracy"]
    )


def test_the_label_snapshot_tells_a_reversed_ranking_apart(db):
    from scoring.loop.judged_pairs import heldout_pairs, label_snapshot

    campaign = CampaignFactory(item_kind=ItemKind.RANKING, ranking_expansion="all_pairs")
    item = ranked_item(campaign, [[0], [1], [2], [3]])
    first = label_snapshot(
        campaign=campaign,
        data=training_pairs(campaign=campaign),
        heldout=heldout_pairs(campaign=campaign),
    )
    Pair.objects.filter(pk=item.pk).update(consensus_ranking=[[3], [2], [1], [0]])
    data = training_pairs(campaign=campaign)
    second = label_snapshot(campaign=campaign, data=data, heldout=heldout_pairs(campaign=campaign))
    assert first["pairs"] == second["pairs"] == 6
    assert first["digest"] != second["digest"]
