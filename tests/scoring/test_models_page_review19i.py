"""Review 19 (i): the models page a refused Retrain shows again is the whole page: it still
lists the campaign's cross-validations rather than saying there are none."""

from __future__ import annotations

import pytest
from django.test import Client

from scoring.models import Job
from tests.factories import CampaignFactory

pytestmark = pytest.mark.django_db


def test_a_refused_retrain_shows_the_models_page_with_its_cross_validations(admin_user):
    campaign = CampaignFactory()
    job = Job.objects.create(
        campaign=campaign, kind=Job.Kind.CROSS_VALIDATE, params={"mode": "head", "folds": 5}
    )
    client = Client()
    client.force_login(admin_user)
    response = client.post(f"/scoring/campaigns/{campaign.pk}/retrain", {"epochs": "1000"})
    assert response.status_code == 400
    html = response.content.decode()
    assert "No cross-validation yet" not in html
    assert f'data-job="{job.pk}"' in html
