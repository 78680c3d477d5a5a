"""Management-command defects a reviewer reproduced: a command that took another job of the
campaign for its own, cross_validate queueing settings that can only fail, a shard size past
the database's integers, --wait --timeout without a JSON line (or with a negative or NaN
timeout), and curate_pool's output and option checks."""

from __future__ import annotations

import io
import json

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from annotation.models import Pair
from scoring.jobs.runner import job_cancel
from scoring.loop.requests import scoring_request, training_request
from scoring.models import Job, ModelVersion
from tests.factories import PairFactory


def last_json(out: io.StringIO) -> dict:
    return json.loads(out.getvalue().strip().splitlines()[-1])


# --- 1. Another exclusive job of the campaign is not this command's job ----------------------


@pytest.fixture
def queued_train(campaign, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False):
        return training_request(campaign=campaign, enqueue=True)


@pytest.mark.parametrize("mode", [["--inline"], ["--wait", "--timeout", "0"], []])
def test_score_pool_refuses_while_a_train_job_is_queued(campaign, queued_train, mode):
    out = io.StringIO()
    with pytest.raises(CommandError) as raised:
        call_command("score_pool", "--campaign", campaign.name, *mode, stdout=out)
    message = f"campaign busy: train job {queued_train.pk} is queued"
    assert str(raised.value) == message
    assert last_json(out) == {
        "job": None,
        "kind": "score",
        "status": "refused",
        "error": message,
        "active_job": {"job": queued_train.pk, "kind": "train", "status": "queued"},
    }
    assert not Job.objects.filter(campaign=campaign, kind=Job.Kind.SCORE).exists()
    queued_train.refresh_from_db()
    assert queued_train.status == Job.Status.QUEUED and queued_train.attempts == 0


def test_train_reward_model_inline_does_not_run_a_job_queued_by_someone_else(
    campaign, queued_train
):
    out = io.StringIO()
    with pytest.raises(CommandError, match=f"campaign busy: train job {queued_train.pk} is"):
        call_command("train_reward_model", "--campaign", campaign.name, "--inline", stdout=out)
    assert last_json(out)["active_job"]["job"] == queued_train.pk
    assert Job.objects.filter(campaign=campaign).count() == 1
    queued_train.refresh_from_db()
    assert queued_train.status == Job.Status.QUEUED and queued_train.attempts == 0


# --- 2. cross_validate checks the training settings as train_reward_model does ---------------


@pytest.mark.parametrize(
    ("option", "value", "error"),
    [
        ("--epochs", "-3", "epochs: must be at least 0.01"),
        ("--learning-rate", "5", "learning_rate: must be at most 1"),
        ("--base-model", "/nonexistent/model", "is not a model directory"),
    ],
)
def test_cross_validate_refuses_bad_training_settings_up_front(campaign, option, value, error):
    with pytest.raises(CommandError, match=error):
        call_command(
            "cross_validate", "--campaign", campaign.name, option, value, stdout=io.StringIO()
        )
    assert not Job.objects.exists()


# --- 3. score_pool --shard-size within the database's integers --------------------------------


@pytest.mark.parametrize("size", ["99999999999999999999", str(2**31), "0"])
def test_score_pool_refuses_a_shard_size_out_of_range(campaign, size):
    with pytest.raises(CommandError, match="--shard-size must be between 1 and 2147483647"):
        call_command(
            "score_pool", "--campaign", campaign.name, "--shard-size", size, stdout=io.StringIO()
        )
    assert not Job.objects.exists()


def test_score_pool_takes_the_largest_shard_size(campaign, django_capture_on_commit_callbacks):
    out = io.StringIO()
    with django_capture_on_commit_callbacks(execute=False):
        call_command(
            "score_pool", "--campaign", campaign.name, "--shard-size", str(2**31 - 1), stdout=out
        )
    assert Job.objects.get(pk=last_json(out)["job"]).params["shard_size"] == 2**31 - 1


# --- 4. --wait --timeout -----------------------------------------------------------------------


def test_a_wait_that_times_out_ends_with_the_job_as_json(campaign):
    out, err = io.StringIO(), io.StringIO()
    with pytest.raises(CommandError, match=r"job \d+ still queued after 0.0 s"):
        call_command(
            "score_pool",
            "--campaign",
            campaign.name,
            "--wait",
            "--timeout",
            "0",
            stdout=out,
            stderr=err,
        )
    job = Job.objects.get(campaign=campaign, kind=Job.Kind.SCORE)
    assert last_json(out) == {"job": job.pk, "kind": "score", "status": "queued"}


@pytest.mark.parametrize("timeout", ["-5", "nan", "inf", "soon"])
def test_a_timeout_must_be_a_finite_number_of_seconds(campaign, timeout):
    with pytest.raises(CommandError, match="--timeout"):
        call_command(
            "score_pool",
            "--campaign",
            campaign.name,
            "--wait",
            "--timeout",
            timeout,
            stdout=io.StringIO(),
        )
    assert not Job.objects.exists()


# --- 5. Smaller ones ---------------------------------------------------------------------------


def test_evaluate_model_without_an_active_version_says_so_plainly(campaign, tmp_path):
    with pytest.raises(CommandError) as raised:
        call_command(
            "evaluate_model",
            "--campaign",
            campaign.name,
            "--eval-set",
            str(tmp_path / "set.jsonl"),
            stdout=io.StringIO(),
        )
    assert str(raised.value) == f"campaign {campaign.name!r} has no active version"


class _CancelWhileWaiting(io.StringIO):
    """The progress stream of --wait: cancels the campaign's score job at the first update."""

    def __init__(self, campaign) -> None:
        super().__init__()
        self.campaign = campaign

    def write(self, text: str) -> int:
        for job in Job.objects.filter(campaign=self.campaign, status=Job.Status.QUEUED):
            job_cancel(job=job)
        return super().write(text)


def test_a_cancelled_job_reports_why(campaign):
    out = io.StringIO()
    with pytest.raises(CommandError) as raised:
        call_command(
            "score_pool",
            "--campaign",
            campaign.name,
            "--wait",
            "--timeout",
            "30",
            stdout=out,
            stderr=_CancelWhileWaiting(campaign),
        )
    job = Job.objects.get(campaign=campaign, kind=Job.Kind.SCORE)
    assert str(raised.value) == f"score job {job.pk} cancelled: cancelled before it started"
    summary = last_json(out)
    assert summary["status"] == "cancelled"
    assert summary["error"] == "cancelled before it started"


def test_curate_pool_enqueue_prints_one_json_line(campaign, django_capture_on_commit_callbacks):
    ModelVersion.objects.create(campaign=campaign, number=1, base="b", checkpoint="c")
    out = io.StringIO()
    with django_capture_on_commit_callbacks(execute=False):
        call_command(
            "curate_pool",
            "--campaign",
            campaign.name,
            "--enqueue",
            "--best-version",
            "1",
            "--gold-version",
            "1",
            stdout=out,
        )
    job = Job.objects.get(campaign=campaign, kind=Job.Kind.CURATE)
    assert last_json(out) == {"job": job.pk, "kind": "curate", "status": "queued"}


def test_curate_pool_prints_json_when_the_job_fails(campaign, tmp_path):
    ModelVersion.objects.create(
        campaign=campaign, number=1, base="b", checkpoint=str(tmp_path / "missing")
    )
    PairFactory(campaign=campaign, silver_preference=1, status=Pair.Status.POOLED)
    out = io.StringIO()
    with pytest.raises(CommandError, match=r"curate job \d+ failed: ") as raised:
        call_command(
            "curate_pool",
            "--campaign",
            campaign.name,
            "--best-version",
            "1",
            "--gold-version",
            "1",
            stdout=out,
            stderr=io.StringIO(),
        )
    job = Job.objects.get(campaign=campaign, kind=Job.Kind.CURATE)
    summary = last_json(out)
    assert summary["job"] == job.pk and summary["status"] == "failed"
    assert summary["error"] == job.error and job.error in str(raised.value)


def test_curate_pool_upload_only_prints_json_and_needs_a_set(campaign, tmp_path):
    with pytest.raises(CommandError, match="--upload-only needs --eval-set"):
        call_command(
            "curate_pool", "--campaign", campaign.name, "--upload-only", stdout=io.StringIO()
        )
    path = tmp_path / "bench.jsonl"
    path.write_text(json.dumps({"prompt": "a prompt"}) + "\n")
    out = io.StringIO()
    call_command(
        "curate_pool",
        "--campaign",
        campaign.name,
        "--eval-set",
        str(path),
        "--upload-only",
        stdout=out,
    )
    assert last_json(out) == {"eval_set": "bench", "prompts": 1}
    assert not Job.objects.exists()


@pytest.mark.parametrize("other", [["--no-train-gold"], ["--gold-version", "1"]])
def test_curate_pool_gold_sources_exclude_a_given_gold_model(campaign, other):
    ModelVersion.objects.create(campaign=campaign, number=1, base="b", checkpoint="c")
    with pytest.raises(CommandError, match="--gold-sources"):
        call_command(
            "curate_pool",
            "--campaign",
            campaign.name,
            "--gold-sources",
            "gold",
            *other,
            "--enqueue",
            stdout=io.StringIO(),
        )
    assert not Job.objects.exists()


def test_a_second_score_request_still_reports_the_campaign_busy_not_the_other_job(
    campaign, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=False):
        first = scoring_request(campaign=campaign, enqueue=True)
    out = io.StringIO()
    with pytest.raises(CommandError, match=f"campaign busy: score job {first.pk} is queued"):
        call_command("score_pool", "--campaign", campaign.name, "--inline", stdout=out)
    first.refresh_from_db()
    assert first.status == Job.Status.QUEUED and first.attempts == 0


# --- --timeout without --wait (review 21) ----------------------------------------------------


@pytest.mark.parametrize("command", ["score_pool", "train_reward_model", "cross_validate"])
@pytest.mark.parametrize("mode", [["--inline"], []])
def test_timeout_without_wait_is_refused_before_any_job(campaign, command, mode):
    """Queued, the command waits for nothing; inline, the run is not cut short: the timeout
    was silently ignored."""
    with pytest.raises(CommandError, match="--timeout applies with --wait only"):
        call_command(command, "--campaign", campaign.name, "--timeout", "60", *mode)
    assert not Job.objects.filter(campaign=campaign).exists()
