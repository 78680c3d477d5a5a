"""Sharded evaluation: an evaluation job over more pairs than its shard size splits them into
JobShards that any worker takes, and its last part sums their counts into the same result as
one unsharded run. The worker test runs two workers of its own on a queue no other test uses."""

from __future__ import annotations

import gzip
import io
import json
import signal
from pathlib import Path

import pytest

from scoring.evaluation.maths import wilson_interval
from scoring.evaluation.reading import read_evaluation_set
from scoring.evaluation.services import (
    evaluation_request,
    evaluation_run,
    evaluation_set_upload,
)
from scoring.models import EvaluationResult, EvaluationSet, Job, JobShard, ModelVersion
from scoring.reward_model import RewardModel, build_tiny_reward_model
from tests.conftest import start_worker, stop_worker, wait_for

QUEUE = "gpu-eval-shards-test"
PAIRS = 24
# 6 of the 24 rows have the chosen side the model does not prefer: accuracy 18/24 = 0.75.
EXPECTED = {"agree": (12, 12), "mixed": (6, 12)}


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_reward_model(tmp_path_factory.mktemp("sharded-evaluation") / "v1")


def _rows(checkpoint: Path) -> list[dict]:
    """Rows whose answers the model is known to get right (all of "agree", half of "mixed")."""
    model = RewardModel.load(checkpoint, device="cpu")
    prompts = [
        f"Question {index}: what is a good way to keep bread fresh?" for index in range(PAIRS)
    ]
    answers = [(f"In a cloth bag, idea {i}.", f"In the sink {i}.") for i in range(PAIRS)]
    p = model.prob_a_better_batch(
        [
            ([{"role": "user", "content": q}], a, b)
            for q, (a, b) in zip(prompts, answers, strict=True)
        ]
    )
    rows = []
    for index, (prompt, (a, b), p_a) in enumerate(zip(prompts, answers, p, strict=True)):
        preferred, other = (a, b) if p_a > 0.5 else (b, a)
        subset = "agree" if index % 2 == 0 else "mixed"
        right = subset == "agree" or index % 4 == 1
        chosen, rejected = (preferred, other) if right else (other, preferred)
        rows.append({"prompt": prompt, "chosen": chosen, "rejected": rejected, "subset": subset})
    return rows


def _upload(campaign, name: str, rows: list[dict]) -> EvaluationSet:
    content = gzip.compress("\n".join(json.dumps(row) for row in rows).encode())
    records = read_evaluation_set(io.BytesIO(content), filename=f"{name}.jsonl.gz")
    return evaluation_set_upload(
        campaign=campaign, name=name, records=records, enqueue_pending=False
    )


def _as_compared(result: EvaluationResult) -> tuple:
    return (result.accuracy, result.n, result.ci_low, result.ci_high, result.subsets)


def _assert_known(result: EvaluationResult) -> None:
    assert result.n == PAIRS and result.accuracy == pytest.approx(18 / PAIRS)
    assert (result.ci_low, result.ci_high) == pytest.approx(wilson_interval(18, PAIRS))
    assert {name: (s["accuracy"] * s["n"], s["n"]) for name, s in result.subsets.items()} == {
        name: pytest.approx(value) for name, value in EXPECTED.items()
    }


@pytest.fixture
def version(campaign, tiny_checkpoint: Path) -> ModelVersion:
    return ModelVersion.objects.create(
        campaign=campaign, number=1, base="tiny", checkpoint=str(tiny_checkpoint)
    )


def test_an_inline_run_shards_a_large_set_and_matches_the_unsharded_result(
    db, version, tiny_checkpoint
) -> None:
    rows = _rows(tiny_checkpoint)
    whole = _upload(version.campaign, "whole", rows)
    sharded = _upload(version.campaign, "sharded", rows)

    unsharded_job = evaluation_request(version=version, sets=[whole], enqueue=False)
    evaluation_run(job_id=unsharded_job.pk, worker="inline:test")
    unsharded_job.refresh_from_db()
    assert unsharded_job.status == Job.Status.SUCCEEDED, unsharded_job.error
    assert not JobShard.objects.filter(job=unsharded_job).exists()

    job = evaluation_request(version=version, sets=[sharded], enqueue=False, shard_size=5)
    evaluation_run(job_id=job.pk, worker="inline:test")
    job.refresh_from_db()
    assert job.status == Job.Status.SUCCEEDED, job.error
    shards = JobShard.objects.filter(job=job)
    assert [shard.planned for shard in shards] == [5, 5, 5, 5, 4]
    assert all(shard.status == JobShard.Status.SUCCEEDED for shard in shards)
    assert sum(shard.scored for shard in shards) == PAIRS
    assert job.result["shards"] == 5 and job.progress == 1.0

    results = {
        result.evaluation_set_id: result
        for result in EvaluationResult.objects.filter(model_version=version)
    }
    _assert_known(results[whole.pk])
    assert _as_compared(results[sharded.pk]) == _as_compared(results[whole.pk])
    assert results[sharded.pk].job_id == job.pk


def test_a_set_replaced_while_its_shards_ran_is_not_stored(db, version, tiny_checkpoint) -> None:
    from scoring.evaluation.services import evaluation_shard_work, evaluation_work
    from scoring.jobs.runner import job_run
    from scoring.jobs.shards import shards_run_inline

    rows = _rows(tiny_checkpoint)
    evaluation_set = _upload(version.campaign, "moving", rows)
    job = evaluation_request(version=version, sets=[evaluation_set], enqueue=False, shard_size=8)
    job_run(job_id=job.pk, worker="inline:test", work_for=evaluation_work)
    job.refresh_from_db()
    assert job.stage == Job.Stage.SHARDS
    shards_run_inline(job=job, worker="inline:test", work_for=evaluation_shard_work)
    _upload(version.campaign, "moving", rows[:10])  # new content before the last part runs
    job_run(job_id=job.pk, worker="inline:test", work_for=evaluation_work)
    job.refresh_from_db()
    assert job.status == Job.Status.SUCCEEDED and job.result["sets"] == {}
    assert not EvaluationResult.objects.exists()


# --- Real workers -------------------------------------------------------------------------


def _purge() -> None:
    from config.celery import app

    with app.connection_for_write() as conn:
        conn.default_channel.queue_purge(QUEUE)


@pytest.fixture
def shard_workers(transactional_db, monkeypatch):
    """Two worker processes of one task slot each on the test's own queue; one pair per step,
    so that shards take long enough for both workers to take some."""
    monkeypatch.setenv("ARBITER_SCORE_CHUNK", "1")
    monkeypatch.setenv("ARBITER_JOB_HEARTBEAT_SECONDS", "0.5")
    _purge()
    started = []
    try:
        for name in ("eval-shard-a", "eval-shard-b"):
            started.append(start_worker(queues=QUEUE, concurrency=1, name=name))
        yield started
    finally:
        for process in started:
            stop_worker(process, sig=signal.SIGKILL)
        _purge()


@pytest.mark.worker
@pytest.mark.slow
def test_two_workers_run_the_shards_and_the_accuracy_equals_the_unsharded_one(
    shard_workers, version, tiny_checkpoint
) -> None:
    rows = _rows(tiny_checkpoint)
    whole = _upload(version.campaign, "whole", rows)
    sharded = _upload(version.campaign, "sharded", rows)

    job = evaluation_request(version=version, sets=[sharded], shard_size=2, queue=QUEUE)
    wait_for(lambda: Job.objects.get(pk=job.pk).is_finished, timeout=300, what="evaluation")
    job.refresh_from_db()
    assert job.status == Job.Status.SUCCEEDED, job.error
    shards = JobShard.objects.filter(job=job)
    assert shards.count() == job.result["shards"] == PAIRS // 2
    assert not shards.exclude(status=JobShard.Status.SUCCEEDED).exists()
    assert sum(shard.scored for shard in shards) == PAIRS
    workers = {shard.worker.split("@")[0] for shard in shards}
    assert len(workers) == 2, workers  # both workers took shards
    messages = list(job.log_lines.values_list("message", flat=True))
    assert f"split into {PAIRS // 2} shards of up to 2 pairs" in messages
    assert f"all {PAIRS // 2} shards done" in messages

    unsharded = evaluation_request(version=version, sets=[whole], enqueue=False)
    evaluation_run(job_id=unsharded.pk, worker="inline:test")
    results = {
        result.evaluation_set_id: result
        for result in EvaluationResult.objects.filter(model_version=version)
    }
    _assert_known(results[sharded.pk])
    assert _as_compared(results[sharded.pk]) == _as_compared(results[whole.pk])
