"""Curated export: formats, filters, ties, atomic files, manifests."""

from __future__ import annotations

import hashlib
import json
import threading
import time
from datetime import timedelta
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from django.utils import timezone

from annotation.models import Assignment, Evidence, Label, Pair, Round
from reviewers.consensus import pair_disagreement
from reviewers.models import Adjudication, Escalation
from scoring.datasets.export import (
    MAIN_SCHEMA,
    UNRANKED_SCHEMA,
    ExportFilters,
    InvalidExport,
    export_create,
    export_rows,
    export_run,
    export_write,
    unranked_path,
)
from scoring.jobs.runner import ClaimOutcome
from scoring.models import ExportSnapshot, Job, ModelVersion, PairScore
from tests.factories import PairFactory

# --- Building a campaign's history (shared with the dashboard and curation tests) ---------


def add_labels(pair: Pair, annotators, votes: list[int]) -> list[Label]:
    """Submitted assignments and labels, canonical orientation."""
    now = timezone.now()
    labels = []
    for annotator, vote in zip(annotators, votes, strict=False):
        assignment = Assignment.objects.create(
            campaign=pair.campaign,
            pair=pair,
            annotator=annotator,
            round=pair.round,
            status=Assignment.Status.SUBMITTED,
            swapped=False,
            leased_at=now,
            lease_expires_at=now + timedelta(minutes=15),
            finished_at=now,
        )
        labels.append(
            Label.objects.create(
                assignment=assignment,
                campaign=pair.campaign,
                pair=pair,
                annotator=annotator,
                preference=vote,
                shown_first="a",
                seconds_spent=30.0,
            )
        )
    Pair.objects.filter(pk=pair.pk).update(labels_count=len(labels))
    return labels


def voted_pair(campaign, annotators, votes, *, consensus, provenance, **fields) -> Pair:
    pair = PairFactory(
        campaign=campaign,
        consensus_preference=consensus,
        provenance=provenance,
        disagreement=pair_disagreement(votes),
        status=fields.pop("status", Pair.Status.COMPLETE),
        **fields,
    )
    add_labels(pair, annotators, votes)
    pair.refresh_from_db()
    return pair


def adjudicate(pair: Pair, expert, *, preference: int | None, note: str) -> Adjudication:
    escalation = Escalation.objects.create(
        campaign=pair.campaign,
        pair=pair,
        reason=Escalation.Reason.OPPOSITE_DIRECTIONS,
        status=Escalation.Status.RESOLVED,
    )
    decision = Adjudication.Decision.PREFERENCE if preference is not None else "discard"
    return Adjudication.objects.create(
        escalation=escalation,
        pair=pair,
        expert=expert,
        decision=decision,
        preference=preference,
        note=note,
    )


@pytest.fixture
def annotators(annotator_a, annotator_b, annotator_c):
    return [annotator_a, annotator_b, annotator_c]


@pytest.fixture
def history(campaign, annotators, expert):
    """One pair of each kind the export must tell apart."""
    round_1 = Round.objects.create(campaign=campaign, number=1, status=Round.Status.CLOSED)
    round_2 = Round.objects.create(campaign=campaign, number=2)
    pairs = {
        "unanimous": voted_pair(
            campaign,
            annotators,
            [2, 2, 1],
            consensus=2,
            provenance="unanimous",
            round=round_1,
            task_category="math",
        ),
        "majority_b": voted_pair(
            campaign,
            annotators,
            [-1, -2, 1],
            consensus=-2,
            provenance="majority",
            round=round_2,
            task_category="code",
        ),
        "tie": voted_pair(
            campaign,
            annotators,
            [0, 0, 1],
            consensus=0,
            provenance="majority",
            round=round_2,
        ),
        "adjudicated": voted_pair(
            campaign,
            annotators,
            [2, -2, 0],
            consensus=-1,
            provenance="adjudicated",
            round=round_1,
            status=Pair.Status.RESOLVED,
        ),
        "discarded": voted_pair(
            campaign,
            annotators,
            [2, -2, 0],
            consensus=None,
            provenance="discarded",
            round=round_1,
            status=Pair.Status.DISCARDED,
        ),
        "unresolved": voted_pair(
            campaign,
            annotators,
            [2, -2, 0],
            consensus=None,
            provenance="unresolved",
            round=round_2,
            status=Pair.Status.ESCALATED,
        ),
        "escalated_majority": voted_pair(
            campaign,
            annotators,
            [1, 1, -1],
            consensus=1,
            provenance="majority",
            round=round_2,
            status=Pair.Status.ESCALATED,
        ),
        "gold": PairFactory(
            campaign=campaign,
            is_gold=True,
            gold_preference=-1,
            consensus_preference=-1,
            provenance="gold",
            status=Pair.Status.COMPLETE,
            silver_preference=-1,
        ),
        "silver_uncurated": PairFactory(
            campaign=campaign, silver_preference=1, status=Pair.Status.POOLED, round=None
        ),
        "silver_kept": PairFactory(
            campaign=campaign, silver_preference=-1, curation="kept", status=Pair.Status.POOLED
        ),
        "silver_recycled": PairFactory(
            campaign=campaign, silver_preference=1, curation="recycled", status=Pair.Status.POOLED
        ),
        "silver_discarded": PairFactory(
            campaign=campaign,
            silver_preference=1,
            curation="discarded",
            status=Pair.Status.POOLED,
        ),
        "pending": PairFactory(campaign=campaign, status=Pair.Status.QUEUED, round=round_2),
    }
    adjudicate(pairs["adjudicated"], expert, preference=-1, note="B cites the right theorem.")
    unanimous_label = Label.objects.filter(pair=pairs["unanimous"]).first()
    for kind, payload in [
        (Evidence.Kind.SEARCH, {"query": "pythagoras   proof\nsteps", "hits": [1, 2]}),
        (Evidence.Kind.CODE_RUN, {"language": "python", "status": "ok", "stdout": "4"}),
        (Evidence.Kind.SEARCH, {"query": "x" * 300}),
    ]:
        Evidence.objects.create(
            assignment=unanimous_label.assignment,
            label=unanimous_label,
            kind=kind,
            payload=payload,
        )
    version = ModelVersion.objects.create(
        campaign=campaign,
        number=3,
        base="tiny",
        checkpoint="/nowhere",
        is_active=True,
        heldout_accuracy=0.7,
    )
    old = ModelVersion.objects.create(campaign=campaign, number=2, base="tiny", checkpoint="/x")
    PairScore.objects.create(
        pair=pairs["majority_b"],
        model_version=version,
        reward_a=0.5,
        reward_b=1.5,
        p_a_better=0.25,
    )
    PairScore.objects.create(
        pair=pairs["unanimous"], model_version=old, reward_a=0.0, reward_b=0.0, p_a_better=0.5
    )
    return pairs


def exported_ids(rows) -> set[int]:
    return {row["pair_id"] for row in rows}


def ranked_rows(campaign, **filters) -> list[dict]:
    return [
        row
        for ranked, row in export_rows(campaign=campaign, filters=ExportFilters(**filters))
        if ranked
    ]


def read_rows(path: Path, file_format: str) -> list[dict]:
    if file_format == "parquet":
        return pq.read_table(path).to_pylist()
    with path.open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle]


# --- Tests --------------------------------------------------------------------------------


@pytest.mark.smoke
def test_jsonl_and_parquet_reload_to_the_same_rows(campaign, history, annotators, tmp_path):
    tricky = [
        {"role": "system", "content": 'Be "precise"\n\ttabs, back\\slash, ünïcødé, 🙂'},
        {"role": "user", "content": '</script> {"json": [1, 2]} \u2028'},
        {"role": "assistant", "content": ""},
        {"role": "user", "content": "and again?"},
    ]
    tricky_pair = voted_pair(
        campaign,
        annotators,
        [-2, -2, -2],
        consensus=-2,
        provenance="unanimous",
        conversation=tricky,
        response_a='A: "quoted"\n',
        response_b="B 🙂 \\",
    )
    filters = ExportFilters(include_silver=True, ties="separate")
    expected = [row for ranked, row in export_rows(campaign=campaign, filters=filters) if ranked]
    loaded = {}
    for file_format in ("jsonl", "parquet"):
        path = tmp_path / f"out.{file_format}"
        export_write(
            campaign=campaign,
            filters=filters,
            file_format=file_format,
            destination=path,
            chunk_size=3,
        )
        loaded[file_format] = read_rows(path, file_format)
    assert loaded["jsonl"] == expected
    assert loaded["parquet"] == expected
    last = next(row for row in expected if row["pair_id"] == tricky_pair.pk)
    assert last["chosen"] == [*tricky, {"role": "assistant", "content": "B 🙂 \\"}]
    assert last["rejected"][-1] == {"role": "assistant", "content": 'A: "quoted"\n'}
    assert pq.read_schema(tmp_path / "out.parquet").names == MAIN_SCHEMA.names
    ties = read_rows(unranked_path(tmp_path / "out.parquet"), "parquet")
    assert ties == read_rows(unranked_path(tmp_path / "out.jsonl"), "jsonl")
    assert [row["pair_id"] for row in ties] == [history["tie"].pk]
    assert pq.read_schema(unranked_path(tmp_path / "out.parquet")).names == UNRANKED_SCHEMA.names


def test_a_row_carries_messages_votes_adjudication_model_view_and_evidence(campaign, history):
    rows = {row["pair_id"]: row for row in ranked_rows(campaign)}
    majority = rows[history["majority_b"].pk]
    pair = history["majority_b"]
    assert majority["chosen"] == [
        *pair.conversation,
        {"role": "assistant", "content": pair.response_b},
    ]
    assert majority["rejected"][-1] == {"role": "assistant", "content": pair.response_a}
    assert majority["chosen_side"] == "b"
    assert majority["preference_strength"] == 2
    assert majority["votes"] == [-1, -2, 1]
    assert majority["round"] == 2
    assert majority["disagreement"] == pytest.approx(pair_disagreement([-1, -2, 1]))
    assert majority["agreement"] == pytest.approx(1 - majority["disagreement"])
    # The model's view is oriented to chosen: p(A better) = 0.25 means p(B = chosen) = 0.75.
    assert majority["model_version"] == 3
    assert majority["model_p_chosen"] == pytest.approx(0.75)
    assert (majority["model_reward_chosen"], majority["model_reward_rejected"]) == (1.5, 0.5)
    assert majority["task_category"] == "code"

    adjudicated = rows[history["adjudicated"].pk]
    assert adjudicated["provenance"] == "adjudicated"
    assert adjudicated["adjudication_decision"] == "preference"
    assert adjudicated["adjudication_preference"] == -1
    assert adjudicated["adjudication_note"] == "B cites the right theorem."
    assert adjudicated["chosen_side"] == "b"

    unanimous = rows[history["unanimous"].pk]
    # Scores of an inactive version are not the model's current view.
    assert unanimous["model_version"] is None and unanimous["model_p_chosen"] is None
    assert unanimous["evidence_counts"] == {
        "search": 2,
        "attached_result": 0,
        "code_run": 1,
        "llm": 0,
    }
    items = unanimous["evidence_items"]
    assert items[0] == "search: pythagoras proof steps"
    assert items[1] == "code_run: python ok"
    assert len(items[2]) <= len("search: ") + 120 and items[2].endswith("…")

    gold = rows[history["gold"].pk]
    assert (gold["provenance"], gold["chosen_side"], gold["votes"]) == ("gold", "b", [])


def test_by_default_it_exports_gold_and_human_consensus_only(campaign, history):
    ids = exported_ids(ranked_rows(campaign))
    wanted = {"unanimous", "majority_b", "adjudicated", "gold"}
    assert ids == {history[name].pk for name in wanted}


def test_it_leaves_out_pairs_awaiting_an_expert_even_with_a_majority(campaign, history):
    ids = exported_ids(ranked_rows(campaign, provenance=("majority",)))
    assert history["escalated_majority"].pk not in ids
    assert history["majority_b"].pk in ids


def test_discarded_and_unresolved_pairs_come_only_when_asked_and_have_no_chosen_side(
    campaign, history, tmp_path
):
    everything = ExportFilters(provenance=("unanimous", "discarded", "unresolved"), ties="separate")
    result = export_write(
        campaign=campaign,
        filters=everything,
        file_format="jsonl",
        destination=tmp_path / "all.jsonl",
    )
    side = read_rows(unranked_path(tmp_path / "all.jsonl"), "jsonl")
    assert {row["pair_id"] for row in side} == {history["discarded"].pk, history["unresolved"].pk}
    assert all(row["preference"] is None for row in side)
    assert result.manifest["counts"]["unresolved"] == 2
    assert exported_ids(read_rows(tmp_path / "all.jsonl", "jsonl")) == {history["unanimous"].pk}


def test_min_agreement_drops_disputed_majorities_but_not_adjudicated_or_gold(campaign, history):
    # majority_b's votes [-1, -2, 1] disagree far more than unanimous [2, 2, 1].
    threshold = 1 - pair_disagreement([2, 2, 1])
    ids = exported_ids(ranked_rows(campaign, min_agreement=threshold))
    assert history["unanimous"].pk in ids
    assert history["majority_b"].pk not in ids
    assert {history["adjudicated"].pk, history["gold"].pk} <= ids


def test_rounds_narrow_human_labels_and_categories_narrow_everything(campaign, history):
    ids = exported_ids(ranked_rows(campaign, rounds=(1,)))
    assert ids == {history["unanimous"].pk, history["adjudicated"].pk, history["gold"].pk}
    ids = exported_ids(ranked_rows(campaign, task_categories=("code",)))
    assert ids == {history["majority_b"].pk}


def test_silver_adds_source_labels_and_curated_pairs_and_flips_recycled_ones(campaign, history):
    rows = {row["pair_id"]: row for row in ranked_rows(campaign, include_silver=True)}
    assert history["silver_discarded"].pk not in rows
    kept = rows[history["silver_kept"].pk]
    assert (kept["provenance"], kept["curation"], kept["chosen_side"]) == ("silver", "kept", "b")
    recycled = rows[history["silver_recycled"].pk]
    # Source said A (silver 1); both models reversed it, so the export flips it.
    assert recycled["chosen_side"] == "b" and recycled["source_label_flipped"] is True
    uncurated = rows[history["silver_uncurated"].pk]
    assert uncurated["chosen_side"] == "a" and uncurated["source_label_flipped"] is False
    # The gold pair also has a source label; its gold label wins and it appears once.
    assert rows[history["gold"].pk]["provenance"] == "gold"

    curated = exported_ids(ranked_rows(campaign, include_silver=True, silver_curated_only=True))
    assert history["silver_uncurated"].pk not in curated
    assert {history["silver_kept"].pk, history["silver_recycled"].pk} <= curated


@pytest.mark.parametrize("ties", ["exclude", "separate"])
def test_ties_are_left_out_or_written_to_their_own_file(campaign, history, tmp_path, ties):
    path = tmp_path / "out.parquet"
    result = export_write(
        campaign=campaign,
        filters=ExportFilters(ties=ties),
        file_format="parquet",
        destination=path,
    )
    assert history["tie"].pk not in exported_ids(read_rows(path, "parquet"))
    assert result.manifest["counts"]["ties"] == 1
    if ties == "exclude":
        assert not unranked_path(path).exists()
        assert result.manifest["counts"]["excluded_without_chosen_side"] == 1
        assert [item["role"] for item in result.manifest["files"]] == ["main"]
    else:
        tie = read_rows(unranked_path(path), "parquet")[0]
        assert tie["preference"] == 0 and tie["votes"] == [0, 0, 1]
        assert tie["response_a"][-1]["content"] == history["tie"].response_a
        assert result.manifest["counts"]["excluded_without_chosen_side"] == 0


class Interrupted(Exception):
    pass


@pytest.mark.parametrize("file_format", ["jsonl", "parquet"])
def test_an_export_interrupted_mid_write_leaves_no_file(campaign, history, tmp_path, file_format):
    folder = tmp_path / "exports"
    calls = []

    def fail_after_first_chunk(done, total):
        calls.append(done)
        raise Interrupted

    with pytest.raises(Interrupted, match="^$"):
        export_write(
            campaign=campaign,
            filters=ExportFilters(include_silver=True, ties="separate"),
            file_format=file_format,
            destination=folder / f"out.{file_format}",
            chunk_size=2,
            on_progress=fail_after_first_chunk,
        )
    assert calls == [2]  # it failed with rows written and more to come
    assert list(folder.iterdir()) == []


def test_the_manifest_records_filters_counts_checksums_and_code_version(
    campaign, history, tmp_path
):
    filters = ExportFilters(include_silver=True, ties="separate", min_agreement=0.1)
    path = tmp_path / "out.jsonl"
    manifest = export_write(
        campaign=campaign, filters=filters, file_format="jsonl", destination=path
    ).manifest
    assert manifest["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    ties_entry = manifest["files"][1]
    assert ties_entry["sha256"] == hashlib.sha256(unranked_path(path).read_bytes()).hexdigest()
    assert manifest["filters"] == filters.as_params()
    assert manifest["counts"]["rows"] == len(read_rows(path, "jsonl"))
    assert manifest["counts"]["by_provenance"] == {
        "adjudicated": 1,
        "gold": 1,
        "majority": 1,
        "silver": 3,
        "unanimous": 1,
    }
    assert manifest["code_version"] and manifest["code_version"] != "unknown"
    assert [column["name"] for column in manifest["schema"]] == MAIN_SCHEMA.names
    assert manifest["model_version"] == 3
    assert manifest["max_pair_id"] == history["silver_recycled"].pk  # the last one exported


def test_it_rejects_unknown_filters_and_bad_values():
    with pytest.raises(InvalidExport, match="unknown provenance made_up"):
        ExportFilters.from_params({"provenance": ["gold", "made_up"]})
    with pytest.raises(InvalidExport, match="unknown parameter colour"):
        ExportFilters.from_params({"colour": "blue"})
    with pytest.raises(InvalidExport, match="min_agreement must lie between 0 and 1"):
        ExportFilters.from_params({"min_agreement": 1.5})
    with pytest.raises(InvalidExport, match="ties must be one of exclude, separate"):
        ExportFilters.from_params({"ties": "merge"})
    assert ExportFilters.from_params({"rounds": ["2", 1, 2]}).rounds == (1, 2)


def test_snapshots_get_versions_and_a_job_runs_once(
    campaign, history, admin_user, settings, tmp_path
):
    settings.ARBITER = {**settings.ARBITER, "EXPORT_DIR": tmp_path / "exports"}
    first = export_create(
        campaign=campaign, file_format="jsonl", filters=ExportFilters(), user=admin_user
    )
    second = export_create(
        campaign=campaign, file_format="parquet", filters=ExportFilters(), user=admin_user
    )
    assert (first.version, second.version) == (1, 2)
    assert first.job.kind == Job.Kind.EXPORT and first.job.status == Job.Status.QUEUED

    assert export_run(job_id=second.job_id).outcome == ClaimOutcome.CLAIMED
    # A redelivered task does nothing.
    assert export_run(job_id=second.job_id).outcome == ClaimOutcome.FINISHED
    snapshot = ExportSnapshot.objects.get(pk=second.pk)
    job = Job.objects.get(pk=second.job_id)
    assert job.status == Job.Status.SUCCEEDED and job.progress == 1.0
    assert job.result["rows"] == 4
    path = Path(snapshot.path)
    assert path.name == "export-v2.parquet" and path.parent.name == f"campaign-{campaign.pk}"
    assert snapshot.manifest["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert snapshot.manifest["snapshot_version"] == 2
    assert ExportSnapshot.objects.get(pk=first.pk).path == ""  # not run yet


@pytest.mark.django_db(transaction=True)
def test_outside_a_transaction_chunks_are_read_ahead_and_an_interruption_stops_the_reader(
    campaign, history, tmp_path
):
    readers_seen = []

    def watch(done, total):
        readers_seen.append(
            any(thread.name == "export-read-ahead" for thread in threading.enumerate())
        )

    filters = ExportFilters(include_silver=True, ties="separate")
    result = export_write(
        campaign=campaign,
        filters=filters,
        file_format="parquet",
        destination=tmp_path / "out.parquet",
        chunk_size=2,
        on_progress=watch,
    )
    assert any(readers_seen)
    expected = [row for ranked, row in export_rows(campaign=campaign, filters=filters) if ranked]
    assert read_rows(tmp_path / "out.parquet", "parquet") == expected
    assert result.manifest["counts"]["rows"] == len(expected) == 7

    def interrupt(done, total):
        raise Interrupted

    with pytest.raises(Interrupted, match="^$"):
        export_write(
            campaign=campaign,
            filters=filters,
            file_format="jsonl",
            destination=tmp_path / "cut" / "out.jsonl",
            chunk_size=2,
            on_progress=interrupt,
        )
    assert list((tmp_path / "cut").iterdir()) == []
    assert not any(thread.name == "export-read-ahead" for thread in threading.enumerate())


def test_a_worker_that_lost_the_export_job_puts_no_file_in_place(
    campaign, history, admin_user, settings, tmp_path
):
    """Taken over (its heartbeat went stale) before the rename: before, the old worker still
    renamed its files over the destination and saved its manifest, beside its successor's."""
    from scoring.datasets.export.snapshots import _export_work
    from scoring.jobs.claims import job_claim
    from scoring.jobs.runner import JobContext, JobLost

    settings.ARBITER = {**settings.ARBITER, "EXPORT_DIR": tmp_path / "exports"}
    snapshot = export_create(
        campaign=campaign, file_format="jsonl", filters=ExportFilters(), user=admin_user
    )
    job = job_claim(job_id=snapshot.job_id, worker="old").job
    work = _export_work(job, 100)
    # Another worker's claim: a new attempt, which the old worker has not noticed yet.
    Job.objects.filter(pk=job.pk).update(attempts=job.attempts + 1, worker="new")
    context = JobContext(job)
    # Its last progress write was under half a second before the end (as at the end of a long
    # export), so the final progress call is throttled and does not find out either; here
    # the whole (short) export stands for that last half second.
    context._last_write = time.monotonic() + 3600
    with pytest.raises(JobLost):
        work(context)
    snapshot.refresh_from_db()
    assert (snapshot.path, snapshot.manifest) == ("", {})
    assert list((tmp_path / "exports").rglob("*")) == [
        tmp_path / "exports" / f"campaign-{campaign.pk}"
    ]
