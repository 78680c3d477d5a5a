"""A quarantine that could never fire is refused: the rolling window holds at most
``quarantine_window`` checks of each measure, so a ``quarantine_min_checks`` above it was
never reached and the annotator was never quarantined, whatever their figures."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError

from annotation.models import Campaign
from reviewers.services.member_quality import quarantine_reasons, rolling_figures
from tests.conftest import api_client_for
from tests.factories import CampaignFactory

pytestmark = pytest.mark.django_db


def test_a_minimum_above_the_window_is_refused_while_quarantine_is_on():
    campaign = CampaignFactory.build(
        quarantine_min_gold_accuracy=0.8, quarantine_min_checks=20, quarantine_window=10
    )
    with pytest.raises(ValidationError) as refused:
        campaign.clean()
    assert "quarantine_min_checks" in refused.value.message_dict


def test_the_window_may_equal_the_minimum_and_off_quarantine_takes_any_pair():
    CampaignFactory.build(
        quarantine_min_agreement=0.5, quarantine_min_checks=10, quarantine_window=10
    ).clean()
    # Off (both minimums 0): the two numbers mean nothing yet, so nothing is refused.
    CampaignFactory.build(quarantine_min_checks=20, quarantine_window=10).clean()


def test_the_settings_api_refuses_it_naming_the_field(admin_user):
    campaign = CampaignFactory()
    response = api_client_for(admin_user).patch(
        f"/api/campaigns/{campaign.pk}",
        {"quarantine_min_gold_accuracy": 0.8, "quarantine_window": 5},
        format="json",
    )
    assert response.status_code == 400, response.content
    assert "quarantine_min_checks" in str(response.json())
    assert Campaign.objects.get(pk=campaign.pk).quarantine_min_gold_accuracy == 0


def test_why_the_window_must_hold_the_minimum():
    # The figures of a window of 5 hold at most 5 checks: a minimum of 10 is never met.
    campaign = CampaignFactory(
        quarantine_min_gold_accuracy=0.8, quarantine_min_checks=10, quarantine_window=5
    )
    figures = rolling_figures(campaign=campaign, annotator_id=0)
    figures.update(gold_checks=campaign.quarantine_window, gold_correct=0, gold_accuracy=0.0)
    assert quarantine_reasons(figures) == []
