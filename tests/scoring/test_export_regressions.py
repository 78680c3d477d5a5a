"""Export defects a reviewer reproduced: NUL characters and unknown evaluation sets in the
filters, repeats of pairs the export never wrote, ranking items told apart by their first two
responses only, stale temporary files, and a cancel after the files were renamed."""

from __future__ import annotations

import json
import uuid

import pytest

from annotation.importers import content_hash
from annotation.models import ItemKind, Outcome, Pair
from scoring.datasets.curation.near_duplicates import EXACT, DuplicateFinder
from scoring.datasets.export import (
    ExportFilters,
    InvalidExport,
    export_create,
    export_directory,
    export_run,
    export_write,
)
from scoring.jobs.runner import JobCancelled
from scoring.models import EvaluationPrompt, EvaluationSet, ExportSnapshot, Job
from tests.conftest import api_client_for
from tests.factories import CampaignFactory, PairFactory, ranking_item
from tests.scoring.test_export import voted_pair

CONVERSATION = [{"role": "user", "content": "Which of these two answers is better?"}]


@pytest.fixture
def annotators(annotator_a, annotator_b, annotator_c):
    return [annotator_a, annotator_b, annotator_c]


@pytest.fixture
def export_dir(settings, tmp_path):
    settings.ARBITER = {**settings.ARBITER, "EXPORT_DIR": tmp_path / "exports"}
    return tmp_path / "exports"


def _exported_ids(campaign, tmp_path, **filters) -> list[int]:
    path = tmp_path / f"out-{uuid.uuid4().hex}.jsonl"
    export_write(
        campaign=campaign, filters=ExportFilters(**filters), file_format="jsonl", destination=path
    )
    return [json.loads(line)["pair_id"] for line in path.read_text().splitlines()]


def _gold_repeat(campaign) -> Pair:
    """A gold pair repeating CONVERSATION with "yes"/"no" exactly (another hash: the A/B pair
    was imported twice under different external ids)."""
    return PairFactory(
        campaign=campaign,
        conversation=CONVERSATION,
        response_a="yes",
        response_b="no",
        content_hash=content_hash(CONVERSATION, "gold", "repeat"),
        is_gold=True,
        gold_preference=1,
        status=Pair.Status.COMPLETE,
    )


# --- 1. NUL characters -------------------------------------------------------------------


def test_a_nul_character_in_a_text_filter_is_refused_naming_the_field(campaign, admin_user):
    with pytest.raises(InvalidExport, match="task_categories: text may not contain NUL"):
        ExportFilters.from_params({"task_categories": ["a\x00b"]})
    response = api_client_for(admin_user).post(
        f"/api/campaigns/{campaign.pk}/exports",
        {"format": "jsonl", "task_categories": ["a\u0000b"]},
        format="json",
    )
    assert response.status_code == 400, response.content
    assert "task_categories" in response.content.decode()
    assert not Job.objects.exists()


# --- 2. Repeats of pairs that were never written -----------------------------------------


def test_a_tie_left_out_does_not_make_a_later_gold_repeat_a_duplicate(
    campaign, annotators, tmp_path
):
    tie = voted_pair(
        campaign,
        annotators,
        [0, 0, 0],
        consensus=0,
        provenance="unanimous",
        conversation=CONVERSATION,
        response_a="yes",
        response_b="no",
    )
    gold = _gold_repeat(campaign)
    assert tie.pk < gold.pk
    assert _exported_ids(campaign, tmp_path) == [gold.pk]  # ties="exclude", the default
    # When the tie is written, it is the earlier exported pair and the repeat goes.
    assert _exported_ids(campaign, tmp_path, ties="separate") == []


def test_a_both_bad_pair_left_out_does_not_make_a_later_repeat_a_duplicate(
    campaign, annotators, tmp_path
):
    voted_pair(
        campaign,
        annotators,
        [0, 0, 0],
        consensus=0,
        provenance="unanimous",
        consensus_outcome=Outcome.BOTH_BAD,
        conversation=CONVERSATION,
        response_a="no",
        response_b="yes",
    )
    gold = _gold_repeat(campaign)
    assert _exported_ids(campaign, tmp_path, outcomes="exclude") == [gold.pk]


# --- 3. Ranking items --------------------------------------------------------------------


def _ranking_item(campaign, texts: list[str], tag: str) -> Pair:
    return ranking_item(
        campaign,
        n=tag,
        texts=texts,
        conversation=CONVERSATION,
        status=Pair.Status.COMPLETE,
        labels_count=3,
        provenance=Pair.Provenance.MAJORITY,
        consensus_ranking=[[2], [0], [1], [3]],
        consensus_preference=0,
        disagreement=0.1,
    )


def test_ranking_items_are_repeats_only_when_all_their_responses_are(db, tmp_path):
    campaign = CampaignFactory(item_kind=ItemKind.RANKING, ranking_expansion="best_vs_each")
    first = _ranking_item(campaign, ["alpha", "beta", "gamma", "delta"], "1")
    other = _ranking_item(campaign, ["alpha", "beta", "epsilon", "zeta"], "2")
    repeat = _ranking_item(campaign, ["delta", "alpha", "gamma", "beta"], "3")
    exported = _exported_ids(campaign, tmp_path)
    assert set(exported) == {first.pk, other.pk} and repeat.pk not in exported
    finder = DuplicateFinder(threshold=0.8)
    assert finder.check(CONVERSATION, "alpha", "beta", "gamma") is None
    assert finder.check(CONVERSATION, "alpha", "beta", "delta") is None
    assert finder.check(CONVERSATION, "gamma", "alpha", "beta") == EXACT


# --- 4. and 5. Temporary files -----------------------------------------------------------


def test_an_export_job_removes_its_versions_stale_temporary_files(campaign, annotators, export_dir):
    voted_pair(campaign, annotators, [1, 1, 1], consensus=1, provenance="unanimous")
    snapshot = export_create(
        campaign=campaign,
        file_format="jsonl",
        filters=ExportFilters(ties="separate"),
        enqueue=False,
    )
    folder = export_directory(campaign=campaign)
    folder.mkdir(parents=True)
    # What a SIGKILLed run of version 1 left, and the files of other versions' runs.
    stale = [
        folder / f".export-v1.jsonl.{uuid.uuid4().hex}.part",
        folder / f".export-v1.ties.jsonl.{uuid.uuid4().hex}.part",
        folder / f".export-v1.outcomes.jsonl.{uuid.uuid4().hex}.part",
    ]
    others = [
        folder / f".export-v2.jsonl.{uuid.uuid4().hex}.part",
        folder / f".export-v12.jsonl.{uuid.uuid4().hex}.part",
        folder / "export-v1.jsonl.notes",
    ]
    for path in stale + others:
        path.write_text("partial")
    export_run(job_id=snapshot.job_id)
    snapshot.refresh_from_db()
    assert snapshot.job.status == Job.Status.SUCCEEDED
    assert not any(path.exists() for path in stale)
    assert all(path.exists() for path in others)
    assert {path.name for path in folder.iterdir()} == {
        "export-v1.jsonl",
        "export-v1.ties.jsonl",
        *(path.name for path in others),
    }


@pytest.mark.parametrize("file_format", ["jsonl", "parquet"])
def test_a_cancel_at_the_last_progress_call_leaves_no_file(
    campaign, annotators, tmp_path, file_format
):
    voted_pair(campaign, annotators, [1, 1, 1], consensus=1, provenance="unanimous")
    voted_pair(campaign, annotators, [0, 0, 0], consensus=0, provenance="unanimous")
    folder = tmp_path / "exports"
    calls = []

    def cancel(done, total):
        calls.append((done, total))
        raise JobCancelled

    with pytest.raises(JobCancelled):
        export_write(
            campaign=campaign,
            filters=ExportFilters(ties="separate"),
            file_format=file_format,
            destination=folder / f"export-v1.{file_format}",
            on_progress=cancel,
        )
    assert calls == [(2, 2)]  # the one call: after every row
    assert list(folder.iterdir()) == []


# --- 8. Unknown evaluation sets ----------------------------------------------------------


def test_an_export_naming_an_unknown_evaluation_set_is_refused(campaign, admin_user, export_dir):
    EvaluationSet.objects.create(campaign=campaign, name="bench", sha256="0" * 64)
    EvaluationSet.objects.create(campaign=None, name="shared", sha256="0" * 64)
    EvaluationSet.objects.create(campaign=CampaignFactory(), name="theirs", sha256="0" * 64)
    EvaluationPrompt.objects.create(campaign=campaign, set_name="uploaded", text="a prompt")
    for names in (["no-such-set"], ["bench", "theirs"]):
        with pytest.raises(InvalidExport, match="unknown evaluation set") as refused:
            export_create(
                campaign=campaign,
                file_format="jsonl",
                filters=ExportFilters(evaluation_sets=tuple(names)),
                enqueue=False,
            )
        assert names[-1] in str(refused.value)
    response = api_client_for(admin_user).post(
        f"/api/campaigns/{campaign.pk}/exports",
        {"format": "jsonl", "evaluation_sets": ["no-such-set"]},
        format="json",
    )
    assert response.status_code == 400, response.content
    assert "no-such-set" in response.content.decode()
    assert not ExportSnapshot.objects.exists()
    snapshot = export_create(
        campaign=campaign,
        file_format="jsonl",
        filters=ExportFilters(evaluation_sets=("bench", "shared", "uploaded")),
        enqueue=False,
    )
    assert snapshot.filters["evaluation_sets"] == ["bench", "shared", "uploaded"]
