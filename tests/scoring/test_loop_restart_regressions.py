"""A loop job restarted after its round closed, and the next loop's loop options: the round an
attempt closed stays the job's round, and ``retrieve_from_gold``/``prioritise`` carry over."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

import pytest
from django.utils import timezone

from annotation.models import Round
from scoring.jobs.runner import JobContext, job_claim, job_release
from scoring.loop.model_jobs import job_run_inline
from scoring.loop.requests import loop_request
from scoring.loop.rounds import round_close_and_advance, rounds_check_completion
from scoring.models import Job, ModelVersion
from tests.conftest import api_client_for
from tests.scoring.loop_support import label_queue, make_loop_campaign, use_tiny_base

HTMX = {"HTTP_HX_REQUEST": "true"}


class _WorkerKilled(BaseException):
    """The worker process died (kill -9): nothing in the job's code may catch it."""


class _DiesWhenTrainingStarts(JobContext):
    """The real loop, run by a worker that dies once the round is closed."""

    @contextmanager
    def stage(self, start: float, end: float, message: str) -> Iterator[None]:
        if message == "training":
            raise _WorkerKilled
        with super().stage(start, end, message):
            yield


def _attempt_dies_after_closing(job: Job, worker: str) -> JobContext:
    claim = job_claim(job_id=job.pk, worker=worker)
    assert claim.outcome == "claimed" and claim.job is not None
    context = _DiesWhenTrainingStarts(claim.job)
    with pytest.raises(_WorkerKilled):
        round_close_and_advance(campaign=claim.job.campaign, context=context)
    return context


def _lose_worker(job: Job, how: str) -> None:
    if how == "killed":  # its heartbeat goes stale; the next delivery takes the job over
        Job.objects.filter(pk=job.pk).update(heartbeat_at=timezone.now() - timedelta(hours=1))
    else:  # a transient error: the runner gives the job back for Celery's retry
        assert job_release(job=Job.objects.get(pk=job.pk), reason="OperationalError: gone")


@pytest.mark.parametrize("how", ["killed", "released"])
def test_a_loop_restarted_after_it_closed_the_round_trains_for_that_round(
    db,
    settings,
    tmp_path,
    annotator_a,
    annotator_b,
    annotator_c,
    django_capture_on_commit_callbacks,
    how,
):
    use_tiny_base(settings, model_dir=tmp_path / "models")
    campaign = make_loop_campaign(labelled=10, pooled=20, gold=6, round_size=5)
    label_queue(campaign, [annotator_a, annotator_b, annotator_c])
    with django_capture_on_commit_callbacks(execute=False):
        job = loop_request(campaign=campaign)
    _attempt_dies_after_closing(job, "dead:1")
    first = Round.objects.get(campaign=campaign, number=1)
    assert first.status == Round.Status.CLOSED
    _lose_worker(job, how)

    job = job_run_inline(job=Job.objects.get(pk=job.pk))

    assert job.status == Job.Status.SUCCEEDED, job.error
    assert job.attempts == 2
    version = ModelVersion.objects.get(campaign=campaign)
    assert version.round_id == first.pk, f"version.round={version.round_id}"
    assert job.result.get("closed_round") == 1, job.result
    assert job.result.get("opened_round") == 2, job.result


def test_the_restarted_attempt_says_a_cancel_leaves_the_round_closed(
    db,
    settings,
    tmp_path,
    annotator_a,
    annotator_b,
    annotator_c,
    django_capture_on_commit_callbacks,
):
    use_tiny_base(settings, model_dir=tmp_path / "models")
    campaign = make_loop_campaign(labelled=4, pooled=6, gold=2, round_size=3)
    label_queue(campaign, [annotator_a, annotator_b, annotator_c])
    with django_capture_on_commit_callbacks(execute=False):
        job = loop_request(campaign=campaign)
    _attempt_dies_after_closing(job, "dead:1")
    _lose_worker(job, "killed")
    second = _attempt_dies_after_closing(job, "dead:2")
    assert "round 1 was closed" in second.cancel_leaves
    # The restart closes nothing more: round 1 is the only round, still closed.
    assert list(Round.objects.filter(campaign=campaign).values_list("number", "status")) == [
        (1, Round.Status.CLOSED)
    ]


# --- the loop options a new loop keeps ------------------------------------------------------


def test_the_automatic_retrain_keeps_gold_out_of_retrieval_when_the_admin_chose_so(
    db, admin_user, annotator_a, annotator_b, annotator_c, django_capture_on_commit_callbacks
):
    campaign = make_loop_campaign(labelled=2, pooled=2, gold=2, auto_retrain=True)
    with django_capture_on_commit_callbacks(execute=False):
        response = api_client_for(admin_user).post(
            f"/api/campaigns/{campaign.pk}/retrain",
            {"retrieve_from_gold": False, "prioritise": False},
            format="json",
        )
    assert response.status_code == 202, response.content
    first = Job.objects.get(pk=response.json()["id"])
    assert first.params["retrieve_from_gold"] is False and first.params["prioritise"] is False
    Job.objects.filter(pk=first.pk).update(status=Job.Status.SUCCEEDED)
    with django_capture_on_commit_callbacks(execute=False):
        label_queue(campaign, [annotator_a, annotator_b, annotator_c])
        (started,) = rounds_check_completion()
    params = Job.objects.get(pk=started).params
    assert params.get("retrieve_from_gold") is False, params
    assert params.get("prioritise") is False, params


def test_the_api_keeps_the_loop_options_it_does_not_name_and_shows_them(
    db, admin_user, django_capture_on_commit_callbacks
):
    campaign = make_loop_campaign(labelled=2, pooled=2, gold=2)
    Job.objects.create(
        campaign=campaign,
        kind=Job.Kind.LOOP,
        status=Job.Status.SUCCEEDED,
        params={"mode": "head", "retrieve_from_gold": False, "prioritise": True},
    )
    # A later train job (no loop options) does not reset them.
    Job.objects.create(
        campaign=campaign,
        kind=Job.Kind.TRAIN,
        status=Job.Status.SUCCEEDED,
        params={"mode": "head"},
    )
    api = api_client_for(admin_user)
    url = f"/api/campaigns/{campaign.pk}/retrain"
    shown = api.get(url).json()["settings"]
    assert shown["retrieve_from_gold"] is False and shown["prioritise"] is True
    with django_capture_on_commit_callbacks(execute=False):
        kept = api.post(url, {"epochs": 2.0}, format="json")
    assert kept.status_code == 202, kept.content
    assert kept.json()["params"]["retrieve_from_gold"] is False
    Job.objects.filter(pk=kept.json()["id"]).update(status=Job.Status.SUCCEEDED)
    with django_capture_on_commit_callbacks(execute=False):
        named = api.post(url, {"retrieve_from_gold": True}, format="json")
    assert named.status_code == 202, named.content
    assert named.json()["params"]["retrieve_from_gold"] is True


def test_the_retrain_form_shows_and_sends_the_loop_options(
    db, admin_client, django_capture_on_commit_callbacks
):
    campaign = make_loop_campaign(labelled=2, pooled=2, gold=2)
    Job.objects.create(
        campaign=campaign,
        kind=Job.Kind.LOOP,
        status=Job.Status.SUCCEEDED,
        params={"mode": "head", "retrieve_from_gold": False, "prioritise": True},
    )
    page = admin_client.get(f"/scoring/campaigns/{campaign.pk}/models/").content.decode()
    gold_box = _checkbox(page, "retrieve_from_gold")
    assert "checked" not in gold_box, gold_box
    assert "checked" in _checkbox(page, "prioritise")

    url = f"/scoring/campaigns/{campaign.pk}/retrain"
    # What the form sends with the gold box left unticked: the hidden "false" only.
    with django_capture_on_commit_callbacks(execute=False):
        sent = admin_client.post(
            url,
            {"mode": "head", "retrieve_from_gold": "false", "prioritise": ["false", "true"]},
            **HTMX,
        )
    assert sent.status_code == 200, sent.content
    job = Job.objects.filter(campaign=campaign).latest("id")
    assert job.params["retrieve_from_gold"] is False and job.params["prioritise"] is True
    job.status = Job.Status.SUCCEEDED
    job.save(update_fields=["status"])
    # A post without the boxes (an older page, a script) keeps the campaign's choice.
    with django_capture_on_commit_callbacks(execute=False):
        admin_client.post(url, {"mode": "head"}, **HTMX)
    assert Job.objects.filter(campaign=campaign).latest("id").params["retrieve_from_gold"] is False
    Job.objects.filter(campaign=campaign).update(status=Job.Status.SUCCEEDED)
    with django_capture_on_commit_callbacks(execute=False):
        admin_client.post(url, {"mode": "head", "retrieve_from_gold": ["false", "true"]}, **HTMX)
    assert Job.objects.filter(campaign=campaign).latest("id").params["retrieve_from_gold"] is True


def _checkbox(html: str, name: str) -> str:
    start = html.index(f'type="checkbox" name="{name}"')
    return html[html.rindex("<input", 0, start) : html.index(">", start) + 1]
