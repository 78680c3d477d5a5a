"""A result belongs to the content it was scored on. A set replaced by other content of the same
size (B) and then put back (A) while an evaluation of A ran had its result stored as A's with
B's accuracy: the job read the set's SHA-256 when it started, then read whatever pairs the set
held as it scored (B's), and the SHA-256 matched again (A's) when the result was stored."""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from typing import Any

import pytest
from django.core.management import CommandError, call_command

from scoring.evaluation import services
from scoring.evaluation.reading import EvaluationRecord
from scoring.evaluation.services import (
    evaluation_request,
    evaluation_run,
    evaluation_set_upload,
)
from scoring.models import EvaluationResult, EvaluationSet, Job, ModelVersion

pytestmark = pytest.mark.django_db

PAIRS = 6


def _records(chosen_word: str) -> list[EvaluationRecord]:
    # The fake model prefers the response starting "good": A is all right, B all wrong.
    other = "bad" if chosen_word == "good" else "good"
    return [
        EvaluationRecord(
            [{"role": "user", "content": f"Question {index}"}],
            f"{chosen_word} answer {index}",
            f"{other} answer {index}",
            "s",
        )
        for index in range(PAIRS)
    ]


CONTENT_A, CONTENT_B = _records("good"), _records("bad")


class _PrefersGood:
    def prob_a_better_batch(self, items: Sequence[tuple[Any, str, str]]) -> list[float]:
        return [0.9 if a.startswith("good") else 0.1 for _c, a, _b in items]


def _put_back_before_the_report(monkeypatch, campaign) -> None:
    """A is uploaded again once the pairs are counted, before the job stores their report."""
    real_report = services.report_from_counts

    def report(counts: Any) -> dict[str, object]:
        _upload(CONTENT_A, campaign)
        return real_report(counts)

    monkeypatch.setattr(services, "report_from_counts", report)


def _upload(content: list[EvaluationRecord], campaign) -> EvaluationSet:
    return evaluation_set_upload(
        campaign=campaign, name="moving", records=content, enqueue_pending=False
    )


@pytest.fixture
def version(campaign) -> ModelVersion:
    return ModelVersion.objects.create(
        campaign=campaign, number=1, base="tiny", checkpoint="/nonexistent"
    )


def test_a_set_replaced_and_put_back_while_it_was_scored_keeps_no_result_of_the_other_content(
    version, monkeypatch
) -> None:
    campaign = version.campaign
    evaluation_set = _upload(CONTENT_A, campaign)
    job = evaluation_request(version=version, sets=[evaluation_set], enqueue=False)

    def load_model(_version: ModelVersion) -> _PrefersGood:
        # While the model loads, the set is replaced (B); B's pairs are scored, then A is back.
        _upload(CONTENT_B, campaign)
        return _PrefersGood()

    monkeypatch.setattr(services, "version_model", load_model)
    _put_back_before_the_report(monkeypatch, campaign)
    evaluation_run(job_id=job.pk, worker="test")
    job.refresh_from_db()
    assert job.status == Job.Status.SUCCEEDED, job.error
    evaluation_set.refresh_from_db()
    assert evaluation_set.sha256 == services._digest(CONTENT_A)
    # A's pairs were never scored by this job: no result of A (B's accuracy would be 0.0).
    assert list(EvaluationResult.objects.values_list("accuracy", flat=True)) == []

    # Asked again, A is scored as it is: every pair right.
    monkeypatch.undo()
    monkeypatch.setattr(services, "version_model", lambda _version: _PrefersGood())
    again = evaluation_request(version=version, sets=[evaluation_set], enqueue=False)
    evaluation_run(job_id=again.pk, worker="test")
    result = EvaluationResult.objects.get(evaluation_set=evaluation_set)
    assert (result.accuracy, result.n, result.job_id) == (1.0, PAIRS, again.pk)


def test_a_sharded_job_plans_only_the_pairs_of_the_content_it_read(version, monkeypatch) -> None:
    campaign = version.campaign
    evaluation_set = _upload(CONTENT_A, campaign)
    job = evaluation_request(version=version, sets=[evaluation_set], enqueue=False, shard_size=2)
    real_hand_off = services.job_hand_off_to_shards

    def hand_off(**kwargs: Any) -> int:
        # Between the job's read of the set and its plan, the set is replaced (B).
        _upload(CONTENT_B, campaign)
        return real_hand_off(**kwargs)

    monkeypatch.setattr(services, "job_hand_off_to_shards", hand_off)
    monkeypatch.setattr(services, "version_model", lambda _version: _PrefersGood())
    _put_back_before_the_report(monkeypatch, campaign)
    evaluation_run(job_id=job.pk, worker="inline:test")
    job.refresh_from_db()
    assert job.status == Job.Status.SUCCEEDED, job.error
    evaluation_set.refresh_from_db()
    assert evaluation_set.sha256 == services._digest(CONTENT_A)
    assert list(EvaluationResult.objects.values_list("accuracy", flat=True)) == []


# --- evaluate_model reports its own job's result ---------------------------------------------


def _write_set(path, content: list[EvaluationRecord]) -> None:
    rows = [
        {"prompt": r.conversation[0]["content"], "chosen": r.chosen, "rejected": r.rejected}
        for r in content
    ]
    path.write_text("\n".join(json.dumps(row) for row in rows))


def _evaluate(version: ModelVersion, path) -> tuple[dict[str, Any], CommandError | None]:
    out = io.StringIO()
    try:
        call_command(
            "evaluate_model", campaign=version.campaign.name, eval_set=str(path), name="moving",
            number=version.number, inline=True, stdout=out, stderr=io.StringIO(),
        )  # fmt: skip
    except CommandError as error:
        return json.loads(out.getvalue().strip().splitlines()[-1]), error
    return json.loads(out.getvalue().strip().splitlines()[-1]), None


def test_the_command_fails_when_its_set_was_replaced_while_scored(
    version, monkeypatch, tmp_path
) -> None:
    """It answered success with no accuracy (exit 0), or, once another job had scored the new
    content, that job's accuracy as the uploaded file's."""
    path = tmp_path / "moving.jsonl"
    _write_set(path, CONTENT_A)

    def load_model(_version: ModelVersion) -> _PrefersGood:
        # Another admin replaces the set of that name (B), and B gets its result at once.
        replaced = _upload(CONTENT_B, version.campaign)
        EvaluationResult.objects.create(
            model_version=version, evaluation_set=replaced, set_sha256=replaced.sha256,
            accuracy=0.0, n=PAIRS, ci_low=0.0, ci_high=0.4,
        )  # fmt: skip
        return _PrefersGood()

    monkeypatch.setattr(services, "version_model", load_model)
    summary, error = _evaluate(version, path)
    assert error is not None and "while it was scored" in str(error)
    assert "accuracy" not in summary and "while it was scored" in summary["error"]


def test_a_failed_command_does_not_report_an_earlier_jobs_accuracy(
    version, monkeypatch, tmp_path
) -> None:
    path = tmp_path / "moving.jsonl"
    _write_set(path, CONTENT_A)
    monkeypatch.setattr(services, "version_model", lambda _version: _PrefersGood())
    summary, error = _evaluate(version, path)
    assert error is None and summary["accuracy"] == 1.0

    def broken(_version: ModelVersion) -> Any:
        raise RuntimeError("the checkpoint is gone")

    monkeypatch.setattr(services, "version_model", broken)
    summary, error = _evaluate(version, path)
    assert error is not None and summary["status"] == Job.Status.FAILED
    assert "accuracy" not in summary  # the first run's, not this one's
