"""One typed schema per job kind: the API, the forms and the commands parse parameters alike."""

from __future__ import annotations

import pytest
from django.http import QueryDict

from scoring.datasets.curation import CurationParams, curation_create
from scoring.datasets.export import ExportFilters, InvalidExport
from scoring.jobs.runner import JobError
from scoring.loop.params import LoopParams, ScoreParams, TrainParams
from scoring.loop.requests import loop_request, scoring_request
from scoring.models import Job, ModelVersion
from tests.conftest import api_client_for


def test_values_arrive_as_text_from_forms_and_as_json_from_the_api():
    form = QueryDict("rounds=2&rounds=1&rounds=2&include_silver=on&min_agreement=0.5")
    filters = ExportFilters.from_params(form)
    assert (filters.rounds, filters.include_silver, filters.min_agreement) == ((1, 2), True, 0.5)
    assert ExportFilters.from_params({"include_silver": "false"}).include_silver is False
    assert TrainParams.from_params({"max_steps": "40", "mode": "full"}).max_steps == 40
    assert TrainParams.from_params({"max_steps": " +40 "}).max_steps == 40
    assert TrainParams.from_params({"learning_rate": "5e-5"}).learning_rate == 5e-5
    assert TrainParams.from_params({"learning_rate": ".5"}).learning_rate == 0.5


@pytest.mark.parametrize(
    ("schema", "params", "message"),
    [
        (ExportFilters, {"colour": "blue"}, "unknown parameter colour"),
        (ExportFilters, {"min_agreement": "high"}, "min_agreement: expected a number"),
        (ExportFilters, {"rounds": "1"}, "rounds: expected a list"),
        (CurationParams, {"keep_threshold": 1.5}, "keep_threshold must lie in"),
        (CurationParams, {"recycle": "maybe"}, "recycle: expected true or false"),
        (CurationParams, {"gold_version": 0}, "gold_version must be a version number"),
        (TrainParams, {"mode": "huge"}, "mode must be one of head, full"),
        (TrainParams, {"batch_size": 0}, "batch_size must be a positive whole number"),
        (TrainParams, {"precision": "fp8"}, "precision must be one of auto, bf16, float32"),
        (TrainParams, {"prioritise": False}, "unknown parameter prioritise"),
        (LoopParams, {"train_on_gold_share": 2}, "train_on_gold_share must be between"),
        (ScoreParams, {"retrieve_from_gold": 3}, "retrieve_from_gold: expected true or false"),
        (ScoreParams, ["retrieve_from_gold"], "expected an object of named parameters"),
        # Python's int() and float() read "1_0" as 10 and other scripts' digits: a form's
        # number is ASCII digits.
        (LoopParams, {"mode": "full", "processes": "1_0"}, "processes: expected a whole"),
        (LoopParams, {"mode": "full", "processes": "\u0662"}, "processes: expected a whole"),
        (TrainParams, {"learning_rate": "1_0.5"}, "learning_rate: expected a number"),
        (TrainParams, {"learning_rate": "nan"}, "learning_rate: expected a number"),
        (TrainParams, {"learning_rate": 1e400}, "learning_rate: expected a finite number"),
        # A shard's size is stored in a 32-bit column: a larger one failed in the worker.
        (ScoreParams, {"shard_size": 2**31}, "shard_size must be between 1 and 2147483647"),
        (LoopParams, {"shard_size": 0}, "shard_size must be between 1 and 2147483647"),
    ],
)
def test_a_bad_parameter_is_refused_naming_it(schema, params, message):
    with pytest.raises(schema.error, match=message):
        schema.from_params(params)


@pytest.mark.parametrize(
    ("precision", "bf16"), [("auto", None), ("bf16", True), ("float32", False)]
)
def test_the_precision_setting_becomes_the_training_configs_bf16(precision, bf16):
    # auto leaves it to the device (devices.trains_in_bf16_by_default).
    params = TrainParams.from_params({"mode": "full", "precision": precision})
    assert params.training_config().bf16 is bf16


def test_the_job_schemas_choices_mirror_the_reward_models():
    # Copied, not imported, so that parsing a job does not load torch: they must not drift.
    from scoring.loop import params
    from scoring.reward_model import training_types

    assert params.STRATEGIES == training_types.STRATEGIES
    assert params.TRAINING_PRECISIONS == training_types.TRAINING_PRECISIONS


def test_the_error_of_each_kind_is_its_domain_error():
    assert (TrainParams.error, LoopParams.error, ScoreParams.error) == (JobError,) * 3
    assert ExportFilters.error is InvalidExport


@pytest.mark.django_db
def test_a_job_row_stores_the_schema_and_a_run_reads_it_back(campaign):
    job = loop_request(
        campaign=campaign, params={"mode": "head", "prioritise": "false"}, enqueue=False
    )
    stored = LoopParams.from_params(job.params)
    assert (stored.prioritise, stored.reason, stored.mode) == (False, "retrain now", "head")
    job.status = Job.Status.SUCCEEDED
    job.save(update_fields=["status"])
    score = scoring_request(campaign=campaign, params={"retrieve_from_gold": False}, enqueue=False)
    assert score.params == {"retrieve_from_gold": False}
    with pytest.raises(JobError, match="unknown parameter colour"):
        scoring_request(campaign=campaign, params={"colour": 1}, enqueue=False)


@pytest.mark.django_db
def test_curation_accepts_llm_judge_false_as_its_docstring_says(campaign, admin_user):
    ModelVersion.objects.create(campaign=campaign, number=1, base="b", checkpoint="c")
    job = curation_create(campaign=campaign, params={"llm_judge": False}, enqueue=False)
    assert CurationParams.from_params(job.params).llm_judge is False
    client = api_client_for(admin_user)
    url = f"/api/campaigns/{campaign.pk}/curations"
    bad = client.post(url, {"keep_threshold": "lots"}, format="json")
    assert bad.status_code == 400
    assert bad.json() == {
        "detail": "keep_threshold: expected a number, got 'lots'",
        "code": "curation_error",
    }


@pytest.mark.django_db
def test_the_api_answers_a_bad_export_or_loop_parameter_with_a_400_naming_it(campaign, admin_user):
    client = api_client_for(admin_user)
    bad = client.post(f"/api/campaigns/{campaign.pk}/exports", {"ties": 3}, format="json")
    assert bad.status_code == 400 and bad.json()["detail"] == "ties: expected text, got 3"
    bad = client.post(f"/api/campaigns/{campaign.pk}/retrain", {"mode": "huge"}, format="json")
    # The retrain form's settings are DRF fields: the error is keyed by the field it names.
    assert bad.status_code == 400 and "not a valid choice" in bad.json()["mode"][0]
    # The API sets fewer loop parameters than the command line: not the server's model path.
    bad = client.post(
        f"/api/campaigns/{campaign.pk}/retrain", {"base_model": "/etc"}, format="json"
    )
    assert bad.status_code == 400 and "is not a model directory" in bad.json()["detail"]
    assert not Job.objects.filter(campaign=campaign).exists()
