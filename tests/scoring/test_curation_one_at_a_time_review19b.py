"""Review 19b: one curation of a campaign's pool at a time. Two at once (a double click, two
admins) each trained a gold model of their own and wrote kept/discarded verdicts over each
other's, each job counting the same pairs; the second is now refused with a 409 until the
first has finished, and another campaign's curation is not in the way."""

from __future__ import annotations

import io

import pytest
from django.core.management import CommandError, call_command

from scoring.datasets.curation import curation_create
from scoring.jobs.runner import JobConflict
from scoring.models import Job, ModelVersion
from tests.conftest import api_client_for
from tests.factories import CampaignFactory


def _versioned(campaign) -> None:
    ModelVersion.objects.create(campaign=campaign, number=1, base="b", checkpoint="c")


def test_a_second_curation_of_the_campaign_waits_for_the_first(campaign, admin_user, sent_tasks):
    _versioned(campaign)
    url = f"/api/campaigns/{campaign.pk}/curations"
    client = api_client_for(admin_user)
    first = client.post(url, {}, format="json")
    assert first.status_code == 202, first.content
    second = client.post(url, {"recycle": True}, format="json")
    assert second.status_code == 409, second.content
    assert f"job {first.json()['job']}" in second.json()["detail"]
    assert Job.objects.filter(kind=Job.Kind.CURATE).count() == 1

    with pytest.raises(CommandError, match="already queued"):
        call_command("curate_pool", "--campaign", campaign.name, stdout=io.StringIO())

    other = CampaignFactory()
    _versioned(other)
    assert curation_create(campaign=other, enqueue=False).status == Job.Status.QUEUED

    Job.objects.filter(pk=first.json()["job"]).update(status=Job.Status.SUCCEEDED)
    assert client.post(url, {}, format="json").status_code == 202


def test_bad_parameters_are_still_a_400_while_a_curation_runs(campaign, sent_tasks):
    _versioned(campaign)
    running = curation_create(campaign=campaign, enqueue=False)
    Job.objects.filter(pk=running.pk).update(status=Job.Status.RUNNING)
    with pytest.raises(JobConflict):
        curation_create(campaign=campaign, enqueue=False)
    with pytest.raises(Exception, match="no ready model version 9") as refused:
        curation_create(campaign=campaign, params={"gold_version": 9}, enqueue=False)
    assert refused.value.status == 400
