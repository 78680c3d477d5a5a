"""Review 19 (i): the dashboard's counts are grouped by thousands, as people read them; a
campaign of millions of pairs otherwise shows "40000000"."""

from __future__ import annotations

import pytest
from django.test import Client

from annotation.models import Pair
from tests.factories import CampaignFactory, PairFactory

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("private_cache")]


def test_counts_of_thousands_are_grouped_on_the_dashboard_and_its_index(admin_user):
    campaign = CampaignFactory()
    Pair.objects.bulk_create(
        PairFactory.build_batch(1234, campaign=campaign, status=Pair.Status.POOLED)
    )
    client = Client()
    client.force_login(admin_user)
    page = client.get(f"/campaigns/{campaign.pk}/dashboard/").content.decode()
    assert 'data-count="pending">1,234<' in page
    assert "1,234 pairs" in page
    index = client.get("/dashboard/").content.decode()
    assert "<td>1,234</td>" in index
    fragment = client.get(
        f"/campaigns/{campaign.pk}/dashboard/?part=progress", HTTP_HX_REQUEST="true"
    ).content.decode()
    assert 'data-count="pending">1,234<' in fragment


def test_a_campaign_with_pairs_left_is_never_shown_as_100_percent_complete(admin_user):
    campaign = CampaignFactory()
    Pair.objects.bulk_create(
        [
            *PairFactory.build_batch(199, campaign=campaign, status=Pair.Status.COMPLETE),
            PairFactory.build(campaign=campaign, status=Pair.Status.POOLED),
        ]
    )
    client = Client()
    client.force_login(admin_user)
    page = client.get(f"/campaigns/{campaign.pk}/dashboard/").content.decode()
    assert "99 % complete" in page  # 99.5 %, which rounding showed as 100 %


def test_whole_percent_reads_0_and_100_only_when_exact():
    from scoring.dashboard.selectors import whole_percent

    assert whole_percent(199, 200) == 99
    assert whole_percent(200, 200) == 100
    assert whole_percent(1, 1000) == 1
    assert whole_percent(0, 1000) == 0
    assert whole_percent(2, 3) == 67
