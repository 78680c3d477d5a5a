"""The activation gate: a newly trained version becomes active only if it is not worse."""

from __future__ import annotations

import shutil

import pytest
from django.urls import reverse

from annotation.models import Campaign
from scoring.loop.registry import activation_gate_reason, model_version_activate
from scoring.loop.requests import training_request
from scoring.models import Job, ModelVersion
from tests.conftest import wait_for
from tests.scoring.loop_support import (
    campaign_models_dir,
    label_queue,
    make_loop_campaign,
    use_tiny_base,
)


def _reason(accuracy, active=None, *, heldout=100, tolerance=0.0):
    return activation_gate_reason(
        accuracy=accuracy,
        heldout=heldout,
        active_accuracy=active,
        active_number=None if active is None else 3,
        tolerance=tolerance,
    )


def test_a_version_no_worse_than_the_active_one_passes():
    assert _reason(0.80, 0.80) == ""
    assert _reason(0.81, 0.80) == ""
    assert _reason(0.78, 0.80, tolerance=0.02) == ""


def test_a_version_worse_by_more_than_the_tolerance_is_refused_with_the_figures():
    assert _reason(0.79, 0.80) == (
        "held-out accuracy 0.790 is more than 0.000 below the active v3's 0.800"
    )
    assert "more than 0.020 below" in _reason(0.77, 0.80, tolerance=0.02)


def test_a_first_version_needs_half_right_on_fifty_or_more_heldout_pairs():
    assert "below 0.5, the minimum for a first version" in _reason(0.45, heldout=50)
    assert _reason(0.45, heldout=49) == ""  # too few pairs to judge
    assert _reason(0.5, heldout=500) == ""


def test_without_a_measure_there_is_nothing_to_compare():
    assert _reason(None, 0.9) == ""
    assert _reason(0.1, None, heldout=10) == ""


@pytest.mark.worker
@pytest.mark.smoke
def test_a_retrained_version_below_the_gate_is_registered_not_activated(
    worker, settings, client, admin_user, annotator_a, annotator_b, annotator_c
):
    use_tiny_base(settings)
    # Demand a gain of at least 0.01: the same labels retrained give the same accuracy.
    campaign = make_loop_campaign(labelled=8, pooled=4, gold=6, activation_tolerance=-0.01)
    try:
        label_queue(campaign, [annotator_a, annotator_b, annotator_c])
        first = training_request(campaign=campaign)
        wait_for(lambda: Job.objects.get(pk=first.pk).is_finished, timeout=240, what="v1")
        assert Job.objects.get(pk=first.pk).status == Job.Status.SUCCEEDED
        v1 = ModelVersion.objects.get(campaign=campaign, number=1)
        assert v1.is_active and v1.activation_note == ""

        second = training_request(campaign=campaign)
        wait_for(lambda: Job.objects.get(pk=second.pk).is_finished, timeout=240, what="v2")
        second.refresh_from_db()
        assert second.status == Job.Status.SUCCEEDED, second.error
        v2 = ModelVersion.objects.get(campaign=campaign, number=2)
        assert v2.heldout_accuracy == v1.heldout_accuracy
        assert not v2.is_active and ModelVersion.objects.get(pk=v1.pk).is_active
        assert "below the active v1's" in v2.activation_note
        assert second.result["active"] is False
        assert second.log_lines.filter(
            message__startswith="v2 registered but not activated: held-out accuracy"
        ).exists()

        client.force_login(admin_user)
        page = client.get(reverse("scoring-campaign-models", args=[campaign.pk]))
        assert page.status_code == 200
        assert "not activated: held-out accuracy" in page.content.decode()

        # An admin can still activate it by hand.
        v2 = model_version_activate(version=v2)
        assert v2.is_active and v2.activation_note == ""
        assert Campaign.objects.get(pk=campaign.pk).activation_tolerance == -0.01
    finally:
        shutil.rmtree(campaign_models_dir(campaign), ignore_errors=True)
