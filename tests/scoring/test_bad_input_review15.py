"""Review 15, bad input in scoring: evaluation set rows that are not objects or whose subset is not
text, a base model path the file system refuses, an evaluation prompt with a lone surrogate, an
export path over 255 bytes and an out-of-range cross-validation seed are each refused with where
and why (a 400 or 422, a CommandError), and nothing is stored."""

from __future__ import annotations

import io

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import CommandError, call_command
from django.test import Client

from scoring.evaluation.reading import EvaluationSetError, read_evaluation_set
from scoring.models import EvaluationPrompt, EvaluationSet, Job
from tests.conftest import api_client_for

pytestmark = [pytest.mark.django_db]

PAIR = b'"prompt": "p", "chosen": "c", "rejected": "r"'
# An existing directory, then a name over NAME_MAX (255 bytes): stat() raises ENAMETOOLONG.
TOO_LONG = "/tmp/" + "m" * 300


def _read(content: bytes) -> list:
    return read_evaluation_set(io.BytesIO(content), filename="bench.json")


# --- evaluation set rows -------------------------------------------------------------------


@pytest.mark.parametrize(
    "content, error",
    [
        (b"[1, 2]", "bench.json: row 1: expected a JSON object, got int"),
        (b"[{" + PAIR + b"}, []]", "bench.json: row 2: expected a JSON object, got list"),
        (
            b'[{"subset": "\\ud800", ' + PAIR + b"}]",
            "bench.json: row 1: subset is not valid Unicode (it holds a lone surrogate such "
            "as \\ud800)",
        ),
        (
            b'[{"category": "math\\udfff", ' + PAIR + b"}]",
            "bench.json: row 1: category is not valid Unicode (it holds a lone surrogate such "
            "as \\ud800)",
        ),
        (
            b'[{"subset": {"a": 1}, ' + PAIR + b"}]",
            "bench.json: row 1: subset must be a string, got object",
        ),
        (
            b'[{"subset": 1e400, ' + PAIR + b"}]",
            "bench.json: row 1: subset must be a string, got float",
        ),
        (
            b'[{"subset": true, ' + PAIR + b"}]",
            "bench.json: row 1: subset must be a string, got boolean",
        ),
    ],
    ids=["numbers", "a-list", "subset-surrogate", "category-surrogate", "object", "inf", "bool"],
)
def test_a_bad_evaluation_row_is_refused_with_its_number(content, error) -> None:
    with pytest.raises(EvaluationSetError) as raised:
        _read(content)
    assert str(raised.value) == error


def test_a_whole_number_subset_is_kept_as_its_digits() -> None:
    [record] = _read(b'[{"subset": 3, ' + PAIR + b"}]")
    assert record.subset == "3"


def test_the_api_refuses_a_row_that_is_not_an_object_with_a_400(campaign, admin_user, sent_tasks):
    client = api_client_for(admin_user)
    client.raise_request_exception = False
    response = client.post(
        f"/api/campaigns/{campaign.pk}/evaluation-sets",
        {"file": SimpleUploadedFile("bench.json", b"[[]]")},
        format="multipart",
    )
    assert response.status_code == 400
    assert response.json()["detail"] == "bench.json: row 1: expected a JSON object, got list"
    assert not EvaluationSet.objects.exists()


def test_the_upload_page_refuses_a_surrogate_subset_with_a_422(campaign, admin_user, sent_tasks):
    browser = Client(raise_request_exception=False)
    browser.force_login(admin_user)
    response = browser.post(
        f"/scoring/campaigns/{campaign.pk}/evaluations/upload",
        {
            "file": SimpleUploadedFile("bench.json", b'[{"subset": "\\ud800", ' + PAIR + b"}]"),
            "name": "bench",
        },
        headers={"HX-Request": "true"},
    )
    assert response.status_code == 422  # htmx swaps a 422 (the panel shows the error)
    assert b"row 1: subset is not valid Unicode" in response.content
    assert not EvaluationSet.objects.exists()


# --- base model paths ----------------------------------------------------------------------


def test_the_retrain_api_answers_400_for_a_base_model_path_too_long_to_look_up(
    campaign, admin_user, sent_tasks
):
    client = api_client_for(admin_user)
    client.raise_request_exception = False
    response = client.post(
        f"/api/campaigns/{campaign.pk}/retrain", {"base_model": TOO_LONG}, format="json"
    )
    assert response.status_code == 400
    assert response.json()["detail"] == f"base model {TOO_LONG} cannot be read: File name too long"
    assert not Job.objects.exists()


def test_the_retrain_form_answers_422_for_a_base_model_path_too_long_to_look_up(
    campaign, admin_user, sent_tasks
):
    browser = Client(raise_request_exception=False)
    browser.force_login(admin_user)
    response = browser.post(
        f"/scoring/campaigns/{campaign.pk}/retrain",
        {"mode": "head", "base_model": TOO_LONG},
        headers={"HX-Request": "true"},
    )
    assert response.status_code == 422
    assert b"cannot be read: File name too long" in response.content
    assert not Job.objects.exists()


@pytest.mark.parametrize("command", ["train_reward_model", "cross_validate"])
def test_the_training_commands_refuse_a_base_model_path_too_long_to_look_up(
    command, campaign, sent_tasks
):
    with pytest.raises(CommandError) as raised:
        call_command(command, "--campaign", campaign.name, "--base-model", TOO_LONG)
    assert str(raised.value) == f"base model {TOO_LONG} cannot be read: File name too long"
    assert not Job.objects.exists()


# --- commands ------------------------------------------------------------------------------


def test_curate_pool_refuses_an_evaluation_prompt_with_a_lone_surrogate(
    campaign, tmp_path, sent_tasks
):
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_bytes(b'{"prompt": "What is 2+2?"}\n{"prompt": "p\\ud800"}\n')
    with pytest.raises(CommandError) as raised:
        call_command(
            "curate_pool", "--campaign", campaign.name, "--eval-set", str(prompts), "--upload-only"
        )
    assert str(raised.value) == (
        "prompt 2 of 'prompts' is not valid Unicode (it holds a lone surrogate such as \\ud800)"
    )
    assert not EvaluationPrompt.objects.exists()


def test_export_dataset_refuses_an_out_name_over_255_bytes(campaign, tmp_path):
    out = tmp_path / ("f" * 300 + ".jsonl")
    with pytest.raises(CommandError) as raised:
        call_command("export_dataset", str(out), "--campaign", campaign.name)
    assert str(raised.value) == f"cannot write {out}: File name too long"
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("seed", [-1, 2**32, 2**70])
def test_cross_validate_refuses_a_seed_out_of_range(campaign, sent_tasks, seed):
    with pytest.raises(CommandError) as raised:
        call_command("cross_validate", "--campaign", campaign.name, "--seed", str(seed))
    assert str(raised.value) == f"--seed must be between 0 and 4294967295, got {seed}"
    assert not Job.objects.exists()
    assert sent_tasks == []


def test_cross_validate_takes_the_largest_seed(
    campaign, sent_tasks, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        call_command("cross_validate", "--campaign", campaign.name, "--seed", str(2**32 - 1))
    assert Job.objects.get().params["seed"] == 2**32 - 1
