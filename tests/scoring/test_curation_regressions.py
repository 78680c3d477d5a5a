"""Curation defects a reviewer reproduced: NUL characters in the parameters and in an uploaded
evaluation set, an evaluation set name longer than the column, a shard size below 1 and
evaluation set names that match nothing, each refused before anything is stored."""

from __future__ import annotations

import io
import json

import pytest
from django.core.management import CommandError, call_command

from scoring.datasets.curation import CurationError, CurationParams, curation_create
from scoring.models import EvaluationPrompt, EvaluationSet, Job, ModelVersion
from tests.conftest import api_client_for
from tests.factories import CampaignFactory


def test_a_nul_character_in_a_curation_parameter_is_refused_naming_it(campaign, admin_user):
    with pytest.raises(CurationError, match="evaluation_sets: text may not contain NUL"):
        CurationParams.from_params({"evaluation_sets": ["bench\x00"]})
    response = api_client_for(admin_user).post(
        f"/api/campaigns/{campaign.pk}/curations",
        {"evaluation_sets": ["bench\u0000"]},
        format="json",
    )
    assert response.status_code == 400, response.content
    assert "evaluation_sets" in response.content.decode()
    assert not Job.objects.exists()


def _upload(campaign, tmp_path, lines: list[str], *extra: str) -> None:
    path = tmp_path / "bench.jsonl"
    path.write_text("".join(json.dumps({"prompt": line}) + "\n" for line in lines))
    call_command(
        "curate_pool",
        "--campaign",
        campaign.name,
        "--eval-set",
        str(path),
        "--upload-only",
        *extra,
        stdout=io.StringIO(),
    )


def test_the_command_refuses_a_nul_prompt_and_a_set_name_too_long(campaign, tmp_path):
    with pytest.raises(CommandError, match="prompt 2 of 'bench' contains a NUL character"):
        _upload(campaign, tmp_path, ["a fine prompt", "a bad\x00prompt"])
    with pytest.raises(CommandError, match="at most 200 characters"):
        _upload(campaign, tmp_path, ["a fine prompt"], "--set-name", "x" * 201)
    with pytest.raises(CommandError, match="may not contain NUL"):
        _upload(campaign, tmp_path, ["a fine prompt"], "--set-name", "be\x00nch")
    assert not EvaluationPrompt.objects.exists()
    _upload(campaign, tmp_path, ["a fine prompt"], "--set-name", "x" * 200)
    assert EvaluationPrompt.objects.get().set_name == "x" * 200


@pytest.mark.parametrize("shard_size", [0, -5])
def test_a_shard_size_below_one_is_refused_up_front(campaign, admin_user, shard_size):
    with pytest.raises(CurationError, match="shard_size must be between 1 and"):
        CurationParams(shard_size=shard_size)
    response = api_client_for(admin_user).post(
        f"/api/campaigns/{campaign.pk}/curations", {"shard_size": shard_size}, format="json"
    )
    assert response.status_code == 400, response.content
    assert not Job.objects.exists()
    assert CurationParams(shard_size=1).shard_size == 1


def test_curation_naming_an_unknown_evaluation_set_is_refused(campaign, admin_user):
    ModelVersion.objects.create(campaign=campaign, number=1, base="b", checkpoint="c")
    EvaluationSet.objects.create(campaign=campaign, name="bench", sha256="0" * 64)
    EvaluationSet.objects.create(campaign=None, name="shared", sha256="0" * 64)
    EvaluationSet.objects.create(campaign=CampaignFactory(), name="theirs", sha256="0" * 64)
    EvaluationPrompt.objects.create(campaign=campaign, set_name="uploaded", text="a prompt")
    for names in (["no-such-set"], ["bench", "theirs"]):
        with pytest.raises(CurationError, match="unknown evaluation set") as refused:
            curation_create(campaign=campaign, params={"evaluation_sets": names}, enqueue=False)
        assert names[-1] in str(refused.value)
    response = api_client_for(admin_user).post(
        f"/api/campaigns/{campaign.pk}/curations",
        {"evaluation_sets": ["no-such-set"]},
        format="json",
    )
    assert response.status_code == 400, response.content
    assert "no-such-set" in response.content.decode()
    assert not Job.objects.exists()
    job = curation_create(
        campaign=campaign,
        params={"evaluation_sets": ["bench", "shared", "uploaded"], "train_gold": False},
        enqueue=False,
    )
    assert job.params["evaluation_sets"] == ["bench", "shared", "uploaded"]
