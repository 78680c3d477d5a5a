"""A campaign admin may not retrain from another campaign's checkpoint: its weights learnt
that campaign's labels, whose versions answer them 404. Their own campaign's versions, paths
outside the model store, a site admin's choice and the campaign's current setting still pass."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from django.test import Client

from annotation.models import CampaignMember
from annotation.services.members import member_add
from scoring.jobs.runner import JobError
from scoring.loop.training import base_model_check_access
from scoring.models import Job
from tests.conftest import api_client_for
from tests.factories import CampaignFactory

pytestmark = pytest.mark.django_db

HTMX = {"HTTP_HX_REQUEST": "true"}


def _checkpoint(path: Path) -> Path:
    path.mkdir(parents=True)
    (path / "config.json").write_text(json.dumps({"max_position_embeddings": 512}))
    return path


@pytest.fixture
def store(settings, tmp_path) -> Path:
    root = tmp_path / "models"
    settings.ARBITER = {**settings.ARBITER, "MODEL_DIR": root}
    return root


@pytest.fixture
def campaigns(annotator_a, store, sent_tasks):
    mine, theirs = CampaignFactory(), CampaignFactory()
    member_add(campaign=mine, user=annotator_a, role=CampaignMember.Role.ADMIN)
    return mine, theirs


def test_the_api_refuses_another_campaigns_checkpoint_and_starts_nothing(
    annotator_a, campaigns, store
):
    mine, theirs = campaigns
    _checkpoint(store / f"campaign-{theirs.pk}" / "v1")
    _checkpoint(store / f"campaign-{mine.pk}" / "v1")
    api = api_client_for(annotator_a)
    url = f"/api/campaigns/{mine.pk}/retrain"
    for path in (
        f"{store}/campaign-{theirs.pk}/v1",
        # Through its own folder: judged by where it leads.
        f"{store}/campaign-{mine.pk}/../campaign-{theirs.pk}/v1",
    ):
        refused = api.post(url, {"base_model": path}, format="json")
        assert refused.status_code == 400, refused.content
        assert "another campaign" in refused.json()["detail"]
    assert not Job.objects.exists()
    allowed = api.post(url, {"base_model": f"{store}/campaign-{mine.pk}/v1"}, format="json")
    assert allowed.status_code == 202, allowed.content


def test_the_retrain_form_refuses_another_campaigns_checkpoint(annotator_a, campaigns, store):
    mine, theirs = campaigns
    base = _checkpoint(store / f"campaign-{theirs.pk}" / "v2")
    client = Client()
    client.force_login(annotator_a)
    retrain = f"/scoring/campaigns/{mine.pk}/retrain"
    refused = client.post(retrain, {"mode": "head", "base_model": str(base)}, **HTMX)
    assert refused.status_code == 422 and "another campaign" in refused.content.decode()
    plain = client.post(retrain, {"mode": "head", "base_model": str(base)})
    assert plain.status_code == 400 and "another campaign" in plain.content.decode()
    assert not Job.objects.exists()


def test_a_site_admins_choice_stays_the_campaigns_setting(
    admin_user, annotator_a, campaigns, store, tmp_path
):
    mine, theirs = campaigns
    base = _checkpoint(store / f"campaign-{theirs.pk}" / "v3")
    outside = _checkpoint(tmp_path / "bases" / "minilm")
    started = api_client_for(admin_user).post(
        f"/api/campaigns/{mine.pk}/retrain", {"base_model": str(base)}, format="json"
    )
    assert started.status_code == 202, started.content
    Job.objects.filter(pk=started.json()["id"]).update(status=Job.Status.SUCCEEDED)
    api = api_client_for(annotator_a)
    url = f"/api/campaigns/{mine.pk}/retrain"
    kept = api.post(url, {"base_model": str(base)}, format="json")
    assert kept.status_code == 202, kept.content
    Job.objects.filter(pk=kept.json()["id"]).update(status=Job.Status.SUCCEEDED)
    moved = api.post(url, {"base_model": str(outside)}, format="json")
    assert moved.status_code == 202, moved.content
    assert Job.objects.get(pk=moved.json()["id"]).params["base_model"] == str(outside)


def test_the_check_reads_the_path_as_the_settings_do(annotator_a, campaigns, store):
    # parse_training_settings strips the text: so does the check, or " /…" would pass it as
    # a relative path and then be stored as the other campaign's checkpoint.
    mine, theirs = campaigns
    base = _checkpoint(store / f"campaign-{theirs.pk}" / "v4")
    with pytest.raises(JobError, match="another campaign"):
        base_model_check_access(base_model=f"  {base}\n", campaign=mine, user=annotator_a)
