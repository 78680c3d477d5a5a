"""Export of "both bad"/"both good" pairs, per-aspect ratings and (rewrite ≻ original) pairs."""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest

from annotation.models import Label, Outcome, Pair, Rewrite
from scoring.datasets.export import (
    MAIN_SCHEMA,
    UNRANKED_SCHEMA,
    ExportFilters,
    export_rows,
    export_write,
    outcomes_path,
    unranked_path,
)
from tests.factories import CampaignFactory, UserFactory
from tests.scoring.test_export import read_rows, voted_pair

pytestmark = pytest.mark.django_db

ASPECTS = [
    {"name": "helpfulness", "label": "Helpfulness", "scale_min": 1, "scale_max": 5},
    {"name": "honesty", "label": "Honesty", "scale_min": 1, "scale_max": 3},
]


@pytest.fixture
def annotators(db):
    return UserFactory.create_batch(3)


@pytest.fixture
def outcome_campaign(db, annotators):
    """A chosen pair (A), a tie, a both-bad and a both-good pair, all unanimous."""
    campaign = CampaignFactory(aspects=ASPECTS, allow_rewrites=True)
    pairs = {
        "chosen": voted_pair(
            campaign, annotators, [-1, -1, -2], consensus=-1, provenance="unanimous"
        ),
        "tie": voted_pair(campaign, annotators, [0, 0, 0], consensus=0, provenance="unanimous"),
        "both_bad": voted_pair(
            campaign,
            annotators,
            [0, 0, 0],
            consensus=0,
            provenance="unanimous",
            consensus_outcome=Outcome.BOTH_BAD,
        ),
        "both_good": voted_pair(
            campaign,
            annotators,
            [0, 0, 1],
            consensus=0,
            provenance="majority",
            consensus_outcome=Outcome.BOTH_GOOD,
        ),
    }
    Label.objects.filter(pair=pairs["both_bad"]).update(outcome=Outcome.BOTH_BAD)
    return campaign, pairs


@pytest.mark.parametrize("file_format", ["jsonl", "parquet"])
def test_both_bad_and_both_good_are_kept_apart_from_chosen_rejected_and_ties(
    outcome_campaign, tmp_path, file_format
):
    campaign, pairs = outcome_campaign
    path = tmp_path / f"out.{file_format}"
    result = export_write(
        campaign=campaign,
        filters=ExportFilters(ties="separate"),
        file_format=file_format,
        destination=path,
    )
    main = read_rows(path, file_format)
    assert [row["pair_id"] for row in main] == [pairs["chosen"].pk]
    assert main[0]["outcome"] == "preference" and main[0]["chosen_side"] == "b"
    ties = read_rows(unranked_path(path), file_format)
    assert [(row["pair_id"], row["outcome"]) for row in ties] == [(pairs["tie"].pk, "preference")]
    apart = read_rows(outcomes_path(path), file_format)
    assert [(row["pair_id"], row["outcome"], row["preference"]) for row in apart] == [
        (pairs["both_bad"].pk, "both_bad", 0),
        (pairs["both_good"].pk, "both_good", 0),
    ]
    assert all("chosen" not in row and "rejected" not in row for row in apart)
    counts = result.manifest["counts"]
    assert (counts["rows"], counts["ties"]) == (1, 1)
    assert (counts["both_bad"], counts["both_good"], counts["outcomes_written"]) == (1, 1, 2)
    roles = {item["role"]: item for item in result.manifest["files"]}
    assert roles["outcomes"]["rows"] == 2 and roles["outcomes"]["name"] == outcomes_path(path).name
    if file_format == "parquet":
        assert pq.read_schema(outcomes_path(path)).names == UNRANKED_SCHEMA.names


def test_outcomes_can_be_left_out_and_are_still_counted(outcome_campaign, tmp_path):
    campaign, _ = outcome_campaign
    path = tmp_path / "out.jsonl"
    result = export_write(
        campaign=campaign,
        filters=ExportFilters(outcomes="exclude"),
        file_format="jsonl",
        destination=path,
    )
    assert not outcomes_path(path).exists()
    assert [item["role"] for item in result.manifest["files"]] == ["main"]
    assert result.manifest["counts"]["both_bad"] == 1
    assert result.manifest["counts"]["outcomes_written"] == 0


def test_a_campaign_without_such_pairs_gets_no_outcomes_file(annotators, tmp_path):
    campaign = CampaignFactory()
    voted_pair(campaign, annotators, [1, 1, 1], consensus=1, provenance="unanimous")
    path = tmp_path / "out.jsonl"
    result = export_write(
        campaign=campaign, filters=ExportFilters(), file_format="jsonl", destination=path
    )
    assert not outcomes_path(path).exists()
    assert [item["role"] for item in result.manifest["files"]] == ["main"]


@pytest.mark.parametrize("file_format", ["jsonl", "parquet"])
def test_aspect_means_follow_the_chosen_response(outcome_campaign, tmp_path, file_format):
    campaign, pairs = outcome_campaign
    ratings = [
        {"helpfulness": {"a": 1, "b": 4}, "honesty": {"b": 3}},
        {"helpfulness": {"a": 2, "b": 5}},
        {},
    ]
    for label, rating in zip(
        Label.objects.filter(pair=pairs["chosen"]).order_by("id"), ratings, strict=True
    ):
        Label.objects.filter(pk=label.pk).update(aspect_ratings=rating)
    path = tmp_path / f"out.{file_format}"
    export_write(
        campaign=campaign, filters=ExportFilters(), file_format=file_format, destination=path
    )
    (row,) = read_rows(path, file_format)
    # B was chosen: its ratings are the chosen ones.
    assert row["aspects"] == [
        {"name": "helpfulness", "chosen_mean": 4.5, "rejected_mean": 1.5, "ratings": 2},
        {"name": "honesty", "chosen_mean": 3.0, "rejected_mean": None, "ratings": 1},
    ]


@pytest.mark.parametrize("file_format", ["jsonl", "parquet"])
def test_rewrites_become_rewrite_over_original_pairs_marked_in_provenance(
    outcome_campaign, annotators, tmp_path, file_format
):
    campaign, pairs = outcome_campaign
    bad = pairs["both_bad"]
    rewrite = Rewrite.objects.create(
        pair=bad, campaign=campaign, author=annotators[0], text="A fixed answer.", based_on="b"
    )
    path = tmp_path / f"out.{file_format}"
    without = export_write(
        campaign=campaign, filters=ExportFilters(), file_format=file_format, destination=path
    )
    assert without.manifest["counts"]["rewrites"] == 0
    result = export_write(
        campaign=campaign,
        filters=ExportFilters(rewrites=True),
        file_format=file_format,
        destination=path,
    )
    rows = read_rows(path, file_format)
    assert [row["provenance"] for row in rows] == ["unanimous", "rewrite"]
    row = rows[1]
    assert row["pair_id"] == bad.pk and row["rewrite_id"] == rewrite.pk
    assert row["rewrite_of"] == "b" and row["chosen_side"] == "rewrite"
    assert row["chosen"][-1] == {"role": "assistant", "content": "A fixed answer."}
    assert row["rejected"][-1] == {"role": "assistant", "content": bad.response_b}
    assert row["chosen"][:-1] == bad.conversation
    assert rows[0]["rewrite_id"] is None
    assert result.manifest["counts"]["rewrites"] == 1
    assert result.manifest["counts"]["by_provenance"]["rewrite"] == 1
    if file_format == "parquet":
        assert pq.read_schema(path).names == MAIN_SCHEMA.names


def test_export_rows_match_the_files_for_outcomes(outcome_campaign):
    campaign, pairs = outcome_campaign
    rows = list(export_rows(campaign=campaign, filters=ExportFilters()))
    by_pair = {row["pair_id"]: (ranked, row) for ranked, row in rows}
    ranked, row = by_pair[pairs["both_bad"].pk]
    assert not ranked and row["outcome"] == "both_bad" and "response_a" in row
    assert Pair.objects.get(pk=pairs["both_bad"].pk).consensus_outcome == "both_bad"


def test_the_dashboard_export_form_passes_the_outcomes_and_rewrites_options(
    campaign, admin_user, settings, tmp_path
):
    settings.ARBITER = {**settings.ARBITER, "EXPORT_DIR": tmp_path}
    from scoring.models import ExportSnapshot
    from tests.scoring.test_dashboard import HTMX, client_for

    url = f"/campaigns/{campaign.pk}/dashboard/exports"
    response = client_for(admin_user).post(
        url,
        {
            "format": "jsonl",
            "ties": "exclude",
            "provenance": ["unanimous"],
            "outcomes": "exclude",
            "rewrites": "on",
        },
        **HTMX,
    )
    assert response.status_code == 200
    filters = ExportSnapshot.objects.get().filters
    assert (filters["outcomes"], filters["rewrites"]) == ("exclude", True)
