"""Review 18b: a campaign's settings as the settings API (and the Django admin) take them.

A label change window of up to 2,147,483,647 minutes was taken; the workspace counts that
window back from now on every pair it shows (its "change your last answer" link), which
cannot be done past year 1, so every annotator of the campaign got a 400 ("A number in the
request is out of range") instead of their pair. The window is now at most a year."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse

from annotation.models import Campaign
from annotation.models.campaigns import MAX_LABEL_CHANGE_MINUTES
from annotation.services.assignments import assignment_next
from annotation.services.labels import LabelInput, label_submit
from tests.conftest import api_client_for
from tests.factories import CampaignFactory, PairFactory

pytestmark = pytest.mark.django_db


def _workspace_status(campaign: Campaign, user) -> int:  # noqa: ANN001
    browser = Client()
    browser.force_login(user)
    return browser.get(reverse("campaign-detail", args=[campaign.pk])).status_code


@pytest.mark.parametrize("minutes", [MAX_LABEL_CHANGE_MINUTES + 1, 2_147_483_647])
def test_a_label_change_window_over_a_year_is_refused_naming_it(admin_user, minutes):
    campaign = CampaignFactory(label_change_minutes=10)

    response = api_client_for(admin_user).patch(
        f"/api/campaigns/{campaign.pk}",
        {"label_change_minutes": minutes, "guidelines": "should not stick"},
        format="json",
    )

    assert response.status_code == 400, response.content
    body = response.json()
    assert body["code"] == "invalid_campaign"
    assert body["detail"].startswith("label_change_minutes:")
    stored = Campaign.objects.get(pk=campaign.pk)
    assert (stored.label_change_minutes, stored.guidelines) == (10, campaign.guidelines)


def test_the_workspace_serves_pairs_under_the_longest_window_taken(admin_user, annotator_a):
    campaign = CampaignFactory()
    PairFactory.create_batch(2, campaign=campaign)
    response = api_client_for(admin_user).patch(
        f"/api/campaigns/{campaign.pk}",
        {"label_change_minutes": MAX_LABEL_CHANGE_MINUTES},
        format="json",
    )
    assert response.status_code == 200, response.content
    campaign.refresh_from_db()
    first = assignment_next(campaign=campaign, annotator=annotator_a)
    assert first is not None
    label_submit(assignment=first, data=LabelInput(preference=1))

    # The next pair, with the answer just given still changeable.
    assert _workspace_status(campaign, annotator_a) == 200
