"""Review 16: planning shards reads a bounded page of ids whatever the shard size.

A shard was one page (``LIMIT size``), so ``--shard-size`` 2**31-1 held the whole pool's ids
in memory (about 93 bytes a pair: 3.7 GB at 40M pairs)."""

from __future__ import annotations

import tracemalloc

import pytest

from annotation.models import Pair
from scoring.jobs import shards
from scoring.jobs.shards import SHARD_SIZE_MAX, ShardRange, shard_ranges
from tests.factories import CampaignFactory

pytestmark = pytest.mark.django_db


def _pool(campaign, n: int, offset: int = 0) -> None:
    Pair.objects.bulk_create(
        [
            Pair(
                campaign=campaign,
                conversation=[{"role": "user", "content": f"q{offset + i}"}],
                response_a="a",
                response_b="b",
                content_hash=f"h{offset + i}",
                status=Pair.Status.POOLED,
            )
            for i in range(n)
        ],
        batch_size=5000,
    )


def test_shards_are_consecutive_ranges_of_the_given_size(monkeypatch):
    monkeypatch.setattr(shards, "_PLAN_PAGE", 3)  # pages smaller than a shard, and larger
    campaign = CampaignFactory()
    _pool(campaign, 10)
    ids = list(Pair.objects.filter(campaign=campaign).order_by("id").values_list("id", flat=True))
    targets = Pair.objects.filter(campaign=campaign)
    for size in (1, 2, 3, 4, 7, 10, 11, SHARD_SIZE_MAX):
        expected = [
            ShardRange(ids[i], ids[min(i + size, len(ids)) - 1], len(ids[i : i + size]))
            for i in range(0, len(ids), size)
        ]
        assert list(shard_ranges(targets, size)) == expected, size
    assert list(shard_ranges(Pair.objects.none(), 5)) == []


def _plan_peak(campaign) -> tuple[int, list[ShardRange]]:
    targets = Pair.objects.filter(campaign=campaign)
    tracemalloc.start()
    try:
        ranges = list(shard_ranges(targets, SHARD_SIZE_MAX))
        return tracemalloc.get_traced_memory()[1], ranges
    finally:
        tracemalloc.stop()


def test_planning_one_shard_as_large_as_the_pool_holds_a_page_of_ids(monkeypatch):
    # Pages of 2,500 ids: the pools hold 2 and 8 pages (as 20,000 and 80,000 pairs do at the
    # shipped 10,000), a quarter of the rows to insert.
    monkeypatch.setattr(shards, "_PLAN_PAGE", 2_500)
    campaign = CampaignFactory()
    _pool(campaign, 5_000)
    small, _ = _plan_peak(campaign)
    _pool(campaign, 15_000, offset=5_000)
    large, ranges = _plan_peak(campaign)
    assert [shard.count for shard in ranges] == [20_000]
    assert large < 1.5 * small, (small, large)  # before: 1.87 MB, then 7.48 MB
