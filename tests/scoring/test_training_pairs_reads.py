"""What the loop reads to train: only the fields training uses, and no training set loaded just
to learn whether there is one (the loop job did, then loaded it again to train)."""

from __future__ import annotations

import dataclasses

import pytest

from annotation.models import ItemKind, Pair
from scoring.loop.judged_pairs import (
    TRAINING_FIELDS,
    JudgedPair,
    heldout_pairs,
    label_snapshot,
    training_pairs,
    training_pairs_exist,
)
from scoring.loop.training import _accuracy_report, _examples
from tests.factories import CampaignFactory, PairFactory
from tests.scoring.test_ranking_expansion import ranked_item

pytestmark = pytest.mark.django_db


def _verified(campaign, n: int, **fields) -> list[Pair]:
    return [
        PairFactory(
            campaign=campaign,
            status=Pair.Status.COMPLETE,
            provenance=Pair.Provenance.MAJORITY,
            consensus_preference=1 if i % 2 else -1,
            task_category="math",
            annotation_guideline="a very long guideline " * 500,
            **fields,
        )
        for i in range(n)
    ]


def test_training_reads_no_field_it_does_not_use(django_assert_num_queries):
    campaign = CampaignFactory()
    _verified(campaign, 4)
    PairFactory(campaign=campaign, is_gold=True, gold_preference=1, status=Pair.Status.COMPLETE)
    data = training_pairs(campaign=campaign)
    heldout = heldout_pairs(campaign=campaign)
    assert len(data) == 4 and len(heldout) == 1
    # Neither the long fields nothing reads nor the texts, which are read a chunk at a time:
    # a slotted record of the training fields only (a model instance with its other fields
    # deferred took about 830 bytes a pair, 8 GB for 10M verified pairs).
    assert [field.name for field in dataclasses.fields(JudgedPair)] == [
        "pk",
        *TRAINING_FIELDS[1:],
    ]
    for pair in [*data.pairs, *heldout.pairs]:
        assert type(pair) is JudgedPair and not hasattr(pair, "__dict__")
    assert data.pairs[0].task_category is data.pairs[1].task_category  # one string for all
    # Everything the training job reads of them comes without a query per pair.
    import numpy as np

    with django_assert_num_queries(0):
        examples = _examples(data)
        _accuracy_report(np.ones(len(data), dtype=bool), data)
        _examples(heldout)
    with django_assert_num_queries(1):
        read = examples[0:4]
    assert [example[3] for example in read] == ["math"] * 4
    with django_assert_num_queries(2):  # the labels' count and the highest label id
        snapshot = label_snapshot(campaign=campaign, data=data, heldout=heldout)
    assert snapshot["by_provenance"] == {"majority": 4}


def test_training_texts_are_read_a_chunk_at_a_time_in_the_chosen_orientation(
    monkeypatch, django_assert_num_queries
):
    import scoring.loop.judged_pairs as judged_pairs

    monkeypatch.setattr(judged_pairs, "TEXT_CHUNK", 2)
    campaign = CampaignFactory()
    stored = _verified(campaign, 5)
    data = training_pairs(campaign=campaign)
    examples = _examples(data)
    with django_assert_num_queries(3):  # five pairs, two a query
        read = examples[0:5]
    by_id = {pair.pk: pair for pair in stored}
    for pair, preference, (conversation, chosen, rejected, _category) in zip(
        data.pairs, data.preferences, read, strict=True
    ):
        original = by_id[pair.pk]
        assert conversation == original.conversation
        expected = (original.response_a, original.response_b)
        assert (chosen, rejected) == (expected if preference > 0 else expected[::-1])
    assert examples[-1] == read[-1] and examples[1:3] == read[1:3]
    with django_assert_num_queries(3):
        assert list(examples) == read


def test_a_pair_deleted_while_training_reads_it_fails_the_job_plainly():
    from scoring.jobs.runner import JobError

    campaign = CampaignFactory()
    stored = _verified(campaign, 2)
    examples = _examples(training_pairs(campaign=campaign))
    Pair.objects.filter(pk=stored[1].pk).delete()
    with pytest.raises(JobError, match=f"pair {stored[1].pk} was deleted"):
        examples[0:2]


def test_whether_there_is_anything_to_train_on_agrees_with_loading_it():
    campaign = CampaignFactory()
    assert training_pairs_exist(campaign=campaign) is False
    gold = [
        PairFactory(campaign=campaign, is_gold=True, gold_preference=1, status="complete")
        for _ in range(6)
    ]
    assert gold
    for share in (0.0, 0.5, 1.0):
        expected = bool(len(training_pairs(campaign=campaign, train_on_gold_share=share)))
        assert training_pairs_exist(campaign=campaign, train_on_gold_share=share) is expected
    assert training_pairs_exist(campaign=campaign, train_on_gold_share=1.0) is True
    _verified(campaign, 1)
    assert training_pairs_exist(campaign=campaign) is True


def test_a_ranking_campaign_with_only_tied_rankings_has_nothing_to_train_on():
    campaign = CampaignFactory(item_kind=ItemKind.RANKING, ranking_expansion="adjacent")
    ranked_item(campaign, [[0, 1, 2, 3]], n=0)  # all four tied: no pair
    assert not len(training_pairs(campaign=campaign))
    assert training_pairs_exist(campaign=campaign) is False
    ranked_item(campaign, [[2], [0, 1], [3]], n=1)
    assert len(training_pairs(campaign=campaign))
    assert training_pairs_exist(campaign=campaign) is True
