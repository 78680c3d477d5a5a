"""The dashboard's annotator table agrees with itself: the pace columns count the same labels
as the Labels column (regular and re-test labels; gold checks are measured apart)."""

from __future__ import annotations

import pytest

from annotation.models import Assignment
from scoring.dashboard.selectors import annotator_table
from tests.factories import PairFactory
from tests.reviewers.factories import add_label

pytestmark = pytest.mark.django_db


def test_labels_and_last_hour_count_the_same_labels(campaign, annotator_a):
    for pair in PairFactory.create_batch(3, campaign=campaign):
        add_label(pair, annotator_a, 1)
    gold = PairFactory(campaign=campaign, is_gold=True, gold_preference=1)
    add_label(gold, annotator_a, 1, kind=Assignment.Kind.GOLD)

    (row,) = annotator_table(campaign=campaign, refresh=True)["rows"]

    assert row["gold_checks"] == 1
    assert row["labels"] == row["last_hour"] == row["last_day"] == 3
