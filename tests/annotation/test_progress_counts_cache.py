"""The campaign's pair counts under many annotators: one request counts again while the others
show the last counts, and a label that moved a pair during a count makes that count stale.

Dropping the counts on every completed pair sent every workspace request to count at once (a
GROUP BY over the campaign's pairs, a second or more at millions of pairs)."""

from __future__ import annotations

import pytest
from django.core.cache import cache

from annotation import selectors
from annotation.models import Pair
from annotation.selectors import campaign_pair_counts, campaign_pair_counts_forget
from tests.factories import CampaignFactory, PairFactory

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _clear_cache():
    cache.clear()
    yield
    cache.clear()


def _complete_one(campaign) -> None:
    pair = Pair.objects.filter(campaign=campaign, status=Pair.Status.QUEUED).earliest("id")
    Pair.objects.filter(pk=pair.pk).update(status=Pair.Status.COMPLETE)
    campaign_pair_counts_forget(campaign_id=campaign.pk)


def test_a_completed_pair_shows_at_once_and_counts_are_reused_until_then(
    django_assert_num_queries,
):
    campaign = CampaignFactory()
    PairFactory.create_batch(3, campaign=campaign)
    assert campaign_pair_counts(campaign=campaign)["complete"] == 0
    with django_assert_num_queries(0):
        assert campaign_pair_counts(campaign=campaign)["total"] == 3
    _complete_one(campaign)
    with django_assert_num_queries(1):
        assert campaign_pair_counts(campaign=campaign)["complete"] == 1


def test_while_one_request_counts_the_others_show_the_last_counts(django_assert_num_queries):
    campaign = CampaignFactory()
    PairFactory.create_batch(3, campaign=campaign)
    campaign_pair_counts(campaign=campaign)
    _complete_one(campaign)
    _counts, _generation, lock = selectors._pair_counts_keys(campaign.pk)
    assert cache.add(lock, 1, timeout=30)  # another request is counting
    with django_assert_num_queries(0):
        assert campaign_pair_counts(campaign=campaign)["complete"] == 0
    cache.delete(lock)
    with django_assert_num_queries(1):
        assert campaign_pair_counts(campaign=campaign)["complete"] == 1
    assert cache.get(lock) is None  # the recount let go of its lock


def test_a_pair_completed_during_a_count_makes_that_count_stale(monkeypatch):
    campaign = CampaignFactory()
    PairFactory.create_batch(3, campaign=campaign)
    counted = selectors._count_pairs

    def count_then_a_label_lands(campaign_):
        rows = counted(campaign_)
        _complete_one(campaign_)  # committed after the count read the table
        return rows

    monkeypatch.setattr(selectors, "_count_pairs", count_then_a_label_lands)
    assert campaign_pair_counts(campaign=campaign)["complete"] == 0
    monkeypatch.setattr(selectors, "_count_pairs", counted)
    assert campaign_pair_counts(campaign=campaign)["complete"] == 1


def test_counts_go_stale_with_time_when_nothing_forgets_them(monkeypatch):
    campaign = CampaignFactory()
    PairFactory.create_batch(2, campaign=campaign)
    assert campaign_pair_counts(campaign=campaign)["total"] == 2
    PairFactory(campaign=campaign)  # an import does not forget the counts
    assert campaign_pair_counts(campaign=campaign)["total"] == 2
    now = selectors.time.time()
    monkeypatch.setattr(selectors.time, "time", lambda: now + selectors.PROGRESS_CACHE_SECONDS + 1)
    assert campaign_pair_counts(campaign=campaign)["total"] == 3
