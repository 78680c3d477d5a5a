"""Only settled human judgments count as verified: a ranking item an expert discarded has no
chosen side in the export, and Stage 2's gold model does not learn from a voted pair that is
still waiting for an expert (the export leaves those out as well)."""

from __future__ import annotations

import pytest

from annotation.importers import content_hash
from annotation.models import ItemKind, Pair
from annotation.services.pair_state import pair_resolve
from scoring.datasets.export import ExportFilters, export_queryset, export_rows
from scoring.loop.judged_pairs import DEFAULT_GOLD_SOURCES, GOLD_SOURCES, gold_training_pairs
from tests.factories import CampaignFactory, PairFactory

pytestmark = pytest.mark.django_db


def test_a_discarded_ranking_item_is_exported_without_a_chosen_side():
    campaign = CampaignFactory(item_kind=ItemKind.RANKING, ranking_expansion="all_pairs")
    conversation = [{"role": "user", "content": "Rank answers."}]
    texts = [f"answer {k}" for k in range(3)]
    item = PairFactory(
        campaign=campaign,
        conversation=conversation,
        response_a=texts[0],
        response_b=texts[1],
        responses=[{"content": text, "model": ""} for text in texts],
        content_hash=content_hash(conversation, "ranked", "x"),
        status=Pair.Status.ESCALATED,
        labels_count=3,
        provenance=Pair.Provenance.MAJORITY,
        consensus_ranking=[[2], [0], [1]],
        consensus_preference=1,
        disagreement=0.5,
    )
    pair_resolve(pair_id=item.pk, preference=None, discarded=True, ranking=None)
    item.refresh_from_db()
    assert item.provenance == Pair.Provenance.DISCARDED and item.consensus_ranking is None
    rows = list(export_rows(campaign=campaign, filters=ExportFilters(provenance=("discarded",))))
    assert [ranked for ranked, _row in rows] == [False]  # one unresolved A/B row
    assert rows[0][1]["provenance"] == "discarded"
    # A row stored before the fix still holds its old ranking: the export ignores it.
    Pair.objects.filter(pk=item.pk).update(consensus_ranking=[[2], [0], [1]])
    rows = list(export_rows(campaign=campaign, filters=ExportFilters(provenance=("discarded",))))
    assert [ranked for ranked, _row in rows] == [False]


@pytest.mark.parametrize("provenance", ["unanimous", "majority"])
def test_the_gold_model_does_not_learn_from_a_pair_waiting_for_an_expert(provenance):
    campaign = CampaignFactory()
    pending = PairFactory(
        campaign=campaign,
        status=Pair.Status.ESCALATED,
        provenance=provenance,
        consensus_preference=1,
        labels_count=3,
    )
    settled = PairFactory(
        campaign=campaign,
        status=Pair.Status.COMPLETE,
        provenance=provenance,
        consensus_preference=-1,
        labels_count=3,
    )
    exported = set(
        export_queryset(
            campaign=campaign, filters=ExportFilters(provenance=(provenance,))
        ).values_list("pk", flat=True)
    )
    assert exported == {settled.pk}
    for sources in (DEFAULT_GOLD_SOURCES, GOLD_SOURCES):
        trained = gold_training_pairs(campaign=campaign, sources=sources).pair_ids
        assert pending.pk not in trained
        assert (settled.pk in trained) is (provenance in sources)


def test_the_reward_model_does_not_learn_from_a_pair_waiting_for_an_expert():
    from scoring.loop.judged_pairs import training_pairs, training_pairs_exist

    campaign = CampaignFactory()
    pending = PairFactory(
        campaign=campaign,
        status=Pair.Status.ESCALATED,
        provenance=Pair.Provenance.MAJORITY,
        consensus_preference=1,
        labels_count=3,
    )
    assert not len(training_pairs(campaign=campaign))
    assert training_pairs_exist(campaign=campaign) is False
    # The expert decides: now it is verified.
    pair_resolve(pair_id=pending.pk, preference=-1, discarded=False)
    assert training_pairs(campaign=campaign).pair_ids == [pending.pk]
    assert training_pairs(campaign=campaign).preferences == [-1]
    assert training_pairs_exist(campaign=campaign) is True
