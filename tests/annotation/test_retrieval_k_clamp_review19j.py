"""Review 19j: a retrieval_k stored above 128 before the bound (the settings API took up to
32,767) is brought down to it by the upgrade: left as it was, the loop went on using it, and
every later settings change of the campaign was refused over a field it did not touch."""

from __future__ import annotations

import pytest
from django.db import connection

from annotation.models import Campaign
from annotation.services.campaigns import campaign_update
from tests.annotation.test_migrations_review16 import _migrate, back_to_leaf  # noqa: F401
from tests.factories import CampaignFactory

BEFORE_CLAMP = [("annotation", "0027_retrieval_k_bound")]
AT_CLAMP = [("annotation", "0028_retrieval_k_clamp")]


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("back_to_leaf")
def test_the_upgrade_brings_a_stored_retrieval_k_down_to_the_bound():
    large, usual = CampaignFactory(), CampaignFactory()
    _migrate(BEFORE_CLAMP)
    # As the settings API stored it before 0027 (a validator only: the column takes it).
    with connection.cursor() as cursor:
        cursor.execute("UPDATE annotation_campaign SET retrieval_k = 500 WHERE id = %s", [large.pk])

    _migrate(AT_CLAMP)

    assert Campaign.objects.get(pk=large.pk).retrieval_k == 128
    assert Campaign.objects.get(pk=usual.pk).retrieval_k == 8
    # A change of another setting is taken (it was refused: "retrieval_k: … at most 128").
    result = campaign_update(campaign=Campaign.objects.get(pk=large.pk), guidelines="Be brief.")
    assert list(result.changed) == ["guidelines"]


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("back_to_leaf")
def test_the_upgrade_brings_a_stored_quarantine_window_down_to_its_bound():
    """Review 19: quarantine_window took up to 32,767, and each label reads the annotator's
    last window of checks under its pair's row lock; now at most 1,000."""
    large = CampaignFactory()
    _migrate([("annotation", "0028_retrieval_k_clamp")])
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE annotation_campaign SET quarantine_window = 5000 WHERE id = %s", [large.pk]
        )

    _migrate([("annotation", "0029_quarantine_window_bound")])

    assert Campaign.objects.get(pk=large.pk).quarantine_window == 1000
    result = campaign_update(campaign=Campaign.objects.get(pk=large.pk), guidelines="Be brief.")
    assert list(result.changed) == ["guidelines"]


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("back_to_leaf")
def test_the_upgrade_turns_off_a_quarantine_that_could_never_fire():
    """Review 19: a campaign stored with more quarantine checks than its window holds (refused
    now) had every later settings change refused; its quarantine, which never fired, is off."""
    unreachable, reachable = CampaignFactory(), CampaignFactory()
    _migrate([("annotation", "0029_quarantine_window_bound")])
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE annotation_campaign SET quarantine_min_gold_accuracy = 0.7, "
            "quarantine_min_checks = 80, quarantine_window = 50 WHERE id = %s",
            [unreachable.pk],
        )
        cursor.execute(
            "UPDATE annotation_campaign SET quarantine_min_gold_accuracy = 0.7, "
            "quarantine_min_checks = 10, quarantine_window = 50 WHERE id = %s",
            [reachable.pk],
        )

    _migrate([("annotation", "0030_quarantine_unreachable_off")])

    off = Campaign.objects.get(pk=unreachable.pk)
    assert (off.quarantine_min_gold_accuracy, off.quarantine_min_agreement) == (0, 0)
    assert Campaign.objects.get(pk=reachable.pk).quarantine_min_gold_accuracy == 0.7
    result = campaign_update(campaign=off, guidelines="Be brief.")
    assert list(result.changed) == ["guidelines"]
