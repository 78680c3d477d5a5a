"""Model-job commands a reviewer found at fault: ``train_reward_model --no-activate`` activated
the new version all the same, and with the broker down the commands ended in a traceback with
no JSON line, although the job row they asked for was created and failed unsent."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from kombu.exceptions import OperationalError

from core.queue import QUEUE_UNAVAILABLE_REASON
from scoring.loop.registry import NOT_JUDGED
from scoring.models import Job, ModelVersion
from tests.factories import CampaignFactory
from tests.scoring.loop_support import (
    label_queue,
    make_loop_campaign,
    train_in_this_process,
    use_tiny_base,
)


def last_json(out: io.StringIO) -> dict[str, Any]:
    return json.loads(out.getvalue().strip().splitlines()[-1])


# --- 1. --no-activate registers the version and leaves the active one serving ----------------


def test_train_reward_model_no_activate_leaves_the_active_version_active(
    db, settings, tmp_path, annotator_a, annotator_b, annotator_c
):
    use_tiny_base(settings, model_dir=tmp_path / "models")
    campaign = make_loop_campaign(labelled=8, pooled=4, gold=4)
    label_queue(campaign, [annotator_a, annotator_b, annotator_c])
    first = train_in_this_process(campaign=campaign, params={})
    assert first.is_active

    out = io.StringIO()
    call_command(
        "train_reward_model",
        "--campaign",
        campaign.name,
        "--inline",
        "--no-activate",
        stdout=out,
        stderr=io.StringIO(),
    )
    summary = last_json(out)
    assert (summary["status"], summary["version"], summary["active"]) == ("succeeded", 2, False)
    job = Job.objects.get(pk=summary["job"])
    assert job.params["activate"] is False
    second = ModelVersion.objects.get(campaign=campaign, number=2)
    assert (second.status, second.is_active) == (ModelVersion.Status.READY, False)
    assert second.activation_note == NOT_JUDGED  # never put through the gate
    first.refresh_from_db()
    assert first.is_active


# --- 2. A broker outage ends with the failed job as the JSON last line ------------------------


@pytest.fixture
def broker_down(monkeypatch) -> None:
    """The broker refuses every task as kombu does once its publish retries are spent."""
    from celery import current_app

    def send_task(name: str, args: tuple = (), **options: Any) -> None:
        raise OperationalError("broker unreachable")

    monkeypatch.setattr(current_app, "send_task", send_task)


def _version(campaign, tmp_path) -> ModelVersion:
    checkpoint = tmp_path / "v1"
    checkpoint.mkdir()
    return ModelVersion.objects.create(
        campaign=campaign, number=1, base="tiny", checkpoint=str(checkpoint), is_active=True
    )


@pytest.mark.parametrize(
    ("command", "kind", "extra"),
    [
        ("train_reward_model", "train", []),
        ("train_reward_model", "train", ["--wait", "--timeout", "1"]),
        ("score_pool", "score", []),
        ("score_pool", "score", ["--wait", "--timeout", "1"]),
        ("cross_validate", "cross_validate", []),
        ("cross_validate", "cross_validate", ["--wait", "--timeout", "1"]),
        ("evaluate_model", "evaluate", ["--eval-set", "{set}"]),
        ("curate_pool", "curate", ["--enqueue", "--best-version", "1", "--gold-version", "1"]),
    ],
)
def test_a_broker_outage_prints_the_failed_job_last_and_exits_with_an_error(
    transactional_db, settings, tmp_path, broker_down, command, kind, extra
):
    use_tiny_base(settings, model_dir=tmp_path / "models")
    campaign = CampaignFactory(name="broker-down")
    _version(campaign, tmp_path)
    eval_set = tmp_path / "set.jsonl"
    eval_set.write_text(json.dumps({"prompt": "p", "chosen": "c", "rejected": "r"}) + "\n")
    arguments = [argument.replace("{set}", str(eval_set)) for argument in extra]
    out = io.StringIO()
    with pytest.raises(CommandError) as raised:
        call_command(
            command, "--campaign", campaign.name, *arguments, stdout=out, stderr=io.StringIO()
        )
    job = Job.objects.get(campaign=campaign)
    assert (job.kind, job.status, job.error) == (kind, Job.Status.FAILED, QUEUE_UNAVAILABLE_REASON)
    assert last_json(out) == {
        "job": job.pk,
        "kind": kind,
        "status": "failed",
        "error": QUEUE_UNAVAILABLE_REASON,
    }
    assert str(raised.value) == (
        f"{kind} job {job.pk} failed: {QUEUE_UNAVAILABLE_REASON}; retry when the broker is back"
    )
