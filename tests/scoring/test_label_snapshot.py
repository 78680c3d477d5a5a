"""What a version records of the labels it saw: counted in chunks, one digest line a pair."""

from __future__ import annotations

import hashlib

import pytest

from annotation.models import Label
from scoring.loop import judged_pairs
from scoring.loop.judged_pairs import (
    JudgedPairs,
    heldout_pairs,
    label_snapshot,
    training_pairs,
)
from tests.scoring.loop_support import label_queue, make_loop_campaign

pytestmark = pytest.mark.django_db


def test_the_snapshot_counts_each_pairs_labels_once_in_chunks(
    monkeypatch, annotator_a, annotator_b, annotator_c
):
    # It sent one IN list of every training pair's id: 80 MB of SQL at 10M pairs.
    campaign = make_loop_campaign(labelled=7, pooled=0, gold=2)
    label_queue(campaign, [annotator_a, annotator_b, annotator_c])
    data = training_pairs(campaign=campaign)
    # A ranking item's id stands for several pairs: an id given twice counts its labels once.
    doubled = JudgedPairs(data.pairs + data.pairs[:2], data.preferences + data.preferences[:2])
    monkeypatch.setattr(judged_pairs, "_SNAPSHOT_CHUNK", 2)
    snapshot = label_snapshot(
        campaign=campaign, data=doubled, heldout=heldout_pairs(campaign=campaign)
    )
    ids = doubled.pair_ids
    expected_labels = Label.objects.filter(pair_id__in=ids, is_gold_check=False).count()
    lines = "\n".join(f"{i}:{p}" for i, p in zip(ids, doubled.preferences, strict=True))
    assert len(set(ids)) == 7 and expected_labels == 21
    assert snapshot["labels"] == expected_labels
    assert snapshot["digest"] == hashlib.sha256(lines.encode()).hexdigest()
    assert snapshot["pairs"] == 9 and snapshot["heldout_gold_pairs"] == 2
