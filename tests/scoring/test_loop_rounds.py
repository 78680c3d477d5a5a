"""Rounds of the loop, run inline: close, open by priority, auto-retrain, the whole advance."""

from __future__ import annotations

import pytest
from django.conf import settings as django_settings

from annotation.models import Pair, Round
from annotation.services.assignments import assignment_next
from scoring.loop.model_jobs import job_run_inline
from scoring.loop.requests import loop_request
from scoring.loop.rounds import round_close, round_open_next, rounds_check_completion
from scoring.models import Job, ModelVersion, PairScore, Retrieval
from tests.factories import CampaignFactory, PairFactory
from tests.scoring.loop_support import label_queue, make_loop_campaign, use_tiny_base


def test_closing_a_round_returns_its_untouched_pairs_to_the_pool(db, annotator_a):
    campaign = make_loop_campaign(labelled=4, pooled=0, gold=0)
    taken = assignment_next(campaign=campaign, annotator=annotator_a)
    closed = round_close(campaign=campaign)
    assert closed.round.status == Round.Status.CLOSED and closed.round.closed_at is not None
    assert closed.returned_to_pool == 3
    assert Pair.objects.get(pk=taken.pair_id).status == Pair.Status.IN_ANNOTATION
    assert Pair.objects.filter(status=Pair.Status.POOLED, round__isnull=True).count() == 3
    assert round_close(campaign=campaign) is None


def test_the_next_round_takes_the_highest_priority_pooled_pairs(db):
    campaign = CampaignFactory(round_size=2)
    low = PairFactory(campaign=campaign, status=Pair.Status.POOLED, priority=0.1)
    high = PairFactory(campaign=campaign, status=Pair.Status.POOLED, priority=0.9)
    first_imported = PairFactory(campaign=campaign, status=Pair.Status.POOLED)
    PairFactory(campaign=campaign, status=Pair.Status.COMPLETE, is_gold=True, priority=5)
    opened = round_open_next(campaign=campaign)
    assert opened.number == 1
    assert set(Pair.objects.filter(round=opened).values_list("id", flat=True)) == {high.pk, low.pk}
    assert Pair.objects.get(pk=high.pk).status == Pair.Status.QUEUED
    assert Pair.objects.get(pk=first_imported.pk).status == Pair.Status.POOLED
    assert round_open_next(campaign=campaign) is None  # one open round at a time


@pytest.mark.skipif(
    "postgresql" not in django_settings.DATABASES["default"]["ENGINE"],
    reason="reads PostgreSQL's plan",
)
def test_opening_a_round_reads_the_pool_by_priority_from_its_partial_index(db):
    """At 40M pairs a round must not sort the pool: the UPDATE that queues the next round
    takes its LIMIT n ids in order off ``pair_pool_priority`` (pooled, not gold)."""
    import random

    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    # No random slice: every pair of the round comes off the priority order.
    campaign, other = CampaignFactory(round_size=50, random_slice_share=0), CampaignFactory()
    rng = random.Random(3)
    Pair.objects.bulk_create(
        Pair(
            campaign=owner, conversation=[], response_a="a", response_b="b",
            content_hash=f"{index:064x}", status=status, priority=rng.random(),
            is_gold=status == Pair.Status.COMPLETE,
        )
        for index in range(12_000)
        for owner, status in [(
            campaign if index % 3 else other,
            Pair.Status.COMPLETE if index % 10 == 0 else Pair.Status.POOLED,
        )]
    )
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE annotation_pair")
    expected = list(
        Pair.objects.filter(campaign=campaign, status=Pair.Status.POOLED, is_gold=False)
        .order_by("-priority", "id")
        .values_list("id", flat=True)[:50]
    )
    with CaptureQueriesContext(connection) as queries:
        opened = round_open_next(campaign=campaign)
    assert sorted(Pair.objects.filter(round=opened).values_list("id", flat=True)) == sorted(
        expected
    )
    (update,) = [q["sql"] for q in queries.captured_queries if q["sql"].startswith("UPDATE")]
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN " + update)
        plan = "\n".join(row[0] for row in cursor.fetchall())
    assert "pair_pool_priority" in plan and "Sort" not in plan, plan


@pytest.mark.smoke
def test_the_loop_advances_a_round_and_the_engine_serves_retrieved_pairs_first(
    db, settings, tmp_path, annotator_a, annotator_b, annotator_c,
    django_capture_on_commit_callbacks,
):
    use_tiny_base(settings, model_dir=tmp_path / "models")
    campaign = make_loop_campaign(labelled=10, pooled=20, gold=6, round_size=5)
    label_queue(campaign, [annotator_a, annotator_b, annotator_c])
    with django_capture_on_commit_callbacks(execute=False):
        job = loop_request(campaign=campaign)
    job = job_run_inline(job=job)
    assert job.status == Job.Status.SUCCEEDED, job.error
    assert job.result["closed_round"] == 1 and job.result["opened_round"] == 2
    version = ModelVersion.objects.get(campaign=campaign)
    assert version.is_active and version.round.number == 1
    # Every pool, labelled and gold pair has a score by the new version.
    assert PairScore.objects.filter(model_version=version).count() == 36
    retrieved = Pair.objects.filter(campaign=campaign, priority__gt=0)
    assert retrieved.exists() and Retrieval.objects.filter(job=job).exists()
    assert all(reason.startswith("similar to pair ") for reason in
               retrieved.values_list("priority_reason", flat=True))
    second = Round.objects.get(campaign=campaign, number=2)
    assert Pair.objects.filter(round=second, status=Pair.Status.QUEUED).count() == 5
    served = assignment_next(campaign=campaign, annotator=annotator_a)
    top = Pair.objects.filter(round=second).order_by("-priority", "id").first()
    assert served.pair_id == top.pk and served.pair.priority > 0
    assert "similar to pair" in served.pair.priority_reason
    steps = list(job.log_lines.values_list("message", flat=True))
    assert any("closed round 1" in s for s in steps) and any("opened round 2" in s for s in steps)


def test_a_loop_without_labels_or_model_just_opens_a_round(db, settings, tmp_path):
    use_tiny_base(settings, model_dir=tmp_path / "models")
    campaign = CampaignFactory(round_size=3)
    PairFactory.create_batch(5, campaign=campaign, status=Pair.Status.POOLED)
    job = job_run_inline(job=loop_request(campaign=campaign, enqueue=False))
    assert job.status == Job.Status.SUCCEEDED, job.error
    assert job.result["opened_round"] == 1 and job.result["queued"] == 3
    assert not ModelVersion.objects.exists()


def test_a_completed_round_starts_a_loop_only_when_auto_retrain_is_on(
    db, annotator_a, annotator_b, annotator_c, django_capture_on_commit_callbacks
):
    manual = make_loop_campaign(labelled=2, pooled=2, gold=0)
    auto = make_loop_campaign(labelled=2, pooled=2, gold=0, auto_retrain=True)
    with django_capture_on_commit_callbacks(execute=False):
        assert rounds_check_completion() == []  # nothing labelled yet
        for campaign in (manual, auto):
            label_queue(campaign, [annotator_a, annotator_b, annotator_c])
        started = rounds_check_completion()
    assert len(started) == 1
    job = Job.objects.get(pk=started[0])
    assert job.campaign == auto and job.kind == Job.Kind.LOOP
    assert job.params["reason"] == "round complete"
    with django_capture_on_commit_callbacks(execute=False):
        assert rounds_check_completion() == []  # already running: not started twice


def test_an_automatic_retrain_keeps_the_campaigns_settings_and_waits_after_a_failure_or_cancel(
    db, settings, tmp_path, annotator_a, annotator_b, annotator_c,
    django_capture_on_commit_callbacks,
):
    base = tmp_path / "my-base"
    base.mkdir()
    (base / "config.json").write_text('{"max_position_embeddings": 512}')
    campaign = make_loop_campaign(labelled=2, pooled=2, gold=0, auto_retrain=True)
    chosen = {"mode": "full", "base_model": str(base), "epochs": 3.0, "learning_rate": 1e-5}
    Job.objects.create(
        campaign=campaign, kind=Job.Kind.LOOP, status=Job.Status.SUCCEEDED,
        params={**chosen, "reason": "retrain now"},
    )
    with django_capture_on_commit_callbacks(execute=False):
        label_queue(campaign, [annotator_a, annotator_b, annotator_c])
        (started,) = rounds_check_completion()
    params = Job.objects.get(pk=started).params
    assert {name: params[name] for name in chosen} == chosen
    assert params["reason"] == "round complete"

    # A failed or cancelled retrain is not started again every minute: "Retrain now" resumes.
    for ended in (Job.Status.FAILED, Job.Status.CANCELLED):
        Job.objects.filter(pk=started).update(status=ended)
        with django_capture_on_commit_callbacks(execute=False):
            assert rounds_check_completion() == []


def test_a_loop_that_this_worker_cannot_train_fails_before_closing_the_round(
    db, settings, tmp_path, annotator_a, annotator_b, annotator_c
):
    base = use_tiny_base(settings, model_dir=tmp_path / "models")
    campaign = make_loop_campaign(labelled=4, pooled=6, gold=0, round_size=3)
    label_queue(campaign, [annotator_a, annotator_b, annotator_c])
    open_round = Round.objects.get(campaign=campaign, status=Round.Status.OPEN)
    # Recorded without the request-time check (as an older job's settings would be).
    job = loop_request(
        campaign=campaign, enqueue=False,
        params={"mode": "full", "base_model": str(base), "max_length": 1000},
    )
    job = job_run_inline(job=job)
    assert job.status == Job.Status.FAILED and "exceeds the base model's" in job.error
    open_round.refresh_from_db()
    assert open_round.status == Round.Status.OPEN  # nothing changed: the round goes on
    assert not ModelVersion.objects.filter(campaign=campaign).exists()


def test_a_full_mode_loop_scores_with_the_fine_tuned_checkpoint(
    db, settings, tmp_path, annotator_a, annotator_b, annotator_c
):
    base = use_tiny_base(settings, model_dir=tmp_path / "models")
    campaign = make_loop_campaign(labelled=4, pooled=6, gold=2, round_size=3)
    label_queue(campaign, [annotator_a, annotator_b, annotator_c])
    job = loop_request(
        campaign=campaign, enqueue=False,
        params={"mode": "full", "max_steps": 2, "base_model": str(base)},
    )
    job = job_run_inline(job=job)
    assert job.status == Job.Status.SUCCEEDED, job.error
    version = ModelVersion.objects.get(campaign=campaign)
    assert version.mode == "full" and version.metrics["training"]["steps"] == 2
    scores = PairScore.objects.filter(model_version=version)
    assert scores.count() == 12
    # The stored probability is the checkpoint's own sigmoid(r_A - r_B).
    from scoring.reward_model import RewardModel

    score = scores.select_related("pair").first()
    pair = score.pair
    expected = RewardModel.load(version.checkpoint).prob_a_better(
        pair.conversation, pair.response_a, pair.response_b
    )
    assert score.p_a_better == pytest.approx(expected, abs=1e-5)


def test_the_score_pool_command_prioritises_with_the_active_version(
    db, settings, tmp_path, annotator_a, annotator_b, annotator_c, capsys
):
    import json

    from django.core.management import call_command

    use_tiny_base(settings, model_dir=tmp_path / "models")
    campaign = make_loop_campaign(labelled=8, pooled=10, gold=4)
    label_queue(campaign, [annotator_a, annotator_b, annotator_c])
    call_command("train_reward_model", "--campaign", campaign.name, "--inline")
    call_command("score_pool", "--campaign", campaign.name, "--inline")
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["status"] == "succeeded" and summary["version"] == 1
    assert summary["scoring"]["pool"] == 10 and summary["scoring"]["judged"] == 12
    assert summary["prioritisation"]["retrieved"] == Retrieval.objects.count()
