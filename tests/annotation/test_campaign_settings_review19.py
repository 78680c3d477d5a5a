"""Review 19: settings that had no upper bound. ``retrieval_k`` took up to 32,767 through the
settings API, and the loop holds sources × k neighbours at once."""

from __future__ import annotations

import pytest

from annotation.models import Campaign
from tests.conftest import api_client_for
from tests.factories import CampaignFactory

pytestmark = pytest.mark.django_db


def test_retrieval_k_is_at_most_128(admin_user):
    campaign = CampaignFactory()
    api = api_client_for(admin_user)
    refused = api.patch(f"/api/campaigns/{campaign.pk}", {"retrieval_k": 129}, format="json")
    assert refused.status_code == 400, refused.content
    assert "retrieval_k" in refused.content.decode()
    assert Campaign.objects.get(pk=campaign.pk).retrieval_k == 8
    kept = api.patch(f"/api/campaigns/{campaign.pk}", {"retrieval_k": 128}, format="json")
    assert kept.status_code == 200, kept.content
    assert Campaign.objects.get(pk=campaign.pk).retrieval_k == 128


def test_quarantine_window_is_at_most_1000(admin_user):
    campaign = CampaignFactory()
    api = api_client_for(admin_user)
    refused = api.patch(f"/api/campaigns/{campaign.pk}", {"quarantine_window": 1001}, format="json")
    assert refused.status_code == 400, refused.content
    assert "quarantine_window" in refused.content.decode()
    kept = api.patch(f"/api/campaigns/{campaign.pk}", {"quarantine_window": 1000}, format="json")
    assert kept.status_code == 200, kept.content
