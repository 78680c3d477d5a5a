"""``ARBITER_BASE_MODEL_ROOTS``: where a retrain asked for from the web may take its base model
from. Outside the roots (and the model store's own checkpoints) a path is refused before it is
read, so the answer is the same whether something exists there or not; links and ".." are
judged by where they lead. Unset, any local directory passes (as before)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from django.test import Client

from annotation.models import CampaignMember
from annotation.services.members import member_add
from scoring.models import Job
from tests.conftest import api_client_for
from tests.factories import CampaignFactory

pytestmark = pytest.mark.django_db

REFUSED = "not under a directory that base models may be taken from"


def _model_dir(path: Path) -> Path:
    path.mkdir(parents=True)
    (path / "config.json").write_text(json.dumps({"max_position_embeddings": 512}))
    return path


@pytest.fixture
def layout(settings, tmp_path) -> dict[str, Path]:
    paths = {"store": tmp_path / "models", "bases": tmp_path / "bases"}
    paths["allowed"] = _model_dir(paths["bases"] / "minilm")
    paths["private"] = _model_dir(tmp_path / "private" / "their-model")
    settings.ARBITER = {
        **settings.ARBITER,
        "MODEL_DIR": paths["store"],
        "BASE_MODEL_ROOTS": [paths["bases"]],
    }
    return paths


@pytest.fixture
def campaign_admin_api(annotator_a, sent_tasks):  # noqa: ANN201
    campaign = CampaignFactory()
    member_add(campaign=campaign, user=annotator_a, role=CampaignMember.Role.ADMIN)
    api = api_client_for(annotator_a)

    def retrain(base_model: str):  # noqa: ANN202
        return api.post(
            f"/api/campaigns/{campaign.pk}/retrain", {"base_model": base_model}, format="json"
        )

    retrain.campaign = campaign
    return retrain


def test_a_base_model_outside_the_roots_is_refused_alike_whether_it_exists_or_not(
    layout, campaign_admin_api
):
    private = layout["private"]
    (layout["bases"] / "escape").symlink_to(private)
    answers = [
        campaign_admin_api(str(path))
        for path in (
            private,  # a model directory
            private.parent / "nothing-here",  # nothing
            private.parent,  # a folder, not a model
            layout["bases"] / ".." / "private" / "their-model",  # ".." out of a root
            layout["bases"] / "escape",  # a link out of a root
            "bases/minilm",  # relative: the worker would read it from its own directory
        )
    ]
    for answer in answers:
        assert answer.status_code == 400, answer.content
        assert REFUSED in answer.json()["detail"]
    details = {answer.json()["detail"].split(": ", 2)[-1].split(" is ", 1)[1] for answer in answers}
    assert len(details) == 1  # the same words each time, only the path differs
    assert not Job.objects.exists()


def test_a_base_model_under_a_root_or_the_campaigns_own_checkpoint_passes(
    layout, campaign_admin_api
):
    campaign = campaign_admin_api.campaign
    own = _model_dir(layout["store"] / f"campaign-{campaign.pk}" / "v1")
    for path in (layout["allowed"], own):
        started = campaign_admin_api(str(path))
        assert started.status_code == 202, started.content
        Job.objects.filter(pk=started.json()["id"]).update(status=Job.Status.SUCCEEDED)
    other = _model_dir(layout["store"] / f"campaign-{campaign.pk + 1000}" / "v1")
    refused = campaign_admin_api(str(other))
    assert refused.status_code == 400 and "another campaign" in refused.json()["detail"]


def test_the_campaigns_current_setting_passes_as_it_stands(layout, admin_user, annotator_a):
    campaign = CampaignFactory()
    member_add(campaign=campaign, user=annotator_a, role=CampaignMember.Role.ADMIN)
    url = f"/api/campaigns/{campaign.pk}/retrain"
    # Chosen by a site admin before the roots were set (the check is the same for them).
    Job.objects.create(
        kind=Job.Kind.LOOP,
        campaign=campaign,
        status=Job.Status.SUCCEEDED,
        params={"mode": "head", "base_model": str(layout["private"])},
    )
    kept = api_client_for(annotator_a).post(
        url, {"base_model": str(layout["private"])}, format="json"
    )
    assert kept.status_code == 202, kept.content


def test_the_retrain_form_says_why(layout, annotator_a, sent_tasks):
    campaign = CampaignFactory()
    member_add(campaign=campaign, user=annotator_a, role=CampaignMember.Role.ADMIN)
    client = Client()
    client.force_login(annotator_a)
    answer = client.post(
        f"/scoring/campaigns/{campaign.pk}/retrain",
        {"mode": "head", "base_model": str(layout["private"])},
        HTTP_HX_REQUEST="true",
    )
    assert answer.status_code == 422 and REFUSED in answer.content.decode()
    assert not Job.objects.exists()


def test_without_roots_any_local_model_directory_passes(settings, layout, campaign_admin_api):
    settings.ARBITER = {**settings.ARBITER, "BASE_MODEL_ROOTS": []}
    started = campaign_admin_api(str(layout["private"]))
    assert started.status_code == 202, started.content
