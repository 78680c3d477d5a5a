"""Review 14 of evaluation sets and the scoring endpoint: a failed evaluation no longer blocks new
content of its set, a broker outage during an upload neither hides the stored set nor stops the
sweep, an upload's time limit covers storing its pairs, and an over-limit scoring batch is
refused before its items are validated."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse
from kombu.exceptions import OperationalError

from core.queue import QUEUE_UNAVAILABLE_REASON, QueueUnavailable
from scoring.deploy.api import ScoreItemSerializer
from scoring.evaluation import services
from scoring.evaluation.reading import EvaluationRecord
from scoring.evaluation.services import (
    evaluation_request,
    evaluation_set_upload,
    evaluations_enqueue_pending,
)
from scoring.models import EvaluationItem, EvaluationSet, Job, ModelVersion
from tests.conftest import api_client_for

CONVERSATION = [{"role": "user", "content": "How should I store fresh herbs?"}]
EVALUATE_TASK = "scoring.evaluate_model"


def _records(tag: str, count: int = 3) -> list[EvaluationRecord]:
    return [
        EvaluationRecord(CONVERSATION, f"Wrap them {tag} {i}", f"Bin them {tag} {i}", "s")
        for i in range(count)
    ]


def _jsonl(tag: str, count: int) -> bytes:
    rows = [
        {"prompt": f"Question {i}", "chosen": f"good {tag} {i}", "rejected": f"bad {tag} {i}"}
        for i in range(count)
    ]
    return "\n".join(json.dumps(row) for row in rows).encode()


@pytest.fixture
def version(campaign) -> ModelVersion:
    # Ready; never run here (the sweep only asks for jobs).
    return ModelVersion.objects.create(
        campaign=campaign, number=1, base="tiny", checkpoint="/nonexistent"
    )


@pytest.fixture
def broker(monkeypatch) -> dict[str, Any]:
    """A broker that is down while ``state["down"]``; the tasks it took in ``state["sent"]``."""
    from celery import current_app

    state: dict[str, Any] = {"down": False, "sent": []}

    def send_task(name: str, args: tuple = (), **options: Any) -> None:
        if state["down"]:
            raise OperationalError("broker unreachable")
        state["sent"].append((name, tuple(args)))

    monkeypatch.setattr(current_app, "send_task", send_task)
    return state


# --- 1. a failed evaluation blocks only the content it evaluated ---------------------------


@pytest.mark.parametrize("ended", [Job.Status.FAILED, Job.Status.CANCELLED])
def test_new_content_of_a_set_whose_last_evaluation_ended_unfinished_is_evaluated_again(
    db, version, sent_tasks, ended
) -> None:
    campaign = version.campaign
    evaluation_set = evaluation_set_upload(
        campaign=campaign, name="bench", records=_records("old"), enqueue_pending=False
    )
    job = evaluation_request(version=version, sets=[evaluation_set], enqueue=False)
    Job.objects.filter(pk=job.pk).update(status=ended)
    # Unchanged content: not asked for again every minute (a failure, an admin's cancel).
    assert evaluations_enqueue_pending() == []

    replaced = evaluation_set_upload(
        campaign=campaign, name="bench", records=_records("new"), enqueue_pending=False
    )
    assert replaced.pk == evaluation_set.pk and replaced.sha256 != evaluation_set.sha256
    (again,) = Job.objects.filter(pk__in=evaluations_enqueue_pending())
    assert again.params == {"version": version.pk, "sets": [evaluation_set.pk]}
    assert again.result["set_sha256"] == {str(evaluation_set.pk): replaced.sha256}

    # The new content's evaluation ends unfinished too: final again, until the content changes.
    Job.objects.filter(pk=again.pk).update(status=ended)
    assert evaluations_enqueue_pending() == []


# --- 2. a broker outage during an upload ----------------------------------------------------


def test_a_job_failed_unsent_in_a_broker_outage_does_not_stop_the_sweep(
    db, version, broker, django_capture_on_commit_callbacks
) -> None:
    broker["down"] = True
    with pytest.raises(QueueUnavailable):  # the service's contract: from the commit
        with django_capture_on_commit_callbacks(execute=True):
            evaluation_set_upload(campaign=version.campaign, name="bench", records=_records("x"))
    evaluation_set = EvaluationSet.objects.get(name="bench")  # stored all the same
    (unsent,) = Job.objects.filter(kind=Job.Kind.EVALUATE)
    assert (unsent.status, unsent.error) == (Job.Status.FAILED, QUEUE_UNAVAILABLE_REASON)

    broker["down"] = False  # back; the beat's sweep runs
    with django_capture_on_commit_callbacks(execute=True):
        (job_id,) = evaluations_enqueue_pending()
    assert Job.objects.get(pk=job_id).params["sets"] == [evaluation_set.pk]
    assert broker["sent"] == [(EVALUATE_TASK, (job_id,))]


def test_an_api_upload_in_a_broker_outage_answers_the_stored_set_and_is_evaluated_later(
    transactional_db, version, admin_user, broker
) -> None:
    url = f"/api/campaigns/{version.campaign.pk}/evaluation-sets"
    client = api_client_for(admin_user)
    broker["down"] = True
    response = client.post(
        url, {"file": SimpleUploadedFile("b.jsonl", _jsonl("x", 3))}, format="multipart"
    )
    # Stored (committed): its normal answer, with a note; not a 503 saying nothing was done.
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["name"] == "b.jsonl" and body["pairs_count"] == 3
    assert body["note"] == services.EVALUATION_DEFERRED_NOTE
    assert EvaluationSet.objects.filter(pk=body["id"], pairs_count=3).exists()
    assert not Job.objects.filter(status__in=(Job.Status.QUEUED, Job.Status.RUNNING)).exists()

    broker["down"] = False
    (job_id,) = evaluations_enqueue_pending()  # the beat's sweep, once the broker is back
    assert broker["sent"] == [(EVALUATE_TASK, (job_id,))]
    assert Job.objects.get(pk=job_id).params["sets"] == [body["id"]]

    # With the broker up an upload's note is empty.
    response = client.post(
        url, {"file": SimpleUploadedFile("c.jsonl", _jsonl("y", 2))}, format="multipart"
    )
    assert response.status_code == 201 and response.json()["note"] == ""


def test_a_page_upload_in_a_broker_outage_says_the_set_is_stored(
    transactional_db, version, admin_user, broker
) -> None:
    client = Client()
    client.force_login(admin_user)
    broker["down"] = True
    response = client.post(
        reverse("scoring-evaluation-set-upload", args=[version.campaign.pk]),
        {"file": SimpleUploadedFile("b.jsonl", _jsonl("x", 3)), "name": "bench"},
        HTTP_HX_REQUEST="true",
    )
    assert response.status_code == 200, response.content[:500]
    page = response.content.decode()
    assert "bench: 3 pairs in 1 subsets." in page
    assert "its evaluation was not queued yet" in page
    assert EvaluationSet.objects.filter(name="bench", pairs_count=3).exists()


# --- 3. the upload time limit covers storing the pairs --------------------------------------


def test_an_upload_past_its_time_limit_while_storing_is_refused_and_keeps_the_old_content(
    db, campaign, admin_user, settings, monkeypatch, sent_tasks
) -> None:
    url = f"/api/campaigns/{campaign.pk}/evaluation-sets"
    client = api_client_for(admin_user)
    old = client.post(
        url, {"file": SimpleUploadedFile("bench.jsonl", _jsonl("old", 3))}, format="multipart"
    )
    assert old.status_code == 201
    before = EvaluationSet.objects.get(pk=old.json()["id"])
    old_items = list(before.items.order_by("position").values_list("chosen", flat=True))

    # A deterministic clock for the upload's deadline: each INSERT of pairs "takes" 30 s of a
    # 20 s limit; reading (its own clock) is quick.
    settings.ARBITER = {**settings.ARBITER, "IMPORT_INLINE_MAX_SECONDS": 20.0}
    clock = {"now": 1000.0, "batches": 0}
    monkeypatch.setattr(services, "_now", lambda: clock["now"], raising=False)
    monkeypatch.setattr(services, "ITEMS_PER_BATCH", 2, raising=False)
    bulk_create = EvaluationItem.objects.bulk_create

    def slow_bulk_create(*args: Any, **kwargs: Any) -> Any:
        clock["batches"] += 1
        clock["now"] += 30.0
        return bulk_create(*args, **kwargs)

    monkeypatch.setattr(EvaluationItem.objects, "bulk_create", slow_bulk_create)
    response = client.post(
        url, {"file": SimpleUploadedFile("bench.jsonl", _jsonl("new", 5))}, format="multipart"
    )
    assert response.status_code == 400, response.content
    assert response.json()["detail"] == (
        "bench.jsonl: reading and storing the file took longer than the limit of 20 s"
    )
    assert clock["batches"] == 1  # refused between batches, not after writing them all
    # Rolled back: the set's previous content is whole.
    after = EvaluationSet.objects.get(pk=before.pk)
    assert (after.sha256, after.pairs_count) == (before.sha256, 3)
    assert list(after.items.order_by("position").values_list("chosen", flat=True)) == old_items


# --- 4. an over-limit scoring batch is refused before its items are validated ---------------


@pytest.fixture
def service_client(db):
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group
    from rest_framework.test import APIClient

    from annotation.services.api_tokens import api_token_issue
    from scoring.deploy.serving import SERVICE_GROUP

    user = get_user_model().objects.create_user(username="rlhf-pipeline")
    user.groups.add(Group.objects.get_or_create(name=SERVICE_GROUP)[0])
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {api_token_issue(user=user)}")
    return client


@pytest.mark.parametrize(
    "item",
    [
        {"prompt": "hi", "response": "a"},  # valid: counted, never validated
        {"prompt": "hi"},  # invalid: "too many items", not one error per item
    ],
)
def test_an_over_limit_scoring_batch_is_refused_before_its_items_are_validated(
    db, version, service_client, settings, monkeypatch, sent_tasks, item
) -> None:
    settings.ARBITER = {**settings.ARBITER, "SCORE_MAX_ITEMS": 3}
    validated: list[int] = []
    validate = ScoreItemSerializer.validate

    def counting_validate(self: ScoreItemSerializer, attrs: dict[str, Any]) -> dict[str, Any]:
        validated.append(1)
        return validate(self, attrs)

    monkeypatch.setattr(ScoreItemSerializer, "validate", counting_validate)
    url = reverse("api-model-score", kwargs={"version_id": version.pk})
    response = service_client.post(url, {"items": [item] * 5000}, format="json")
    assert response.status_code == 400
    assert response.json() == {"items": ["at most 3 items per request, got 5000"]}
    assert validated == []
    assert sent_tasks == []

    # Within the limit the items are validated as before (here: refused one by one).
    response = service_client.post(url, {"items": [{"prompt": "hi"}] * 2}, format="json")
    assert response.status_code == 400 and len(response.json()["items"]) == 2
    assert len(validated) == 2
