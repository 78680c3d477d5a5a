"""Evaluation sets: reading the RewardBench layout, the interval, scoring a version whose answers
are known, the pending-evaluation sweep, the command, and decontamination from the same upload."""

from __future__ import annotations

import gzip
import io
import json
import threading
import time
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from django.core.management import CommandError, call_command
from django.db import connection, transaction

from scoring.datasets.curation import evaluation_index
from scoring.datasets.curation.decontamination import turn_texts
from scoring.evaluation.maths import accuracy_report, wilson_interval
from scoring.evaluation.reading import (
    EvaluationRecord,
    EvaluationSetError,
    read_evaluation_set,
)
from scoring.evaluation.services import (
    evaluation_request,
    evaluation_run,
    evaluation_set_upload,
    evaluations_enqueue_pending,
)
from scoring.models import EvaluationResult, EvaluationSet, Job, ModelVersion
from scoring.reward_model import RewardModel, build_tiny_reward_model
from tests.conftest import lock_waiters, start_in_thread
from tests.factories import CampaignFactory

PROMPTS = [f"Question number {index}: how should I store fresh herbs?" for index in range(12)]
ANSWERS = [(f"Wrap them in a damp towel, option {i}.", f"Throw them away {i}.") for i in range(12)]


# --- maths -----------------------------------------------------------------------------------


def test_the_wilson_interval_matches_known_values() -> None:
    low, high = wilson_interval(8, 10)
    assert low == pytest.approx(0.4902, abs=1e-4) and high == pytest.approx(0.9433, abs=1e-4)
    low, high = wilson_interval(0, 5)
    assert low == 0.0 and high == pytest.approx(0.4345, abs=1e-4)
    assert wilson_interval(0, 0) == (0.0, 1.0)
    low, high = wilson_interval(500, 1000)
    assert (low + high) / 2 == pytest.approx(0.5) and high - low == pytest.approx(0.0619, abs=1e-3)


def test_accuracy_is_reported_overall_and_per_subset_and_ties_count_as_wrong() -> None:
    report: dict[str, Any] = accuracy_report(
        [0.9, 0.2, 0.5, 0.7], ["chat", "chat", "safety", "safety"]
    )
    assert report["accuracy"] == 0.5 and report["n"] == 4
    assert report["subsets"]["chat"]["accuracy"] == 0.5
    assert report["subsets"]["safety"] == {
        "accuracy": 0.5,
        "n": 2,
        "ci_low": wilson_interval(1, 2)[0],
        "ci_high": wilson_interval(1, 2)[1],
    }


# --- reading ---------------------------------------------------------------------------------


def _rewardbench_rows() -> list[dict]:
    return [
        {"prompt": p, "chosen": c, "rejected": r, "subset": "herbs", "id": i, "chosen_model": "x"}
        for i, (p, (c, r)) in enumerate(zip(PROMPTS, ANSWERS, strict=True))
    ]


def _jsonl_gz(rows: list[dict]) -> bytes:
    return gzip.compress("\n".join(json.dumps(row) for row in rows).encode())


def test_it_reads_the_rewardbench_layout_from_gzipped_jsonl_and_parquet() -> None:
    rows = _rewardbench_rows()
    from_jsonl = read_evaluation_set(io.BytesIO(_jsonl_gz(rows)), filename="rb.jsonl.gz")
    sink = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(rows), sink)
    from_parquet = read_evaluation_set(io.BytesIO(sink.getvalue()), filename="rb.parquet")
    assert from_jsonl == from_parquet and len(from_jsonl) == 12
    first = from_jsonl[0]
    assert first.conversation == [{"role": "user", "content": PROMPTS[0]}]
    assert (first.chosen, first.rejected, first.subset) == (*ANSWERS[0], "herbs")


def test_it_reads_message_lists_and_defaults_the_subset() -> None:
    conversation = [{"role": "user", "content": "Hi"}]
    row = {
        "chosen": [*conversation, {"role": "assistant", "content": "Hello!"}],
        "rejected": [*conversation, {"role": "assistant", "content": "Go away."}],
    }
    (record,) = read_evaluation_set(io.BytesIO(json.dumps(row).encode()), filename="m.jsonl")
    assert record.conversation == conversation
    assert (record.chosen, record.rejected, record.subset) == ("Hello!", "Go away.", "default")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b'{"prompt": "a", "chosen": "b"}\n', "row 1"),
        (b'{"prompt": "a", "chosen": "b", "rejected": "c"}\nnot json\n', "line 2"),
        (b'{"prompt": "a", "chosen": "b", "rejected": "b"}\n', "identical"),
        (b"", "no pairs"),
        (b"\x1f\x8b broken", "gzip"),
    ],
)
def test_bad_files_are_refused_with_where_and_why(content: bytes, message: str) -> None:
    with pytest.raises(EvaluationSetError, match=message):
        read_evaluation_set(io.BytesIO(content), filename="bad.jsonl")


# --- scoring a version whose answers are known -------------------------------------------------


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_reward_model(tmp_path_factory.mktemp("evaluation") / "v1")


def _known_answer_rows(checkpoint: Path) -> tuple[list[dict], float, dict[str, float]]:
    """Rows whose "chosen" side the model prefers in subset "agree", never in "disagree", and in
    3 of 4 rows in "mixed": the expected accuracies are known before the job runs."""
    model = RewardModel.load(checkpoint, device="cpu")
    conversations = [[{"role": "user", "content": prompt}] for prompt in PROMPTS]
    p = model.prob_a_better_batch([(c, a, b) for c, (a, b) in zip(conversations, ANSWERS,
                                                                   strict=True)])
    rows = []
    for index, (prompt, (a, b), p_a) in enumerate(zip(PROMPTS, ANSWERS, p, strict=True)):
        preferred, other = (a, b) if p_a > 0.5 else (b, a)
        subset = ("agree", "disagree", "mixed")[index // 4]
        model_right = subset == "agree" or (subset == "mixed" and index % 4 != 0)
        chosen, rejected = (preferred, other) if model_right else (other, preferred)
        rows.append({"prompt": prompt, "chosen": chosen, "rejected": rejected, "subset": subset})
    return rows, 7 / 12, {"agree": 1.0, "disagree": 0.0, "mixed": 0.75}


@pytest.fixture
def version(campaign, tiny_checkpoint: Path) -> ModelVersion:
    return ModelVersion.objects.create(
        campaign=campaign, number=1, base="tiny", checkpoint=str(tiny_checkpoint), is_active=True
    )


def test_a_job_stores_the_known_accuracy_per_subset_with_intervals(
    db, version, tiny_checkpoint
) -> None:
    rows, overall, per_subset = _known_answer_rows(tiny_checkpoint)
    records = read_evaluation_set(io.BytesIO(_jsonl_gz(rows)), filename="known.jsonl.gz")
    evaluation_set = evaluation_set_upload(
        campaign=version.campaign, name="known", records=records, enqueue_pending=False
    )
    job = evaluation_request(version=version, sets=[evaluation_set], enqueue=False)
    claim = evaluation_run(job_id=job.pk, worker="test", reraise=True)
    assert claim.job is not None and claim.job.status == Job.Status.SUCCEEDED
    result = EvaluationResult.objects.get(model_version=version, evaluation_set=evaluation_set)
    assert result.n == 12 and result.accuracy == pytest.approx(overall)
    assert (result.ci_low, result.ci_high) == pytest.approx(wilson_interval(7, 12))
    assert {name: s["accuracy"] for name, s in result.subsets.items()} == per_subset
    assert {name: s["n"] for name, s in result.subsets.items()} == {
        "agree": 4, "disagree": 4, "mixed": 4
    }
    # A shared set of the same name is evaluated too, and the job's summary keeps both.
    shared = evaluation_set_upload(
        campaign=None, name="known", records=records[:6], enqueue_pending=False
    )
    job = evaluation_request(version=version, sets=[evaluation_set, shared], enqueue=False)
    claim = evaluation_run(job_id=job.pk, worker="test", reraise=True)
    assert claim.job is not None and claim.job.status == Job.Status.SUCCEEDED
    assert {name: report["n"] for name, report in claim.job.result["sets"].items()} == {
        "known": 12, "known (shared)": 6
    }
    # The same content uploaded again keeps the result; new content drops it.
    again = evaluation_set_upload(
        campaign=version.campaign, name="known", records=records, enqueue_pending=False
    )
    assert again.pk == evaluation_set.pk and again.results.count() == 1
    evaluation_set_upload(
        campaign=version.campaign, name="known", records=records[:6], enqueue_pending=False
    )
    assert not EvaluationResult.objects.filter(evaluation_set=evaluation_set).exists()


def test_two_uploads_of_a_new_name_at_once_leave_one_set_the_later_content(
    transactional_db, campaign
) -> None:
    """The first upload holds its transaction open until the second waits on the set's unique
    name in PostgreSQL (no row existed to lock): the second then replaces the first's set
    instead of failing with an IntegrityError."""
    first = [EvaluationRecord([{"role": "user", "content": "q1"}], "a1", "b1", "one")]
    second = [EvaluationRecord([{"role": "user", "content": "q2"}], "a2", "b2", "two")]
    second_started = threading.Event()

    def upload_first() -> int:
        try:
            with transaction.atomic():
                created = evaluation_set_upload(
                    campaign=campaign, name="bench", records=first, enqueue_pending=False
                )
                second_started.set()
                deadline = time.monotonic() + 30
                while lock_waiters() == 0:
                    assert time.monotonic() < deadline, "the second upload never waited"
                    time.sleep(0.05)
            return created.pk
        finally:
            connection.close()

    def upload_second() -> int:
        try:
            assert second_started.wait(30)
            return evaluation_set_upload(
                campaign=campaign, name="bench", records=second, enqueue_pending=False
            ).pk
        finally:
            connection.close()

    futures = [start_in_thread(upload_first), start_in_thread(upload_second)]
    second_pk = futures[1].result(timeout=60)
    first_pk = futures[0].result(timeout=60)
    assert first_pk == second_pk
    kept = EvaluationSet.objects.get(campaign=campaign, name="bench")
    assert kept.subsets == {"two": 1}
    assert [item.chosen for item in kept.items.all()] == ["a2"]


def test_every_ready_version_without_a_result_gets_one_job(
    db, version, tiny_checkpoint, django_capture_on_commit_callbacks
) -> None:
    other = CampaignFactory()
    archived = ModelVersion.objects.create(
        campaign=version.campaign, number=2, base="tiny", checkpoint=str(tiny_checkpoint),
        status=ModelVersion.Status.ARCHIVED,
    )
    foreign = ModelVersion.objects.create(
        campaign=other, number=1, base="tiny", checkpoint=str(tiny_checkpoint)
    )
    rows, _overall, _subsets = _known_answer_rows(tiny_checkpoint)
    records = read_evaluation_set(io.BytesIO(_jsonl_gz(rows)), filename="k.jsonl.gz")
    with django_capture_on_commit_callbacks(execute=False):
        own = evaluation_set_upload(
            campaign=version.campaign, name="own", records=records, enqueue_pending=False
        )
        shared = evaluation_set_upload(
            campaign=None, name="shared", records=records, enqueue_pending=False
        )
        jobs = Job.objects.filter(pk__in=evaluations_enqueue_pending())
        by_version = {job.params["version"]: job.params["sets"] for job in jobs}
        assert by_version == {
            version.pk: sorted([own.pk, shared.pk]),
            foreign.pk: [shared.pk],  # another campaign's set is not its business
        }
        assert archived.pk not in by_version
        assert evaluations_enqueue_pending() == []  # already asked for
    assert EvaluationSet.objects.count() == 2


def test_the_command_evaluates_on_a_worker_and_prints_one_json_line(
    worker, version, tiny_checkpoint, tmp_path
) -> None:
    rows, overall, per_subset = _known_answer_rows(tiny_checkpoint)
    path = tmp_path / "known.jsonl.gz"
    path.write_bytes(_jsonl_gz(rows))
    out = io.StringIO()
    call_command(
        "evaluate_model", campaign=version.campaign.name, eval_set=str(path), number=1,
        wait=True, timeout=240, stdout=out, stderr=io.StringIO(),
    )
    summary = json.loads(out.getvalue().strip().splitlines()[-1])
    assert summary["version"] == 1 and summary["n"] == 12
    assert summary["accuracy"] == pytest.approx(overall)
    assert {name: s["accuracy"] for name, s in summary["subsets"].items()} == per_subset
    assert {name: s["n"] for name, s in summary["subsets"].items()} == {
        "agree": 4, "disagree": 4, "mixed": 4
    }


def test_the_command_refuses_a_bad_file_and_an_unknown_version(db, version, tmp_path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "a", "chosen": "b"}\n')
    with pytest.raises(CommandError, match="row 1"):
        call_command("evaluate_model", campaign=version.campaign.name, eval_set=str(bad),
                     inline=True, stdout=io.StringIO())
    with pytest.raises(CommandError, match="no version 9"):
        call_command("evaluate_model", campaign=version.campaign.name, eval_set=str(bad),
                     number=9, inline=True, stdout=io.StringIO())
    assert not EvaluationSet.objects.exists()


def test_decontamination_uses_the_uploaded_sets(db, campaign) -> None:
    long_prompt = (
        "Please explain in detail how the water cycle moves moisture from the oceans to the "
        "mountains and back again"
    )
    records = read_evaluation_set(
        io.BytesIO(json.dumps({"prompt": long_prompt, "chosen": "a", "rejected": "b"}).encode()),
        filename="wc.jsonl",
    )
    evaluation_set_upload(campaign=None, name="shared", records=records, enqueue_pending=False)
    index = evaluation_index(campaign=campaign)
    leaked = "Tell me: " + long_prompt.lower() + ", with examples."
    assert index.contaminates([leaked])
    assert not index.contaminates(["How do clouds form over the sea?"])
    assert index.prompts == 1


def test_a_multi_turn_evaluation_prompt_is_found_across_its_turns(db, campaign) -> None:
    turns = [
        {"role": "user", "content": "What is the capital city of France these days?"},
        {"role": "assistant", "content": "Paris."},
        {"role": "user", "content": "And how many people live there right now, roughly?"},
    ]
    row = {"chosen": [*turns, {"role": "assistant", "content": "About two million."}],
           "rejected": [*turns, {"role": "assistant", "content": "Nobody."}]}
    records = read_evaluation_set(io.BytesIO(json.dumps(row).encode()), filename="mt.jsonl")
    evaluation_set_upload(campaign=campaign, name="mt", records=records, enqueue_pending=False)
    index = evaluation_index(campaign=campaign)
    # Each user turn is under 13 words: only the turns together match.
    assert index.contaminates(turn_texts(turns))
    assert not index.contaminates(turn_texts(turns[:1]))
    other = [turns[0], turns[1], {"role": "user", "content": "And what about Lyon?"}]
    assert not index.contaminates(turn_texts(other))


# --- pages -----------------------------------------------------------------------------------

HTMX: dict[str, Any] = {"HTTP_HX_REQUEST": "true"}


def test_admins_upload_a_set_and_see_results_on_the_model_page(
    db, version, tiny_checkpoint, admin_user, annotator_a, django_capture_on_commit_callbacks
) -> None:
    from django.core.files.uploadedfile import SimpleUploadedFile
    from django.test import Client
    from django.urls import reverse

    client = Client()
    client.force_login(admin_user)
    upload_url = reverse("scoring-evaluation-set-upload", args=[version.campaign.pk])
    rows, overall, _per_subset = _known_answer_rows(tiny_checkpoint)
    bad = SimpleUploadedFile("bad.jsonl", b'{"prompt": "a"}\n')
    response = client.post(upload_url, {"file": bad}, **HTMX)
    assert response.status_code == 422 and b"row 1" in response.content  # htmx swaps 422
    assert not EvaluationSet.objects.exists()

    good = SimpleUploadedFile("known.jsonl.gz", _jsonl_gz(rows))
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(upload_url, {"file": good, "name": "known"}, **HTMX)
    assert response.status_code == 200 and b"12 pairs in 3 subsets" in response.content
    (job,) = Job.objects.filter(kind=Job.Kind.EVALUATE)  # the ready version is queued
    assert job.params["version"] == version.pk
    evaluation_run(job_id=job.pk, worker="test")

    page_url = reverse("scoring-campaign-evaluations", args=[version.campaign.pk])
    page = client.get(page_url, **HTMX).content.decode()
    assert f"{overall:.3f}" in page and "mixed: 0.750" in page and "<svg" in page
    models_page = client.get(reverse("scoring-campaign-models", args=[version.campaign.pk]))
    assert page_url in models_page.content.decode()

    outsider = Client()
    outsider.force_login(annotator_a)
    assert outsider.get(page_url, **HTMX).status_code in (403, 404)
    assert outsider.post(upload_url, {"file": good}, **HTMX).status_code in (403, 404)
