"""Review 20: an export's progress counts the pairs it has read, as its message says ("N of M
pairs"), not the rows it has written. A ranking item writes several rows and a rewrite one more,
so a ranking campaign's job read 100 % ("18 of 6 pairs") with most of its pairs still to
read; a pair left out as a repeat or as contaminated writes none, so an export that drops many
never reached its total."""

from __future__ import annotations

from annotation.models import ItemKind, Pair
from scoring.datasets.export import ExportFilters, export_write
from tests.factories import CampaignFactory, PairFactory, ranking_item


def _progress(campaign, tmp_path, **filters) -> list[tuple[int, int]]:
    calls: list[tuple[int, int]] = []
    export_write(
        campaign=campaign,
        filters=ExportFilters(**filters),
        file_format="jsonl",
        destination=tmp_path / "out.jsonl",
        chunk_size=2,
        on_progress=lambda done, total: calls.append((done, total)),
    )
    return calls


def test_a_ranking_campaigns_progress_counts_items_not_expanded_rows(db, tmp_path):
    campaign = CampaignFactory(item_kind=ItemKind.RANKING, ranking_expansion="all_pairs")
    for n in range(6):
        ranking_item(
            campaign,
            n=n,
            status=Pair.Status.COMPLETE,
            labels_count=3,
            provenance=Pair.Provenance.UNANIMOUS,
            consensus_ranking=[[0], [1], [2], [3]],
            consensus_preference=2,
        )
    calls = _progress(campaign, tmp_path)
    # Six rows an item (all pairs of four): the old count passed the total at the first item.
    assert calls, "no progress reported"
    assert all(done <= total == 6 for done, total in calls), calls
    assert calls[-1] == (6, 6)
    assert [done for done, _ in calls] == sorted(done for done, _ in calls)


def test_pairs_left_out_as_repeats_count_towards_the_progress(campaign, tmp_path):
    conversation = [{"role": "user", "content": "Which is right?"}]
    for n in range(6):
        # One pair and five exact repeats of it: one row is written, six pairs are read.
        PairFactory(
            campaign=campaign,
            conversation=conversation,
            response_a="yes",
            response_b="no",
            content_hash=f"repeat-{n}",
            is_gold=True,
            gold_preference=1,
            provenance="gold",
            status=Pair.Status.COMPLETE,
        )
    calls = _progress(campaign, tmp_path)
    assert calls[-1] == (6, 6), calls
    assert len(calls) >= 3  # every chunk of two pairs read, though only one row is written
