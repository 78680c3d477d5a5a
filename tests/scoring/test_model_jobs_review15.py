"""Review 15: what a cancel keeps of a version being registered or activated; what the job card
says a score or evaluate job did; which version a loop job's round records as its chooser."""

from __future__ import annotations

import io
import re

import pytest
from django.core.management import call_command
from django.test import Client

from annotation.models import Round
from scoring.jobs.runner import JobCancelled, job_cancel, job_create
from scoring.loop import rounds, training
from scoring.loop.model_jobs import job_run_inline
from scoring.loop.registry import (
    NOT_JUDGED,
    model_version_activate_if_better,
    model_version_register,
    model_version_rollback,
)
from scoring.loop.requests import loop_request, training_request
from scoring.loop.rounds import round_open_next
from scoring.models import Job, ModelVersion
from scoring.reward_model import RewardModel
from tests.scoring.loop_support import (
    campaign_models_dir,
    label_queue,
    make_loop_campaign,
    tiny_base_dir,
    use_tiny_base,
)


@pytest.fixture
def campaign(db, settings, tmp_path, annotator_a, annotator_b, annotator_c):
    use_tiny_base(settings, model_dir=tmp_path / "models")
    # Any version passes the gate: the tests decide what gets activated by cancelling.
    campaign = make_loop_campaign(labelled=8, pooled=12, gold=4, activation_tolerance=1.0)
    label_queue(campaign, [annotator_a, annotator_b, annotator_c])
    return campaign


def _train_v1(campaign) -> ModelVersion:
    job = job_run_inline(job=training_request(campaign=campaign, enqueue=False))
    assert job.status == Job.Status.SUCCEEDED, job.error
    return ModelVersion.objects.get(campaign=campaign, number=1, is_active=True)


def _cancel_while_the_checkpoint_is_saved(monkeypatch, job: Job) -> None:
    """The admin presses Cancel while the checkpoint is being written (before the version's
    row commits); the real save then runs."""
    save = RewardModel.save

    def save_then_cancel(self, *args, **kwargs):
        job_cancel(job=Job.objects.get(pk=job.pk))
        return save(self, *args, **kwargs)

    monkeypatch.setattr(RewardModel, "save", save_then_cancel)


def _cancel_once_registered(monkeypatch, job: Job) -> None:
    """The admin presses Cancel right after the version's row committed, before the gate."""
    register = model_version_register  # what training calls, wrapped

    def register_then_cancel(**kwargs):
        version = register(**kwargs)
        job_cancel(job=Job.objects.get(pk=job.pk))
        return version

    monkeypatch.setattr(training, "model_version_register", register_then_cancel)


def _log(job: Job) -> list[str]:
    return list(job.log_lines.order_by("id").values_list("message", flat=True))


def _model_dirs(campaign) -> list[str]:
    root = campaign_models_dir(campaign)
    return sorted(path.name for path in root.iterdir()) if root.exists() else []


# --- 1. A cancel during registration or before activation -----------------------------------


def test_a_loop_job_cancelled_while_saving_registers_nothing_and_v1_keeps_serving(
    campaign, monkeypatch
):
    v1 = _train_v1(campaign)
    job = loop_request(campaign=campaign, enqueue=False)
    _cancel_while_the_checkpoint_is_saved(monkeypatch, job)
    job = job_run_inline(job=job)

    assert job.status == Job.Status.CANCELLED, job.error
    assert list(
        ModelVersion.objects.filter(campaign=campaign).values_list("number", flat=True)
    ) == [1]
    assert ModelVersion.objects.get(campaign=campaign, is_active=True).pk == v1.pk
    # The staging directory the save wrote is gone; no v2 directory was made.
    assert _model_dirs(campaign) == ["v1"]
    log = _log(job)
    assert "registered v2" not in " ".join(log)
    assert log[-1] == (
        "cancelled; nothing was registered; round 1 was closed, and no round opens until the "
        "next retrain"
    )


def test_a_train_job_cancelled_while_saving_ends_cancelled_with_no_version(campaign, monkeypatch):
    job = training_request(campaign=campaign, enqueue=False)
    _cancel_while_the_checkpoint_is_saved(monkeypatch, job)
    job = job_run_inline(job=job)

    assert job.cancel_requested
    assert job.status == Job.Status.CANCELLED, job.error
    assert not ModelVersion.objects.filter(campaign=campaign).exists()
    assert _model_dirs(campaign) == []
    assert _log(job)[-1] == "cancelled; nothing was registered"


def test_a_loop_job_cancelled_after_registering_keeps_the_version_inactive(campaign, monkeypatch):
    v1 = _train_v1(campaign)
    job = loop_request(campaign=campaign, enqueue=False)
    _cancel_once_registered(monkeypatch, job)
    job = job_run_inline(job=job)

    assert job.status == Job.Status.CANCELLED, job.error
    v2 = ModelVersion.objects.get(campaign=campaign, number=2)
    assert (v2.is_active, v2.activation_note, v2.status) == (
        False,
        NOT_JUDGED,
        ModelVersion.Status.READY,
    )
    assert ModelVersion.objects.get(campaign=campaign, is_active=True).pk == v1.pk
    assert _model_dirs(campaign) == ["v1", "v2"]
    log = _log(job)
    assert "v2 is now the active model" not in log
    assert log[-1] == (
        "cancelled; v2 was registered and not activated; round 1 was closed, and no round "
        "opens until the next retrain"
    )


def test_a_train_job_cancelled_after_registering_does_not_activate(campaign, monkeypatch):
    job = training_request(campaign=campaign, enqueue=False)
    _cancel_once_registered(monkeypatch, job)
    job = job_run_inline(job=job)

    assert job.status == Job.Status.CANCELLED, job.error
    v1 = ModelVersion.objects.get(campaign=campaign, number=1)
    assert (v1.is_active, v1.activation_note) == (False, NOT_JUDGED)
    assert _log(job)[-1] == "cancelled; v1 was registered and not activated"


def _running(job: Job) -> Job:
    Job.objects.filter(pk=job.pk).update(status=Job.Status.RUNNING, attempts=1, worker="w")
    job.refresh_from_db()
    return job


def test_registering_for_a_job_whose_cancel_was_asked_raises_and_leaves_nothing(campaign):
    job = _running(job_create(campaign=campaign, kind=Job.Kind.TRAIN))
    job_cancel(job=job)
    model = RewardModel.from_base(tiny_base_dir())
    with pytest.raises(JobCancelled):
        model_version_register(
            campaign=campaign,
            job=job,
            model=model,
            base="tiny",
            mode="head",
            label_snapshot={"pairs": 8},
            metrics={"training": {}},
            heldout_accuracy=None,
        )
    assert not ModelVersion.objects.filter(campaign=campaign).exists()
    assert _model_dirs(campaign) == []
    job.refresh_from_db()
    assert "registered_version_id" not in (job.result or {})


def test_the_activation_gate_fenced_by_a_cancelled_job_activates_nothing(campaign):
    job = _running(job_create(campaign=campaign, kind=Job.Kind.TRAIN))
    version = model_version_register(
        campaign=campaign,
        job=job,
        model=RewardModel.from_base(tiny_base_dir()),
        base="tiny",
        mode="head",
        label_snapshot={"pairs": 8},
        metrics={"training": {}},
        heldout_accuracy=None,
    )
    job_cancel(job=job)
    with pytest.raises(JobCancelled):
        model_version_activate_if_better(version=version, job=job)
    version.refresh_from_db()
    assert (version.is_active, version.activation_note) == (False, NOT_JUDGED)
    # Without a job (an admin's own request) the gate is not fenced.
    version, refused = model_version_activate_if_better(version=version)
    assert (refused, version.is_active) == ("", True)


def _cancel_confirm(client: Client, job: Job) -> str:
    page = client.get(f"/scoring/jobs/{job.pk}/").content.decode()
    found = re.search(r'hx-confirm="([^"]*)"', page)
    assert found is not None, page
    return found.group(1)


def test_the_cancel_confirm_says_what_a_cancel_keeps(campaign, admin_user):
    client = Client()
    client.force_login(admin_user)
    job = _running(job_create(campaign=campaign, kind=Job.Kind.LOOP))
    assert _cancel_confirm(client, job) == (
        "Cancel this job? Nothing it trained so far will be kept, unless it registers its "
        "version before the cancel reaches it (the log then says so); it scores nothing more, "
        "and no round opens until the next retrain."
    )
    Job.objects.filter(pk=job.pk).update(result={"registered_version_id": 7})
    assert _cancel_confirm(client, job) == (
        "Cancel this job? The version it registered stays registered (active only if it "
        "already is); it scores nothing more, and no round opens until the next retrain."
    )
    Job.objects.filter(pk=job.pk).update(result={"trained": {"version": 2, "active": True}})
    assert _cancel_confirm(client, job) == (
        "Cancel this job? v2, which it registered, stays registered (active only if it "
        "already is); it scores nothing more, and no round opens until the next retrain."
    )
    Job.objects.filter(pk=job.pk).update(status=Job.Status.CANCELLED)
    train = _running(job_create(campaign=campaign, kind=Job.Kind.TRAIN))
    assert _cancel_confirm(client, train) == (
        "Cancel this job? Nothing it trained so far will be kept, unless it registers its "
        "version before the cancel reaches it (the log then says so)."
    )


# --- 2. What the job card says a job did ------------------------------------------------------


def test_a_score_job_says_it_scored_with_v1_not_that_it_trained_it(campaign, admin_user):
    _train_v1(campaign)
    call_command("score_pool", "--campaign", campaign.name, "--inline", stdout=io.StringIO())
    score = Job.objects.get(campaign=campaign, kind=Job.Kind.SCORE)
    assert score.status == Job.Status.SUCCEEDED, score.error
    client = Client()
    client.force_login(admin_user)
    job_page = client.get(f"/scoring/jobs/{score.pk}/").content.decode()
    models_page = client.get(f"/scoring/campaigns/{campaign.pk}/models/").content.decode()
    for page in (job_page, models_page):
        assert "Trained v1" not in page
        assert "<p>Scored the pool with v1.</p>" in page


def test_a_train_job_says_trained_and_an_evaluate_job_evaluated(campaign, admin_user):
    train = Job.objects.get(
        pk=job_run_inline(job=training_request(campaign=campaign, enqueue=False)).pk
    )
    evaluate = job_create(campaign=campaign, kind=Job.Kind.EVALUATE)
    Job.objects.filter(pk=evaluate.pk).update(
        status=Job.Status.SUCCEEDED, result={"version": 1, "sets": {}}
    )
    client = Client()
    client.force_login(admin_user)
    train_page = client.get(f"/scoring/jobs/{train.pk}/").content.decode()
    evaluate_page = client.get(f"/scoring/jobs/{evaluate.pk}/").content.decode()
    assert "<p>Trained v1, held-out gold accuracy" in train_page
    assert "Trained v1" not in evaluate_page
    assert "<p>Evaluated v1.</p>" in evaluate_page


# --- 3. The version a loop job's round records as its chooser ---------------------------------


def test_a_round_opened_after_a_rollback_records_the_version_that_prioritised_it(
    campaign, monkeypatch
):
    _train_v1(campaign)
    prioritise = rounds.pool_prioritise
    seen = {}

    def roll_back_then_prioritise(*, version, **kwargs):
        # The admin presses "Roll back" while the loop job is scoring the pool.
        seen["rolled_back_to"] = model_version_rollback(campaign=campaign).number
        seen["prioritised_with"] = version.number
        return prioritise(version=version, **kwargs)

    monkeypatch.setattr(rounds, "pool_prioritise", roll_back_then_prioritise)
    job = job_run_inline(job=loop_request(campaign=campaign, enqueue=False))

    assert job.status == Job.Status.SUCCEEDED, job.error
    assert seen == {"rolled_back_to": 1, "prioritised_with": 2}
    assert ModelVersion.objects.get(campaign=campaign, is_active=True).number == 1
    opened = Round.objects.get(campaign=campaign, number=job.result["opened_round"])
    assert opened.chosen_by_version == 2


def test_a_round_opened_without_a_loop_job_records_the_active_version(campaign):
    _train_v1(campaign)
    Round.objects.filter(campaign=campaign).update(status=Round.Status.CLOSED)
    opened = round_open_next(campaign=campaign)
    assert opened is not None and opened.chosen_by_version == 1
